//! The agent's event loop: one task owns the agent's state; connections, messages from the
//! head node, process exits, transfers, timers and signals arrive as [`Event`]s, handled one at
//! a time. What becomes of each task the agent holds is its phase ([`crate::task_phase`]),
//! carried out by [`crate::task_lifecycle`].

use crate::event_sources::{spawn_connector, spawn_heartbeat, spawn_reader, spawn_signal_watch, websocket_url};
use crate::held_tasks::HeldTasks;
use crate::link::{Head, Link, Ws};
use crate::now_millis;
use crate::outbox::Outbox;
use crate::reaper::{Exit, Reaper};
use crate::task_dir::Slots;
use crate::task_phase::{PhaseEvent, not_run};
use crate::task_spec::TaskSpec;
use crate::task_user::TaskUser;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thunderhead_proto::{AgentMsg, InstallResult, PROTOCOL_VERSION, ServerMsg, TaskRef, TaskResult};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// No `Debug`: it may hold a join token.
#[derive(Clone)]
pub struct AgentConfig {
    /// The head node's URL, e.g. `http://127.0.0.1:7998`.
    pub server: String,
    pub name: String,
    pub cores: u32,
    /// The agent's own files: its node certificate and key, and the result outbox (mode 0700).
    pub work_dir: PathBuf,
    /// The cluster's certificate (PEM), to verify an `https://` head node with.
    pub ca_pem: Option<String>,
    /// Traded for a node certificate if the agent has none yet; the agent drops it once it
    /// has one.
    pub join_token: Option<String>,
    /// Where task directories (`tasks/`) and installed packages (`packages/`) go [default:
    /// the work directory].
    pub task_root: Option<PathBuf>,
    /// The Unix user tasks run as (see [`crate::task_user`]) [default: the agent's].
    pub run_as: Option<String>,
    /// When this machine is taken back (a batch allocation's end, less a margin), in
    /// milliseconds since the Unix epoch; the head node gives the node no task from then on.
    pub leaves_at: Option<u64>,
}

/// Signals that end a task from outside the agent when its machine is taken away (SIGHUP,
/// SIGINT, SIGKILL, SIGTERM).
const KILLS_FROM_OUTSIDE: [i32; 4] = [1, 2, 9, 15];

/// How long the result of a task killed from outside waits, in case the agent is stopping too.
const OUTSIDE_KILL_GRACE: Duration = Duration::from_secs(2);

/// What a refusal from the head node starts with.
const REFUSED: &str = "the head node refused this agent: ";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The head node's reason, without [`REFUSED`] in front (see [`AgentError::refused`]).
    #[error("the head node refused this agent: {0}")]
    Refused(String),
    #[error("{0}")]
    Setup(String),
}

impl AgentError {
    /// A refusal for `reason`, which some head nodes already begin with the words this error
    /// puts in front of it.
    pub fn refused(reason: &str) -> AgentError {
        AgentError::Refused(reason.strip_prefix(REFUSED).unwrap_or(reason).to_string())
    }
}

pub(crate) enum Event {
    /// A connection, and the head node's HTTP side it was made to.
    Connected(Box<Ws>, Box<Head>),
    /// Packages finished installing.
    Installed(Vec<InstallResult>),
    /// A task's inputs were fetched, or why not.
    StagedIn {
        task: TaskRef,
        outcome: Result<(), String>,
    },
    /// A task's outputs were uploaded (how many), or why not.
    StagedOut {
        task: TaskRef,
        outcome: Result<usize, String>,
    },
    Message(ServerMsg),
    Disconnected(String),
    Exited {
        task: TaskRef,
        exit: Option<Exit>,
    },
    /// A task killed from outside the agent, reported a moment later (see [`OUTSIDE_KILL_GRACE`]).
    ExitedLate {
        task: TaskRef,
        exit: Option<Exit>,
    },
    /// The processes an ended task left behind are gone (or could not all be killed).
    Swept(TaskRef),
    Heartbeat,
    Terminate,
}

