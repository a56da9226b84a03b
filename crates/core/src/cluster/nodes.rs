//! Entry: node requests (add, list, details, and set actions: start, stop, online, offline, delete).

use super::effects::Effects;
use super::node::Node;
use super::{Cluster, MAX_ADD_NODES, log};
use crate::job::TaskState;
use crate::node_state::{Health, NodeState};
use crate::persist::{Op, TaskRow};
use crate::size::NodeSize;
use crate::template;
use crate::view::{AddNodes, NodeAction, NodeActionRequest, NodeActionResult, NodeView, TaskView};
use crate::{Error, Millis, Result};
use std::collections::BTreeSet;

impl Cluster {
    pub fn add_nodes(&mut self, fx: &mut Effects, req: AddNodes, now: Millis) -> Result<Vec<NodeView>> {
        let template = self.template_named(&req.template)?.clone();
        let size = NodeSize::parse_burst(&req.size)?;
        if req.count == 0 || req.count > MAX_ADD_NODES {
            return Err(Error::invalid(format!(
                "count {} is out of range (add between 1 and {MAX_ADD_NODES} nodes at a time)",
                req.count
            )));
        }
        let nodes_cores = self.template_cores(&template.name, |_| true);
        let adding = req.count * size.cores();
        let needed = nodes_cores + adding + template.proxy_cores();
        if needed > template.quota_cores {
            let room = template.quota_cores.saturating_sub(nodes_cores + template.proxy_cores()) / size.cores();
            return Err(Error::invalid(format!(
                "adding {} {size} nodes ({adding} cores) to template {} needs {needed} cores with its {nodes_cores} cores of nodes and {} of proxies, over its quota of {} (add at most {room}, or raise the quota: thunderhead template edit {} --quota-cores {needed})",
                req.count,
                template.name,
                template.proxy_cores(),
                template.quota_cores,
                template.name
            )));
        }
        let prefix = template.prefix();
        let mut last = self.series.get(&prefix).copied().unwrap_or(0);
        let mut added = Vec::new();
        for _ in 0..req.count {
            let name = loop {
                last += 1;
                let name = template::series_name(&prefix, last);
                if !self.nodes.contains_key(&name) {
                    break name;
                }
            };
            let node = Node::new(
                name.clone(),
                Some(template.name.clone()),
                Some(size),
                size.cores(),
                NodeState::NotDeployed,
                Health::Unapproved,
            );
            fx.ops.push(Op::PutNode(node.record()));
            log(
                fx,
                &name,
                now,
                format!("added from template {} as a {size} node ({} cores)", template.name, size.cores()),
            );
            added.push(node.view());
            self.nodes.insert(name, node);
        }
        self.series.insert(prefix.clone(), last);
        fx.ops.push(Op::PutSeries { prefix, last });
        Ok(added)
    }

    pub fn nodes(&self, template: Option<&str>) -> Result<Vec<NodeView>> {
        if let Some(t) = template {
            self.template_named(t)?;
        }
        Ok(self
            .nodes
            .values()
            .filter(|n| template.is_none() || n.template.as_deref() == template)
            .map(Node::view)
            .collect())
    }

    pub fn node(&self, name: &str) -> Result<NodeView> {
        Ok(self.node_named(name)?.view())
    }

    /// The tasks running on node `name`, then those that ended there last, newest first; only
    /// tasks of `owner`'s jobs when an owner is given.
    pub fn node_tasks(&self, name: &str, owner: Option<&str>) -> Result<Vec<TaskView>> {
        let node = self.node_named(name)?;
        let shown = |t: &TaskView| owner.is_none_or(|o| self.jobs.get(&t.job).is_some_and(|j| j.owner == o));
        let running = node.running.iter().filter_map(|key| {
            let r = self.running.get(key)?;
            let mut row = TaskRow::new(key.job, key.index);
            row.state = TaskState::Running;
            row.attempt = r.attempt;
            row.losses = r.losses;
            row.node = Some(r.node.clone());
            Some(row.view())
        });
        Ok(running.chain(node.recent.iter().rev().cloned()).filter(shown).collect())
    }

    /// Runs a node operation on a set of nodes, node by node. The answer says, per node, what
    /// happened; a node that refuses does not stop the others.
    pub fn node_action(
        &mut self,
        fx: &mut Effects,
        req: NodeActionRequest,
        now: Millis,
    ) -> Result<Vec<NodeActionResult>> {
        let names: Vec<String> = match (&req.template, req.names.is_empty()) {
            (Some(t), true) => {
                self.template_named(t)?;
                self.nodes.values().filter(|n| n.template.as_deref() == Some(t)).map(|n| n.name.clone()).collect()
            }
            (None, false) => {
                for n in &req.names {
                    self.node_named(n)?;
                }
                if matches!(req.action, NodeAction::Start | NodeAction::Stop | NodeAction::Delete) {
                    self.check_one_set(&req.names)?;
                }
                req.names.clone()
            }
            (Some(_), false) => {
                return Err(Error::invalid("give either --template or node names, not both"));
            }
            (None, true) => {
                return Err(Error::invalid("no nodes named (give --template NAME or one or more node names)"));
            }
        };
        if names.len() > MAX_ADD_NODES as usize {
            return Err(Error::invalid(format!(
                "{} nodes named, more than the limit of {MAX_ADD_NODES} in one action (act on the set with --template)",
                names.len()
            )));
        }
        // A person's action wins over the availability policy until its next phase.
        let named: BTreeSet<&String> = names.iter().collect();
        let touched: Vec<String> = self
            .policy
            .iter_mut()
            .filter_map(|(t, state)| {
                let before = state.managed.len();
                state.managed.retain(|n| !named.contains(n));
                (state.managed.len() != before).then(|| t.clone())
            })
            .collect();
        for t in touched {
            self.save_policy(fx, &t);
        }
        let mut results = Vec::with_capacity(names.len());
        for name in names {
            let outcome = match req.action {
                NodeAction::Start => self.start_node(fx, &name, now),
                NodeAction::Stop => self.stop_node(fx, &name, now),
                NodeAction::Online => self.online_node(fx, &name, now),
                NodeAction::Offline => self.offline_node(fx, &name, req.force, now),
                NodeAction::Delete => self.delete_node(fx, &name, now),
            };
            let message = match &outcome {
                Ok(()) => self.nodes.get(&name).map_or("deleted".to_string(), |n| n.state.name().to_string()),
                Err(e) => e.message.clone(),
            };
            results.push(NodeActionResult { node: name, ok: outcome.is_ok(), message });
        }
        self.dirty = true;
        Ok(results)
    }

    /// Set operations act on one template's nodes at a time, as in HPC Pack: starting or
    /// stopping nodes of two sets in one command is refused.
    fn check_one_set(&self, names: &[String]) -> Result<()> {
        let mut seen: Option<(&str, &str)> = None;
        for n in names {
            let template = self.nodes[n].template.as_deref().unwrap_or("(on-premises)");
            match seen {
                None => seen = Some((n, template)),
                Some((first, t)) if t != template => {
                    return Err(Error::invalid(format!(
                        "nodes {first} (template {t}) and {n} (template {template}) belong to different sets; start, stop and delete act on one template's nodes at a time (run one command per template)"
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
