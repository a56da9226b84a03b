//! Entry: what providers answer about deployments.

use super::deployment::{DeployEvent, Deployment, Handle};
use super::effects::{Command, Effects};
use super::{Cluster, DeployFailure, RETRY_DELAY, log};
use crate::Millis;
use crate::node_state::{NodeEvent, NodeState};
use crate::persist::Op;
use crate::template::Template;

impl Cluster {
    /// The provider answered a deploy call.
    pub fn deployed(
        &mut self,
        fx: &mut Effects,
        name: &str,
        result: std::result::Result<serde_json::Value, DeployFailure>,
        now: Millis,
    ) {
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        let template_name = node.template.clone().unwrap_or_default();
        let attempt = match node.deployment {
            Deployment::Deploying { attempt } => attempt,
            Deployment::None | Deployment::Clearing { .. } | Deployment::Queued { .. } | Deployment::Made { .. } => {
                // No deploy call of this node is out (this head node did not make it): the
                // answer of a failure says nothing; a deployment is taken as the provider's word.
                if let Err(failure) = &result {
                    log(fx, name, now, format!("a deploy call no longer awaited failed: {}", failure.message));
                    return;
                }
                0
            }
        };
        match result {
            Ok(handle) => {
                node.deployment.on(DeployEvent::Made { handle: handle.clone(), at: now });
                fx.ops.push(Op::PutNode(node.record()));
                self.failures.remove(&template_name);
                match &node.state {
                    NodeState::Provisioning { .. } => {
                        log(fx, name, now, "provider deployed the node; waiting for its agent to connect")
                    }
                    NodeState::Offline { .. } | NodeState::Online { .. } | NodeState::Draining { .. } => {
                        log(fx, name, now, "provider deployed the node")
                    }
                    NodeState::Stopping { .. } | NodeState::NotDeployed | NodeState::Unknown { .. } => {
                        if let Some(template) = self.templates.get(&template_name).cloned() {
                            log(fx, name, now, "provider deployed the node after a stop; removing the deployment");
                            fx.commands.push(Command::Remove { node: name.to_string(), template, handle });
                        }
                    }
                }
            }
            Err(failure) => {
                log(fx, name, now, format!("deployment attempt {attempt} failed: {}", failure.message));
                match node.state {
                    NodeState::Stopping { .. } => self.finish_stop(fx, name, now),
                    NodeState::Provisioning { .. } => {
                        let paused = self.note_failure(fx, &template_name, &failure.message, now);
                        let retries = self.templates.get(&template_name).map_or(0, |t| t.deploy_retries);
                        let delay = RETRY_DELAY * attempt as Millis;
                        let retry = !paused && failure.transient && attempt <= retries;
                        let node = self.nodes.get_mut(name).expect("exists");
                        node.deployment.on(DeployEvent::CallFailed { retry_at: retry.then_some(now + delay) });
                        if retry {
                            log(
                                fx,
                                name,
                                now,
                                format!("trying again in {} s ({attempt} of {retries} retries)", delay / 1000),
                            );
                        } else {
                            let cause = format!("deployment failed: {}", failure.message);
                            let _ = self.transition(fx, name, NodeEvent::Failed { cause }, now);
                        }
                    }
                    NodeState::NotDeployed
                    | NodeState::Offline { .. }
                    | NodeState::Online { .. }
                    | NodeState::Draining { .. }
                    | NodeState::Unknown { .. } => node.deployment.on(DeployEvent::CallFailed { retry_at: None }),
                }
            }
        }
        self.account(fx, name, now);
    }

    /// The provider answered a remove call.
    pub fn removed(
        &mut self,
        fx: &mut Effects,
        name: &str,
        handle: &serde_json::Value,
        result: std::result::Result<(), String>,
        now: Millis,
    ) {
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        // The earlier deployment of a restarted node is gone: the new one may now be made.
        if node.deployment.earlier() == Some(handle) {
            node.deployment.on(DeployEvent::Removed { handle: handle.clone() });
            match result {
                Ok(()) => log(fx, name, now, "the earlier deployment was removed"),
                Err(cause) => log(fx, name, now, format!("the earlier deployment could not be removed: {cause}")),
            }
            return;
        }
        // An answer about an older deployment of the node says nothing about its current one.
        if node.handle() != Some(handle) {
            return;
        }
        match result {
            Ok(()) => {
                log(fx, name, now, "provider removed the deployment");
                if matches!(node.state, NodeState::Stopping { .. }) {
                    self.finish_stop(fx, name, now);
                } else {
                    node.deployment.on(DeployEvent::Removed { handle: handle.clone() });
                    fx.ops.push(Op::PutNode(node.record()));
                    self.account(fx, name, now);
                }
            }
            Err(cause) => {
                log(fx, name, now, format!("removal failed: {cause}"));
                let _ = self.transition(fx, name, NodeEvent::Failed { cause: format!("removal failed: {cause}") }, now);
            }
        }
    }

