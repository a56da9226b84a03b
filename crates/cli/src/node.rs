//! `thunderhead node`: compute nodes, burst and on-premises, and the actions on them.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use crate::{show, wait};
use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use thunderhead_core::size::NodeSize;
use thunderhead_core::view::{NodeAction, NodeActionRequest, NodeActionResult, NodeLogEntry, NodeView};

#[derive(Args)]
pub struct NodeSelection {
    /// Act on every node of this template
    #[arg(long)]
    template: Option<String>,
    /// Or on these nodes
    names: Vec<String>,
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Add burst nodes from a template (they start NotDeployed)
    Add {
        #[arg(long)]
        template: String,
        #[arg(long)]
        count: u32,
        /// Small (1 core), Medium (2), Large (4) or ExtraLarge (8)
        #[arg(long)]
        size: String,
    },
    /// List nodes
    List {
        #[arg(long)]
        template: Option<String>,
    },
    /// Deploy nodes (Provisioning, then Offline when their agents connect)
    Start {
        #[command(flatten)]
        nodes: NodeSelection,
        /// Return once every started node is Offline (exit 1 if one fails)
        #[arg(long)]
        wait: bool,
    },
    /// Remove the deployment of nodes (back to NotDeployed); with --orphans, remove instead what
    /// the template's provider holds that no node owns (see template validate)
    Stop {
        #[command(flatten)]
        nodes: NodeSelection,
        /// Remove the set's leftovers at its provider (a leftover agent on a host, an allocation
        /// named for the set), not its nodes; needs --template
        #[arg(long)]
        orphans: bool,
    },
    /// Bring nodes online: they take work
    Online(NodeSelection),
    /// Take nodes offline: running tasks finish first, or are requeued with --force
    Offline {
        #[command(flatten)]
        nodes: NodeSelection,
        #[arg(long)]
        force: bool,
    },
    /// Remove nodes from the cluster
    Delete(NodeSelection),
    /// Print a node's lifecycle log
    Log { name: String },
    /// Revoke a node's certificate: its agent is refused until it joins again with a new token
    Revoke { name: String },
}

/// Runs a node operation and prints what happened to each node; returns the per-node results.
fn act(c: &Client, action: NodeAction, sel: NodeSelection, force: bool, out: Output) -> Result<Vec<NodeActionResult>> {
    let request = NodeActionRequest { action, template: sel.template, names: sel.names, force };
    let results: Vec<NodeActionResult> = c.post(&ApiPath::new("nodes").segment("actions"), &request)?;
    out.list(&results, &["node", "result", "state or reason"], |r| {
        vec![r.node.clone(), if r.ok { "OK" } else { "FAILED" }.into(), r.message.clone()]
    });
    if results.is_empty() {
        out.note("no nodes to act on");
    }
    for r in results.iter().filter(|r| !r.ok) {
        eprintln!("error: {}: {}", r.node, r.message);
    }
    Ok(results)
}

/// Exit code 1 if the operation failed on any node.
fn exit_code(results: &[NodeActionResult]) -> i32 {
    i32::from(results.iter().any(|r| !r.ok))
}

fn acted(results: Result<Vec<NodeActionResult>>) -> Result<i32> {
    results.map(|r| exit_code(&r))
}

pub fn run(c: &Client, command: NodeCommand, out: Output) -> Result<i32> {
    match command {
        NodeCommand::Add { template, count, size } => {
            // Checked here too, so the mistake is named before anything is sent.
            NodeSize::parse_burst(&size).map_err(|e| anyhow::anyhow!(e.message))?;
            let added: Vec<NodeView> =
                c.post(&ApiPath::new("nodes"), &json!({"template": template, "count": count, "size": size}))?;
            out.one(&added, |added| {
                let names: Vec<&str> = added.iter().map(|n| n.name.as_str()).collect();
                println!("added {} node(s) from template {template}: {}", added.len(), names.join(", "));
            });
        }
        NodeCommand::List { template } => {
            let nodes: Vec<NodeView> = c.get(&ApiPath::new("nodes").query_opt("template", template))?;
            out.list(&nodes, &["name", "template", "size", "cores", "state", "health", "running"], |n| {
                vec![
                    n.name.clone(),
                    n.template.clone().unwrap_or_else(|| "(on-premises)".into()),
                    show::opt(&n.size),
                    n.cores.to_string(),
                    n.state.clone(),
                    n.health.clone(),
                    n.running_tasks.to_string(),
                ]
            });
        }
        NodeCommand::Start { nodes, wait } => {
            let started = act(c, NodeAction::Start, nodes, false, out)?;
            if !wait || started.iter().all(|r| !r.ok) {
                return Ok(exit_code(&started));
            }
            let names: Vec<&str> = started.iter().filter(|r| r.ok).map(|r| r.node.as_str()).collect();
            let fetch = || -> Result<Vec<NodeView>> {
                let all: Vec<NodeView> = c.get(&ApiPath::new("nodes"))?;
                Ok(all.into_iter().filter(|n| names.contains(&n.name.as_str())).collect())
            };
            let done = |n: &NodeView| matches!(n.state.as_str(), "Offline" | "Online");
            wait::await_nodes(fetch, "Offline", std::time::Duration::from_secs(30 * 60), out.for_people(), done)?;
            return Ok(exit_code(&started));
        }
        NodeCommand::Stop { nodes, orphans: false } => return acted(act(c, NodeAction::Stop, nodes, false, out)),
        NodeCommand::Stop { nodes, orphans: true } => {
            let Some(template) = nodes.template.filter(|_| nodes.names.is_empty()) else {
                anyhow::bail!("--orphans removes a set's leftovers: give --template T and no node names");
            };
            let path = ApiPath::new("templates").segment(&template).segment("orphans").segment("remove");
            let results: Vec<NodeActionResult> = c.post(&path, &json!({}))?;
            out.list(&results, &["made for", "result", "what"], |r| {
                vec![r.node.clone(), if r.ok { "REMOVED" } else { "FAILED" }.into(), r.message.clone()]
            });
            if results.is_empty() {
                out.note(format_args!("template {template}'s provider holds nothing that no node owns"));
            }
            return Ok(exit_code(&results));
        }
        NodeCommand::Online(sel) => return acted(act(c, NodeAction::Online, sel, false, out)),
        NodeCommand::Offline { nodes, force } => return acted(act(c, NodeAction::Offline, nodes, force, out)),
        NodeCommand::Delete(sel) => return acted(act(c, NodeAction::Delete, sel, false, out)),
        NodeCommand::Log { name } => {
            let log: Vec<NodeLogEntry> = c.get(&ApiPath::new("nodes").segment(&name).segment("log"))?;
            out.one(&log, |log| {
                for entry in log {
                    println!("{}  {}", show::time(Some(entry.at)), entry.message);
                }
            });
        }
        NodeCommand::Revoke { name } => {
            let answer: Value = c.post(&ApiPath::new("nodes").segment(&name).segment("revoke"), &json!({}))?;
            out.one(&answer, |answer| {
                println!(
                    "revoked {} certificate(s) of {name}: its agent is refused from its next connection until it joins again",
                    answer["revoked"]
                );
            });
        }
    }
    Ok(0)
}
