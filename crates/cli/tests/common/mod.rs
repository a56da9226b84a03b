//! Helpers for end-to-end tests: a real head node process on a free loopback port, real agent
//! processes, and the real CLI. Every process a test starts is killed when its guard drops,
//! pass or fail.

#![allow(dead_code)]

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_thunderhead");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` every 50 ms until it returns `Some`, or panics naming `what` after `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A head node process with its state directory, and the agents it or the test started.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    server: Option<Child>,
    agents: Vec<(String, Child)>,
    extra_args: Vec<String>,
    /// Variables the head node is started with, besides the test's own.
    extra_env: Vec<(String, String)>,
    /// The cluster join token on-premises agents of this test join with.
    join_token: Option<String>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Cluster {
        Cluster::start_with_env(args, &[])
    }

    /// A head node started with `args` and, in its environment, `env`.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Cluster {
        let mut c = Cluster {
            dir: tempfile::Builder::new().prefix("th-e2e-").tempdir().unwrap(),
            port: free_port(),
            server: None,
            agents: Vec::new(),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            join_token: None,
        };
        c.start_server();
        c
    }

    pub fn url(&self) -> String {
        let scheme = if self.extra_args.iter().any(|a| a == "--insecure-http") { "http" } else { "https" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The cluster's certificate, which clients and agents verify the head node with.
    pub fn ca_file(&self) -> PathBuf {
        self.state_dir().join("ca.pem")
    }

    /// A join token for any node, made once per test cluster.
    pub fn join_token(&mut self) -> String {
        if let Some(token) = &self.join_token {
            return token.clone();
        }
        let token = self.json(&["token", "create", "--expires", "1h"])["token"].as_str().unwrap().to_string();
        self.join_token = Some(token.clone());
        token
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A directory of the test that tasks may write to: where the head node runs as root, tasks
    /// of local nodes run as `nobody`, who may not enter the test's own directory.
    pub fn shared_dir(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let shared = self.dir.path().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        // Passable, not listable; the state directory inside stays the head node's alone.
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        shared
    }

    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "the server is already running");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(BIN)
            .arg("server")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.extra_args)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        self.server = Some(child);
        eventually(20, "the head node to answer", || {
            self.try_th(&["job", "list", "--json"]).status.success().then_some(())
        });
    }

    /// The head node's process id.
    pub fn server_pid(&self) -> u32 {
        self.server.as_ref().expect("server running").id()
    }

    /// Kills the head node with SIGKILL, as a crash would. Its agents keep running.
    pub fn kill_server(&mut self) {
        let mut child = self.server.take().expect("server running");
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.wait();
    }

    /// Starts an on-premises agent process.
    pub fn start_agent(&mut self, name: &str, cores: u32) {
        let dir = self.dir.path().join(format!("agent-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let token = if self.url().starts_with("https") { self.join_token() } else { String::new() };
        let child = Command::new(BIN)
            .args(["agent", "--server", &self.url(), "--name", name, "--cores", &cores.to_string(), "--work-dir"])
            .arg(&dir)
            .arg("--ca")
            .arg(self.ca_file())
            .env("THUNDERHEAD_JOIN_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        self.agents.push((name.to_string(), child));
    }

    /// The process id of an on-premises agent this test started.
    pub fn agent_pid(&self, name: &str) -> Pid {
        let (_, child) = self.agents.iter().find(|(n, _)| n == name).expect("an agent of that name");
        Pid::from_raw(child.id() as i32)
    }

    /// The access file the head node wrote: its URL and the administrator's token.
    pub fn access_file(&self) -> PathBuf {
        self.state_dir().join("access.json")
    }

    /// Runs the CLI as the administrator.
    pub fn try_th(&self, args: &[&str]) -> Output {
        self.try_th_with(None, args)
    }

    /// Runs the CLI with another user's token.
    pub fn try_th_as(&self, token: &str, args: &[&str]) -> Output {
        self.try_th_with(Some(token), args)
    }

    /// Runs the CLI with `token`, else as the administrator.
    pub fn try_th_with(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.env("THUNDERHEAD_ACCESS", self.access_file())
            .env_remove("THUNDERHEAD_SERVER")
            .env_remove("THUNDERHEAD_TOKEN");
        if let Some(token) = token {
            cmd.env("THUNDERHEAD_TOKEN", token);
        }
        cmd.args(args).output().unwrap()
    }

    /// Runs the CLI and returns its standard output; panics with both streams if it fails.
    pub fn th(&self, args: &[&str]) -> String {
        let out = self.try_th(args);
        assert!(
            out.status.success(),
            "thunderhead {} failed: {}\nstdout: {}\nserver log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.server_log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the CLI with `--json` and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.th(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Runs the CLI expecting failure; returns its standard error.
    pub fn th_fails(&self, args: &[&str]) -> String {
        let out = self.try_th(args);
        assert!(
            !out.status.success(),
            "thunderhead {} should have failed but printed {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn node_states(&self, template: &str) -> Vec<(String, String, String)> {
        let nodes = self.json(&["node", "list", "--template", template]);
        nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap().to_string(),
                    n["state"].as_str().unwrap().to_string(),
                    n["health"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Waits until every node of `template` is in `state`.
    pub fn await_nodes(&self, template: &str, state: &str) {
        eventually(30, &format!("nodes of {template} to be {state}"), || {
            let nodes = self.node_states(template);
            nodes.iter().all(|(_, s, _)| s == state).then_some(())
        });
    }

    /// Creates a local template with `count` nodes of `size`, starts and onlines them.
    pub fn burst(&self, template: &str, count: u32, size: &str) {
        self.th(&["template", "create", template, "--provider", "local"]);
        self.th(&["node", "add", "--template", template, "--count", &count.to_string(), "--size", size]);
        self.th(&["node", "start", "--template", template]);
        self.await_nodes(template, "Offline");
        self.th(&["node", "online", "--template", template]);
        self.await_nodes(template, "Online");
    }

    pub fn job(&self, id: u64) -> Value {
        self.json(&["job", "view", &id.to_string()])
    }

    pub fn submit(&self, args: &[&str]) -> u64 {
        let mut all = vec!["job", "submit"];
        all.extend_from_slice(args);
        self.json(&all)["id"].as_u64().unwrap()
    }
}

pub fn kill_group(pid: u32) {
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Ends an agent the way an operator would (SIGTERM: it kills its tasks and exits), then
/// makes sure with SIGKILL.
fn end_agent(pid: u32) {
    let group = Pid::from_raw(pid as i32);
    if killpg(group, Signal::SIGTERM).is_ok() {
        let start = Instant::now();
        while nix::sys::signal::kill(group, None).is_ok() && start.elapsed() < Duration::from_secs(3) {
            let zombie =
                std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true);
            if zombie {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    kill_group(pid);
}

/// The pids of the processes whose command line names `dir`.
fn pids_naming(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&needle)
        })
        .collect()
}

/// The pids of the agents and proxies a local provider started under `root`.
fn local_agent_pids(root: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return vec![];
    };
    let dirs: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    dirs.iter()
        .flat_map(|d| ["agent.pid", "proxy.pid"].map(|f| d.join(f)))
        .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse().ok())
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            kill_group(s.id());
            let _ = s.wait();
        }
        for (_, a) in &mut self.agents {
            let _ = nix::sys::signal::kill(Pid::from_raw(a.id() as i32), Signal::SIGCONT);
            end_agent(a.id());
            let _ = a.wait();
        }
        for pid in local_agent_pids(&self.state_dir().join("nodes")) {
            end_agent(pid);
        }
        // Whatever else runs in this cluster's directory: an agent whose pid file a killed head
        // node never wrote, or one its node directory no longer records.
        for pid in pids_naming(self.dir.path()) {
            kill_group(pid);
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        // The task roots a head node running as root gave its local nodes lie outside the
        // test's directory; each node directory names its own.
        for node in std::fs::read_dir(self.state_dir().join("nodes")).into_iter().flatten().flatten() {
            if let Ok(root) = std::fs::read_to_string(node.path().join("task-root")) {
                let _ = std::fs::remove_dir_all(root.trim());
            }
        }
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.server_log());
        }
    }
}

/// A self-signed certificate with an RSA key of `bits` in a PFX protected by `password`, made
/// by the real `openssl`; returns the PFX's path and openssl's SHA-1 fingerprint.
pub fn make_pfx(dir: &std::path::Path, bits: u32, password: &str) -> (std::path::PathBuf, String) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (key, cert, pfx) =
        (dir.join(format!("k{bits}.pem")), dir.join(format!("c{bits}.pem")), dir.join(format!("m{bits}.pfx")));
    let (k, c, p) = (key.to_str().unwrap(), cert.to_str().unwrap(), pfx.to_str().unwrap());
    run(&[
        "req",
        "-x509",
        "-newkey",
        &format!("rsa:{bits}"),
        "-nodes",
        "-keyout",
        k,
        "-out",
        c,
        "-days",
        "30",
        "-subj",
        "/CN=th-azure",
    ]);
    run(&["pkcs12", "-export", "-inkey", k, "-in", c, "-out", p, "-passout", &format!("pass:{password}")]);
    let fp = run(&["x509", "-in", c, "-noout", "-fingerprint", "-sha1"]);
    (pfx, fp.trim().rsplit('=').next().unwrap().replace(':', ""))
}
