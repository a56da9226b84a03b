//! The agent's main loop: one task owns the agent's state; connections, process exits, timers
//! and signals arrive as events.

use crate::link::{Head, Identity, Link, Ws};
use crate::now_millis;
use crate::outbox::Outbox;
use crate::reaper::{Exit, Reaper, Spare};
use crate::task_user::TaskUser;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use thunderhead_proto::{
    AGENT_PATH, AgentMsg, Assignment, InstallResult, OUTPUT_TAIL_BYTES, PROTOCOL_VERSION, ServerMsg, TaskRef,
    TaskResult,
};
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
}

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

enum Event {
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
        result: Box<TaskResult>,
        outcome: Result<usize, String>,
    },
    Message(ServerMsg),
    Disconnected(String),
    Exited {
        task: TaskRef,
        exit: Option<Exit>,
    },
    /// The processes an ended task left behind are gone (or could not all be killed).
    Swept(TaskRef),
    Heartbeat,
    Terminate,
}

struct RunningTask {
    pid: i32,
    started_at: u64,
    dir: TaskDir,
    /// The task's stdout and stderr files, open for reading their tails.
    output: (std::fs::File, std::fs::File),
    cores: u32,
    /// `(glob, prefix)` outputs and when to upload them.
    outputs: (Vec<(String, String)>, String),
}

struct Agent {
    config: AgentConfig,
    events: mpsc::UnboundedSender<Event>,
    reaper: Reaper,
    outbox: Outbox,
    queue: VecDeque<Assignment>,
    running: HashMap<TaskRef, RunningTask>,
    canceled: HashSet<TaskRef>,
    free_cores: u32,
    sink: Option<SplitSink<Ws, Message>>,
    outgoing: Vec<AgentMsg>,
    ended: Vec<TaskResult>,
    failures: u32,
    /// The address of the next connection attempt, in the list of server URLs.
    next_url: usize,
    /// Tasks whose inputs are being fetched, with the cores they hold.
    staging_in: HashMap<TaskRef, (Assignment, PathBuf, u32, u64)>,
    /// Tasks that ended and whose leftover processes are being killed, with how they ended.
    ending: HashMap<TaskRef, (RunningTask, Option<Exit>)>,
    /// Tasks that ended and whose outputs are being uploaded.
    uploading: HashSet<TaskRef>,
    /// The head node's HTTP side on the current connection, for transfers.
    head: Head,
    link: Link,
    /// The head node's heartbeat interval, from its welcome.
    heartbeat_every: Duration,
    last_beat: std::time::Instant,
    /// Measures the machine for each heartbeat.
    sampler: crate::metrics::Sampler,
    /// Slot directories free for the next task that stages no files.
    free_slots: Vec<PathBuf>,
    slots_made: u32,
    /// Where task directories (`tasks/`) and packages (`packages/`) are.
    task_root: PathBuf,
    /// Who tasks run as, if not the agent's user.
    task_user: Option<TaskUser>,
    /// The agent's variables that tasks get too (see [`crate::task_env`]).
    passed_on: HashMap<&'static str, String>,
}

/// Where a task runs: a directory the agent makes afresh for it, empty, and removes when the
/// task has ended (see [`fresh_dir`]). A task that stages no files runs in a slot directory,
/// one of a few names reused from task to task; a task that stages files gets a directory
/// named after it, removed after its outputs are up. Either way nothing of a task, not even its
/// output files, is left once its result is taken, and no task finds anything of another.
enum TaskDir {
    Slot(PathBuf),
    Own(PathBuf),
}

