//! Deployments waiting their turn: the deploy rate, retries and a template pausing itself.

use super::deployment::{DeployEvent, Deployment};
use super::effects::{Command, Effects};
use super::{Cluster, log};
use crate::Millis;
use crate::node_state::NodeState;
use crate::persist::Op;
use crate::size::NodeSize;

impl Cluster {
    /// Starts the deployments that are due, no more per template than its deploy rate allows in
    /// any minute.
    pub(super) fn dispatch_deploys(&mut self, fx: &mut Effects, now: Millis) {
        let due: Vec<String> = self
            .nodes
            .values()
            .filter(|n| matches!(n.state, NodeState::Provisioning { .. }))
            .filter(
                |n| matches!(n.deployment, Deployment::Queued { not_before, earlier: None, .. } if not_before <= now),
            )
            .map(|n| n.name.clone())
            .collect();
        for name in due {
            let node = &self.nodes[&name];
            let Some(template) = node.template.as_ref().and_then(|t| self.templates.get(t)).cloned() else {
                continue;
            };
            let window = self.deploy_window.entry(template.name.clone()).or_default();
            while window.front().is_some_and(|t| now.saturating_sub(*t) >= 60_000) {
                window.pop_front();
            }
            if window.len() >= template.deploy_rate as usize {
                continue;
            }
            // Agents reach the head node through the set's proxies: wait until every proxy has
            // answered, so each agent is given all the addresses to fail over between.
            let Some(via) = self.proxy_urls(&template.name) else {
                continue;
            };
            let window = self.deploy_window.entry(template.name.clone()).or_default();
            window.push_back(now);
            let node = self.nodes.get_mut(&name).expect("listed above");
            let Ok(next @ Deployment::Deploying { attempt }) = node.deployment.apply(DeployEvent::Call) else {
                continue;
            };
            node.deployment = next;
            let size = node.size.unwrap_or(NodeSize::Small);
            log(fx, &name, now, format!("deploying (attempt {attempt}) with provider {}", template.provider));
            fx.commands.push(Command::Deploy { node: name, template, size, via });
        }
    }

    /// Counts a failed deployment of `template`; after too many in a row the template pauses
    /// itself, and the nodes still waiting to deploy fail with the reason. Returns whether the
    /// template is paused.
    pub(super) fn note_failure(&mut self, fx: &mut Effects, template: &str, message: &str, now: Millis) -> bool {
        let count = self.failures.entry(template.to_string()).or_default();
        *count += 1;
        let count = *count;
        let Some(t) = self.templates.get_mut(template) else { return false };
        if t.paused.is_some() {
            return true;
        }
        if count < t.pause_after_failures {
            return false;
        }
        let why = format!("{count} deployments in a row failed, the last with: {message}");
        t.paused = Some(why.clone());
        fx.ops.push(Op::PutTemplate(t.clone()));
        self.fail_waiting_nodes(fx, template, &format!("template {template} paused: {why}"), now);
        true
    }
}
