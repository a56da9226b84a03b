//! The commands that become a long-running process: the head node (`server`), the agent of a
//! compute node (`agent`), a set's relay (`proxy`) and hosted light agents (`light-agents`).

use crate::client;
use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args)]
pub struct LightAgentsArgs {
    /// How many agents
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Cores each agent reports
    #[arg(long, default_value_t = 4)]
    cores: u32,
    /// Agents are named PREFIX-00001, PREFIX-00002, …
    #[arg(long, default_value = "light")]
    prefix: String,
    /// Each agent joins with this token (over TLS)
    #[arg(long, env = "THUNDERHEAD_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
}

#[derive(Args)]
pub struct ServerArgs {
    /// Where the head node keeps its state [default: ~/.local/share/thunderhead]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:7998")]
    listen: SocketAddr,
    /// Seconds a deployed node may take to connect before it is Unknown
    #[arg(long, default_value_t = 120)]
    provision_timeout: u64,
    /// Seconds a node's agent may stay away before the node is lost and its tasks requeued
    #[arg(long, default_value_t = 30)]
    reconnect_grace: u64,
    /// Where packages and task files are kept: file:///DIR, az://ACCOUNT/CONTAINER or s3://BUCKET
    /// [default: file://STATE_DIR/blobs]
    #[arg(long)]
    blob_store: Option<String>,
    /// Seconds a connected agent may stay silent before its node's health is Error and its
    /// tasks are requeued (agents send a heartbeat every third of this)
    #[arg(long, default_value_t = 30)]
    heartbeat_timeout: u64,
    /// At most how many times its cores' worth of tasks an agent holds queued beyond its cores.
    /// A node holds one multiple until its tasks prove short, then about 50 ms of work per core,
    /// so short tasks start without waiting for a round trip to the head node; 0 holds none
    #[arg(long, default_value_t = 16)]
    queue_ahead: u32,
    /// Serve plain HTTP and let agents in without certificates (development only: tokens then
    /// cross the network in the clear)
    #[arg(long)]
    insecure_http: bool,
    /// Another DNS name or address for the head node's certificate (repeatable); it always
    /// covers localhost, loopback, this host's name and the addresses it listens on
    #[arg(long = "tls-name")]
    tls_names: Vec<String>,
    /// A directory whose files task inputs and outputs may name as file:///… (repeatable);
    /// without one, file:// locations are refused
    #[arg(long = "file-root")]
    file_roots: Vec<PathBuf>,
    /// A blob store that jobs' inputs and outputs may name (s3://BUCKET[/PREFIX][?endpoint=…] or
    /// az://ACCOUNT/CONTAINER[/PREFIX][?endpoint=…]; repeatable). Locations in it are opened with
    /// its endpoint and this machine's credentials; locations in no configured store are refused
    #[arg(long = "job-blob-store")]
    job_blob_stores: Vec<String>,
}

#[derive(Args)]
pub struct AgentArgs {
    /// Node name [default: this machine's host name]
    #[arg(long)]
    name: Option<String>,
    /// Cores to run tasks on [default: all of this machine's]
    #[arg(long)]
    cores: Option<u32>,
    /// Directory for the node certificate, the result outbox and, unless --task-root says
    /// otherwise, task files and packages [default: STATE/agent-NAME]
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Trade this join token for a node certificate, if the work directory holds none yet
    /// (an Administrator makes one: thunderhead token create)
    #[arg(long, env = "THUNDERHEAD_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Read the cluster's certificate and a join token from standard input, as the JSON
    /// document {"ca_pem": "…", "token": "…"} (how a head node starts the agents of local nodes);
    /// they replace --ca and --join-token
    #[arg(long)]
    join_from_stdin: bool,
    /// Run tasks as this Unix user, without supplementary groups (the agent must run as root)
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// Directory for task directories and installed packages [default: the work directory];
    /// with --run-as, USER must be able to pass through every directory above it
    #[arg(long, value_name = "DIR")]
    task_root: Option<PathBuf>,
    /// When this machine is taken back, in seconds since the Unix epoch (a batch allocation's
    /// end less a margin): the head node drains the node then, and gives it no new task
    #[arg(long, value_name = "UNIX_SECONDS")]
    leaves_at: Option<u64>,
}