impl TaskDir {
    fn path(&self) -> &Path {
        match self {
            TaskDir::Slot(p) | TaskDir::Own(p) => p,
        }
    }
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
    let link = connect_link(&config, join_token, &ws_urls).await?;
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
        free_cores: config.cores,
        config,
        events: tx.clone(),
        reaper: Reaper::start(),
        outbox,
        queue: VecDeque::new(),
        running: HashMap::new(),
        canceled: HashSet::new(),
        sink: None,
        outgoing: Vec::new(),
        ended: Vec::new(),
        failures: 0,
        next_url: 0,
        staging_in: HashMap::new(),
        ending: HashMap::new(),
        uploading: HashSet::new(),
        head: Link::plain().head("http://unconnected").expect("a valid URL"),
        link,
        heartbeat_every: Duration::from_secs(10),
        last_beat: std::time::Instant::now(),
        sampler: crate::metrics::Sampler::default(),
        free_slots: Vec::new(),
        slots_made: 0,
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

/// `ws://host:port/agent/v1` → `http://host:port`.
fn http_base(ws_url: &str) -> String {
    let http = ws_url.replacen("ws://", "http://", 1).replacen("wss://", "https://", 1);
    http.strip_suffix(AGENT_PATH).unwrap_or(&http).to_string()
}

pub(crate) fn websocket_url(server: &str) -> Result<String, AgentError> {
    let rest = server
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| server.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .ok_or_else(|| AgentError::Setup(format!("server URL \"{server}\" must start with http:// or https://")))?;
    Ok(format!("{}{AGENT_PATH}", rest.trim_end_matches('/')))
}

fn spawn_connector(link: Link, url: String, events: mpsc::UnboundedSender<Event>, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let connected = match link.websocket(&url).await {
            Ok(ws) => link.head(&http_base(&url)).map(|head| (ws, head)),
            Err(e) => Err(e),
        };
        let _ = match connected {
            Ok((ws, head)) => events.send(Event::Connected(Box::new(ws), Box::new(head))),
            Err(e) => events.send(Event::Disconnected(e)),
        };
    });
}

const NODE_CERT: &str = "node.pem";
const NODE_KEY: &str = "node.key";

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

/// How this agent reaches its head node. Over TLS it shows the node certificate in its work
/// directory; without one it first trades its join token for one. The token is wiped after.
async fn connect_link(
    config: &AgentConfig,
    join_token: Option<String>,
    ws_urls: &[String],
) -> Result<Link, AgentError> {
    let files = (config.work_dir.join(NODE_CERT), config.work_dir.join(NODE_KEY));
    let link = establish(ws_urls, config.ca_pem.as_deref(), join_token.as_deref(), &config.name, Some(files)).await;
    if let Some(token) = join_token {
        crate::join_grant::wipe(token);
    }
    link
}

/// The link of an agent named `name`: plain for `ws://` head nodes; else TLS with the node
/// certificate in `files` (certificate, key), or a new one traded for `join_token` (and kept
/// in `files`, if given).
pub(crate) async fn establish(
    ws_urls: &[String],
    ca: Option<&str>,
    join_token: Option<&str>,
    name: &str,
    files: Option<(PathBuf, PathBuf)>,
) -> Result<Link, AgentError> {
    let tls = ws_urls.iter().any(|u| u.starts_with("wss://"));
    if !tls {
        return Ok(Link::plain());
    }
    let ca = ca.ok_or_else(|| {
        AgentError::Setup(
            "the head node speaks TLS: give its cluster certificate with --ca FILE (the ca.pem in its state directory)"
                .into(),
        )
    })?;
    if let Some((cert_path, key_path)) = &files
        && let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read_to_string(cert_path), std::fs::read_to_string(key_path))
    {
        return Link::tls(ca, Some(Identity { cert_pem, key_pem })).map_err(AgentError::Setup);
    }
    let token = join_token.map(str::to_string).ok_or_else(|| {
        AgentError::Setup(
            "this agent has no node certificate yet: give a join token with --join-token (an Administrator makes one with: thunderhead token create)"
                .to_string(),
        )
    })?;
    let anonymous = Link::tls(ca, None).map_err(AgentError::Setup)?;
    let request = thunderhead_proto::JoinRequest { token, name: name.to_string() };
    let mut last = String::new();
    for url in ws_urls {
        let head = anonymous.head(&http_base(url)).map_err(AgentError::Setup)?;
        let request = request.clone();
        let joined = tokio::task::spawn_blocking(move || join(&head, &request))
            .await
            .map_err(|e| AgentError::Setup(e.to_string()))?;
        match joined {
            Ok(reply) => {
                if let Some((cert_path, key_path)) = &files {
                    write_private(key_path, &reply.key)?;
                    std::fs::write(cert_path, &reply.certificate)
                        .map_err(|e| AgentError::Setup(format!("cannot write {}: {e}", cert_path.display())))?;
                    tracing::info!(certificate = %cert_path.display(), "joined the cluster");
                }
                let identity = Identity { cert_pem: reply.certificate, key_pem: reply.key };
                return Link::tls(ca, Some(identity)).map_err(AgentError::Setup);
            }
            Err(JoinError::Refused(reason)) => return Err(AgentError::refused(&reason)),
            Err(JoinError::Unreachable(e)) => last = e,
        }
    }
    Err(AgentError::Setup(format!("cannot join: {last}")))
}

