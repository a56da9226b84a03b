//! The `local` provider: each burst node is a `thunderhead agent` process on this machine with a
//! directory of its own, like a VM with its disk.
//!
//! The agent runs in its own process group, so it outlives the head node (a restarted head node
//! finds it again through the handle: process id, its start time, and its directory). Removing
//! the node ends the agent (SIGTERM, then SIGKILL) and deletes its directory.

use crate::{
    BoxFuture, Check, DeployRequest, ExternalStatus, HANDLE_VERSION, Provider, ProviderError, ProxyRequest, Result,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use thunderhead_core::template::Template;

#[derive(Clone)]
pub struct LocalProvider {
    agent_program: PathBuf,
    default_root: PathBuf,
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
}

impl LocalProvider {
    pub fn new(agent_program: PathBuf, default_root: PathBuf) -> LocalProvider {
        LocalProvider { agent_program, default_root }
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
        let args =
            ["agent", "--server", server_url, "--name", &request.node, "--cores", &cores, "--work-dir", &dir_arg];
        let env: Vec<(&str, &str)> = match &request.join {
            Some(grant) => {
                vec![(crate::JOIN_TOKEN_ENV, grant.token.as_str()), (crate::CA_PEM_ENV, grant.ca_pem.as_str())]
            }
            None => vec![],
        };
        self.launch(&dir, "agent", &args, &env)
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
        let handle = self.launch(&dir, "proxy", &args, &[])?;
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
    /// logging to `dir/ROLE.log` and recording its pid in `dir/ROLE.pid`.
    fn launch(&self, dir: &Path, role: &str, args: &[&str], env: &[(&str, &str)]) -> Result<LocalHandle> {
        if dir.exists() {
            // A process an earlier deployment left here (the head node stopped before it
            // recorded the deployment) would otherwise outlive its directory.
            end_recorded(dir, role);
            std::fs::remove_dir_all(dir).map_err(|e| {
                ProviderError::fatal(format!("cannot clear the old node directory {}: {e}", dir.display()))
            })?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| ProviderError::fatal(format!("cannot create the node directory {}: {e}", dir.display())))?;
        let log_path = dir.join(format!("{role}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| ProviderError::fatal(format!("cannot create {}: {e}", log_path.display())))?;
        let log2 = log.try_clone().map_err(|e| ProviderError::fatal(e.to_string()))?;
        let mut child = std::process::Command::new(&self.agent_program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .current_dir(dir)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                ProviderError::fatal(format!("cannot start the {role} {}: {e}", self.agent_program.display()))
            })?;
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
        Ok(LocalHandle { v: HANDLE_VERSION, pid, start_ticks, dir: dir.to_path_buf() })
    }
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
    serde_json::from_value(handle.clone())
        .map_err(|e| ProviderError::fatal(format!("the node's handle is not a local handle ({e}): {handle}")))
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

impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn validate<'a>(&'a self, template: &'a Template) -> BoxFuture<'a, Vec<Check>> {
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

    fn status<'a>(&'a self, handles: &'a [serde_json::Value]) -> BoxFuture<'a, Vec<Result<ExternalStatus>>> {
        Box::pin(async move {
            handles
                .iter()
                .map(|h| parse(h).map(|h| if alive(&h) { ExternalStatus::Running } else { ExternalStatus::Gone }))
                .collect()
        })
    }

    fn remove<'a>(&'a self, handle: &'a serde_json::Value) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let handle = parse(handle)?;
            end_process(&handle).await;
            match std::fs::remove_dir_all(&handle.dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(ProviderError::transient(format!("cannot remove {}: {e}", handle.dir.display()))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        struct End(i32);
        impl Drop for End {
            fn drop(&mut self) {
                let _ = killpg(Pid::from_raw(self.0), Signal::SIGKILL);
            }
        }
        let _end = End(lost.pid);
        assert!(alive(&lost));
        let kept = rt.block_on(p.deploy(&request)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(&lost) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(&lost), "the unrecorded agent was ended");
        rt.block_on(p.remove(&kept)).unwrap();
    }

    crate::provider_contract_tests!(|dir: &std::path::Path| {
        // A stand-in agent: a long sleep, started the way the real agent is.
        LocalProvider::new(crate::contract::stand_in(dir), dir.join("nodes"))
    });
}
