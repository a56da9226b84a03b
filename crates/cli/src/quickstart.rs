//! `thunderhead quickstart`: a whole cluster in one command, on this machine.
//!
//! Starts a head node in a temporary state directory, creates a `local` template, adds burst
//! nodes, starts them (a progress bar while they provision), brings them online, runs a sweep
//! whose tasks each compute something from their index, prints a summary, stops the nodes and
//! removes the state.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::show;
use crate::wait::await_nodes;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use thunderhead_core::view::{NodeAction, NodeActionRequest, NodeActionResult, NodeView, SubmitReply, TaskView};

#[derive(Args)]
pub struct QuickstartArgs {
    /// Burst nodes to deploy
    #[arg(long, default_value_t = 4)]
    nodes: u32,
    /// Size of each node
    #[arg(long, default_value = "Medium")]
    size: String,
    /// Tasks in the sweep
    #[arg(long, default_value_t = 240)]
    tasks: u64,
    /// Keep the state directory instead of deleting it
    #[arg(long)]
    keep: bool,
}

/// Each task counts the steps of the Collatz sequence from its index down to 1 and prints them.
const TASK_SCRIPT: &str = r#"n=$THUNDERHEAD_SWEEP_INDEX; steps=0
while [ "$n" -ne 1 ]; do
  if [ $((n % 2)) -eq 0 ]; then n=$((n / 2)); else n=$((n + n + n + 1)); fi
  steps=$((steps + 1))
done
echo "collatz($THUNDERHEAD_SWEEP_INDEX) reaches 1 in $steps steps on $THUNDERHEAD_NODE_NAME""#;

const TEMPLATE: &str = "quickstart";

/// Stops the quickstart's nodes however the quickstart ends, so no agent outlives it.
struct StopGuard<'a> {
    client: &'a Client,
    armed: bool,
}

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = stop_nodes(self.client, true);
        }
    }
}

