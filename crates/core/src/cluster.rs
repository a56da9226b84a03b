//! The head node's state and its event handlers.
//!
//! [`Cluster`] holds templates, nodes, jobs and running tasks. Each handler takes the event, the
//! current time and an [`Effects`] sink: it changes the state, pushes the [`Op`]s that make the
//! change durable and the [`Command`]s for agents and providers. The runtime commits the ops
//! of a batch before it carries out the commands or answers the caller, so nothing is
//! acknowledged before it is on disk. Handlers never block, never read a clock, never do I/O.

use crate::cost::{Usage, UsageKind};
use crate::job::{Job, JobState, JobSubmission, TaskState};
use crate::node_state::{Health, IllegalTransition, NodeEvent, NodeState};
use crate::persist::{JobProgress, JobRecord, NodeRecord, Op, Snapshot, TaskRow};
use crate::scheduler::{self, JobDemand, NodeSlots};
use crate::size::NodeSize;
use crate::template::{self, NewTemplate, Template, TemplateEdit};
use crate::view::{
    AddNodes, JobView, NodeAction, NodeActionRequest, NodeActionResult, NodeMetrics, NodeView, TaskView, TemplateView,
};
use crate::{Error, JobId, Millis, Result, TaskKey};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

pub mod agent_files;
pub mod packages;
pub(crate) mod proxies;

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
    deploying: bool,
    /// Started and waiting for its turn to be deployed (rate limit, retry delay).
    awaiting_deploy: bool,
    /// Deploy calls made since the node was started.
    deploy_attempts: u32,
    /// Not deployed again before this time (after a failed attempt).
    retry_at: Millis,
    /// When the provider reported the node deployed: the provision timeout runs from here.
    deployed_at: Option<Millis>,
    /// An earlier deployment being removed before the node is deployed again (they may share
    /// a directory or a name at the provider).
    old_deployment: Option<serde_json::Value>,
    /// Connected, installing its packages before it is `Offline`.
    installing: bool,
    /// The packages it has installed, `name@version`.
    pub packages: Vec<String>,
    /// A moving average of how long its tasks run, in microseconds; `None` until one ends.
    task_us: Option<u64>,
    /// What its agent last measured of the machine.
    pub metrics: Option<NodeMetrics>,
    /// The tasks that ended there last, newest last (kept in memory only).
    pub recent: VecDeque<TaskView>,
}

