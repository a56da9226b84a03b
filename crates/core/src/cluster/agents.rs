//! Entry: agent connections and what agents report.

use super::deployment::AgentLink;
use super::effects::{Command, Effects};
use super::lifecycle::{DEPENDENCY_FAILED, canceled_row};
use super::messages::{Hello, TaskAttempt, TaskResult};
use super::node::Node;
use super::packages::Installed;
use super::{Cluster, MAX_NODE_CORES, MAX_TASK_MS, SessionId, log};
use crate::job::TaskState;
use crate::node_state::{Health, NodeEvent, NodeState};
use crate::persist::{Op, TaskRow};
use crate::template;
use crate::view::NodeMetrics;
use crate::{Error, Millis, Result, TaskKey};
use std::collections::HashSet;

impl Cluster {
    /// An agent connected. Returns the name of its node, or why it is refused.
    pub fn agent_hello(&mut self, fx: &mut Effects, session: SessionId, hello: Hello, now: Millis) -> Result<String> {
        template::validate_name("node", &hello.name)?;
        if hello.cores == 0 || hello.cores > MAX_NODE_CORES {
            return Err(Error::invalid(format!(
                "agent {} reports {} cores (give --cores from 1 to {MAX_NODE_CORES})",
                hello.name, hello.cores
            )));
        }
        let name = hello.name.clone();
        let mut must_install = false;
        match self.nodes.get(&name) {
            None => {
                let node =
                    Node::new(name.clone(), None, None, hello.cores, NodeState::Offline { since: now }, Health::OK);
                fx.ops.push(Op::PutNode(node.record()));
                log(fx, &name, now, format!("joined as an on-premises node with {} cores, state Offline", hello.cores));
                self.nodes.insert(name.clone(), node);
            }
            Some(node) => {
                if matches!(node.state, NodeState::NotDeployed | NodeState::Stopping { .. }) {
                    return Err(Error::conflict(format!(
                        "node {name} is {} and takes no agent (start it first: thunderhead node start {name})",
                        node.state.name()
                    )));
                }
                let was = node.state.name();
                // A burst node being deployed installs its packages before it is Offline.
                must_install = matches!(node.state, NodeState::Provisioning { .. })
                    && node.template.as_ref().is_some_and(|t| !self.packages_for(t).is_empty());
                if !must_install {
                    self.transition(fx, &name, NodeEvent::AgentJoined, now)
                        .map_err(|e| Error::conflict(e.to_string()))?;
                }
                let node = self.nodes.get_mut(&name).expect("exists");
                if node.template.is_none() && node.cores != hello.cores {
                    node.cores = hello.cores;
                    fx.ops.push(Op::PutNode(node.record()));
                }
                if was == node.state.name() {
                    log(fx, &name, now, "agent reconnected");
                } else {
                    log(fx, &name, now, format!("agent connected with {} cores", hello.cores));
                }
            }
        }
        let node = self.nodes.get_mut(&name).expect("exists");
        if let Some(old) = node.session() {
            self.sessions.remove(&old);
            fx.commands.push(Command::Disconnect { session: old, reason: "replaced by a newer connection".into() });
        }
        node.agent = AgentLink::Connected { session, heard: now, installing: false };
        if node.leaves_at != hello.leaves_at {
            node.leaves_at = hello.leaves_at;
            if let Some(at) = hello.leaves_at {
                let at = crate::text::utc(at);
                log(fx, &name, now, format!("its agent says the machine is taken back at {at}: it drains then"));
            }
        }
        if must_install {
            self.install_on_join(fx, &name, session, now);
        }
        let node = self.nodes.get_mut(&name).expect("exists");
        if node.health == Health::Error {
            node.health = Health::OK;
            fx.ops.push(Op::PutNode(node.record()));
            log(fx, &name, now, "health OK: the agent is back");
        }
        self.sessions.insert(session, name.clone());

        // Reconcile: what we think runs there against what the agent holds.
        let held: HashSet<TaskAttempt> = hello.running.iter().chain(&hello.completed).copied().collect();
        let ours: Vec<TaskKey> = node.running.iter().copied().collect();
        let mut unknown = Vec::new();
        for key in ours {
            let attempt = self.running[&key].attempt;
            if !held.contains(&TaskAttempt { key, attempt }) {
                unknown.push(key);
            }
        }
        if !unknown.is_empty() {
            log(fx, &name, now, format!("{} task(s) the agent does not hold were requeued", unknown.len()));
            for key in unknown {
                self.requeue_one(fx, &name, key);
            }
        }
        let stale: Vec<TaskAttempt> = hello
            .running
            .iter()
            .filter(|t| self.running.get(&t.key).is_none_or(|r| r.attempt != t.attempt || r.node != name))
            .copied()
            .collect();
        if !stale.is_empty() {
            fx.commands.push(Command::Cancel { session, tasks: stale });
        }
        self.settle_drain(fx, &name, now);
        self.dirty = true;
        Ok(name)
    }