    /// Deployments to check with their provider: nodes whose agent has not connected yet or
    /// has gone away. The runtime asks the provider and reports gone ones with
    /// [`Cluster::deployment_gone`].
    pub fn deployments_to_probe(&self) -> Vec<(String, Template, serde_json::Value)> {
        self.nodes
            .values()
            .filter(|n| n.session().is_none())
            .filter(|n| matches!(n.state, NodeState::Provisioning { .. }) || n.state.expects_agent())
            .filter_map(|n| {
                let template = self.templates.get(n.template.as_ref()?)?;
                Some((n.name.clone(), template.clone(), n.handle()?.clone()))
            })
            .collect()
    }

    /// The provider reports that a node's deployment no longer exists, and `why` in its own
    /// words. A node still waiting for its agent fails; a node whose agent went away is lost at
    /// once instead of after the grace period.
    pub fn deployment_gone(&mut self, fx: &mut Effects, name: &str, handle: &Handle, why: &str, now: Millis) {
        let Some(node) = self.nodes.get(name) else {
            return;
        };
        // A late answer about an earlier deployment says nothing about the current one.
        if node.session().is_some() || node.handle() != Some(handle) {
            return;
        }
        let cause = format!("the provider reports the deployment gone: {why}");
        match node.state {
            NodeState::Provisioning { .. } => {
                let _ = self.transition(fx, name, NodeEvent::Failed { cause }, now);
            }
            ref s if s.expects_agent() => self.lose_node(fx, name, cause, now),
            _ => {}
        }
    }

    /// The provider reports that a node's deployment exists but does not run yet, and why in its
    /// own words (a batch queue's reason, such as `Resources`). The node's log says so when the
    /// reason changes; if the agent never connects, the boot timeout's cause repeats it.
    pub fn deployment_waiting(&mut self, fx: &mut Effects, name: &str, handle: &Handle, reason: &str, now: Millis) {
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        if node.session().is_none() && node.deployment.note_waiting(handle, reason) {
            log(fx, name, now, format!("the provider says the deployment waits: {reason}"));
        }
    }

    /// What the head node holds of `name`'s set at its provider, to tell leftovers from what
    /// its nodes own: every handle of its nodes and proxies (current, and earlier ones being
    /// removed), and the nodes and proxies whose deploy call is out (what the provider holds
    /// for them has no handle here yet).
    pub fn holdings(&self, name: &str) -> crate::Result<Holdings> {
        let template = self.template_named(name)?.clone();
        let mut holdings = Holdings { template, handles: vec![], busy: vec![] };
        for n in self.nodes.values().filter(|n| n.template.as_deref() == Some(name)) {
            holdings.handles.extend(n.deployment.handle().into_iter().chain(n.deployment.earlier()).cloned());
            if matches!(n.deployment, Deployment::Deploying { .. }) {
                holdings.busy.push(n.name.clone());
            }
        }
        for p in self.proxies.values().filter(|p| p.template == name) {
            holdings.handles.extend(p.handle.iter().cloned());
            if p.state == crate::proxy::ProxyState::Deploying {
                holdings.busy.push(p.name.clone());
            }
        }
        Ok(holdings)
    }
}

/// What the head node holds of a set at its provider (see [`Cluster::holdings`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Holdings {
    pub template: Template,
    pub handles: Vec<Handle>,
    pub busy: Vec<String>,
}

impl Holdings {
    /// Whether something the provider found, with `handle`, made for `node`, is a leftover.
    pub fn is_leftover(&self, handle: &Handle, node: Option<&str>) -> bool {
        !self.handles.contains(handle) && !node.is_some_and(|n| self.busy.iter().any(|b| b == n))
    }
}