/// The agent's state, owned by the event loop.
pub(crate) struct Agent {
    pub(crate) config: AgentConfig,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) reaper: Reaper,
    outbox: Outbox,
    /// Assigned tasks waiting for cores, in the order they came.
    pub(crate) queue: VecDeque<TaskSpec>,
    /// The tasks given cores, each in its phase, until their result is reported.
    pub(crate) tasks: HeldTasks,
    sink: Option<SplitSink<Ws, Message>>,
    outgoing: Vec<AgentMsg>,
    /// Results of this round, for the outbox.
    pub(crate) ended: Vec<TaskResult>,
    failures: u32,
    /// The address of the next connection attempt, in the list of server URLs.
    next_url: usize,
    /// The head node's HTTP side on the current connection, for transfers.
    pub(crate) head: Head,
    link: Link,
    /// The head node's heartbeat interval, from its welcome.
    heartbeat_every: Duration,
    last_beat: std::time::Instant,
    /// Measures the machine for each heartbeat.
    sampler: crate::metrics::Sampler,
    /// The directories reused by tasks that stage no files.
    pub(crate) slots: Slots,
    /// Where task directories (`tasks/`) and packages (`packages/`) are.
    pub(crate) task_root: PathBuf,
    /// Who tasks run as, if not the agent's user.
    pub(crate) task_user: Option<TaskUser>,
    /// The agent's variables that tasks get too (see [`crate::task_env`]).
    pub(crate) passed_on: HashMap<&'static str, String>,
}

/// Runs the agent until the head node stops its node or the process is told to terminate.
pub async fn run(mut config: AgentConfig) -> Result<(), AgentError> {
    // One URL, or the set's proxies separated by commas: the agent fails over between them.
    let ws_urls: Vec<String> = config
        .server
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(websocket_url)
        .collect::<Result<_, _>>()?;
    if ws_urls.is_empty() {
        return Err(AgentError::Setup("no server URL given (give --server URL)".into()));
    }
    let task_user = config.run_as.as_deref().map(TaskUser::resolve).transpose()?;
    // Tasks see paths under these (their `HOME`, the package root) whatever their directory.
    let absolute = |dir: &Path| std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    config.work_dir = absolute(&config.work_dir);
    let task_root = absolute(config.task_root.as_deref().unwrap_or(&config.work_dir));
    prepare_dirs(&config.work_dir, &task_root, task_user.as_ref())?;
    // The token is wanted once, to join; no copy of it stays in the agent.
    let join_token = config.join_token.take();
    let link = crate::joining::connect_link(&config, join_token, &ws_urls).await?;
    let tasks_dir = task_root.join("tasks");
    // Directories of tasks from an earlier run of this agent are stale.
    let _ = std::fs::remove_dir_all(&tasks_dir);
    let tasks_mode = if task_user.is_some() { 0o711 } else { 0o700 };
    create_dir_with_mode(&tasks_dir, tasks_mode)?;
    let outbox_dir = config.work_dir.join("outbox");
    let outbox = Outbox::open(&outbox_dir)
        .map_err(|e| AgentError::Setup(format!("cannot open the outbox {}: {e}", outbox_dir.display())))?;
    // Results hold the tails of tasks' output: theirs only.
    create_dir_with_mode(&outbox_dir, 0o700)?;
    let passed_on = std::iter::once("PATH")
        .chain(crate::task_env::PASSED_ON.iter().copied())
        .filter_map(|name| Some((name, std::env::var(name).ok()?)))
        .collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut agent = Agent {
        config,
        events: tx.clone(),
        reaper: Reaper::start(),
        outbox,
        queue: VecDeque::new(),
        tasks: HeldTasks::default(),
        sink: None,
        outgoing: Vec::new(),
        ended: Vec::new(),
        failures: 0,
        next_url: 0,
        head: Link::plain().head("http://unconnected").expect("a valid URL"),
        link,
        heartbeat_every: Duration::from_secs(10),
        last_beat: std::time::Instant::now(),
        sampler: crate::metrics::Sampler::default(),
        slots: Slots::default(),
        task_root,
        task_user,
        passed_on,
    };
    spawn_signal_watch(tx.clone());
    spawn_heartbeat(tx.clone());
    spawn_connector(agent.link.clone(), ws_urls[0].clone(), tx.clone(), Duration::ZERO);
    tracing::info!(name = %agent.config.name, cores = agent.config.cores, server = %agent.config.server, "agent started");
    while let Some(event) = rx.recv().await {
        let mut outcome = agent.handle(event, &ws_urls);
        while let (Ok(false), Ok(event)) = (&outcome, rx.try_recv()) {
            outcome = agent.handle(event, &ws_urls);
        }
        let stop = match outcome {
            Ok(stop) => stop,
            Err(e) => {
                // Refused: no task of ours may outlive the agent.
                agent.kill_all();
                let _ = std::fs::remove_dir_all(&tasks_dir);
                return Err(e);
            }
        };
        if stop {
            agent.kill_all();
            let _ = std::fs::remove_dir_all(&tasks_dir);
            tracing::info!("agent stopped");
            return Ok(());
        }
        agent.start_queued();
        agent.flush_results();
        agent.send_outgoing().await;
    }
    Ok(())
}

