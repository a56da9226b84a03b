//! `thunderhead bench`: measurements against a baseline taken in the same run.
//!
//! Each benchmark starts its own head node (this program, `server`, in a temporary state
//! directory on a free loopback port), measures several repetitions, and reports the median and,
//! where there is one, the ratio to a baseline measured right beside it. Run it with the other
//! core idle; see docs/benchmarks.md.

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use thunderhead_core::view::{JobView, NodeView, SubmitReply};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// 20,000 runs of `true` on one local 2-core node against `xargs -P 2 -n 1 true`
    Dispatch,
    /// Submitting a 1,000,000-index sweep: submit time, head node memory, `job view` latency
    BigSweep,
    /// `node start` of 100 local nodes: time until all are Offline
    Provisioning,
    /// 5,000 light agents: head node CPU and memory while they heartbeat, then 1,000,000
    /// zero-length tasks across them: scheduling decisions per second
    ManyNodes,
    /// A head node killed with a 1,000,000-index sweep half done: time until it answers again
    Restart,
    All,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Repetitions; the median is reported
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Tasks of the dispatch benchmark
    #[arg(long, default_value_t = 20_000)]
    tasks: u64,
    /// Indices of the big sweep
    #[arg(long, default_value_t = 1_000_000)]
    indices: u64,
    /// Nodes of the provisioning benchmark
    #[arg(long, default_value_t = 100)]
    nodes: u32,
    /// Light agents of the many-nodes benchmark
    #[arg(long, default_value_t = 5_000)]
    agents: u32,
    /// Seconds of heartbeats the many-nodes benchmark measures the head node over
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
}

/// A head node of this program in a temporary directory; killed with its agents when dropped.
struct Head {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    client: Client,
}