/// On Ctrl-C, ends the agents of the quickstart's nodes (they live in their own process groups
/// and would outlive it) and removes its state.
fn end_on_interrupt(runtime: &tokio::runtime::Runtime, state: std::path::PathBuf) {
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(state.join("nodes")) {
            for entry in entries.flatten() {
                for file in ["agent.pid", "proxy.pid"] {
                    let pid = std::fs::read_to_string(entry.path().join(file))
                        .ok()
                        .and_then(|p| p.trim().parse::<i32>().ok());
                    if let Some(pid) = pid {
                        let group = nix::unistd::Pid::from_raw(pid);
                        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = std::fs::remove_dir_all(&state);
        eprintln!("interrupted: nodes ended and state removed");
        std::process::exit(130);
    });
}

fn step(text: &str) {
    println!("==> {text}");
}

fn nodes(c: &Client) -> Result<Vec<NodeView>> {
    c.get(&ApiPath::new("nodes").query("template", TEMPLATE))
}

fn act(c: &Client, action: NodeAction) -> Result<Vec<NodeActionResult>> {
    let results: Vec<NodeActionResult> = c.post(
        &ApiPath::new("nodes").segment("actions"),
        &NodeActionRequest { action, template: Some(TEMPLATE.into()), names: vec![], force: false },
    )?;
    if let Some(bad) = results.iter().find(|r| !r.ok) {
        bail!("node {}: {}", bad.node, bad.message);
    }
    Ok(results)
}

fn stop_nodes(c: &Client, wait: bool) -> Result<()> {
    act(c, NodeAction::Stop)?;
    if wait {
        await_nodes(|| nodes(c), "stopped", Duration::from_secs(60), true, |n| n.state == "NotDeployed")?;
    }
    Ok(())
}

pub fn run(args: QuickstartArgs) -> Result<i32> {
    let began = Instant::now();
    let state = tempfile::Builder::new()
        .prefix("thunderhead-quickstart-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let runtime = crate::process::runtime()?;
    let config = crate::process::server_config(state.path().to_path_buf(), "127.0.0.1:0".parse().expect("address"))?;
    let server = runtime.block_on(thunderhead_server::start(config))?;
    end_on_interrupt(&runtime, state.path().to_path_buf());
    step(&format!("head node running at {} (state in {})", server.url, state.path().display()));
    let c = Client::from_access(&state.path().join(thunderhead_server::ACCESS_FILE))?;

    c.post::<serde_json::Value>(
        &ApiPath::new("templates"),
        &json!({"name": TEMPLATE, "provider": "local", "description": "burst nodes on this machine"}),
    )?;
    step(&format!("created node template {TEMPLATE} (provider local)"));
    let added: Vec<NodeView> =
        c.post(&ApiPath::new("nodes"), &json!({"template": TEMPLATE, "count": args.nodes, "size": args.size}))?;
    let names: Vec<&str> = added.iter().map(|n| n.name.as_str()).collect();
    step(&format!("added {} {} burst nodes: {}", added.len(), args.size, names.join(", ")));

    let mut guard = StopGuard { client: &c, armed: true };
    step("starting the set: deploying the nodes");
    act(&c, NodeAction::Start)?;
    let t = Instant::now();
    await_nodes(|| nodes(&c), "provisioned (Offline)", Duration::from_secs(60), true, |n| n.state == "Offline")?;
    step(&format!("all {} nodes provisioned in {}", added.len(), show::duration(t.elapsed().as_millis() as u64)));
    act(&c, NodeAction::Online)?;
    let online = await_nodes(|| nodes(&c), "online", Duration::from_secs(10), true, |n| n.state == "Online")?;
    show::table(
        &["name", "size", "cores", "state", "health"],
        online
            .iter()
            .map(|n| {
                vec![n.name.clone(), crate::show::opt(&n.size), n.cores.to_string(), n.state.clone(), n.health.clone()]
            })
            .collect(),
    );

    let reply: SubmitReply = c.post(
        &ApiPath::new("jobs"),
        &json!({
            "name": "collatz-sweep",
            "sweep": format!("1-{}", args.tasks),
            "command": ["sh", "-c", TASK_SCRIPT],
        }),
    )?;
    step(&format!("submitted job {}: a sweep of {} tasks (collatz steps of each index)", reply.id, args.tasks));
    let t = Instant::now();
    let job = crate::wait::wait_quietly(&c, reply.id, true)?;
    let elapsed = t.elapsed();

    let tasks: Vec<TaskView> =
        c.get(&ApiPath::new("jobs").segment(reply.id).segment("tasks").query("limit", 100_000))?;
    let mut per_node: BTreeMap<String, u64> = BTreeMap::new();
    for t in &tasks {
        *per_node.entry(t.node.clone().unwrap_or_default()).or_default() += 1;
    }
    step("summary");
    println!(
        "    job {} {}: {} finished, {} failed of {} tasks in {}",
        job.id,
        job.state,
        job.tasks.finished,
        job.tasks.failed,
        job.total_tasks,
        show::duration(elapsed.as_millis() as u64)
    );
    println!("    {:.0} tasks/s", job.total_tasks as f64 / elapsed.as_secs_f64().max(0.001));
    show::table(&["node", "tasks"], per_node.iter().map(|(n, k)| vec![n.clone(), k.to_string()]).collect());
    let samples: std::collections::BTreeSet<u64> =
        [1, 27, args.tasks].into_iter().filter(|i| *i <= args.tasks).collect();
    for index in samples {
        let answer: serde_json::Value =
            c.get(&ApiPath::new("jobs").segment(reply.id).segment("tasks").segment(index))?;
        println!("    task {}.{index}: {}", reply.id, answer["output"]["stdout"].as_str().unwrap_or("").trim());
    }

    step("stopping the set");
    stop_nodes(&c, true)?;
    guard.armed = false;
    let code = if job.state == "Finished" { 0 } else { 1 };
    if args.keep {
        let kept = state.keep();
        step(&format!("state kept in {}", kept.display()));
    }
    step(&format!("done in {}", show::duration(began.elapsed().as_millis() as u64)));
    drop(runtime);
    Ok(code)
}