/// Creates the agent's directories with their modes: the work directory is the agent's alone
/// (0700); tasks running as another user pass through the directories above their own (0711)
/// and read the packages (0755), and must reach the task root but change nothing on the way.
fn prepare_dirs(work_dir: &Path, task_root: &Path, task_user: Option<&TaskUser>) -> Result<(), AgentError> {
    let Some(user) = task_user else {
        return create_dir_with_mode(work_dir, 0o700);
    };
    // What the agent makes for its tasks (packages, staged inputs) is readable by them.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let work_mode = if task_root == work_dir { 0o711 } else { 0o700 };
    create_dir_with_mode(work_dir, work_mode)?;
    create_dir_with_mode(task_root, 0o711)?;
    // The agent works by path below the task root (it makes and removes task directories,
    // unpacks packages): the task user must not be able to swap anything on the way there.
    if let Some((changeable, owner, mode)) = user.can_change(task_root) {
        return Err(AgentError::Setup(format!(
            "tasks run as \"{}\" (--run-as), who could change {}: it is owned by user id {owner} with mode {mode:o} (give --task-root a directory only root may change, below directories only root may change or sticky ones such as /tmp)",
            user.name,
            changeable.display()
        )));
    }
    create_dir_with_mode(&crate::install::package_root(task_root), 0o755)?;
    if let Some((blocked, mode)) = user.blocked_on(task_root) {
        return Err(AgentError::Setup(format!(
            "tasks run as \"{}\" (--run-as), who cannot reach {}: {} has mode {mode:o} (give --task-root a directory every user may pass through)",
            user.name,
            task_root.display(),
            blocked.display()
        )));
    }
    Ok(())
}

/// Creates `dir` (and its parents) and gives it `mode`.
fn create_dir_with_mode(dir: &Path, mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| AgentError::Setup(format!("cannot create {} with mode {mode:o}: {e}", dir.display())))
}

