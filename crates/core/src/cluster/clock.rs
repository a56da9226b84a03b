//! Entry: the passing of time (timeouts, heartbeats, availability).

use super::deployment::{AgentLink, Deployment};
use super::effects::{Command, Effects};
use super::{Cluster, log};
use crate::Millis;
use crate::node_state::{Health, NodeEvent, NodeState};
use crate::persist::Op;

impl Cluster {
    /// Times out deployments whose agent never connected and nodes whose agent did not come back.
    pub fn tick(&mut self, fx: &mut Effects, now: Millis) {
        let mut timed_out = Vec::new();
        let mut lost = Vec::new();
        let mut silent = Vec::new();
        let mut leaving = Vec::new();
        for node in self.nodes.values() {
            if node.leaves_at.is_some_and(|at| now >= at) && matches!(node.state, NodeState::Online { .. }) {
                leaving.push(node.name.clone());
            }
            if let AgentLink::Connected { heard, .. } = node.agent
                && now.saturating_sub(heard) > self.config.heartbeat_timeout
            {
                silent.push(node.name.clone());
            }
            match (&node.state, node.agent, &node.deployment) {
                (
                    NodeState::Provisioning { .. },
                    AgentLink::None | AgentLink::Away { .. },
                    Deployment::Made { at, waiting, .. },
                ) => {
                    let limit = self.boot_timeout(node);
                    if now.saturating_sub(*at) > limit {
                        let mut cause =
                            format!("the node's agent did not connect within {} s of deployment", limit / 1000);
                        if let Some(reason) = waiting {
                            cause.push_str(&format!(" (the provider's last word: waiting, {reason})"));
                        }
                        timed_out.push((node.name.clone(), cause));
                    }
                }
                (state, AgentLink::Away { since: gone }, _)
                    if state.expects_agent() && now.saturating_sub(gone) > self.config.reconnect_grace =>
                {
                    lost.push(node.name.clone());
                }
                _ => {}
            }
        }
        for (name, cause) in timed_out {
            let template = self.nodes[&name].template.clone().unwrap_or_default();
            self.note_failure(fx, &template, &cause, now);
            let _ = self.transition(fx, &name, NodeEvent::Failed { cause }, now);
            let node = &self.nodes[&name];
            if let (Some(handle), Some(t)) =
                (node.handle().cloned(), node.template.as_ref().and_then(|t| self.templates.get(t)))
            {
                fx.commands.push(Command::Remove { node: name.clone(), template: t.clone(), handle });
            }
        }
        for name in lost {
            let cause = format!("the agent did not reconnect within {} s", self.config.reconnect_grace / 1000);
            self.lose_node(fx, &name, cause, now);
        }
        for name in silent {
            self.heartbeat_lost(fx, &name, now);
        }
        for name in leaving {
            log(fx, &name, now, "its machine is being taken back: draining (running tasks finish, no new ones start)");
            let _ = self.offline_node(fx, &name, false, now);
        }
        self.keep_proxies(fx, now);
        self.apply_availability(fx, now);
    }

    /// How long `node`'s agent may take to connect after its deployment: its template's boot
    /// timeout, or the head node's.
    fn boot_timeout(&self, node: &super::node::Node) -> Millis {
        node.template
            .as_ref()
            .and_then(|t| self.templates.get(t))
            .and_then(|t| t.boot_timeout)
            .unwrap_or(self.config.provision_timeout)
    }

    /// A connected agent went silent: its node's health is `Error`, its tasks are requeued and
    /// its connection is dropped. If it comes back, its health is `OK` again; if it does not
    /// come back within the reconnect grace, the node is lost.
    fn heartbeat_lost(&mut self, fx: &mut Effects, name: &str, now: Millis) {
        let timeout = self.config.heartbeat_timeout / 1000;
        self.requeue_all(fx, name, true, now);
        let node = self.nodes.get_mut(name).expect("listed by tick");
        let Some(session) = node.session() else { return };
        self.sessions.remove(&session);
        node.agent = AgentLink::Away { since: now };
        node.health = Health::Error;
        fx.ops.push(Op::PutNode(node.record()));
        log(fx, name, now, format!("no heartbeat for {timeout} s: health Error, running tasks requeued"));
        fx.commands.push(Command::Disconnect { session, reason: format!("no heartbeat for {timeout} s") });
    }
}
