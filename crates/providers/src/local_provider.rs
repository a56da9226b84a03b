//! The `local` provider: each burst node is a `thunderhead agent` process on this machine with a
//! directory of its own, like a VM with its disk.
//!
//! The agent runs in its own process group, so it outlives the head node (a restarted head node
//! finds it again through the handle: process id, its start time, and its directory). Removing
//! the node ends the agent (SIGTERM, then SIGKILL) and deletes its directory.
//!
//! An agent (or proxy) inherits nothing of the head node's environment but [`PASSED_ON`]; it
//! gets its join grant on its standard input. A head node running as root runs the tasks of its
//! local nodes as another user ([`TaskIsolation`]): the node directory (node key, outbox, log)
//! stays in the head node's private state directory, and the tasks' directories and packages go
//! to a **task root** of the node's elsewhere, which the task user can reach.

use crate::{
    BoxFuture, Check, DeployRequest, ExternalStatus, HANDLE_VERSION, Provider, ProviderError, ProxyRequest, Result,
};
use crate::{SettingKind, SettingSpec};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use thunderhead_core::template::Template;

#[derive(Clone)]
pub struct LocalProvider {
    agent_program: PathBuf,
    default_root: PathBuf,
    isolation: Option<TaskIsolation>,
}

/// The head node's variables an agent or proxy it starts gets too, when they are set: nothing
/// else of the head node's environment (its access file, tokens, credentials) reaches them.
pub const PASSED_ON: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ", "THUNDERHEAD_LOG"];

/// Who the tasks of local nodes run as, and under which directory their task roots go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIsolation {
    pub user: String,
    pub root: PathBuf,
}

/// The file in a node directory that names the node's task root, if it has one of its own.
pub const TASK_ROOT_FILE: &str = "task-root";

/// The head node's variable naming the user tasks of local nodes run as when it runs as root.
pub const TASK_USER_ENV: &str = "THUNDERHEAD_TASK_USER";
/// The head node's variable naming the directory the task roots of local nodes go under.
pub const TASK_ROOT_ENV: &str = "THUNDERHEAD_TASK_ROOT";

impl TaskIsolation {
    /// The isolation of a head node running as root: tasks run as `THUNDERHEAD_TASK_USER`
    /// (default `nobody`; `root` turns isolation off) under `THUNDERHEAD_TASK_ROOT` (default
    /// `TMPDIR/thunderhead-tasks`). None for a head node that is not root: it cannot change user.
    pub fn of_this_process() -> Option<TaskIsolation> {
        TaskIsolation::decide(
            nix::unistd::geteuid().is_root(),
            std::env::var(TASK_USER_ENV).ok(),
            std::env::var_os(TASK_ROOT_ENV).map(PathBuf::from),
            std::env::temp_dir(),
        )
    }

    fn decide(root: bool, user: Option<String>, dir: Option<PathBuf>, tmp: PathBuf) -> Option<TaskIsolation> {
        let user = user.filter(|u| !u.is_empty()).unwrap_or_else(|| "nobody".to_string());
        if !root || user == "root" {
            return None;
        }
        let root = dir.filter(|d| d.is_absolute()).unwrap_or_else(|| tmp.join("thunderhead-tasks"));
        Some(TaskIsolation { user, root })
    }

    /// The task root of the node whose directory is `node_dir`: named after the node, and told
    /// from the same node of another head node on this machine by a hash of its directory.
    fn task_root(&self, node_dir: &Path) -> PathBuf {
        let name = node_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let hash = crate::sim_provider::fnv1a(&node_dir.display().to_string());
        self.root.join(format!("{hash:016x}-{name}"))
    }
}

/// What the head node keeps to find a local node again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalHandle {
    pub v: u64,
    pub pid: i32,
    /// Start time of the process in clock ticks since boot: tells our agent from a process
    /// that reuses its id.
    pub start_ticks: u64,
    pub dir: PathBuf,
    /// The node's task root, when its tasks run as another user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root: Option<PathBuf>,
}

impl LocalProvider {
    pub fn new(agent_program: PathBuf, default_root: PathBuf) -> LocalProvider {
        LocalProvider { agent_program, default_root, isolation: None }
    }

    /// Runs the tasks of the nodes it deploys as `isolation` says.
    pub fn isolated(mut self, isolation: Option<TaskIsolation>) -> LocalProvider {
        self.isolation = isolation;
        self
    }

    pub(crate) fn root(&self, template: &Template) -> PathBuf {
        match template.settings.get("work_root").and_then(|v| v.as_str()) {
            Some(root) => PathBuf::from(root),
            None => self.default_root.clone(),
        }
    }

