//! A node as the head node holds it.

use super::deployment::{AgentLink, Deployment, Handle};
use super::{QUEUE_WINDOW_US, SessionId};
use crate::node_state::{Health, NodeState};
use crate::size::NodeSize;
use crate::view::{NodeMetrics, TaskView};
use crate::{Millis, TaskKey};
use std::collections::{BTreeSet, VecDeque};

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    /// `None` for on-premises nodes, which join by running an agent.
    pub template: Option<String>,
    pub size: Option<NodeSize>,
    pub cores: u32,
    pub state: NodeState,
    pub health: Health,
    /// Its deployment at its provider (burst nodes).
    pub deployment: Deployment,
    /// Its agent's connection.
    pub agent: AgentLink,
    pub running: BTreeSet<TaskKey>,
    pub used_cores: u32,
    /// The packages it has installed, `name@version`.
    pub packages: Vec<String>,
    /// A moving average of how long its tasks run, in microseconds; `None` until one ends.
    pub(super) task_us: Option<u64>,
    /// What its agent last measured of the machine.
    pub metrics: Option<NodeMetrics>,
    /// The tasks that ended there last, newest last (kept in memory only).
    pub recent: VecDeque<TaskView>,
    /// When its machine is taken back, as its agent said when it joined: it drains then.
    pub leaves_at: Option<Millis>,
}

impl Node {
    /// A node with no deployment, no agent and no tasks yet.
    pub(super) fn new(
        name: String,
        template: Option<String>,
        size: Option<NodeSize>,
        cores: u32,
        state: NodeState,
        health: Health,
    ) -> Node {
        Node {
            name,
            template,
            size,
            cores,
            state,
            health,
            deployment: Deployment::None,
            agent: AgentLink::None,
            running: BTreeSet::new(),
            used_cores: 0,
            packages: Vec::new(),
            task_us: None,
            metrics: None,
            recent: VecDeque::new(),
            leaves_at: None,
        }
    }

    /// Cores' worth of tasks this node holds queued beyond its cores, as a multiple of them:
    /// one multiple (or `most`, if less) until a task ends there, then enough for about
    /// [`QUEUE_WINDOW_US`] of work per core, between one multiple and `most`. Short tasks keep
    /// the node busy across the round trip to the head node; long tasks are not held where
    /// another node could start them sooner.
    pub fn queue_ahead(&self, most: u32) -> u32 {
        let least = most.min(1);
        match self.task_us {
            None => least,
            Some(us) => (QUEUE_WINDOW_US.div_ceil(us.max(1)).min(most as u64) as u32).max(least),
        }
    }

    /// Folds a task's run time into the node's moving average (weight 1/8).
    pub(super) fn task_ran(&mut self, ms: Millis) {
        let us = ms.saturating_mul(1000);
        self.task_us = Some(self.task_us.map_or(us, |mean| ((mean as u128 * 7 + us as u128) / 8) as u64));
    }

    /// The handle of its current deployment, if the provider made one.
    pub fn handle(&self) -> Option<&Handle> {
        self.deployment.handle()
    }

    /// The connection of its agent, if one is connected.
    pub fn session(&self) -> Option<SessionId> {
        self.agent.session()
    }

    /// Whether the provider holds something of this node that costs money and needs the set's
    /// proxies: anything but a node never deployed, or a failed one with nothing left.
    pub(super) fn holds_deployment(&self) -> bool {
        match self.state {
            NodeState::NotDeployed => false,
            NodeState::Unknown { .. } => {
                matches!(self.deployment, Deployment::Made { .. } | Deployment::Deploying { .. })
            }
            NodeState::Provisioning { .. }
            | NodeState::Offline { .. }
            | NodeState::Online { .. }
            | NodeState::Draining { .. }
            | NodeState::Stopping { .. } => true,
        }
    }
}
