//! The node lifecycle as every handler uses it: transitions, starts and stops, requeues.

use super::deployment::{AgentLink, DeployEvent, Deployment};
use super::effects::{Command, Effects};
use super::messages::TaskAttempt;
use super::{Cluster, log};
use crate::job::TaskState;
use crate::node_state::{IllegalTransition, NodeEvent, NodeState};
use crate::persist::{Op, TaskRow};
use crate::{Error, JobId, Millis, Result, TaskKey};

impl Cluster {
    /// Moves a node to the state `event` leads to, logging and persisting the change.
    pub(super) fn transition(
        &mut self,
        fx: &mut Effects,
        name: &str,
        event: NodeEvent,
        now: Millis,
    ) -> Result<(), IllegalTransition> {
        let Some(node) = self.nodes.get_mut(name) else {
            return Err(IllegalTransition { state: "deleted", event: event.verb() });
        };
        let next = node.state.apply(&event, now)?;
        if next == node.state {
            return Ok(());
        }
        let health = next.entry_health(&event);
        let mut line = format!("state {} -> {}", node.state.name(), next.name());
        if let NodeState::Unknown { cause, .. } = &next {
            line.push_str(&format!(": {cause}"));
        }
        if health != node.health {
            line.push_str(&format!(", health {}", health.name()));
        }
        node.state = next;
        node.health = health;
        fx.ops.push(Op::PutNode(node.record()));
        log(fx, name, now, line);
        self.account(fx, name, now);
        Ok(())
    }

    pub(super) fn start_node(&mut self, fx: &mut Effects, name: &str, now: Millis) -> Result<()> {
        let template = self.burst_template(name)?;
        if !self.rules.deployable(&template.provider) {
            return Err(Error::conflict(format!(
                "provider {} is not available in this build: template {} is validated and kept, but its nodes cannot be started yet",
                template.provider, template.name
            )));
        }
        if let Some(why) = &template.paused {
            return Err(Error::conflict(format!(
                "template {} is paused: {why} (fix the cause, then: thunderhead template resume {})",
                template.name, template.name
            )));
        }
        let node = &self.nodes[name];
        if !node.state.is_deployed() || matches!(node.state, NodeState::Unknown { .. }) {
            let deployed = self.template_cores(&template.name, |n| n.state.is_deployed() && n.name != name);
            let needed = deployed + node.cores + template.proxy_cores();
            if needed > template.quota_cores {
                return Err(Error::conflict(format!(
                    "starting {name} would run {needed} cores of template {} with its {deployed} deployed cores and {} of proxies, over its quota of {} (stop other nodes first, or raise the quota: thunderhead template edit {} --quota-cores {needed})",
                    template.name,
                    template.proxy_cores(),
                    template.quota_cores,
                    template.name
                )));
            }
        }
        self.transition(fx, name, NodeEvent::Start, now).map_err(|e| Error::conflict(e.to_string()))?;
        let node = self.nodes.get_mut(name).expect("checked above");
        // What is left of an earlier, failed deployment goes before the new one is made.
        let left = node.handle().cloned();
        node.deployment.on(DeployEvent::Start { now });
        if let Some(old) = left {
            fx.ops.push(Op::PutNode(node.record()));
            fx.commands.push(Command::Remove { node: name.to_string(), template: template.clone(), handle: old });
        }
        log(
            fx,
            name,
            now,
            format!("queued for deployment with provider {} (template {})", template.provider, template.name),
        );
        Ok(())
    }

    pub(super) fn stop_node(&mut self, fx: &mut Effects, name: &str, now: Millis) -> Result<()> {
        let template = self.burst_template(name)?;
        if self.nodes[name].state == NodeState::NotDeployed {
            return Ok(());
        }
        self.transition(fx, name, NodeEvent::Stop, now).map_err(|e| Error::conflict(e.to_string()))?;
        self.requeue_all(fx, name, false, now);
        let node = self.nodes.get_mut(name).expect("checked above");
        if let Some(session) = node.session() {
            fx.commands.push(Command::Shutdown { session });
        }
        node.deployment.on(DeployEvent::Withdrawn);
        match &node.deployment {
            Deployment::Made { handle, .. } => {
                log(fx, name, now, "removing the deployment");
                fx.commands.push(Command::Remove { node: name.to_string(), template, handle: handle.clone() });
            }
            // The deploy call is still out; its answer will trigger the removal.
            Deployment::Deploying { .. } => {}
            Deployment::None | Deployment::Clearing { .. } | Deployment::Queued { .. } => {
                self.finish_stop(fx, name, now)
            }
        }
        Ok(())
    }

    pub(super) fn finish_stop(&mut self, fx: &mut Effects, name: &str, now: Millis) {
        if let Some(node) = self.nodes.get_mut(name) {
            if let Some(session) = node.session() {
                self.sessions.remove(&session);
            }
            node.agent = AgentLink::None;
            node.deployment.on(DeployEvent::Forgotten);
        }
        let _ = self.transition(fx, name, NodeEvent::Removed, now);
    }

    pub(super) fn online_node(&mut self, fx: &mut Effects, name: &str, now: Millis) -> Result<()> {
        self.node_named(name)?;
        self.transition(fx, name, NodeEvent::BringOnline, now).map_err(|e| {
            Error::conflict(format!("{e} (a node must be Offline, with its agent connected, to be brought online)"))
        })
    }

