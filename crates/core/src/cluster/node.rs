//! A node as the head node holds it.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    /// `None` for on-premises nodes, which join by running an agent.
    pub template: Option<String>,
    pub size: Option<NodeSize>,
    pub cores: u32,
    pub state: NodeState,
    pub health: Health,
    pub handle: Option<serde_json::Value>,
    pub session: Option<SessionId>,
    pub disconnected_since: Option<Millis>,
    /// When its agent was last heard from.
    pub last_heard: Millis,
    pub running: BTreeSet<TaskKey>,
    pub used_cores: u32,
    /// A deploy call is under way.
    pub(super) deploying: bool,
    /// Started and waiting for its turn to be deployed (rate limit, retry delay).
    pub(super) awaiting_deploy: bool,
    /// Deploy calls made since the node was started.
    pub(super) deploy_attempts: u32,
    /// Not deployed again before this time (after a failed attempt).
    pub(super) retry_at: Millis,
    /// When the provider reported the node deployed: the provision timeout runs from here.
    pub(super) deployed_at: Option<Millis>,
    /// An earlier deployment being removed before the node is deployed again (they may share
    /// a directory or a name at the provider).
    pub(super) old_deployment: Option<serde_json::Value>,
    /// Connected, installing its packages before it is `Offline`.
    pub(super) installing: bool,
    /// The packages it has installed, `name@version`.
    pub packages: Vec<String>,
    /// A moving average of how long its tasks run, in microseconds; `None` until one ends.
    pub(super) task_us: Option<u64>,
    /// What its agent last measured of the machine.
    pub metrics: Option<NodeMetrics>,
    /// The tasks that ended there last, newest last (kept in memory only).
    pub recent: VecDeque<TaskView>,
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
        now: Millis,
    ) -> Node {
        Node {
            name,
            template,
            size,
            cores,
            state,
            health,
            handle: None,
            session: None,
            disconnected_since: None,
            last_heard: now,
            running: BTreeSet::new(),
            used_cores: 0,
            deploying: false,
            awaiting_deploy: false,
            deploy_attempts: 0,
            retry_at: 0,
            deployed_at: None,
            old_deployment: None,
            installing: false,
            packages: Vec::new(),
            task_us: None,
            metrics: None,
            recent: VecDeque::new(),
        }
    }

    /// Whether the provider holds something of this node that costs money and needs the set's
    /// proxies: anything but a node never deployed, or a failed one with nothing left.
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

    pub(super) fn holds_deployment(&self) -> bool {
        match self.state {
            NodeState::NotDeployed => false,
            NodeState::Unknown { .. } => self.handle.is_some() || self.deploying,
            NodeState::Provisioning { .. }
            | NodeState::Offline { .. }
            | NodeState::Online { .. }
            | NodeState::Draining { .. }
            | NodeState::Stopping { .. } => true,
        }
    }
}
