//! The head node's model and its event handlers, in rooms.
//!
//! [`Cluster`] holds templates, nodes, jobs and running tasks. Each handler takes the event, the
//! current time and an [`Effects`] sink: it changes the state, pushes the [`Op`]s that make the
//! change durable and the [`Command`]s for agents and providers. The runtime commits the ops
//! of a batch before it carries out the commands or answers the caller, so nothing is
//! acknowledged before it is on disk. Handlers never block, never read a clock, never do I/O.
//!
//! The files are layered and each calls only downward, which its `use` lines show: from
//! `super` it imports only what this file defines, from a sibling only the items it names. As
//! every handler is a method of the one [`Cluster`], a method's layer is that of the file that
//! defines it; an entry file's own helpers are private to it.
//!
//! | file | layer | may call |
//! |---|---|---|
//! | [`node`]: a node | state | state |
//! | [`deployment`]: its deployment and agent link | state | state |
//! | [`names`]: finding templates, nodes and jobs by name | state | state |
//! | [`records`]: what is persisted and shown of them | state | state |
//! | [`messages`]: what agents are sent and report | state | state |
//! | [`effects`]: ops and commands | state | state |
//! | [`lifecycle`]: node transitions, starts, stops, requeues | rule | state, rules |
//! | [`billing`]: paid stretches | rule | state, rules |
//! | [`deploy_queue`]: the deploy rate, retries, pausing | rule | state, rules |
//! | [`policy`]: availability schedules | rule | state, rules |
//! | [`proxies`]: each set's proxies, and what providers answer of them | rule | state, rules |
//! | [`packages`]: the package store and installs on nodes | rule | state, rules |
//! | [`templates`]: template requests | entry | state, rules |
//! | [`nodes`]: node requests | entry | state, rules |
//! | [`jobs`]: job requests | entry | state, rules |
//! | [`agents`]: agent connections and messages | entry | state, rules |
//! | [`deployments`]: provider answers about deployments | entry | state, rules |
//! | [`clock`]: the passing of time | entry | state, rules |
//! | [`dispatch`]: the end of a batch | entry | state, rules |
//! | [`restore`]: a snapshot from the store | entry | state, rules |
//! | [`agent_files`]: which files an agent may use | entry | state, rules |
//!
//! No entry file calls another.

use crate::cost::{Usage, UsageKind};
use crate::job::Job;
use crate::persist::Op;
use crate::provider_rules::ProviderRules;
use crate::template::Template;
use crate::{JobId, Millis, TaskKey};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

pub mod agent_files;
mod agents;
mod billing;
mod clock;
mod deploy_queue;
pub mod deployment;
mod deployments;
mod dispatch;
mod effects;
mod jobs;
mod lifecycle;
mod messages;
mod names;
mod node;
mod nodes;
pub mod packages;
mod policy;
pub(crate) mod proxies;
mod records;
mod restore;
mod templates;

pub use deployment::{AgentLink, DeployEvent, Deployment, Handle};
pub use deployments::Holdings;
pub use effects::{Command, Effects};
pub use messages::{Dispatch, Hello, TaskAttempt, TaskResult};
pub use node::Node;

/// Identifies one connection of an agent.
pub type SessionId = u64;

/// A policy phase seen again after this long may be a later occurrence of it (the head node
/// was down over a boundary): it counts as a new phase.
const POLICY_GAP: Millis = 60 * 60_000;

/// The series that remembers reserved job ids.
const JOB_SERIES: &str = "job";

/// How long a failed deployment waits before its next try, times the attempt number.
pub const RETRY_DELAY: Millis = 5_000;

/// Why a deploy call failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployFailure {
    pub message: String,
    pub transient: bool,
}

/// The most nodes one `node add` may create.
pub const MAX_ADD_NODES: u32 = 10_000;

/// The most cores an agent may offer (the largest machines sold today have about 400).
pub const MAX_NODE_CORES: u32 = 4_096;

/// The longest a task may be counted to have run (a year): agents report their own clock.
pub const MAX_TASK_MS: Millis = 365 * 24 * 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long a deployed node may take to connect before it is `Unknown`.
    pub provision_timeout: Millis,
    /// How long a connected node's agent may stay away before the node is lost.
    pub reconnect_grace: Millis,
    /// At most how many cores' worth of tasks an agent holds queued beyond its own cores, as a
    /// multiple of its cores, so it starts the next task the moment one ends. A node holds one
    /// multiple until its tasks prove short, then about [`QUEUE_WINDOW_US`] of work per core,
    /// up to this many (see [`Node::queue_ahead`]).
    pub queue_ahead: u32,
    /// How long a connected agent may stay silent before its node's health is `Error` and its
    /// tasks are requeued. Agents send a heartbeat every third of this.
    pub heartbeat_timeout: Millis,
}

