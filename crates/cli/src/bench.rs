//! `thunderhead bench`: measurements against a baseline taken in the same run.
//!
//! Each benchmark starts its own head node (this program, `server`, in a temporary state
//! directory on a free loopback port), measures several repetitions, and reports the median and,
//! where there is one, the ratio to a baseline measured right beside it. Run it with the other
//! core idle; see docs/benchmarks.md.

mod head;

use crate::api_path::ApiPath;
use crate::client::Client;
use crate::output::Output;
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use head::{Head, cpu_seconds, rss_kib};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use thunderhead_core::view::{JobView, SubmitReply};

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
    /// `node start` of 100 ssh nodes on the test hosts (source scripts/peers/sshd.sh): time
    /// until all are Offline, then a sweep across them: the head node's CPU and tasks per second
    SshNodes,
    /// The same with 100 Slurm nodes on the test cluster (source scripts/peers/slurm.sh)
    SlurmNodes,
    /// Every benchmark above but the two that need the test peers
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

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
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

/// A template of the ssh test hosts that `scripts/peers/sshd.sh` starts, 34 nodes a host.
fn ssh_template() -> Result<Value> {
    let dir = std::env::var("THUNDERHEAD_TEST_SSH").map(std::path::PathBuf::from).map_err(|_| {
        anyhow::anyhow!(
            "no ssh hosts to measure: run `source scripts/peers/sshd.sh` first (it sets THUNDERHEAD_TEST_SSH)"
        )
    })?;
    let env = std::fs::read_to_string(dir.join("hosts.env"))?;
    let get = |key: &str| -> Result<String> {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(String::from)
            .ok_or_else(|| anyhow::anyhow!("{key} is missing from {}", dir.join("hosts.env").display()))
    };
    let hosts: Vec<String> = get("SSH_PORTS")?.split(',').map(|p| format!("127.0.0.1:{p}")).collect();
    Ok(json!({
        "provider": "ssh",
        "settings": {
            "hosts": hosts.join(","),
            "user": get("SSH_USER")?,
            "known_hosts": dir.join("known_hosts").display().to_string(),
            "remote_dir": format!("{}/bench", get("SSH_REMOTE_DIR")?),
            "nodes_per_host": "34",
        },
        "secrets": {"identity": std::fs::read_to_string(dir.join("id_ed25519"))?},
    }))
}

/// A template of the Slurm test cluster that `scripts/peers/slurm.sh` starts.
fn slurm_template() -> Result<Value> {
    let prefix = std::env::var("THUNDERHEAD_TEST_SLURM").map_err(|_| {
        anyhow::anyhow!(
            "no Slurm cluster to measure: run `source scripts/peers/slurm.sh` first (it sets THUNDERHEAD_TEST_SLURM)"
        )
    })?;
    let work = std::env::temp_dir().join("thunderhead-bench-slurm");
    Ok(json!({
        "provider": "slurm",
        "settings": {
            "command_prefix": prefix,
            "partition": std::env::var("THUNDERHEAD_TEST_SLURM_PARTITION").unwrap_or_else(|_| "main".into()),
            "time_limit": "30m",
            "work_dir": work.display().to_string(),
        },
    }))
}

/// `--nodes` Small nodes of `template`: time from `node start` until all are Offline, then a
/// sweep of `--tasks` runs of `true` across them: tasks per second and the head node's CPU.
fn remote_nodes(args: &BenchArgs, template: Value, name: &str) -> Result<Value> {
    let mut offline = Vec::new();
    let mut rates = Vec::new();
    let mut busy = Vec::new();
    for round in 1..=args.repeat {
        let head = Head::start()?;
        offline.push(head.set_of(template.clone(), args.nodes, "Small")?.as_secs_f64());
        let (cpu, start) = (cpu_seconds(head.pid()), Instant::now());
        let reply: SubmitReply = head
            .client
            .post(&ApiPath::new("jobs"), &json!({"sweep": format!("1-{}", args.tasks), "command": ["true"]}))?;
        let job = wait_job(&head.client, reply.id)?;
        if job.tasks.finished != args.tasks {
            bail!("only {} of {} tasks finished", job.tasks.finished, args.tasks);
        }
        let took = start.elapsed().as_secs_f64();
        rates.push(args.tasks as f64 / took);
        busy.push((cpu_seconds(head.pid()) - cpu) / took * 100.0);
        head.stop_set(Duration::from_secs(300))?;
        eprintln!(
            "{name} round {round}: {} nodes Offline in {:.1} s; {} tasks at {:.0} tasks/s, head node {:.0}% of a core",
            args.nodes,
            offline[offline.len() - 1],
            args.tasks,
            rates[rates.len() - 1],
            busy[busy.len() - 1]
        );
    }
    Ok(json!({
        "benchmark": name,
        "nodes": args.nodes,
        "seconds_until_offline": median(offline),
        "tasks": args.tasks,
        "tasks_per_second": median(rates),
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
    if args.which == Which::SshNodes {
        results.push(remote_nodes(&args, ssh_template()?, "ssh-nodes")?);
    }
    if args.which == Which::SlurmNodes {
        results.push(remote_nodes(&args, slurm_template()?, "slurm-nodes")?);
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