    /// An agent reports ended attempts. Results of attempts that are no longer current (the task
    /// was canceled or requeued) are acknowledged and ignored, so each task ends once.
    pub fn agent_results(&mut self, fx: &mut Effects, session: SessionId, results: Vec<TaskResult>, now: Millis) {
        self.agent_heard(session, now, None);
        let Some(name) = self.sessions.get(&session).cloned() else {
            return;
        };
        let mut acked = Vec::with_capacity(results.len());
        // The price of one core-hour on this node, if it is a burst node.
        let price = self.nodes.get(&name).and_then(|n| {
            let t = self.templates.get(n.template.as_ref()?)?;
            Some((t.currency.clone(), t.rate_micros(n.size?) / n.cores.max(1) as u64))
        });
        for result in results {
            acked.push(TaskAttempt { key: result.key, attempt: result.attempt });
            let current = self.running.get(&result.key).is_some_and(|r| r.attempt == result.attempt && r.node == name);
            if !current {
                continue;
            }
            let r = self.running.remove(&result.key).expect("checked");
            let node = self.nodes.get_mut(&name).expect("session has a node");
            node.running.remove(&result.key);
            node.used_cores = node.used_cores.saturating_sub(r.cores);
            // The agent's clock: a run time beyond reason is taken as the longest there can be.
            let ran = result.ended_at.saturating_sub(result.started_at).min(MAX_TASK_MS);
            node.task_ran(ran);
            let state = if result.exit_code == Some(0) && result.staging_error.is_none() {
                TaskState::Finished
            } else {
                TaskState::Failed
            };
            let job = self.jobs.get_mut(&result.key.job).expect("running tasks have jobs");
            let core_ms = ran.saturating_mul(r.cores as u64);
            job.core_ms = job.core_ms.saturating_add(core_ms);
            if let Some((currency, per_core_hour)) = &price {
                let micros = u64::try_from(core_ms as u128 * *per_core_hour as u128 / 3_600_000).unwrap_or(u64::MAX);
                let total = job.cost_micros.entry(currency.clone()).or_default();
                *total = total.saturating_add(micros);
            }
            let canceled = job.task_ended(result.key.index, state);
            fx.ops.extend(canceled.into_iter().map(|i| canceled_row(result.key.job, i, 0, now, DEPENDENCY_FAILED)));
            if job.settle(now) {
                self.active.remove(&job.id);
            }
            self.progressed.insert(result.key.job);
            let row = TaskRow {
                job: result.key.job,
                index: result.key.index,
                state,
                attempt: result.attempt,
                losses: r.losses,
                node: Some(name.clone()),
                exit_code: result.exit_code,
                message: match (result.staging_error, result.message) {
                    (Some(s), Some(m)) => Some(format!("{s}; {m}")),
                    (s, m) => s.or(m),
                },
                started_at: Some(result.started_at),
                ended_at: Some(result.ended_at),
                stdout: Some(result.stdout),
                stderr: Some(result.stderr),
            };
            if let Some(node) = self.nodes.get_mut(&name) {
                node.task_done(&row);
            }
            fx.ops.push(Op::PutTask(row));
        }
        self.settle_drain(fx, &name, now);
        fx.commands.push(Command::Ack { session, tasks: acked });
        self.dirty = true;
    }

    /// An agent reports how its packages installed.
    pub fn agent_installed(&mut self, fx: &mut Effects, session: SessionId, results: Vec<Installed>, now: Millis) {
        self.agent_heard(session, now, None);
        let Some(name) = self.sessions.get(&session).cloned() else { return };
        let failed: Vec<String> = results
            .iter()
            .filter_map(|r| {
                r.error.as_ref().map(|e| format!("package {}@{} failed to install: {e}", r.name, r.version))
            })
            .collect();
        let Some(node) = self.nodes.get_mut(&name) else { return };
        let installing = match &mut node.agent {
            AgentLink::Connected { installing, .. } => std::mem::take(installing),
            AgentLink::None | AgentLink::Away { .. } => false,
        };
        node.packages =
            results.iter().filter(|r| r.error.is_none()).map(|r| format!("{}@{}", r.name, r.version)).collect();
        if failed.is_empty() {
            log(fx, &name, now, format!("installed packages {}", node.packages.join(", ")));
            if installing && matches!(node.state, NodeState::Provisioning { .. }) {
                let _ = self.transition(fx, &name, NodeEvent::AgentJoined, now);
                self.dirty = true;
            }
        } else {
            for f in &failed {
                log(fx, &name, now, f.clone());
            }
            if installing && matches!(node.state, NodeState::Provisioning { .. }) {
                let cause = failed.join("; ");
                let _ = self.transition(fx, &name, NodeEvent::Failed { cause }, now);
            }
        }
    }

    /// Closes the connections of node `name`'s agent (its certificate was revoked); returns how
    /// many. Its tasks are handled as for any agent that went away.
    pub fn disconnect_node(&mut self, fx: &mut Effects, name: &str, reason: &str) -> usize {
        let sessions: Vec<SessionId> = self.sessions.iter().filter(|(_, n)| *n == name).map(|(s, _)| *s).collect();
        for &session in &sessions {
            fx.commands.push(Command::Disconnect { session, reason: reason.to_string() });
        }
        sessions.len()
    }

    /// An agent sent a heartbeat (any message counts as one), with what it measured of its
    /// machine if it measures; returns whether the measurements changed.
    pub fn agent_heard(&mut self, session: SessionId, now: Millis, metrics: Option<NodeMetrics>) -> bool {
        let Some(node) = self.sessions.get(&session).and_then(|name| self.nodes.get_mut(name)) else {
            return false;
        };
        if let AgentLink::Connected { heard, .. } = &mut node.agent {
            *heard = now;
        }
        let changed = metrics.is_some() && metrics != node.metrics;
        if changed {
            node.metrics = metrics;
        }
        changed
    }

    /// An agent's connection closed. Its tasks keep running there: the node is lost only if
    /// the agent does not come back within the grace period.
    pub fn agent_gone(&mut self, fx: &mut Effects, session: SessionId, now: Millis) {
        let Some(name) = self.sessions.remove(&session) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(&name) else {
            return;
        };
        if node.session() == Some(session) {
            // Nothing measures the node while no agent is connected.
            node.metrics = None;
            node.agent = AgentLink::Away { since: now };
            log(fx, &name, now, "agent disconnected");
        }
    }
}
