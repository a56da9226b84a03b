//! The head node a benchmark measures: this program's `server` in a temporary state directory
//! on a free loopback port, with its light agents or local set, and what it uses of the machine
//! (CPU time and resident memory, read from `/proc`).

use crate::api_path::ApiPath;
use crate::client::Client;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use thunderhead_core::view::NodeView;

/// A head node of this program in a temporary directory; killed with its agents when dropped.
pub struct Head {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    pub client: Client,
}

/// A process group of ours, killed when dropped.
pub struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(&mut self.0);
    }
}

fn kill_group(child: &mut Child) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

impl Head {
    pub fn start() -> Result<Head> {
        let dir = tempfile::Builder::new().prefix("thunderhead-bench-").tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = spawn_server(dir.path(), port)?;
        // Until the head node wrote its access file (address, token, certificate).
        let unready = Client::new(&format!("http://127.0.0.1:{port}"), None, None)?;
        let mut head = Head { dir, port, child, client: unready };
        let access = head.dir.path().join("state").join(thunderhead_server::ACCESS_FILE);
        let start = Instant::now();
        while !access.exists() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("the head node wrote no access file within 20 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        head.client = Client::from_access(&access)?;
        head.until_answering(Duration::from_secs(20))?;
        Ok(head)
    }

    /// Waits until the head node answers a request; returns how long that took.
    fn until_answering(&self, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        while self.client.get::<Value>(&ApiPath::new("health")).is_err() {
            if start.elapsed() > limit {
                bail!("the head node did not answer within {} s", limit.as_secs());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(start.elapsed())
    }

    /// Kills the head node with SIGKILL and starts it again on the same state and address;
    /// returns the time from the start of the new process to its first answered request.
    pub fn kill_and_restart(&mut self) -> Result<Duration> {
        kill_group(&mut self.child);
        let start = Instant::now();
        self.child = spawn_server(self.dir.path(), self.port)?;
        self.until_answering(Duration::from_secs(60))?;
        Ok(start.elapsed())
    }

    /// Starts `count` light agents in a process of their own, joined with a join token, and
    /// brings them online.
    pub fn light_agents(&self, count: u32) -> Result<Group> {
        let joining: Value = self.client.post(&ApiPath::new("join-tokens"), &serde_json::json!({}))?;
        let agents = Command::new(std::env::current_exe()?)
            .args(["--server", &format!("https://127.0.0.1:{}", self.port), "--ca"])
            .arg(self.dir.path().join("state").join("ca.pem"))
            .args(["light-agents", "--count", &count.to_string(), "--cores", "4"])
            .env("THUNDERHEAD_JOIN_TOKEN", joining["token"].as_str().unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("cannot start the light agents")?;
        let agents = Group(agents);
        let start = Instant::now();
        let names = loop {
            // While thousands of agents connect at once, the listener sheds the oldest pending
            // connections from one address (this one among them): ask again.
            let nodes: Vec<NodeView> = match self.client.get(&ApiPath::new("nodes")) {
                Ok(nodes) => nodes,
                Err(e) if start.elapsed() < Duration::from_secs(300) => {
                    eprintln!("asking for the nodes again: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if nodes.len() >= count as usize {
                break nodes.into_iter().map(|n| n.name).collect::<Vec<_>>();
            }
            if start.elapsed() > Duration::from_secs(300) {
                bail!("only {} of {count} light agents joined in 300 s", nodes.len());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let _: Value = self
            .client
            .post(&ApiPath::new("nodes").segment("actions"), &json!({"action": "online", "names": names}))?;
        self.until(Duration::from_secs(120), |nodes| nodes.iter().all(|n| n.state == "Online"))?;
        eprintln!("{count} light agents online after {:.1} s", start.elapsed().as_secs_f64());
        Ok(agents)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A local set of `count` nodes of `size`, online.
    pub fn set(&self, count: u32, size: &str) -> Result<Duration> {
        self.set_of(json!({"provider": "local"}), count, size)
    }

    /// A set of `count` nodes of `size` from `template` (its provider, settings and secrets;
    /// named `bench` here), online; returns the time from `node start` until all were Offline.
    pub fn set_of(&self, mut template: Value, count: u32, size: &str) -> Result<Duration> {
        let c = &self.client;
        template["name"] = json!("bench");
        template["quota_cores"] = json!(100_000);
        template["deploy_rate"] = json!(100_000);
        let _: Value = c.post(&ApiPath::new("templates"), &template)?;
        let _: Value = c.post(&ApiPath::new("nodes"), &json!({"template": "bench", "count": count, "size": size}))?;
        let started = Instant::now();
        let _: Value =
            c.post(&ApiPath::new("nodes").segment("actions"), &json!({"action": "start", "template": "bench"}))?;
        self.until(Duration::from_secs(600), |nodes| nodes.iter().all(|n| n.state == "Offline"))?;
        let took = started.elapsed();
        let _: Value =
            c.post(&ApiPath::new("nodes").segment("actions"), &json!({"action": "online", "template": "bench"}))?;
        self.until(Duration::from_secs(60), |nodes| nodes.iter().all(|n| n.state == "Online"))?;
        Ok(took)
    }

    /// Stops the set and waits until its deployments are removed (agents on other machines,
    /// allocations), at most `limit`.
    pub fn stop_set(&self, limit: Duration) -> Result<()> {
        let _: Value = self
            .client
            .post(&ApiPath::new("nodes").segment("actions"), &json!({"action": "stop", "template": "bench"}))?;
        self.until(limit, |nodes| nodes.iter().all(|n| n.state == "NotDeployed"))
    }

    fn until(&self, limit: Duration, done: impl Fn(&[NodeView]) -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            let nodes: Vec<NodeView> = self.client.get(&ApiPath::new("nodes"))?;
            if nodes.iter().any(|n| n.state == "Unknown") {
                bail!("a node failed to deploy");
            }
            if done(&nodes) {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("the nodes were not ready after {} s", limit.as_secs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Head {
    fn drop(&mut self) {
        let _ = self
            .client
            .post::<Value>(&ApiPath::new("nodes").segment("actions"), &json!({"action": "stop", "template": "bench"}));
        std::thread::sleep(Duration::from_millis(500));
        kill_group(&mut self.child);
        // Agents and proxies of the set, if the stop did not reach them.
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("state/nodes")) {
            for entry in entries.flatten() {
                for f in ["agent.pid", "proxy.pid"] {
                    if let Some(pid) =
                        std::fs::read_to_string(entry.path().join(f)).ok().and_then(|p| p.trim().parse().ok())
                    {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
    }
}

fn spawn_server(dir: &std::path::Path, port: u16) -> Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot start a head node")
}

/// CPU time a process has used, user and system, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, in USER_HZ (100 per second on Linux).
    (ticks(11) + ticks(12)) as f64 / 100.0
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