    pub(super) fn offline_node(&mut self, fx: &mut Effects, name: &str, force: bool, now: Millis) -> Result<()> {
        self.node_named(name)?;
        self.transition(fx, name, NodeEvent::TakeOffline { force }, now).map_err(|e| Error::conflict(e.to_string()))?;
        if force {
            self.requeue_all(fx, name, false, now);
        }
        self.settle_drain(fx, name, now);
        Ok(())
    }

    pub(super) fn delete_node(&mut self, fx: &mut Effects, name: &str, now: Millis) -> Result<()> {
        let node = self.node_named(name)?;
        match (&node.template, &node.state) {
            // Its agent would be left talking about a node that is gone.
            (Some(_), _) if node.session().is_some() => {
                return Err(Error::conflict(format!(
                    "node \"{name}\" has its agent connected (stop it first: thunderhead node stop {name})"
                )));
            }
            (Some(_), NodeState::Unknown { .. }) if node.handle().is_some() => {
                return Err(Error::conflict(format!(
                    "node \"{name}\" still has a deployment (stop it first so nothing is left behind: thunderhead node stop {name})"
                )));
            }
            (Some(_), NodeState::NotDeployed | NodeState::Unknown { .. }) => {}
            (Some(t), state) => {
                return Err(Error::conflict(format!(
                    "node \"{name}\" is {} (stop it first: thunderhead node stop --template {t})",
                    state.name()
                )));
            }
            (None, _) if node.session().is_some() => {
                return Err(Error::conflict(format!(
                    "node \"{name}\" has its agent connected (stop the agent on that machine first)"
                )));
            }
            (None, _) => {}
        }
        self.requeue_all(fx, name, false, now);
        if self.nodes[name].state.is_deployed() {
            // A failed node that never had a deployment stops costing when it is deleted.
            self.nodes.get_mut(name).expect("checked above").state = NodeState::NotDeployed;
            self.account(fx, name, now);
        }
        self.nodes.remove(name);
        fx.ops.push(Op::DeleteNode(name.to_string()));
        Ok(())
    }

    /// Sends every task running on `name` back to the queue. A lost node costs each task one of
    /// its retries; a stop or a forced offline does not.
    pub(super) fn requeue_all(&mut self, fx: &mut Effects, name: &str, lost: bool, now: Millis) {
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        let keys = std::mem::take(&mut node.running);
        node.used_cores = 0;
        let session = node.session();
        let mut canceled = Vec::new();
        for key in keys {
            let Some(r) = self.running.remove(&key) else {
                continue;
            };
            canceled.push(TaskAttempt { key, attempt: r.attempt });
            let Some(job) = self.jobs.get_mut(&key.job) else {
                continue;
            };
            let losses = r.losses + u32::from(lost);
            let mut row = TaskRow::new(key.job, key.index);
            row.attempt = r.attempt;
            row.losses = losses;
            row.node = Some(name.to_string());
            if losses > job.retries {
                row.state = TaskState::Failed;
                row.ended_at = Some(now);
                row.message =
                    Some(format!("node {name} was lost {losses} time(s), more than the job's {} retries", job.retries));
                fx.ops.extend(
                    job.task_ended(key.index, TaskState::Failed)
                        .into_iter()
                        .map(|i| canceled_row(key.job, i, 0, now, DEPENDENCY_FAILED)),
                );
                if job.settle(now) {
                    self.active.remove(&key.job);
                }
            } else {
                job.requeue(key.index, r.attempt, losses);
            }
            fx.ops.push(Op::PutTask(row));
            self.progressed.insert(key.job);
        }
        if let (Some(session), false, false) = (session, lost, canceled.is_empty()) {
            fx.commands.push(Command::Cancel { session, tasks: canceled });
        }
        self.dirty = true;
    }

    pub(super) fn settle_drain(&mut self, fx: &mut Effects, name: &str, now: Millis) {
        if let Some(node) = self.nodes.get(name)
            && matches!(node.state, NodeState::Draining { .. })
            && node.running.is_empty()
        {
            let _ = self.transition(fx, name, NodeEvent::Drained, now);
        }
    }

    pub(super) fn lose_node(&mut self, fx: &mut Effects, name: &str, cause: String, now: Millis) {
        if self.transition(fx, name, NodeEvent::Lost { cause }, now).is_ok() {
            self.requeue_all(fx, name, true, now);
        }
    }

    pub(super) fn requeue_one(&mut self, fx: &mut Effects, node: &str, key: TaskKey) {
        let Some(r) = self.running.remove(&key) else {
            return;
        };
        if let Some(n) = self.nodes.get_mut(node) {
            n.running.remove(&key);
            n.used_cores = n.used_cores.saturating_sub(r.cores);
        }
        if let Some(job) = self.jobs.get_mut(&key.job) {
            job.requeue(key.index, r.attempt, r.losses);
            let mut row = TaskRow::new(key.job, key.index);
            row.attempt = r.attempt;
            row.losses = r.losses;
            row.node = Some(node.to_string());
            fx.ops.push(Op::PutTask(row));
            self.progressed.insert(key.job);
        }
    }
}

pub(super) fn canceled_row(job: JobId, index: u64, attempt: u32, now: Millis, why: &str) -> Op {
    let mut row = TaskRow::new(job, index);
    row.state = TaskState::Canceled;
    row.attempt = attempt;
    row.ended_at = Some(now);
    row.message = Some(why.to_string());
    Op::PutTask(row)
}

pub(super) const DEPENDENCY_FAILED: &str = "canceled because a task it depends on did not finish";