impl Agent {
    /// Handles one event; returns true when the agent must stop.
    fn handle(&mut self, event: Event, ws_urls: &[String]) -> Result<bool, AgentError> {
        match event {
            Event::Connected(ws, head) => {
                self.head = *head;
                // Results that ended in this round go to the outbox first, so the hello names
                // them as completed rather than leaving them out.
                self.flush_results();
                let (sink, stream) = (*ws).split();
                self.sink = Some(sink);
                spawn_reader(stream, self.events.clone());
                // Every task held, whatever its phase (being staged in or out too), and those queued.
                let running = self.tasks.tasks().chain(self.queue.iter().map(|spec| spec.task)).collect();
                let completed = self.outbox.pending().map(|r| r.task).collect();
                self.outgoing.push(AgentMsg::Hello {
                    protocol: PROTOCOL_VERSION,
                    agent_version: env!("CARGO_PKG_VERSION").to_string(),
                    name: self.config.name.clone(),
                    cores: self.config.cores,
                    running,
                    completed,
                    leaves_at: self.config.leaves_at,
                });
                let pending: Vec<TaskResult> = self.outbox.pending().cloned().collect();
                if !pending.is_empty() {
                    self.outgoing.push(AgentMsg::Results { results: pending });
                }
            }
            Event::Disconnected(reason) => {
                if self.sink.take().is_some() || self.failures == 0 {
                    tracing::warn!(%reason, "disconnected from the head node; reconnecting");
                }
                self.failures += 1;
                // Try the next address at once; back off only after a round of all of them.
                self.next_url = (self.next_url + 1) % ws_urls.len();
                let rounds = (self.failures as usize).div_ceil(ws_urls.len()) as u32;
                let delay = if (self.failures as usize) < ws_urls.len() {
                    Duration::from_millis(50)
                } else {
                    Duration::from_millis((100u64 << rounds.min(6)).min(5_000))
                };
                spawn_connector(self.link.clone(), ws_urls[self.next_url].clone(), self.events.clone(), delay);
            }
            Event::Message(msg) => return self.on_message(msg),
            Event::Installed(results) => {
                let failed = results.iter().filter(|r| r.error.is_some()).count();
                tracing::info!(packages = results.len(), failed, "packages installed");
                if self.sink.is_some() {
                    self.outgoing.push(AgentMsg::Installed { results });
                }
            }
            Event::Exited { task, exit: Some(Exit::Signal(signal)) }
                if KILLS_FROM_OUTSIDE.contains(&signal) && self.tasks.is_running(task) =>
            {
                // A batch system ends an allocation by signalling every process in it, tasks
                // included, as it tells the agent to stop. Held back a moment, such a task is
                // not reported if the agent stops meanwhile: the head node runs it again
                // elsewhere instead of counting it failed.
                let events = self.events.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(OUTSIDE_KILL_GRACE).await;
                    let _ = events.send(Event::ExitedLate { task, exit: Some(Exit::Signal(signal)) });
                });
            }
            Event::Exited { task, exit } | Event::ExitedLate { task, exit } => {
                self.step(task, PhaseEvent::Exited(exit))
            }
            Event::Swept(task) => self.step(task, PhaseEvent::Swept),
            Event::StagedIn { task, outcome } => self.step(task, PhaseEvent::StagedIn(outcome)),
            Event::StagedOut { task, outcome } => self.step(task, PhaseEvent::StagedOut(outcome)),
            Event::Heartbeat => {
                if self.sink.is_some() && self.last_beat.elapsed() >= self.heartbeat_every {
                    self.outgoing.push(AgentMsg::Heartbeat { metrics: self.sampler.sample() });
                    self.last_beat = std::time::Instant::now();
                }
            }
            Event::Terminate => return Ok(true),
        }
        Ok(false)
    }

    fn on_message(&mut self, msg: ServerMsg) -> Result<bool, AgentError> {
        match msg {
            ServerMsg::Welcome { node, heartbeat_secs } => {
                self.failures = 0;
                self.heartbeat_every = Duration::from_secs(heartbeat_secs.max(1) as u64);
                tracing::info!(%node, "registered with the head node");
            }
            ServerMsg::Refused { reason } => return Err(AgentError::refused(&reason)),
            ServerMsg::Assign { tasks } => {
                // The wire's assignment is read here, once; one the agent cannot run is reported
                // as not run rather than queued.
                for assignment in tasks {
                    let task = assignment.task;
                    match TaskSpec::from_wire(assignment) {
                        Ok(spec) => self.queue.push_back(spec),
                        Err(e) => {
                            tracing::warn!(%task, error = %e, "cannot run an assigned task");
                            let now = now_millis();
                            self.ended.push(not_run(task, now, now, format!("the task did not run: {e}"), None));
                        }
                    }
                }
            }
            ServerMsg::Cancel { tasks } => {
                for task in tasks {
                    self.queue.retain(|spec| spec.task != task);
                    if self.tasks.holds(task) {
                        self.step(task, PhaseEvent::Cancel);
                    }
                }
            }
            ServerMsg::Ack { tasks } => self.outbox.ack(&tasks),
            ServerMsg::Shutdown => return Ok(true),
            ServerMsg::Install { packages } => {
                let (base, work_dir, events) = (self.head.clone(), self.config.work_dir.clone(), self.events.clone());
                let package_root = crate::install::package_root(&self.task_root);
                tokio::task::spawn_blocking(move || {
                    let results = crate::install::install_all(&base, &work_dir, &package_root, packages);
                    let _ = events.send(Event::Installed(results));
                });
            }
        }
        Ok(false)
    }

    /// Makes the results that ended in this round durable, then queues them for sending.
    fn flush_results(&mut self) {
        if self.ended.is_empty() {
            return;
        }
        let results = std::mem::take(&mut self.ended);
        if let Err(e) = self.outbox.push(results.clone()) {
            tracing::error!(error = %e, "cannot write results to the outbox; sending them anyway");
        }
        if self.sink.is_some() {
            self.outgoing.push(AgentMsg::Results { results });
        }
    }

    async fn send_outgoing(&mut self) {
        let Some(sink) = &mut self.sink else {
            self.outgoing.clear();
            return;
        };
        for msg in self.outgoing.drain(..) {
            let frame = Message::text(thunderhead_proto::encode(&msg));
            if let Err(e) = sink.feed(frame).await {
                tracing::warn!(error = %e, "send failed");
                self.sink = None;
                return;
            }
        }
        if let Err(e) = sink.flush().await {
            tracing::warn!(error = %e, "send failed");
            self.sink = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_the_head_node_refused_this_agent_once() {
        for reason in ["its certificate was revoked", "the head node refused this agent: its certificate was revoked"] {
            let shown = AgentError::refused(reason).to_string();
            assert_eq!(shown, "the head node refused this agent: its certificate was revoked");
        }
    }
}