enum JoinError {
    Refused(String),
    Unreachable(String),
}

fn join(head: &Head, request: &thunderhead_proto::JoinRequest) -> Result<thunderhead_proto::JoinReply, JoinError> {
    let url = format!("{}{}", head.base, thunderhead_proto::JOIN_PATH);
    let mut response = head
        .http
        .post(&url)
        .send_json(request)
        .map_err(|e| JoinError::Unreachable(format!("cannot reach the head node: {e}")))?;
    let body: serde_json::Value = response.body_mut().read_json().map_err(|e| JoinError::Unreachable(e.to_string()))?;
    if !response.status().is_success() {
        let reason = body.pointer("/error/message").and_then(|m| m.as_str()).unwrap_or("the join was refused");
        return Err(JoinError::Refused(reason.to_string()));
    }
    serde_json::from_value(body)
        .map_err(|e| JoinError::Unreachable(format!("the head node's answer is not a certificate: {e}")))
}

fn write_private(path: &Path, text: &str) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| AgentError::Setup(format!("cannot write {}: {e}", path.display())))
}

fn spawn_reader(mut stream: futures_util::stream::SplitStream<Ws>, events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            let text = match frame {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(e) => {
                    let _ = events.send(Event::Disconnected(format!("connection error: {e}")));
                    return;
                }
            };
            match thunderhead_proto::decode::<ServerMsg>(text.as_str()) {
                Ok(msg) => {
                    let _ = events.send(Event::Message(msg));
                }
                Err(e) => {
                    let _ = events.send(Event::Disconnected(format!("bad message from the head node: {e}")));
                    return;
                }
            }
        }
        let _ = events.send(Event::Disconnected("the head node closed the connection".into()));
    });
}

fn spawn_signal_watch(events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = events.send(Event::Terminate);
    });
}

fn spawn_heartbeat(events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            if events.send(Event::Heartbeat).is_err() {
                return;
            }
        }
    });
}

/// How long the agent keeps killing what an ended task left behind before it gives up (a
/// process stuck in the kernel, on a dead file server say, ends only when its call returns).
const STRAYS_END_WITHIN: Duration = Duration::from_secs(10);

/// Whether a task's directory was made and filled with its inputs before the task starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staged {
    Yes,
    No,
}

/// Makes `dir` afresh for a task: whatever is there goes (never following a link), and a new,
/// empty directory of the agent's (0700) takes its place, in `tasks/`, which only the agent may
/// write to. So nothing an earlier task left, nor a link planted by a process of the task user,
/// is ever in a task's directory; and the agent may give the directory to the task user
/// ([`TaskUser::give`]): no one could have swapped it.
fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    remove_dir(dir)?;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

/// Removes a directory and everything in it, without following links; one already gone is
/// no error.
fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// An output file of a slot reused by tasks of the agent's own user, emptied (0600; a link is
/// not followed).
fn reused_output_file(dir: &Path, name: &str) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(dir.join(name))
}

/// Empties a reused slot once its task has ended: everything the task left goes, and its output
/// files (whose tails its result holds) are cut to nothing, so a task that wrote much leaves no
/// disk used.
fn empty_slot(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let kind = entry.file_type()?;
        if (name == "stdout" || name == "stderr") && kind.is_file() {
            if entry.metadata()?.len() > 0 {
                std::fs::OpenOptions::new().write(true).open(entry.path())?.set_len(0)?;
            }
        } else if kind.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// A new, empty output file of a task (0600, the agent's): whatever was at its name goes, and
/// a link planted there is neither followed nor written through.
fn output_file(dir: &Path, name: &str) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path)
}