impl Default for Config {
    fn default() -> Self {
        Config { provision_timeout: 120_000, reconnect_grace: 30_000, queue_ahead: 16, heartbeat_timeout: 30_000 }
    }
}

/// How much work, per core, an agent holds queued when its tasks are short: enough to cover the
/// round trip of results to the head node and new work back, which includes a commit.
pub const QUEUE_WINDOW_US: u64 = 50_000;

/// How many ended tasks each node remembers for its details.
pub const RECENT_TASKS: usize = 20;

impl Config {
    /// How often agents send a heartbeat, in whole seconds.
    pub fn heartbeat_secs(&self) -> u32 {
        ((self.heartbeat_timeout / 3) / 1000).max(1) as u32
    }
}

/// A task that has been dispatched and has not ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub attempt: u32,
    pub losses: u32,
    pub node: String,
    pub cores: u32,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    config: Config,
    /// What the providers of this build say of templates' settings.
    rules: Arc<dyn ProviderRules>,
    templates: BTreeMap<String, Template>,
    series: BTreeMap<String, u64>,
    nodes: BTreeMap<String, Node>,
    jobs: BTreeMap<JobId, Job>,
    /// Jobs that are not terminal.
    active: BTreeSet<JobId>,
    next_job: JobId,
    running: HashMap<TaskKey, Running>,
    sessions: HashMap<SessionId, String>,
    /// Something changed that may let the scheduler place more tasks.
    dirty: bool,
    /// Jobs whose progress must be persisted at the end of the batch.
    progressed: BTreeSet<JobId>,
    /// When each template's recent deployments started, for its deploy rate.
    deploy_window: HashMap<String, VecDeque<Millis>>,
    /// Consecutive failed deployments per template.
    failures: HashMap<String, u32>,
    /// Paid stretches that have not ended: nodes by name, proxies by template.
    usage: HashMap<(UsageKind, String), Usage>,
    next_usage: u64,
    /// Every set's proxies, by name.
    proxies: BTreeMap<String, crate::proxy::ProxyRecord>,
    /// Uploaded packages by name and version.
    packages: BTreeMap<(String, u32), crate::package::Package>,
    /// The last version handed out per package name.
    package_versions: HashMap<String, u32>,
    /// Per scheduled template: the phase its policy is in and the nodes it moves in this phase.
    /// and when it was last evaluated.
    policy: HashMap<String, crate::availability::PolicyState>,
}

fn log(fx: &mut Effects, node: &str, now: Millis, message: impl Into<String>) {
    fx.ops.push(Op::NodeLog { node: node.to_string(), at: now, message: message.into() });
}

impl Cluster {
    pub fn new(config: Config, rules: Arc<dyn ProviderRules>) -> Cluster {
        Cluster {
            config,
            rules,
            templates: BTreeMap::new(),
            series: BTreeMap::new(),
            nodes: BTreeMap::new(),
            jobs: BTreeMap::new(),
            active: BTreeSet::new(),
            next_job: 1,
            running: HashMap::new(),
            sessions: HashMap::new(),
            dirty: false,
            progressed: BTreeSet::new(),
            deploy_window: HashMap::new(),
            failures: HashMap::new(),
            usage: HashMap::new(),
            next_usage: 1,
            proxies: BTreeMap::new(),
            policy: HashMap::new(),
            packages: BTreeMap::new(),
            package_versions: HashMap::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Checks the invariants that tie running tasks, nodes and job counts together.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        for (key, r) in &self.running {
            let node = self.nodes.get(&r.node).ok_or(format!("task {key} runs on missing node {}", r.node))?;
            if !node.running.contains(key) {
                return Err(format!("task {key} is not listed on node {}", r.node));
            }
        }
        for node in self.nodes.values() {
            let used: u32 = node.running.iter().map(|k| self.running.get(k).map_or(0, |r| r.cores)).sum();
            if used != node.used_cores {
                return Err(format!("node {} counts {} cores in use, tasks hold {used}", node.name, node.used_cores));
            }
        }
        for job in self.jobs.values() {
            let running = self.running.keys().filter(|k| k.job == job.id).count() as u64;
            if running != job.counts.running {
                return Err(format!("job {} counts {} running, {running} are", job.id, job.counts.running));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