    /// Starts the agent of `request`'s node in a fresh node directory, connecting to
    /// `server_url` (one URL, or the set's proxies separated by commas).
    pub(crate) fn spawn(&self, request: &DeployRequest, server_url: &str) -> Result<LocalHandle> {
        let dir = self.root(&request.template).join(&request.node);
        let dir_arg = dir.display().to_string();
        let cores = request.size.cores().to_string();
        let mut args: Vec<String> =
            ["agent", "--server", server_url, "--name", &request.node, "--cores", &cores, "--work-dir", &dir_arg]
                .map(String::from)
                .to_vec();
        let task_root = match &self.isolation {
            Some(isolation) => {
                let task_root = isolation.task_root(&dir);
                make_task_root(&isolation.root, &task_root)?;
                args.extend(["--run-as".into(), isolation.user.clone(), "--task-root".into()]);
                args.push(task_root.display().to_string());
                Some(task_root)
            }
            None => None,
        };
        if request.join.is_some() {
            args.push("--join-from-stdin".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let grant = request.join.as_ref().map(|g| g.to_document());
        let mut handle = self.launch(&dir, "agent", &args, grant.as_deref())?;
        if let Some(task_root) = &task_root {
            // Where to look for the node's tasks, for whoever looks in the node directory.
            let _ = std::fs::write(dir.join(TASK_ROOT_FILE), task_root.display().to_string());
        }
        handle.task_root = task_root;
        Ok(handle)
    }

    /// [`LocalProvider::spawn`] off the async runtime: starting a process and creating its
    /// directory block.
    pub(crate) async fn spawn_blocking(&self, request: DeployRequest, server_url: String) -> Result<LocalHandle> {
        let local = self.clone();
        tokio::task::spawn_blocking(move || local.spawn(&request, &server_url))
            .await
            .map_err(|e| ProviderError::transient(format!("the deployment was interrupted: {e}")))?
    }

    /// Starts a proxy relaying to `request.server_url` in a fresh directory, and waits for the
    /// address it listens on.
    pub(crate) fn spawn_proxy(&self, request: &ProxyRequest) -> Result<(LocalHandle, String)> {
        let dir = self.root(&request.template).join(&request.proxy);
        let address_file = dir.join("address");
        let listen = match &request.address {
            Some(url) => url.trim_start_matches("http://").trim_start_matches("https://").to_string(),
            None => "127.0.0.1:0".to_string(),
        };
        let file_arg = address_file.display().to_string();
        let args = ["proxy", "--server", &request.server_url, "--listen", &listen, "--address-file", &file_arg];
        let handle = self.launch(&dir, "proxy", &args, None)?;
        for _ in 0..500 {
            if let Ok(url) = std::fs::read_to_string(&address_file)
                && !url.trim().is_empty()
            {
                return Ok((handle, url.trim().to_string()));
            }
            if !alive(&handle) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
        let last = log.lines().last().unwrap_or("no output").to_string();
        kill_now(&handle);
        Err(ProviderError::transient(format!("the proxy did not start listening: {last}")))
    }

    /// Starts `role` (`agent` or `proxy`) of this program in `dir`, in its own process group,
    /// logging to `dir/ROLE.log` (0600) and recording its pid in `dir/ROLE.pid`. The process
    /// gets `input` on its standard input, and of the head node's environment only
    /// [`PASSED_ON`].
    fn launch(&self, dir: &Path, role: &str, args: &[&str], input: Option<&[u8]>) -> Result<LocalHandle> {
        if dir.exists() {
            // A process an earlier deployment left here (the head node stopped before it
            // recorded the deployment) would otherwise outlive its directory.
            end_recorded(dir, role);
            std::fs::remove_dir_all(dir).map_err(|e| {
                ProviderError::fatal(format!("cannot clear the old node directory {}: {e}", dir.display()))
            })?;
        }
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| ProviderError::fatal(format!("cannot create the node directory {}: {e}", dir.display())))?;
        let log_path = dir.join(format!("{role}.log"));
        let log = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|e| ProviderError::fatal(format!("cannot create {}: {e}", log_path.display())))?;
        let log2 = log.try_clone().map_err(|e| ProviderError::fatal(e.to_string()))?;
        let mut child = std::process::Command::new(&self.agent_program)
            .args(args)
            .env_clear()
            .envs(PASSED_ON.iter().filter_map(|name| Some((*name, std::env::var_os(name)?))))
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(log)
            .stderr(log2)
            .current_dir(dir)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                ProviderError::fatal(format!("cannot start the {role} {}: {e}", self.agent_program.display()))
            })?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            // A few KiB fit the pipe: this does not wait for the agent. An agent that is gone
            // already shows below.
            let _ = stdin.write_all(input);
        }
        let pid = child.id() as i32;
        // Reap the process when it ends so it does not linger as a zombie of the head node.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let start_ticks = start_ticks(pid).ok_or_else(|| {
            ProviderError::fatal(format!(
                "the {role} (pid {pid}) exited right after it started; see {}",
                log_path.display()
            ))
        })?;
        let pid_path = dir.join(format!("{role}.pid"));
        std::fs::write(&pid_path, pid.to_string())
            .map_err(|e| ProviderError::fatal(format!("cannot write {}: {e}", pid_path.display())))?;
        Ok(LocalHandle { v: HANDLE_VERSION, pid, start_ticks, dir: dir.to_path_buf(), task_root: None })
    }
}