impl Node {
    /// A node with no deployment, no agent and no tasks yet.
    fn new(
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
    fn task_ran(&mut self, ms: Millis) {
        let us = ms.saturating_mul(1000);
        self.task_us = Some(self.task_us.map_or(us, |mean| ((mean as u128 * 7 + us as u128) / 8) as u64));
    }

    fn holds_deployment(&self) -> bool {
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

impl Node {
    fn record(&self) -> NodeRecord {
        NodeRecord {
            name: self.name.clone(),
            template: self.template.clone(),
            size: self.size,
            cores: self.cores,
            state: self.state.clone(),
            health: self.health,
            handle: self.handle.clone(),
        }
    }

    fn view(&self) -> NodeView {
        let (since, cause) = match &self.state {
            NodeState::NotDeployed => (None, None),
            NodeState::Provisioning { since }
            | NodeState::Offline { since }
            | NodeState::Online { since }
            | NodeState::Draining { since }
            | NodeState::Stopping { since } => (Some(*since), None),
            NodeState::Unknown { since, cause } => (Some(*since), Some(cause.clone())),
        };
        NodeView {
            name: self.name.clone(),
            template: self.template.clone(),
            size: self.size.map(|s| s.name().to_string()),
            cores: self.cores,
            state: self.state.name().to_string(),
            health: self.health.name().to_string(),
            connected: self.session.is_some(),
            running_tasks: self.running.len() as u64,
            cores_in_use: self.used_cores,
            since,
            cause,
            packages: self.packages.clone(),
            tasks: self.running.iter().map(|k| format!("{}.{}", k.job, k.index)).collect(),
            cpu_percent: self.metrics.map(|m| m.cpu_percent),
            memory_used_mb: self.metrics.map(|m| m.memory_used_mb),
            memory_total_mb: self.metrics.map(|m| m.memory_total_mb),
        }
    }

    /// Notes a task that ended on this node, forgetting the oldest beyond [`RECENT_TASKS`].
    fn task_done(&mut self, row: &TaskRow) {
        if self.recent.len() == RECENT_TASKS {
            self.recent.pop_front();
        }
        self.recent.push_back(row.view());
    }

    fn takes_work(&self) -> bool {
        matches!(self.state, NodeState::Online { .. }) && self.health == Health::OK && self.session.is_some()
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

/// One dispatched attempt of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TaskAttempt {
    pub key: TaskKey,
    pub attempt: u32,
}

/// What an agent needs to run one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub key: TaskKey,
    pub attempt: u32,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cores: u32,
    /// This task's inputs and outputs, `*` substituted.
    pub staging: crate::staging::Staging,
}

/// How an attempt ended, as its agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    pub key: TaskKey,
    pub attempt: u32,
    /// `None` when the process could not start or was killed by a signal.
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub started_at: Millis,
    pub ended_at: Millis,
    pub stdout: String,
    pub stderr: String,
    /// Why the task's inputs or outputs could not be staged: the task failed whatever its exit
    /// code.
    pub staging_error: Option<String>,
}

/// An agent introducing itself on a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub name: String,
    pub cores: u32,
    /// Attempts the agent is running or holds queued.
    pub running: Vec<TaskAttempt>,
    /// Attempts whose results the agent holds and is about to send.
    pub completed: Vec<TaskAttempt>,
}

/// What the runtime must do after the ops of the batch are committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Assign {
        session: SessionId,
        tasks: Vec<Dispatch>,
    },
    Cancel {
        session: SessionId,
        tasks: Vec<TaskAttempt>,
    },
    Ack {
        session: SessionId,
        tasks: Vec<TaskAttempt>,
    },
    /// The agent must end its tasks and exit: its node is being stopped.
    Shutdown {
        session: SessionId,
    },
    /// Close a connection that was replaced or refused.
    Disconnect {
        session: SessionId,
        reason: String,
    },
    /// Deploy a node whose agent connects through `via` (the set's proxies).
    Deploy {
        node: String,
        template: Template,
        size: NodeSize,
        via: Vec<String>,
    },
    /// Deploy a proxy, on `address` if it had one before.
    DeployProxy {
        proxy: String,
        template: Template,
        address: Option<String>,
    },
    RemoveProxy {
        proxy: String,
        template: Template,
        handle: serde_json::Value,
    },
    /// Install these packages on the agent.
    Install {
        session: SessionId,
        packages: Vec<crate::package::Package>,
    },
    Remove {
        node: String,
        template: Template,
        handle: serde_json::Value,
    },
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    pub ops: Vec<Op>,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    config: Config,
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
    pub fn new(config: Config) -> Cluster {
        Cluster {
            config,
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

    /// Rebuilds the cluster a head node had when it stopped. Nodes whose agents were connected
    /// get [`Config::reconnect_grace`] to reconnect; running tasks stay running until their agent
    /// says otherwise.
    pub fn restore(config: Config, snapshot: Snapshot, fx: &mut Effects, now: Millis) -> Cluster {
        let mut c = Cluster::new(config);
        c.templates = snapshot.templates.into_iter().map(|t| (t.name.clone(), t)).collect();
        c.policy = c.templates.values().filter_map(|t| Some((t.name.clone(), t.policy_state.clone()?))).collect();
        c.series = snapshot.series.into_iter().collect();
        c.next_job = c.series.get(JOB_SERIES).map_or(1, |last| last + 1);
        c.next_usage = snapshot.next_usage.max(1);
        for u in snapshot.open_usage {
            let key = match u.kind {
                UsageKind::Node => (UsageKind::Node, u.name.clone()),
                UsageKind::Proxies => (UsageKind::Proxies, u.template.clone()),
            };
            c.usage.insert(key, u);
        }
        for mut r in snapshot.nodes {
            let disconnected_since = r.state.expects_agent().then_some(now);
            // The provision timeout runs from the restart: agents may be reconnecting right now.
            let provisioning = matches!(r.state, NodeState::Provisioning { .. });
            if let NodeState::Provisioning { since } = &mut r.state {
                *since = now;
            }
            // A deployment that was queued or under way when the head node stopped has no
            // handle yet: it is made again. One with a handle waits for its agent.
            let redeploy = provisioning && r.handle.is_none();
            let node = Node {
                handle: r.handle,
                disconnected_since,
                awaiting_deploy: redeploy,
                retry_at: now,
                deployed_at: (provisioning && !redeploy).then_some(now),
                ..Node::new(r.name.clone(), r.template, r.size, r.cores, r.state, r.health, now)
            };
            c.nodes.insert(r.name, node);
        }
        let mut rows_by_job: HashMap<JobId, Vec<TaskRow>> = HashMap::new();
        for row in snapshot.active_tasks {
            rows_by_job.entry(row.job).or_default().push(row);
        }
        for record in snapshot.jobs {
            let id = record.id;
            c.next_job = c.next_job.max(id + 1);
            let rows = rows_by_job.remove(&id).unwrap_or_default();
            let mut job = Job::restore(record, &rows);
            if !job.state.is_terminal() {
                c.active.insert(id);
                for row in rows.iter().filter(|r| r.state == TaskState::Running) {
                    let key = TaskKey { job: id, index: row.index };
                    let node = row.node.clone().unwrap_or_default();
                    if let Some(n) = c.nodes.get_mut(&node) {
                        n.running.insert(key);
                        n.used_cores += job.cores_per_task;
                        let r = Running { attempt: row.attempt, losses: row.losses, node, cores: job.cores_per_task };
                        c.running.insert(key, r);
                    } else {
                        // Its node was deleted while the head node was down: run it again.
                        job.requeue(row.index, row.attempt, row.losses);
                        fx.ops.push(Op::PutTask(TaskRow { state: TaskState::Queued, ..row.clone() }));
                        c.progressed.insert(id);
                    }
                }
            }
            c.jobs.insert(id, job);
        }
        c.restore_proxies(snapshot.proxies, fx, now);
        c.packages = snapshot.packages.into_iter().map(|p| ((p.name.clone(), p.version), p)).collect();
        // A stop that was under way when the head node went down is finished now.
        let stopping: Vec<String> = c
            .nodes
            .values()
            .filter(|n| matches!(n.state, NodeState::Stopping { .. }))
            .map(|n| n.name.clone())
            .collect();
        for name in stopping {
            let node = &c.nodes[&name];
            match (node.handle.clone(), node.template.as_ref().and_then(|t| c.templates.get(t)).cloned()) {
                (Some(handle), Some(template)) => {
                    fx.commands.push(Command::Remove { node: name.clone(), template, handle });
                }
                _ => c.finish_stop(fx, &name, now),
            }
        }
        c.dirty = true;
        c
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- templates -----------------------------------------------------------------------

    pub fn create_template(&mut self, fx: &mut Effects, req: NewTemplate, now: Millis) -> Result<TemplateView> {
        let template = req.validate(now)?;
        if self.templates.contains_key(&template.name) {
            return Err(Error::conflict(format!(
                "template \"{}\" already exists (choose another name, or edit or delete the existing one)",
                template.name
            )));
        }
        fx.ops.push(Op::PutTemplate(template.clone()));
        let view = self.template_view(&template);
        self.templates.insert(template.name.clone(), template);
        Ok(view)
    }

    pub fn delete_template(&mut self, fx: &mut Effects, name: &str) -> Result<()> {
        self.template_named(name)?;
        let nodes = self.nodes.values().filter(|n| n.template.as_deref() == Some(name)).count();
        if nodes > 0 {
            return Err(Error::conflict(format!(
                "template \"{name}\" still has {nodes} node(s) (stop and delete them first: thunderhead node stop --template {name}; thunderhead node delete --template {name})"
            )));
        }
        // Proxies being removed finish without their template; one still deploying would be
        // left behind.
        let deploying = self
            .proxies
            .values()
            .filter(|p| p.template == name && p.state == crate::proxy::ProxyState::Deploying)
            .count();
        if deploying > 0 {
            return Err(Error::conflict(format!(
                "template \"{name}\" still has {deploying} proxies being deployed (try again in a moment)"
            )));
        }
        self.templates.remove(name);
        fx.ops.push(Op::DeleteTemplate(name.to_string()));
        Ok(())
    }

    pub fn templates(&self) -> Vec<TemplateView> {
        self.templates.values().map(|t| self.template_view(t)).collect()
    }

    pub fn template(&self, name: &str) -> Result<TemplateView> {
        Ok(self.template_view(self.template_named(name)?))
    }

    /// The whole template, settings included, for the runtime to hand to its provider.
    pub fn template_record(&self, name: &str) -> Result<Template> {
        self.template_named(name).cloned()
    }

    fn template_named(&self, name: &str) -> Result<&Template> {
        self.templates.get(name).ok_or_else(|| {
            Error::not_found(format!(
                "template \"{name}\" does not exist (see thunderhead template list, or create it with thunderhead template create {name} --provider local)"
            ))
        })
    }

    fn template_view(&self, t: &Template) -> TemplateView {
        TemplateView {
            name: t.name.clone(),
            provider: t.provider.clone(),
            description: t.description.clone(),
            settings: t.settings.clone(),
            nodes: self.nodes.values().filter(|n| n.template.as_deref() == Some(&t.name)).count() as u64,
            node_cores: self.template_cores(&t.name, |_| true),
            quota_cores: t.quota_cores,
            proxies: t.proxies,
            series_prefix: t.prefix(),
            deploy_rate: t.deploy_rate,
            deploy_retries: t.deploy_retries,
            pause_after_failures: t.pause_after_failures,
            paused: t.paused.clone(),
            rates: t.rates.clone(),
            currency: t.currency.clone(),
            proxy_list: self.proxies_of(&t.name),
            pins: t.pins.clone(),
            blob_store: t.blob_store.clone(),
            availability: t.availability.clone(),
            created_at: t.created_at,
        }
    }

    /// Cores of the template's nodes that `filter` keeps.
    fn template_cores(&self, template: &str, filter: impl Fn(&Node) -> bool) -> u32 {
        self.nodes.values().filter(|n| n.template.as_deref() == Some(template) && filter(n)).map(|n| n.cores).sum()
    }

    /// Changes a template; a deployed set picks the changes up at its next start.
    /// A new availability policy applies at once, so that what a person does right after
    /// setting it is not undone by the policy's first look.
    pub fn edit_template(
        &mut self,
        fx: &mut Effects,
        name: &str,
        edit: TemplateEdit,
        now: Millis,
    ) -> Result<TemplateView> {
        let edited = self.template_named(name)?.edited(edit)?;
        let policy_changed = edited.availability != self.templates[name].availability;
        fx.ops.push(Op::PutTemplate(edited.clone()));
        self.templates.insert(name.to_string(), edited);
        if policy_changed {
            self.policy.remove(name);
            self.apply_availability(fx, now);
        }
        self.template(name)
    }

    // ----- nodes ---------------------------------------------------------------------------

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
                now,
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

    fn node_named(&self, name: &str) -> Result<&Node> {
        self.nodes
            .get(name)
            .ok_or_else(|| Error::not_found(format!("node \"{name}\" does not exist (see thunderhead node list)")))
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

    /// Moves a node to the state `event` leads to, logging and persisting the change.
    fn transition(
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

    /// Opens or closes the paid stretch of a node that was deployed or removed, and of its
    /// set's proxies, which are paid while any node of the set is deployed.
    /// Called after anything that may change whether a node holds a deployment: idempotent.
    fn account(&mut self, fx: &mut Effects, name: &str, now: Millis) {
        let Some(node) = self.nodes.get(name) else { return };
        let (Some(template), Some(size)) = (node.template.as_ref().and_then(|t| self.templates.get(t)), node.size)
        else {
            return;
        };
        let template = template.clone();
        let deployed = node.holds_deployment();
        self.set_usage(fx, UsageKind::Node, name, &template, size, 1, deployed, now);
        self.account_set(fx, &template, now);
    }

    /// Whether any node of the set holds a deployment (and so needs, and pays for, proxies).
    fn set_is_active(&self, template: &str) -> bool {
        self.nodes.values().any(|n| n.template.as_deref() == Some(template) && n.holds_deployment())
    }

    /// The set's proxies and their paid stretch follow whether the set is active.
    fn account_set(&mut self, fx: &mut Effects, template: &Template, now: Millis) {
        let set_active = self.set_is_active(&template.name);
        let proxies = template.proxies;
        // A changed number of proxies is billed from the change on.
        let key = (UsageKind::Proxies, template.name.clone());
        if self.usage.get(&key).is_some_and(|u| u.count != proxies) {
            self.set_usage(fx, UsageKind::Proxies, &template.name, template, NodeSize::Small, proxies, false, now);
        }
        self.set_usage(fx, UsageKind::Proxies, &template.name, template, NodeSize::Small, proxies, set_active, now);
        self.ensure_proxies(fx, template, set_active, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn set_usage(
        &mut self,
        fx: &mut Effects,
        kind: UsageKind,
        key: &str,
        template: &Template,
        size: NodeSize,
        count: u32,
        open: bool,
        now: Millis,
    ) {
        let key = (kind, key.to_string());
        match (open, self.usage.contains_key(&key)) {
            (true, false) => {
                let usage = Usage {
                    id: self.next_usage,
                    template: template.name.clone(),
                    kind,
                    name: if kind == UsageKind::Node { key.1.clone() } else { "proxies".into() },
                    size,
                    count,
                    rate_micros: template.rate_micros(size),
                    currency: template.currency.clone(),
                    start: now,
                    end: None,
                };
                self.next_usage += 1;
                fx.ops.push(Op::PutUsage(usage.clone()));
                self.usage.insert(key, usage);
            }
            (false, true) => {
                let mut usage = self.usage.remove(&key).expect("checked");
                usage.end = Some(now);
                fx.ops.push(Op::PutUsage(usage));
            }
            _ => {}
        }
    }

    fn burst_template(&self, name: &str) -> Result<Template> {
        let node = self.node_named(name)?;
        match &node.template {
            Some(t) => Ok(self.template_named(t)?.clone()),
            None => Err(Error::invalid(format!(
                "node \"{name}\" is an on-premises node: Thunderhead does not deploy it (start or stop its agent on that machine)"
            ))),
        }
    }

    fn start_node(&mut self, fx: &mut Effects, name: &str, now: Millis) -> Result<()> {
        let template = self.burst_template(name)?;
        if !template::DEPLOYABLE.contains(&template.provider.as_str()) {
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
        node.awaiting_deploy = true;
        node.deploy_attempts = 0;
        node.retry_at = now;
        node.deployed_at = None;
        // What is left of an earlier, failed deployment goes before the new one is made.
        if let Some(old) = node.handle.take() {
            fx.ops.push(Op::PutNode(node.record()));
            node.old_deployment = Some(old.clone());
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

    /// Starts the deployments that are due, no more per template than its deploy rate allows in
    /// any minute.
    fn dispatch_deploys(&mut self, fx: &mut Effects, now: Millis) {
        let due: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.awaiting_deploy && n.retry_at <= now && matches!(n.state, NodeState::Provisioning { .. }))
            .filter(|n| n.old_deployment.is_none())
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
            node.awaiting_deploy = false;
            node.deploying = true;
            node.deploy_attempts += 1;
            let size = node.size.unwrap_or(NodeSize::Small);
            let attempt = node.deploy_attempts;
            log(fx, &name, now, format!("deploying (attempt {attempt}) with provider {}", template.provider));
            fx.commands.push(Command::Deploy { node: name, template, size, via });
        }
    }

    /// Clears a template's pause so its nodes can be started again.
    pub fn resume_template(&mut self, fx: &mut Effects, name: &str) -> Result<TemplateView> {
        let mut t = self.template_named(name)?.clone();
        t.paused = None;
        self.failures.remove(name);
        fx.ops.push(Op::PutTemplate(t.clone()));
        self.templates.insert(name.to_string(), t);
        self.template(name)
    }

    fn stop_node(&mut self, fx: &mut Effects, name: &str, now: Millis) -> Result<()> {
        let template = self.burst_template(name)?;
        if self.nodes[name].state == NodeState::NotDeployed {
            return Ok(());
        }
        self.transition(fx, name, NodeEvent::Stop, now).map_err(|e| Error::conflict(e.to_string()))?;
        self.requeue_all(fx, name, false, now);
        let node = self.nodes.get_mut(name).expect("checked above");
        if let Some(session) = node.session {
            fx.commands.push(Command::Shutdown { session });
        }
        node.awaiting_deploy = false;
        match (&node.handle, node.deploying) {
            (Some(handle), _) => {
                log(fx, name, now, "removing the deployment");
                fx.commands.push(Command::Remove { node: name.to_string(), template, handle: handle.clone() });
            }
            // The deploy call is still out; its answer will trigger the removal.
            (None, true) => {}
            (None, false) => self.finish_stop(fx, name, now),
        }
        Ok(())
    }

    fn finish_stop(&mut self, fx: &mut Effects, name: &str, now: Millis) {
        if let Some(node) = self.nodes.get_mut(name) {
            if let Some(session) = node.session.take() {
                self.sessions.remove(&session);
            }
            node.handle = None;
            node.disconnected_since = None;
        }
        let _ = self.transition(fx, name, NodeEvent::Removed, now);
    }

    fn online_node(&mut self, fx: &mut Effects, name: &str, now: Millis) -> Result<()> {
        self.node_named(name)?;
        self.transition(fx, name, NodeEvent::BringOnline, now).map_err(|e| {
            Error::conflict(format!("{e} (a node must be Offline, with its agent connected, to be brought online)"))
        })
    }

    fn offline_node(&mut self, fx: &mut Effects, name: &str, force: bool, now: Millis) -> Result<()> {
        self.node_named(name)?;
        self.transition(fx, name, NodeEvent::TakeOffline { force }, now).map_err(|e| Error::conflict(e.to_string()))?;
        if force {
            self.requeue_all(fx, name, false, now);
        }
        self.settle_drain(fx, name, now);
        Ok(())
    }

    fn delete_node(&mut self, fx: &mut Effects, name: &str, now: Millis) -> Result<()> {
        let node = self.node_named(name)?;
        match (&node.template, &node.state) {
            // Its agent would be left talking about a node that is gone.
            (Some(_), _) if node.session.is_some() => {
                return Err(Error::conflict(format!(
                    "node \"{name}\" has its agent connected (stop it first: thunderhead node stop {name})"
                )));
            }
            (Some(_), NodeState::Unknown { .. }) if node.handle.is_some() => {
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
            (None, _) if node.session.is_some() => {
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
    fn requeue_all(&mut self, fx: &mut Effects, name: &str, lost: bool, now: Millis) {
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        let keys = std::mem::take(&mut node.running);
        node.used_cores = 0;
        let session = node.session;
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

    fn settle_drain(&mut self, fx: &mut Effects, name: &str, now: Millis) {
        if let Some(node) = self.nodes.get(name)
            && matches!(node.state, NodeState::Draining { .. })
            && node.running.is_empty()
        {
            let _ = self.transition(fx, name, NodeEvent::Drained, now);
        }
    }

    fn lose_node(&mut self, fx: &mut Effects, name: &str, cause: String, now: Millis) {
        if self.transition(fx, name, NodeEvent::Lost { cause }, now).is_ok() {
            self.requeue_all(fx, name, true, now);
        }
    }

    // ----- jobs ----------------------------------------------------------------------------

    /// Hands out a job id ahead of a submission, so a client can stage the job's files in its
    /// area first. The id is durable: it is never handed out again.
    pub fn reserve_job_id(&mut self, fx: &mut Effects) -> JobId {
        let id = self.next_job;
        self.next_job += 1;
        fx.ops.push(Op::PutSeries { prefix: JOB_SERIES.into(), last: id });
        id
    }

    pub fn submit(&mut self, fx: &mut Effects, submission: JobSubmission, now: Millis) -> Result<JobId> {
        let reserved = submission.reserved_id;
        let valid = submission.validate()?;
        let id = match reserved {
            Some(id) if id >= 1 && id < self.next_job && !self.jobs.contains_key(&id) => id,
            Some(id) => {
                return Err(Error::conflict(format!(
                    "job id {id} was not reserved or is taken (reserve one with POST /api/v1/jobs/reserve)"
                )));
            }
            None => {
                let id = self.next_job;
                self.next_job += 1;
                id
            }
        };
        let job = Job::new(id, valid, now);
        fx.ops.push(Op::InsertJob(job_record(&job)));
        if let crate::job::JobSpec::Tasks { tasks } = &job.spec {
            fx.ops.extend((1..=tasks.len() as u64).map(|i| Op::PutTask(TaskRow::new(id, i))));
        }
        self.jobs.insert(id, job);
        self.active.insert(id);
        self.dirty = true;
        Ok(id)
    }

    pub fn cancel_job(&mut self, fx: &mut Effects, id: JobId, now: Millis) -> Result<JobView> {
        let job = self.job_named(id)?;
        if job.state.is_terminal() {
            return Err(Error::conflict(format!("job {id} is already {} (nothing to cancel)", job.state.name())));
        }
        let keys: Vec<TaskKey> = self.running.keys().filter(|k| k.job == id).copied().collect();
        let mut per_session: BTreeMap<SessionId, Vec<TaskAttempt>> = BTreeMap::new();
        let mut drained = BTreeSet::new();
        for key in keys {
            let r = self.running.remove(&key).expect("listed above");
            if let Some(node) = self.nodes.get_mut(&r.node) {
                node.running.remove(&key);
                node.used_cores = node.used_cores.saturating_sub(r.cores);
                if let Some(s) = node.session {
                    per_session.entry(s).or_default().push(TaskAttempt { key, attempt: r.attempt });
                }
                drained.insert(r.node.clone());
            }
            let mut row = TaskRow::new(id, key.index);
            row.state = TaskState::Canceled;
            row.attempt = r.attempt;
            row.losses = r.losses;
            row.node = Some(r.node);
            row.ended_at = Some(now);
            row.message = Some("canceled while running".into());
            if let Some(node) = row.node.as_ref().and_then(|n| self.nodes.get_mut(n)) {
                node.task_done(&row);
            }
            fx.ops.push(Op::PutTask(row));
        }
        let job = self.jobs.get_mut(&id).expect("checked above");
        // Queued tasks that have a row (requeued ones, and every task of a job with explicit
        // tasks) are marked; queued sweep indices without a row are only counted.
        for (index, attempt) in job.queued_with_rows() {
            fx.ops.push(canceled_row(id, index, attempt, now, "canceled before it ran"));
        }
        job.cancel(now);
        self.active.remove(&id);
        self.progressed.insert(id);
        for (session, tasks) in per_session {
            fx.commands.push(Command::Cancel { session, tasks });
        }
        for name in drained {
            self.settle_drain(fx, &name, now);
        }
        self.dirty = true;
        Ok(job_view(&self.jobs[&id]))
    }

    /// Requeues the failed and canceled tasks of ended job `id`; `ended` holds the stored rows
    /// of those tasks (index, last attempt), which the caller read from the store while the job
    /// had ended at `ended_at`.
    pub fn requeue_job(
        &mut self,
        fx: &mut Effects,
        id: JobId,
        ended_at: Option<Millis>,
        ended: &[(u64, u32)],
    ) -> Result<JobView> {
        let job = self.job_named(id)?;
        if job.ended_at != ended_at {
            return Err(Error::conflict(format!(
                "job {id} changed while its tasks were read (another requeue?); look at it again and retry"
            )));
        }
        match job.state {
            JobState::Failed | JobState::Canceled => {}
            JobState::Finished => {
                return Err(Error::conflict(format!(
                    "job {id} finished: every task succeeded, so there is nothing to requeue (submit it again to rerun it)"
                )));
            }
            state => {
                return Err(Error::conflict(format!(
                    "job {id} is {} (only a Failed or Canceled job can be requeued; cancel it first)",
                    state.name()
                )));
            }
        }
        // The list was read from the store beside the actor: the job's ended tasks that have rows
        // (tasks canceled before they started have none), each once.
        let distinct: BTreeSet<u64> = ended.iter().map(|(i, _)| *i).collect();
        let expected = job.counts.failed + job.counts.canceled;
        if distinct.len() != ended.len() || ended.len() as u64 > expected || !distinct.iter().all(|i| job.has_index(*i))
        {
            return Err(Error::conflict(format!(
                "job {id} changed while its tasks were read ({} ended tasks read, at most {expected} expected); look at it again and retry",
                ended.len()
            )));
        }
        let job = self.jobs.get_mut(&id).expect("checked above");
        for row in job.requeue_ended(ended) {
            fx.ops.push(Op::PutTask(row));
        }
        self.active.insert(id);
        self.progressed.insert(id);
        self.dirty = true;
        Ok(job_view(&self.jobs[&id]))
    }

    pub fn jobs(&self) -> Vec<JobView> {
        self.jobs.values().map(job_view).collect()
    }

    pub fn job(&self, id: JobId) -> Result<JobView> {
        Ok(job_view(self.job_named(id)?))
    }

    fn job_named(&self, id: JobId) -> Result<&Job> {
        self.jobs
            .get(&id)
            .ok_or_else(|| Error::not_found(format!("job {id} does not exist (see thunderhead job list)")))
    }

    /// Checks that `index` names a task of job `id`.
    pub fn check_task(&self, id: JobId, index: u64) -> Result<()> {
        if self.job_named(id)?.has_index(index) {
            Ok(())
        } else {
            Err(Error::not_found(format!("job {id} has no task with index {index} (see thunderhead task list {id})")))
        }
    }

    // ----- agents --------------------------------------------------------------------------

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
                let node = Node::new(
                    name.clone(),
                    None,
                    None,
                    hello.cores,
                    NodeState::Offline { since: now },
                    Health::OK,
                    now,
                );
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
        if let Some(old) = node.session.replace(session) {
            self.sessions.remove(&old);
            fx.commands.push(Command::Disconnect { session: old, reason: "replaced by a newer connection".into() });
        }
        node.disconnected_since = None;
        node.last_heard = now;
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

    fn requeue_one(&mut self, fx: &mut Effects, node: &str, key: TaskKey) {
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
        node.last_heard = now;
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
        if node.session == Some(session) {
            // Nothing measures the node while no agent is connected.
            node.metrics = None;
            node.session = None;
            node.disconnected_since = Some(now);
            log(fx, &name, now, "agent disconnected");
        }
    }

    // ----- providers -----------------------------------------------------------------------

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
        node.deploying = false;
        let attempt = node.deploy_attempts;
        let template_name = node.template.clone().unwrap_or_default();
        match result {
            Ok(handle) => {
                node.handle = Some(handle.clone());
                node.deployed_at = Some(now);
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
                        let node = self.nodes.get_mut(name).expect("exists");
                        if !paused && failure.transient && attempt <= retries {
                            let delay = RETRY_DELAY * attempt as Millis;
                            node.awaiting_deploy = true;
                            node.retry_at = now + delay;
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
                    _ => {}
                }
            }
        }
        self.account(fx, name, now);
    }

    /// Counts a failed deployment of `template`; after too many in a row the template pauses
    /// itself, and the nodes still waiting to deploy fail with the reason. Returns whether the
    /// template is paused.
    fn note_failure(&mut self, fx: &mut Effects, template: &str, message: &str, now: Millis) -> bool {
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
        if node.old_deployment.as_ref() == Some(handle) {
            node.old_deployment = None;
            match result {
                Ok(()) => log(fx, name, now, "the earlier deployment was removed"),
                Err(cause) => log(fx, name, now, format!("the earlier deployment could not be removed: {cause}")),
            }
            return;
        }
        // An answer about an older deployment of the node says nothing about its current one.
        if node.handle.as_ref() != Some(handle) {
            return;
        }
        match result {
            Ok(()) => {
                log(fx, name, now, "provider removed the deployment");
                if matches!(node.state, NodeState::Stopping { .. }) {
                    self.finish_stop(fx, name, now);
                } else {
                    node.handle = None;
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
            .filter(|n| n.session.is_none() && !n.deploying)
            .filter(|n| matches!(n.state, NodeState::Provisioning { .. }) || n.state.expects_agent())
            .filter_map(|n| {
                let template = self.templates.get(n.template.as_ref()?)?;
                Some((n.name.clone(), template.clone(), n.handle.clone()?))
            })
            .collect()
    }

    /// The provider reports that a node's deployment no longer exists. A node still waiting
    /// for its agent fails; a node whose agent went away is lost at once instead of after the
    /// grace period.
    pub fn deployment_gone(&mut self, fx: &mut Effects, name: &str, handle: &serde_json::Value, now: Millis) {
        let Some(node) = self.nodes.get(name) else {
            return;
        };
        // A late answer about an earlier deployment says nothing about the current one.
        if node.session.is_some() || node.handle.as_ref() != Some(handle) {
            return;
        }
        let cause = "the provider reports the deployment gone (for local nodes: the agent process exited; see agent.log in the node directory)".to_string();
        match node.state {
            NodeState::Provisioning { .. } => {
                let _ = self.transition(fx, name, NodeEvent::Failed { cause }, now);
            }
            ref s if s.expects_agent() => self.lose_node(fx, name, cause, now),
            _ => {}
        }
    }

    // ----- time ----------------------------------------------------------------------------

    /// Times out deployments whose agent never connected and nodes whose agent did not come back.
    pub fn tick(&mut self, fx: &mut Effects, now: Millis) {
        let mut timed_out = Vec::new();
        let mut lost = Vec::new();
        let mut silent = Vec::new();
        for node in self.nodes.values() {
            if node.session.is_some() && now.saturating_sub(node.last_heard) > self.config.heartbeat_timeout {
                silent.push(node.name.clone());
            }
            match (&node.state, node.session, node.disconnected_since) {
                (NodeState::Provisioning { .. }, None, _)
                    if node.deployed_at.is_some_and(|d| now.saturating_sub(d) > self.config.provision_timeout) =>
                {
                    timed_out.push(node.name.clone());
                }
                (state, None, Some(gone))
                    if state.expects_agent() && now.saturating_sub(gone) > self.config.reconnect_grace =>
                {
                    lost.push(node.name.clone());
                }
                _ => {}
            }
        }
        for name in timed_out {
            let cause = format!(
                "the node's agent did not connect within {} s of deployment",
                self.config.provision_timeout / 1000
            );
            let template = self.nodes[&name].template.clone().unwrap_or_default();
            self.note_failure(fx, &template, &cause, now);
            let _ = self.transition(fx, &name, NodeEvent::Failed { cause }, now);
            let node = &self.nodes[&name];
            if let (Some(handle), Some(t)) =
                (node.handle.clone(), node.template.as_ref().and_then(|t| self.templates.get(t)))
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
        self.keep_proxies(fx, now);
        self.apply_availability(fx, now);
    }

    /// Writes a set's policy state with its template.
    fn save_policy(&mut self, fx: &mut Effects, template: &str) {
        if let Some(t) = self.templates.get_mut(template) {
            t.policy_state = self.policy.get(template).cloned();
            fx.ops.push(Op::PutTemplate(t.clone()));
        }
    }

    /// Moves the nodes of every scheduled set one step toward where its policy wants it.
    ///
    /// The policy acts at the boundaries of its phases: when a phase begins, every node of the
    /// set is the policy's to move, and it keeps moving them (a node it started is brought
    /// online once its agent connects). A node a person acts on during the phase is theirs until
    /// the next boundary, so stopping a set by hand inside a window sticks.
    fn apply_availability(&mut self, fx: &mut Effects, now: Millis) {
        let scheduled: Vec<(String, crate::availability::Phase)> = self
            .templates
            .values()
            .filter_map(|t| Some((t.name.clone(), crate::availability::phase(&t.availability, now)?)))
            .collect();
        self.policy.retain(|t, _| scheduled.iter().any(|(s, _)| s == t));
        for (template, phase) in scheduled {
            // A phase seen again after a long gap (the head node was down) may be a later
            // occurrence of it: it counts as a new phase.
            let fresh =
                self.policy.get(&template).is_none_or(|s| s.phase != phase || now.saturating_sub(s.seen) > POLICY_GAP);
            if fresh {
                let all: BTreeSet<String> = self
                    .nodes
                    .values()
                    .filter(|n| n.template.as_deref() == Some(&template))
                    .map(|n| n.name.clone())
                    .collect();
                self.policy
                    .insert(template.clone(), crate::availability::PolicyState { phase, managed: all, seen: now });
                self.save_policy(fx, &template);
            }
            let entry = self.policy.get_mut(&template).expect("inserted above");
            // The last look is written now and then, for a restart to tell a gap from a pause.
            let stale = now.saturating_sub(entry.seen) >= POLICY_GAP / 6;
            entry.seen = now;
            if stale {
                self.save_policy(fx, &template);
            }
            let managed = &self.policy[&template].managed;
            let actions = crate::availability::decide(
                phase,
                managed.iter().filter_map(|n| self.nodes.get(n)).map(|n| (n.name.as_str(), &n.state)),
            );
            for (node, action) in actions {
                let outcome = match action {
                    NodeAction::Start => self.start_node(fx, &node, now),
                    NodeAction::Stop => self.stop_node(fx, &node, now),
                    NodeAction::Online => self.online_node(fx, &node, now),
                    NodeAction::Offline => self.offline_node(fx, &node, false, now),
                    NodeAction::Delete => Ok(()),
                };
                if outcome.is_ok() {
                    log(fx, &node, now, format!("availability policy of {template}: {phase:?}"));
                    self.dirty = true;
                }
            }
        }
    }

    /// A connected agent went silent: its node's health is `Error`, its tasks are requeued and
    /// its connection is dropped. If it comes back, its health is `OK` again; if it does not
    /// come back within the reconnect grace, the node is lost.
    fn heartbeat_lost(&mut self, fx: &mut Effects, name: &str, now: Millis) {
        let timeout = self.config.heartbeat_timeout / 1000;
        self.requeue_all(fx, name, true, now);
        let node = self.nodes.get_mut(name).expect("listed by tick");
        let Some(session) = node.session.take() else { return };
        self.sessions.remove(&session);
        node.disconnected_since = Some(now);
        node.health = Health::Error;
        fx.ops.push(Op::PutNode(node.record()));
        log(fx, name, now, format!("no heartbeat for {timeout} s: health Error, running tasks requeued"));
        fx.commands.push(Command::Disconnect { session, reason: format!("no heartbeat for {timeout} s") });
    }

    // ----- scheduling ----------------------------------------------------------------------

    /// Ends a batch of events: places queued tasks on nodes with room, and persists the
    /// progress of every job that changed. Call once per batch, before committing its ops.
    pub fn end_batch(&mut self, fx: &mut Effects, now: Millis) {
        self.dispatch_deploys(fx, now);
        if self.dirty {
            self.dirty = false;
            self.schedule(fx, now);
        }
        for id in std::mem::take(&mut self.progressed) {
            if let Some(job) = self.jobs.get(&id) {
                fx.ops.push(Op::JobProgress(job_progress(job, now)));
            }
        }
    }

    fn schedule(&mut self, fx: &mut Effects, now: Millis) {
        if self.active.is_empty() {
            return;
        }
        // Only nodes with room take part: a steady round looks at the few that freed cores.
        let most = self.config.queue_ahead;
        let (slots, names): (Vec<NodeSlots>, Vec<String>) = self
            .nodes
            .values()
            .filter(|n| n.takes_work())
            .map(|n| (n, n.cores.saturating_mul(n.queue_ahead(most).saturating_add(1)).saturating_sub(n.used_cores)))
            .filter(|(_, free)| *free > 0)
            .map(|(n, free_cores)| (NodeSlots { free_cores, cores: n.cores }, n.name.clone()))
            .unzip();
        if slots.is_empty() {
            return;
        }
        let demand: Vec<JobDemand> = self
            .active
            .iter()
            .map(|id| &self.jobs[id])
            .map(|j| JobDemand {
                job: j.id,
                priority: j.priority,
                cores_per_task: j.cores_per_task,
                pending: j.pending(),
            })
            .filter(|d| d.pending > 0)
            .collect();
        let placements = scheduler::plan(&demand, &slots);
        let mut per_node: BTreeMap<usize, Vec<Dispatch>> = BTreeMap::new();
        for p in placements {
            let name = &names[p.node];
            let job = self.jobs.get_mut(&p.job).expect("active job");
            let taken = job.take(p.count as u64);
            job.mark_running(taken.len() as u64, now);
            let node = self.nodes.get_mut(name).expect("eligible node");
            for t in taken {
                let key = TaskKey { job: job.id, index: t.index };
                job.note_started(t.index);
                node.running.insert(key);
                node.used_cores = node.used_cores.saturating_add(job.cores_per_task);
                self.running.insert(
                    key,
                    Running { attempt: t.attempt, losses: t.losses, node: name.clone(), cores: job.cores_per_task },
                );
                let mut row = TaskRow::new(job.id, t.index);
                row.state = TaskState::Running;
                row.attempt = t.attempt;
                row.losses = t.losses;
                row.node = Some(name.clone());
                row.started_at = Some(now);
                fx.ops.push(Op::PutTask(row));
                per_node.entry(p.node).or_default().push(Dispatch {
                    key,
                    attempt: t.attempt,
                    command: job.command_of(t.index),
                    env: task_env(job, t.index, t.attempt, name),
                    cores: job.cores_per_task,
                    staging: job.staging.for_task(job.id, t.index),
                });
            }
            self.progressed.insert(p.job);
        }
        for (i, tasks) in per_node {
            let session = self.nodes[&names[i]].session.expect("eligible nodes are connected");
            fx.commands.push(Command::Assign { session, tasks });
        }
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

fn task_env(job: &Job, index: u64, attempt: u32, node: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("THUNDERHEAD_JOB_ID".to_string(), job.id.to_string()),
        ("THUNDERHEAD_TASK_ID".to_string(), format!("{}.{index}", job.id)),
        ("THUNDERHEAD_TASK_ATTEMPT".to_string(), attempt.to_string()),
        ("THUNDERHEAD_NODE_NAME".to_string(), node.to_string()),
    ];
    if matches!(job.spec, crate::job::JobSpec::Sweep { .. }) {
        env.push(("THUNDERHEAD_SWEEP_INDEX".to_string(), index.to_string()));
    }
    env
}

fn canceled_row(job: JobId, index: u64, attempt: u32, now: Millis, why: &str) -> Op {
    let mut row = TaskRow::new(job, index);
    row.state = TaskState::Canceled;
    row.attempt = attempt;
    row.ended_at = Some(now);
    row.message = Some(why.to_string());
    Op::PutTask(row)
}

const DEPENDENCY_FAILED: &str = "canceled because a task it depends on did not finish";

fn job_record(job: &Job) -> JobRecord {
    JobRecord {
        id: job.id,
        name: job.name.clone(),
        owner: job.owner.clone(),
        priority: job.priority,
        cores_per_task: job.cores_per_task,
        retries: job.retries,
        spec: job.spec.clone(),
        staging: job.staging.clone(),
        state: job.state,
        submitted_at: job.submitted_at,
        started_at: job.started_at,
        ended_at: job.ended_at,
        cursor: job.cursor,
        counts: job.counts,
        core_ms: job.core_ms,
        cost_micros: job.cost_micros.clone(),
    }
}

fn job_progress(job: &Job, now: Millis) -> JobProgress {
    JobProgress {
        id: job.id,
        state: job.state,
        started_at: job.started_at,
        ended_at: job.ended_at,
        cursor: job.cursor,
        counts: job.counts,
        core_ms: job.core_ms,
        cost_micros: job.cost_micros.clone(),
        at: now,
    }
}

fn job_view(job: &Job) -> JobView {
    JobView {
        id: job.id,
        name: job.name.clone(),
        owner: job.owner.clone(),
        state: job.state.name().to_string(),
        priority: job.priority.name().to_string(),
        cores_per_task: job.cores_per_task,
        retries: job.retries,
        tasks: job.counts,
        core_hours: job.core_ms as f64 / 3_600_000.0,
        cost: job.cost_micros.iter().map(|(c, m)| (c.clone(), *m as f64 / 1e6)).collect(),
        total_tasks: job.total(),
        spec: (&job.spec).into(),
        submitted_at: job.submitted_at,
        started_at: job.started_at,
        ended_at: job.ended_at,
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