/// The last `OUTPUT_TAIL_BYTES` of a file, as text. Read at an offset: the file shares its
/// position with the task's descriptor.
fn tail(file: &std::fs::File) -> String {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(OUTPUT_TAIL_BYTES as u64);
    let mut bytes = vec![0; (len - from) as usize];
    let mut read = 0;
    while read < bytes.len() {
        match file.read_at(&mut bytes[read..], from + read as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    bytes.truncate(read);
    String::from_utf8_lossy(&bytes).into_owned()
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
                // Tasks being staged in or out are held too.
                let running = self
                    .running
                    .keys()
                    .chain(self.staging_in.keys())
                    .chain(self.ending.keys())
                    .chain(self.uploading.iter())
                    .copied()
                    .chain(self.queue.iter().map(|a| a.task))
                    .collect();
                let completed = self.outbox.pending().map(|r| r.task).collect();
                self.outgoing.push(AgentMsg::Hello {
                    protocol: PROTOCOL_VERSION,
                    agent_version: env!("CARGO_PKG_VERSION").to_string(),
                    name: self.config.name.clone(),
                    cores: self.config.cores,
                    running,
                    completed,
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
            Event::Exited { task, exit } => self.on_exit(task, exit),
            Event::Swept(task) => self.on_swept(task),
            Event::StagedIn { task, outcome } => self.on_staged_in(task, outcome),
            Event::StagedOut { result, outcome } => self.on_staged_out(*result, outcome),
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
            ServerMsg::Assign { tasks } => self.queue.extend(tasks),
            ServerMsg::Cancel { tasks } => {
                for task in tasks {
                    self.queue.retain(|a| a.task != task);
                    if let Some(r) = self.running.get(&task) {
                        let _ = killpg(Pid::from_raw(r.pid), Signal::SIGKILL);
                        self.canceled.insert(task);
                    }
                    if self.staging_in.contains_key(&task) {
                        self.canceled.insert(task);
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

    fn start_queued(&mut self) {
        while let Some(next) = self.queue.front() {
            // A task larger than the node runs alone rather than never.
            let fits = next.cores <= self.free_cores || (self.running.is_empty() && next.cores > self.config.cores);
            if !fits {
                break;
            }
            let a = self.queue.pop_front().expect("front exists");
            self.start(a);
        }
    }

    fn start(&mut self, a: Assignment) {
        let started_at = now_millis();
        let cores = a.cores.min(self.free_cores);
        self.free_cores -= cores;
        if a.inputs.is_empty() && a.outputs.is_empty() {
            let slot = self.free_slots.pop().unwrap_or_else(|| {
                self.slots_made += 1;
                self.task_root.join("tasks").join(format!("slot-{}", self.slots_made))
            });
            self.launch(a, TaskDir::Slot(slot), Staged::No, cores, started_at);
            return;
        }
        let dir = self.task_root.join("tasks").join(format!("{}.{}.{}", a.task.job, a.task.index, a.task.attempt));
        if a.inputs.is_empty() {
            self.launch(a, TaskDir::Own(dir), Staged::No, cores, started_at);
            return;
        }
        // Inputs first, off the event loop; the task starts when they are in.
        let (base, inputs, events, task) = (self.head.clone(), a.inputs.clone(), self.events.clone(), a.task);
        let fetch_dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = fresh_dir(&fetch_dir)
                .map_err(|e| format!("cannot create {}: {e}", fetch_dir.display()))
                .and_then(|()| crate::staging::fetch_inputs(&base, &fetch_dir, &inputs));
            let _ = events.send(Event::StagedIn { task, outcome });
        });
        self.staging_in.insert(a.task, (a, dir, cores, started_at));
    }

    /// The inputs of a task are in (or could not be fetched).
    fn on_staged_in(&mut self, task: TaskRef, outcome: Result<(), String>) {
        let Some((a, dir, cores, started_at)) = self.staging_in.remove(&task) else { return };
        if self.canceled.remove(&task) {
            self.free_cores += cores;
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        match outcome {
            Ok(()) => self.launch(a, TaskDir::Own(dir), Staged::Yes, cores, started_at),
            Err(e) => {
                self.free_cores += cores;
                let _ = std::fs::remove_dir_all(&dir);
                self.ended.push(TaskResult {
                    task,
                    exit_code: None,
                    message: Some("the task did not run".into()),
                    started_at,
                    ended_at: now_millis(),
                    stdout: String::new(),
                    stderr: String::new(),
                    staging_error: Some(e),
                });
            }
        }
    }

    fn launch(&mut self, a: Assignment, dir: TaskDir, staged: Staged, cores: u32, started_at: u64) {
        let path = dir.path();
        // Tasks of the agent's own user reuse a slot as it is (they could reach it anyway), which
        // costs a fraction of making it anew; another user's tasks get a directory made afresh.
        let reuse = self.task_user.is_none() && matches!(dir, TaskDir::Slot(_));
        let made = match staged {
            Staged::Yes => Ok(()),
            Staged::No if reuse => std::fs::create_dir_all(path),
            Staged::No => fresh_dir(path),
        };
        let spawned = made.and_then(|()| {
            let open = if reuse { reused_output_file } else { output_file };
            let (stdout, stderr) = (open(path, "stdout")?, open(path, "stderr")?);
            let output = (stdout.try_clone()?, stderr.try_clone()?);
            // The directory is the task user's from here on; what the agent put in it stays
            // the agent's.
            if let Some(user) = &self.task_user {
                user.give(path)?;
            }
            let packages = crate::install::package_root(&self.task_root);
            let env = crate::task_env::task_env(&a.env, &packages, path, |name| self.passed_on.get(name).cloned());
            let program = crate::task_env::find_program(&a.command[0], &env, path);
            let mut command = std::process::Command::new(program);
            command
                .arg0(&a.command[0])
                .args(&a.command[1..])
                .env_clear()
                .envs(env)
                .current_dir(path)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .process_group(0);
            if let Some(user) = &self.task_user {
                // Started by root, the process also loses root's supplementary groups.
                command.uid(user.uid).gid(user.gid);
            }
            self.reaper.spawn(|| command.spawn()).map(|(pid, exited)| (pid, exited, output))
        });
        match spawned {
            Ok((pid, exited, output)) => {
                let outputs = (a.outputs.clone(), a.upload_on.clone());
                self.running.insert(a.task, RunningTask { pid, started_at, dir, output, cores, outputs });
                let events = self.events.clone();
                let task = a.task;
                tokio::spawn(async move {
                    let exit = exited.await.ok();
                    let _ = events.send(Event::Exited { task, exit });
                });
            }
            Err(e) => {
                self.free_cores += cores;
                self.release(dir);
                self.ended.push(TaskResult {
                    task: a.task,
                    exit_code: None,
                    message: Some(format!("cannot start \"{}\": {e}", a.command[0])),
                    started_at,
                    ended_at: now_millis(),
                    stdout: String::new(),
                    stderr: String::new(),
                    staging_error: None,
                });
            }
        }
    }

    fn on_exit(&mut self, task: TaskRef, exit: Option<Exit>) {
        let Some(r) = self.running.remove(&task) else {
            return;
        };
        // Whatever the task left running ends with it: its process group, and processes that
        // left the group (see [`crate::stray`]). Its result waits until they are gone, so none
        // can touch its outputs while they go up, or the next task in its slot.
        let _ = killpg(Pid::from_raw(r.pid), Signal::SIGKILL);
        if self.reaper.no_strays(Spare::RunningTasks) {
            self.finish(task, r, exit);
            return;
        }
        self.ending.insert(task, (r, exit));
        let (reaper, events) = (self.reaper.clone(), self.events.clone());
        tokio::task::spawn_blocking(move || {
            if !reaper.end_strays(Spare::RunningTasks, STRAYS_END_WITHIN) {
                tracing::warn!(%task, "processes the task left behind have not ended after a kill");
            }
            let _ = events.send(Event::Swept(task));
        });
    }

    /// The processes an ended task left behind are gone: its result can go.
    fn on_swept(&mut self, task: TaskRef) {
        if let Some((r, exit)) = self.ending.remove(&task) {
            self.finish(task, r, exit);
        }
    }

    /// A task ended and left no process behind: its cores are free, and its result goes (after
    /// its outputs, if any).
    fn finish(&mut self, task: TaskRef, r: RunningTask, exit: Option<Exit>) {
        self.free_cores += r.cores;
        if self.canceled.remove(&task) {
            self.release(r.dir);
            return;
        }
        let (exit_code, message) = match exit {
            Some(Exit::Code(code)) => (Some(code), None),
            Some(Exit::Signal(signal)) => (None, Some(format!("killed by signal {signal}"))),
            None => (None, Some("the agent lost track of the process".to_string())),
        };
        let result = TaskResult {
            task,
            exit_code,
            message,
            started_at: r.started_at,
            ended_at: now_millis(),
            stdout: tail(&r.output.0),
            stderr: tail(&r.output.1),
            staging_error: None,
        };
        let (outputs, upload_on) = r.outputs;
        let wanted = match upload_on.as_str() {
            "always" => true,
            "failure" => exit_code != Some(0),
            _ => exit_code == Some(0),
        };
        if outputs.is_empty() || !wanted {
            self.ended.push(result);
            self.release(r.dir);
            return;
        }
        // The directory is the agent's again while its outputs go up: the next task to run as
        // the task user (on the cores this one frees) cannot change them.
        if let Some(user) = &self.task_user
            && let Err(e) = user.take_back(r.dir.path())
        {
            tracing::warn!(%task, error = %e, "cannot take a task's directory back before uploading its outputs");
        }
        // Outputs go up off the event loop; the result follows them.
        self.uploading.insert(task);
        let (base, events, dir) = (self.head.clone(), self.events.clone(), r.dir.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            let outcome = crate::staging::upload_outputs(&base, &dir, &outputs);
            let _ = std::fs::remove_dir_all(&dir);
            let _ = events.send(Event::StagedOut { result: Box::new(result), outcome });
        });
    }

    /// A task's outputs are up (or could not be uploaded): its result can go.
    fn on_staged_out(&mut self, mut result: TaskResult, outcome: Result<usize, String>) {
        self.uploading.remove(&result.task);
        if let Err(e) = outcome {
            result.staging_error = Some(e);
        }
        self.ended.push(result);
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

    /// A task is done with its directory: it is removed, everything the task left in it too
    /// (its output files included: its result holds their tails), so a task that wrote much
    /// leaves no disk used. A slot's name is free for the next task.
    fn release(&mut self, dir: TaskDir) {
        match dir {
            TaskDir::Own(path) => {
                let _ = std::fs::remove_dir_all(path);
            }
            TaskDir::Slot(path) if self.task_user.is_none() => match empty_slot(&path) {
                Ok(()) => self.free_slots.push(path),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot empty a task directory; not reusing it")
                }
            },
            TaskDir::Slot(path) => match remove_dir(&path) {
                Ok(()) => self.free_slots.push(path),
                // A slot that cannot be removed is not reused.
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove a task directory; not reusing it")
                }
            },
        }
    }

    /// Kills every process of every task, those that left their task's process group too.
    fn kill_all(&mut self) {
        for r in self.running.values() {
            let _ = killpg(Pid::from_raw(r.pid), Signal::SIGKILL);
        }
        if !self.reaper.end_strays(Spare::Nothing, STRAYS_END_WITHIN) {
            tracing::warn!("processes of tasks have not ended after a kill");
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

    #[test]
    fn server_urls_become_websocket_urls() {
        assert_eq!(websocket_url("http://127.0.0.1:7998").unwrap(), "ws://127.0.0.1:7998/agent/v1");
        assert_eq!(websocket_url("https://head:443/").unwrap(), "wss://head:443/agent/v1");
        assert!(websocket_url("ftp://x").unwrap_err().to_string().contains("http://"));
    }
}