/// Makes `task_root`, empty and root's, under `parent`: the directory every task root of this
/// machine goes under, which must be root's and writable by no one else (else another user
/// could put a link there for the agent to follow). Both are passable (0711), not listable.
fn make_task_root(parent: &Path, task_root: &Path) -> Result<()> {
    let fail = |what: String| ProviderError::fatal(what);
    match std::fs::DirBuilder::new().recursive(true).mode(0o711).create(parent) {
        Ok(()) => {}
        Err(e) => return Err(fail(format!("cannot create the task directory root {}: {e}", parent.display()))),
    }
    let meta = std::fs::symlink_metadata(parent).map_err(|e| fail(format!("cannot read {}: {e}", parent.display())))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(fail(format!(
            "{} must be a directory of user id {me} that no one else may write to (it is owned by {}, mode {:o}); remove it, or set {TASK_ROOT_ENV} to another directory",
            parent.display(),
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    match std::fs::remove_dir_all(task_root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(fail(format!("cannot clear the old task root {}: {e}", task_root.display())));
        }
        _ => {}
    }
    std::fs::DirBuilder::new()
        .mode(0o711)
        .create(task_root)
        .and_then(|()| std::fs::set_permissions(task_root, std::fs::Permissions::from_mode(0o711)))
        .map_err(|e| fail(format!("cannot create the task root {}: {e}", task_root.display())))
}

/// Kills the process recorded in `dir/ROLE.pid` if it still runs there (its command line names
/// the directory, so a reused pid is left alone).
fn end_recorded(dir: &Path, role: &str) {
    let Some(pid) = std::fs::read_to_string(dir.join(format!("{role}.pid"))).ok().and_then(|p| p.trim().parse().ok())
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let dir_text = dir.display().to_string();
    if String::from_utf8_lossy(&cmdline).contains(&dir_text) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn kill_now(handle: &LocalHandle) {
    if alive(handle) {
        let _ = killpg(Pid::from_raw(handle.pid), Signal::SIGKILL);
    }
}

/// The start time of a live, non-zombie process, from `/proc/PID/stat`.
fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // Fields after the command: state is the 1st (field 3 of the file), starttime the 20th (field 22).
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

pub(crate) fn alive(handle: &LocalHandle) -> bool {
    start_ticks(handle.pid) == Some(handle.start_ticks)
}

pub(crate) fn parse(handle: &serde_json::Value) -> Result<LocalHandle> {
    let newer = format!("run the newer head node, or stop the node's agent by hand: {handle}");
    crate::read_handle(handle, "local", HANDLE_VERSION, &newer)
}

async fn end_process(handle: &LocalHandle) {
    if !alive(handle) {
        return;
    }
    let group = Pid::from_raw(handle.pid);
    let _ = killpg(group, Signal::SIGTERM);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !alive(handle) {
            return;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
}

fn writable(dir: &Path) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(".thunderhead-probe");
    std::fs::write(&probe, b"ok").map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// What the `local` provider declares.
pub static INFO: crate::ProviderInfo = crate::ProviderInfo {
    name: "local",
    summary: "agent processes on the head node's own machine, one node directory each",
    settings: &[SettingSpec::new("work_root", SettingKind::File, "a directory where node directories are created")
        .or("the nodes directory in the head node's state directory")],
    deployable: true,
    proxies: true,
    sizes: None,
    handle_version: crate::HANDLE_VERSION,
    gone: "the agent process exited (see agent.log in the node directory)",
};

impl Provider for LocalProvider {
    fn info(&self) -> &'static crate::ProviderInfo {
        &INFO
    }

    fn validate<'a>(&'a self, set: &'a crate::Set) -> BoxFuture<'a, Vec<Check>> {
        let template = &set.template;
        Box::pin(async move {
            let program = &self.agent_program;
            let agent = match std::fs::metadata(program) {
                Ok(m) if m.is_file() => {
                    Check { name: "agent program".into(), ok: true, detail: program.display().to_string() }
                }
                Ok(_) => Check {
                    name: "agent program".into(),
                    ok: false,
                    detail: format!("{} is not a file", program.display()),
                },
                Err(e) => {
                    Check { name: "agent program".into(), ok: false, detail: format!("{}: {e}", program.display()) }
                }
            };
            let root = self.root(template);
            let disk = match writable(&root) {
                Ok(()) => Check { name: "node directories".into(), ok: true, detail: root.display().to_string() },
                Err(e) => Check { name: "node directories".into(), ok: false, detail: e },
            };
            vec![agent, disk]
        })
    }

    fn deploy<'a>(&'a self, request: &'a DeployRequest) -> BoxFuture<'a, Result<serde_json::Value>> {
        Box::pin(async move {
            let handle = self.spawn_blocking(request.clone(), request.server_url.clone()).await?;
            Ok(serde_json::to_value(handle).expect("handles serialise"))
        })
    }

    fn deploy_proxy<'a>(&'a self, request: &'a ProxyRequest) -> BoxFuture<'a, Result<(serde_json::Value, String)>> {
        Box::pin(async move {
            // Starting a process and waiting for its address blocks: keep it off the runtime.
            let (local, request) = (self.clone(), request.clone());
            let (handle, url) = tokio::task::spawn_blocking(move || local.spawn_proxy(&request))
                .await
                .map_err(|e| ProviderError::transient(format!("the proxy start was interrupted: {e}")))??;
            Ok((serde_json::to_value(handle).expect("handles serialise"), url))
        })
    }

    fn status<'a>(
        &'a self,
        _set: &'a crate::Set,
        handles: &'a [serde_json::Value],
    ) -> BoxFuture<'a, Vec<Result<ExternalStatus>>> {
        Box::pin(async move {
            handles
                .iter()
                .map(|h| parse(h).map(|h| if alive(&h) { ExternalStatus::Running } else { ExternalStatus::Gone }))
                .collect()
        })
    }

    fn remove<'a>(&'a self, _set: &'a crate::Set, handle: &'a serde_json::Value) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let handle = parse(handle)?;
            end_process(&handle).await;
            // The task root first: the node directory names it until it is gone.
            for dir in handle.task_root.iter().chain([&handle.dir]) {
                match std::fs::remove_dir_all(dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(ProviderError::transient(format!("cannot remove {}: {e}", dir.display())));
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kills a process group when the test ends, pass or fail.
    struct End(i32);

    impl Drop for End {
        fn drop(&mut self) {
            let _ = killpg(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }

    #[test]
    fn our_own_process_has_a_start_time_and_a_dead_pid_has_none() {
        assert!(start_ticks(std::process::id() as i32).is_some());
        assert_eq!(start_ticks(i32::MAX), None);
    }

    #[test]
    fn a_deployment_the_head_node_never_recorded_is_ended_when_the_node_deploys_again() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in that keeps its arguments (and so its directory) in its command line.
        let program = dir.path().join("stand-in");
        std::fs::write(&program, "#!/bin/sh\nsleep 300\n").unwrap();
        std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let p = LocalProvider::new(program, dir.path().join("nodes"));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let request = crate::contract::request("local", "LocalCN-0001");
        // The first handle is lost, as when the head node is killed before it commits it.
        let lost = parse(&rt.block_on(p.deploy(&request)).unwrap()).unwrap();
        let _end = End(lost.pid);
        assert!(alive(&lost));
        let kept = rt.block_on(p.deploy(&request)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(&lost) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(&lost), "the unrecorded agent was ended");
        rt.block_on(p.remove(&crate::contract::set("local"), &kept)).unwrap();
    }

    #[test]
    fn only_a_head_node_running_as_root_runs_tasks_as_another_user() {
        let tmp = PathBuf::from("/tmp");
        assert_eq!(TaskIsolation::decide(false, None, None, tmp.clone()), None);
        assert_eq!(
            TaskIsolation::decide(true, None, None, tmp.clone()),
            Some(TaskIsolation { user: "nobody".into(), root: "/tmp/thunderhead-tasks".into() })
        );
        let chosen = TaskIsolation::decide(true, Some("hpc".into()), Some("/srv/tasks".into()), tmp.clone());
        assert_eq!(chosen, Some(TaskIsolation { user: "hpc".into(), root: "/srv/tasks".into() }));
        assert_eq!(TaskIsolation::decide(true, Some("root".into()), None, tmp.clone()), None, "root turns it off");
        let relative = TaskIsolation::decide(true, None, Some("tasks".into()), tmp).unwrap();
        assert_eq!(relative.root, PathBuf::from("/tmp/thunderhead-tasks"), "a relative root is not used");
    }

    #[test]
    fn the_same_node_of_two_head_nodes_gets_two_task_roots() {
        let isolation = TaskIsolation { user: "nobody".into(), root: "/tmp/t".into() };
        let a = isolation.task_root(Path::new("/a/state/nodes/LocalCN-0001"));
        let b = isolation.task_root(Path::new("/b/state/nodes/LocalCN-0001"));
        assert_ne!(a, b);
        assert!(a.starts_with("/tmp/t") && a.to_string_lossy().ends_with("-LocalCN-0001"), "{}", a.display());
    }

    #[test]
    fn an_agent_gets_its_grant_on_standard_input_and_nothing_of_the_head_node_s_environment() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in that keeps what it was given: arguments, standard input, environment.
        let program = dir.path().join("stand-in");
        let script = "#!/bin/sh\necho \"$@\" > args\ncat > input\nexport -p > env\nexec sleep 300\n";
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let isolation = TaskIsolation { user: "nobody".into(), root: dir.path().join("task-roots") };
        let p = LocalProvider::new(program, dir.path().join("nodes")).isolated(Some(isolation));
        let mut request = crate::contract::request("local", "LocalCN-0001");
        let grant = crate::JoinGrant { ca_pem: "-----BEGIN CERTIFICATE-----".into(), token: "thj1_id_secret".into() };
        request.join = Some(grant.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let handle = parse(&rt.block_on(p.deploy(&request)).unwrap()).unwrap();
        let _end = End(handle.pid);
        let node = dir.path().join("nodes/LocalCN-0001");
        let read = |name: &str| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match std::fs::read_to_string(node.join(name)) {
                    Ok(text) if !text.is_empty() => return text,
                    _ if std::time::Instant::now() > deadline => panic!("the stand-in wrote no {name}"),
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        };
        let env = read("env");
        let args = read("args");
        assert_eq!(thunderhead_agent::JoinGrant::read_from(read("input").as_bytes()).unwrap(), grant);
        assert!(args.contains("--join-from-stdin") && !args.contains("thj1_"), "{args}");
        let task_root = handle.task_root.clone().expect("isolated nodes have a task root");
        assert!(args.contains(&format!("--run-as nobody --task-root {}", task_root.display())), "{args}");
        assert_eq!(read(TASK_ROOT_FILE), task_root.display().to_string(), "the node directory names its task root");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!((mode(&node), mode(&task_root)), (0o700, 0o711));
        assert_eq!(mode(&node.join("agent.log")), 0o600);
        // The shell adds PWD, SHLVL and OLDPWD of its own; nothing else is there but what is passed on.
        for line in env.lines() {
            let name = line.trim_start_matches("export ").split('=').next().unwrap();
            assert!(PASSED_ON.contains(&name) || ["PWD", "SHLVL", "OLDPWD"].contains(&name), "{name} in\n{env}");
        }
        assert!(!env.contains("thj1_") && !env.contains("CERTIFICATE"), "{env}");
        rt.block_on(p.remove(&crate::contract::set("local"), &serde_json::to_value(&handle).unwrap())).unwrap();
        assert!(!node.exists() && !task_root.exists(), "removing the node removes its task root too");
    }

    #[test]
    fn a_handle_of_a_newer_build_is_refused_with_its_version() {
        let newer = serde_json::json!({"v": HANDLE_VERSION + 1, "pid": 1, "start_ticks": 0, "dir": "/x"});
        let err = parse(&newer).unwrap_err();
        assert!(err.message.contains("newer than this build reads"), "{err:?}");
        let current = serde_json::json!({"v": HANDLE_VERSION, "pid": 1, "start_ticks": 0, "dir": "/x"});
        assert_eq!(parse(&current).unwrap().pid, 1);
    }

    crate::provider_contract_tests!(deploys, |dir: &std::path::Path| {
        // A stand-in agent: a long sleep, started the way the real agent is.
        LocalProvider::new(crate::contract::stand_in(dir), dir.join("nodes"))
    });
}