/// A process group of ours, killed when dropped.
struct Group(Child);

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
    fn start() -> Result<Head> {
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
    fn kill_and_restart(&mut self) -> Result<Duration> {
        kill_group(&mut self.child);
        let start = Instant::now();
        self.child = spawn_server(self.dir.path(), self.port)?;
        self.until_answering(Duration::from_secs(60))?;
        Ok(start.elapsed())
    }

    /// Starts `count` light agents in a process of their own, joined with a join token, and
    /// brings them online.
    fn light_agents(&self, count: u32) -> Result<Group> {
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
            let nodes: Vec<NodeView> = self.client.get(&ApiPath::new("nodes"))?;
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

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A local set of `count` nodes of `size`, online.
    fn set(&self, count: u32, size: &str) -> Result<Duration> {
        let c = &self.client;
        let _: Value = c.post(
            &ApiPath::new("templates"),
            &json!({"name": "bench", "provider": "local", "quota_cores": 100_000, "deploy_rate": 100_000}),
        )?;
        let _: Value = c.post(&ApiPath::new("nodes"), &json!({"template": "bench", "count": count, "size": size}))?;
        let started = Instant::now();
        let _: Value =
            c.post(&ApiPath::new("nodes").segment("actions"), &json!({"action": "start", "template": "bench"}))?;
        self.until(Duration::from_secs(300), |nodes| nodes.iter().all(|n| n.state == "Offline"))?;
        let took = started.elapsed();
        let _: Value =
            c.post(&ApiPath::new("nodes").segment("actions"), &json!({"action": "online", "template": "bench"}))?;
        self.until(Duration::from_secs(60), |nodes| nodes.iter().all(|n| n.state == "Online"))?;
        Ok(took)
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
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, in USER_HZ (100 per second on Linux).
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn wait_job(c: &Client, id: u64) -> Result<JobView> {
    wait_job_until(c, id, |job| matches!(job.state.as_str(), "Finished" | "Failed" | "Canceled"))
}

fn wait_job_until(c: &Client, id: u64, done: impl Fn(&JobView) -> bool) -> Result<JobView> {
    loop {
        let job: JobView = c.get(&ApiPath::new("jobs").segment(id))?;
        if done(&job) {
            return Ok(job);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn dispatch(args: &BenchArgs) -> Result<Value> {
    let head = Head::start()?;
    head.set(1, "Medium")?;
    let mut ours = Vec::new();
    let mut baseline = Vec::new();
    for round in 1..=args.repeat {
        let start = Instant::now();
        let reply: SubmitReply = head
            .client
            .post(&ApiPath::new("jobs"), &json!({"sweep": format!("1-{}", args.tasks), "command": ["true"]}))?;
        let job = wait_job(&head.client, reply.id)?;
        if job.tasks.finished != args.tasks {
            bail!("only {} of {} tasks finished", job.tasks.finished, args.tasks);
        }
        ours.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let mut xargs = Command::new("xargs").args(["-P", "2", "-n", "1", "true"]).stdin(Stdio::piped()).spawn()?;
        {
            use std::io::Write;
            let mut stdin = xargs.stdin.take().expect("piped");
            for i in 1..=args.tasks {
                writeln!(stdin, "{i}")?;
            }
        }
        xargs.wait()?;
        baseline.push(start.elapsed().as_secs_f64());
        eprintln!(
            "dispatch round {round}: thunderhead {:.2} s, xargs {:.2} s",
            ours[ours.len() - 1],
            baseline[baseline.len() - 1]
        );
    }
    let (t, b) = (median(ours), median(baseline));
    Ok(json!({
        "benchmark": "dispatch",
        "tasks": args.tasks,
        "thunderhead_seconds": t,
        "xargs_seconds": b,
        "tasks_per_second": args.tasks as f64 / t,
        "ratio_to_xargs": t / b,
    }))
}

fn big_sweep(args: &BenchArgs) -> Result<Value> {
    let mut submit = Vec::new();
    let mut growth = Vec::new();
    let mut view = Vec::new();
    for round in 1..=args.repeat {
        let head = Head::start()?;
        let before = rss_kib(head.pid());
        let start = Instant::now();
        let reply: SubmitReply = head
            .client
            .post(&ApiPath::new("jobs"), &json!({"sweep": format!("1-{}", args.indices), "command": ["true"]}))?;
        submit.push(start.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_millis(200));
        growth.push((rss_kib(head.pid()).saturating_sub(before)) as f64 / 1024.0);
        let mut views = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            let _: JobView = head.client.get(&ApiPath::new("jobs").segment(reply.id))?;
            views.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        view.push(median(views));
        eprintln!("big sweep round {round}: submit {:.3} s", submit[submit.len() - 1]);
    }
    Ok(json!({
        "benchmark": "big-sweep",
        "indices": args.indices,
        "submit_seconds": median(submit),
        "memory_growth_mib": median(growth),
        "job_view_ms": median(view),
    }))
}

fn provisioning(args: &BenchArgs) -> Result<Value> {
    let mut took = Vec::new();
    for round in 1..=args.repeat {
        let head = Head::start()?;
        took.push(head.set(args.nodes, "Small")?.as_secs_f64());
        eprintln!("provisioning round {round}: {:.2} s", took[took.len() - 1]);
    }
    Ok(json!({"benchmark": "provisioning", "nodes": args.nodes, "seconds_until_offline": median(took)}))
}

fn many_nodes(args: &BenchArgs) -> Result<Value> {
    let head = Head::start()?;
    let _agents = head.light_agents(args.agents)?;
    // Let the joins settle, then measure whole heartbeat intervals.
    std::thread::sleep(Duration::from_secs(2));
    let (cpu, start) = (cpu_seconds(head.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs(args.idle_seconds));
    let idle_core_percent = (cpu_seconds(head.pid()) - cpu) / start.elapsed().as_secs_f64() * 100.0;
    let memory_mib = rss_kib(head.pid()) as f64 / 1024.0;
    eprintln!("{} agents heartbeating: head node {idle_core_percent:.1}% of a core, {memory_mib:.0} MiB", args.agents);
    let mut rates = Vec::new();
    let mut busy = Vec::new();
    for round in 1..=args.repeat {
        let (cpu, start) = (cpu_seconds(head.pid()), Instant::now());
        let reply: SubmitReply = head
            .client
            .post(&ApiPath::new("jobs"), &json!({"sweep": format!("1-{}", args.indices), "command": ["true"]}))?;
        let job = wait_job(&head.client, reply.id)?;
        if job.tasks.finished != args.indices {
            bail!("only {} of {} tasks finished", job.tasks.finished, args.indices);
        }
        let took = start.elapsed().as_secs_f64();
        rates.push(args.indices as f64 / took);
        busy.push((cpu_seconds(head.pid()) - cpu) / took * 100.0);
        eprintln!("many nodes round {round}: {} tasks in {took:.1} s", args.indices);
    }
    Ok(json!({
        "benchmark": "many-nodes",
        "agents": args.agents,
        "heartbeating_core_percent": idle_core_percent,
        "heartbeating_memory_mib": memory_mib,
        "tasks": args.indices,
        "decisions_per_second": median(rates),
        "busy_core_percent": median(busy),
    }))
}

fn restart(args: &BenchArgs) -> Result<Value> {
    let mut took = Vec::new();
    let mut state = Value::Null;
    for round in 1..=args.repeat {
        let mut head = Head::start()?;
        let agents = head.light_agents(100)?;
        let reply: SubmitReply = head
            .client
            .post(&ApiPath::new("jobs"), &json!({"sweep": format!("1-{}", args.indices), "command": ["true"]}))?;
        let half = args.indices / 2;
        wait_job_until(&head.client, reply.id, |job| job.tasks.finished >= half)?;
        drop(agents);
        let before: JobView = head.client.get(&ApiPath::new("jobs").segment(reply.id))?;
        took.push(head.kill_and_restart()?.as_secs_f64());
        let after: JobView = head.client.get(&ApiPath::new("jobs").segment(reply.id))?;
        if after.tasks.finished < before.tasks.finished {
            bail!("the restart lost finished tasks: {} before, {} after", before.tasks.finished, after.tasks.finished);
        }
        state = json!({"finished": after.tasks.finished, "queued": after.tasks.queued, "running": after.tasks.running});
        eprintln!("restart round {round}: answering {:.3} s after start, job at {state}", took[took.len() - 1]);
    }
    Ok(
        json!({"benchmark": "restart", "indices": args.indices, "state": state, "seconds_to_first_answer": median(took)}),
    )
}

pub fn run(args: BenchArgs, out: Output) -> Result<i32> {
    if args.repeat == 0 {
        bail!("--repeat 0 measures nothing (give 1 or more)");
    }
    let mut results = Vec::new();
    let all = args.which == Which::All;
    if all || args.which == Which::Dispatch {
        results.push(dispatch(&args)?);
    }
    if all || args.which == Which::BigSweep {
        results.push(big_sweep(&args)?);
    }
    if all || args.which == Which::Provisioning {
        results.push(provisioning(&args)?);
    }
    if all || args.which == Which::ManyNodes {
        results.push(many_nodes(&args)?);
    }
    if all || args.which == Which::Restart {
        results.push(restart(&args)?);
    }
    out.one(&results, |results| {
        for r in results {
            let fields: Vec<String> = r
                .as_object()
                .expect("objects")
                .iter()
                .filter(|(k, _)| *k != "benchmark")
                .map(|(k, v)| match v.as_f64() {
                    Some(f) if v.is_f64() => format!("{k} {f:.3}"),
                    _ => format!("{k} {v}"),
                })
                .collect();
            println!("{}: {}", r["benchmark"].as_str().unwrap_or("?"), fields.join(", "));
        }
    });
    Ok(0)
}