#[derive(Args)]
pub struct ProxyArgs {
    /// Where to listen (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Write the URL agents connect to here once listening
    #[arg(long)]
    address_file: Option<PathBuf>,
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Runs a relay for a set's agents until it fails.
pub fn proxy(args: ProxyArgs, server: Option<String>) -> Result<i32> {
    let server = server.context("give the head node's URL with --server URL")?;
    let config = thunderhead_agent::ProxyConfig { server, listen: args.listen, address_file: args.address_file };
    runtime()?.block_on(thunderhead_agent::run_proxy(config))?;
    Ok(0)
}

pub fn server_config(state_dir: PathBuf, listen: SocketAddr) -> Result<thunderhead_server::ServerConfig> {
    Ok(thunderhead_server::ServerConfig {
        state_dir,
        listen,
        cluster: Default::default(),
        agent_program: std::env::current_exe().context("cannot find this program's own path")?,
        blob_store: None,
        insecure_http: false,
        tls_names: vec![],
        file_roots: vec![],
        job_blob_stores: vec![],
    })
}

pub fn serve(args: ServerArgs) -> Result<i32> {
    let mut config = server_config(args.state_dir.unwrap_or_else(client::default_state_dir), args.listen)?;
    config.cluster.provision_timeout = args.provision_timeout * 1000;
    config.cluster.reconnect_grace = args.reconnect_grace * 1000;
    config.cluster.heartbeat_timeout = args.heartbeat_timeout.max(1) * 1000;
    config.cluster.queue_ahead = args.queue_ahead;
    config.blob_store = args.blob_store;
    config.insecure_http = args.insecure_http;
    config.tls_names = args.tls_names;
    config.file_roots = args.file_roots;
    config.job_blob_stores = args.job_blob_stores;
    runtime()?.block_on(async {
        let server = thunderhead_server::start(config).await?;
        eprintln!("thunderhead head node listening on {}", server.url);
        server.wait().await?;
        Ok(0)
    })
}

pub fn light_agents(args: LightAgentsArgs, server: Option<String>, ca: Option<PathBuf>) -> Result<i32> {
    let server = server.context("give the head node's URL with --server URL")?;
    let join = match (read_ca(ca.as_deref())?, args.join_token) {
        (Some(ca), Some(token)) => Some((ca, token)),
        _ => None,
    };
    // Light agents hold a connection each.
    thunderhead_server::raise_fd_limit();
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let mut stops = Vec::with_capacity(args.count as usize);
        for i in 1..=args.count {
            let (stop, stopped) = tokio::sync::oneshot::channel();
            stops.push(stop);
            let name = format!("{}-{i:05}", args.prefix);
            tokio::spawn(thunderhead_agent::run_light(server.clone(), name, args.cores, join.clone(), stopped));
            // Join in waves, so the head node's listen queue is not flooded.
            if i % 100 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        eprintln!("{} light agents started", args.count);
        let _ = tokio::signal::ctrl_c().await;
        drop(stops);
        Ok(0)
    })
}

/// The cluster's certificate, from `--ca FILE`.
fn read_ca(file: Option<&std::path::Path>) -> Result<Option<String>> {
    let Some(path) = file else { return Ok(None) };
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the cluster's certificate {} (--ca)", path.display()))?;
    Ok(Some(pem))
}

pub fn agent(args: AgentArgs, global_server: Option<String>, ca: Option<PathBuf>) -> Result<i32> {
    let server = global_server.context("give the head node's URL with --server URL")?;
    let name = match args.name {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .context("cannot read this machine's host name; give --name")?,
    };
    let cores = args.cores.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1));
    let work_dir = args.work_dir.unwrap_or_else(|| client::default_state_dir().join(format!("agent-{name}")));
    let (ca_pem, join_token) = if args.join_from_stdin {
        let grant = thunderhead_agent::JoinGrant::read_from(std::io::stdin().lock())?;
        (Some(grant.ca_pem), Some(grant.token))
    } else {
        (read_ca(ca.as_deref())?, args.join_token)
    };
    let config = thunderhead_agent::AgentConfig {
        server,
        name,
        cores,
        work_dir,
        ca_pem,
        join_token,
        task_root: args.task_root,
        run_as: args.run_as,
        leaves_at: args.leaves_at.map(|s| s.saturating_mul(1000)),
    };
    // One thread: an agent's work is a loop of small events, and every hand-off between threads
    // costs a context switch per task.
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(thunderhead_agent::run(config))?;
    Ok(0)
}
