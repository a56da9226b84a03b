//! `thunderhead`: the head node (`server`), the compute-node agent (`agent`) and the client
//! (every other subcommand) in one binary.

mod bench;
mod client;
mod quickstart;
mod show;
mod terminal;
mod wait;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use client::Client;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thunderhead_core::job::JobSubmission;
use thunderhead_core::size::NodeSize;
use thunderhead_core::view::{
    CostReport, JobView, NodeAction, NodeActionRequest, NodeActionResult, NodeLogEntry, NodeView, PackageView,
    SubmitReply, TaskOutput, TaskView, TemplateView,
};

#[derive(Parser)]
#[command(
    name = "thunderhead",
    version,
    about = "A hybrid HPC head node: parametric sweeps on your machines, burst nodes when they are not enough"
)]
struct Cli {
    /// URL of the head node, e.g. http://127.0.0.1:7998
    #[arg(long, global = true, env = "THUNDERHEAD_SERVER")]
    server: Option<String>,
    /// The access.json a head node wrote (default: the one in the default state directory)
    #[arg(long, global = true, env = "THUNDERHEAD_ACCESS")]
    access: Option<PathBuf>,
    /// Your API token (from `thunderhead user add`) [default: the access file's]
    #[arg(long, global = true, env = "THUNDERHEAD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The cluster's certificate (the ca.pem in the head node's state directory), to verify an
    /// https:// head node with [default: the access file's]
    #[arg(long, global = true, env = "THUNDERHEAD_CA")]
    ca: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a head node
    Server(ServerArgs),
    /// Join this machine to a cluster as a compute node
    Agent(AgentArgs),
    /// Relay a set's agents to the head node (deployed by providers with each started set)
    Proxy(ProxyArgs),
    /// Start a throw-away head node, burst 4 local nodes and run a 240-task sweep on them
    Quickstart(quickstart::QuickstartArgs),
    /// Node templates: how burst nodes are deployed
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Compute nodes: burst nodes from templates, and on-premises nodes
    #[command(subcommand)]
    Node(NodeCommand),
    /// Jobs: sweeps and task sets
    #[command(subcommand)]
    Job(JobCommand),
    /// Tasks of a job
    #[command(subcommand)]
    Task(TaskCommand),
    /// What burst nodes cost: node-hours and cost per set, per job, and in total
    Cost(CostArgs),
    /// Packages: application files installed on burst nodes (hpcpack, hpcsync)
    #[command(subcommand)]
    Package(PackageCommand),
    /// Users and their API tokens: who may do what (see docs/security.md)
    #[command(subcommand)]
    User(UserCommand),
    /// Join tokens: how agents of on-premises nodes join the cluster
    #[command(subcommand)]
    Token(TokenCommand),
    /// Measure against baselines taken in the same run (see docs/benchmarks.md)
    Bench(bench::BenchArgs),
    /// Host many light agents in this process (rehearsals and benchmarks at scale): each joins
    /// as an on-premises node and ends every task it is given at once with exit code 0
    #[command(hide = true)]
    LightAgents(LightAgentsArgs),
}

#[derive(Args)]
struct LightAgentsArgs {
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

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a join token and print it (shown this once only)
    Create {
        /// Only nodes of this template may join with it [default: any node]
        #[arg(long)]
        template: Option<String>,
        /// How long it is honoured: 30m, 24h, 7days
        #[arg(long, default_value = "24h")]
        expires: humantime::Duration,
    },
    /// List join tokens (never the tokens themselves)
    List,
    /// Remove a join token: no agent joins with it any more (joined nodes stay)
    Remove { id: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user and print their API token (shown this once only)
    Add {
        name: String,
        /// User (their own jobs), JobAdministrator (every job) or Administrator (everything)
        #[arg(long, default_value = "User")]
        role: String,
    },
    /// List users and their roles
    List,
    /// Remove a user: their token stops working at once (their jobs stay)
    Remove { name: String },
    /// Give a user a new token (the old one stops working at once) and print it
    Token { name: String },
    /// Show the user and role of the token in use
    Whoami,
}

#[derive(Subcommand)]
enum PackageCommand {
    /// Upload a zip or tar.gz file, or a directory (packed), as a new version
    Upload {
        path: PathBuf,
        /// Package name [default: the file's name without its extension]
        #[arg(long)]
        name: Option<String>,
        /// Only nodes of this template install it [default: every template's]
        #[arg(long)]
        template: Option<String>,
    },
    /// List packages (latest versions)
    List,
    /// Show every version of a package
    View { name: String },
    /// Download a package's file
    Download {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        /// Where to write it [default: the file's own name, here]
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Remove a package (every version, or one)
    Remove {
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Install the current packages on a set's running nodes
    Install {
        #[arg(long)]
        template: String,
    },
}

#[derive(Args)]
struct CostArgs {
    /// Only this template's set
    #[arg(long)]
    template: Option<String>,
    /// Only this job
    #[arg(long)]
    job: Option<u64>,
    /// From this time on: RFC 3339 (2026-11-01T00:00:00Z, 2026-11-01) or a span back from now (24h, 7days)
    #[arg(long)]
    since: Option<String>,
}

#[derive(Args)]
struct ServerArgs {
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
struct AgentArgs {
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
}

#[derive(Args)]
struct ProxyArgs {
    /// Where to listen (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Write the URL agents connect to here once listening
    #[arg(long)]
    address_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Create a node template
    Create {
        name: String,
        /// Provider that deploys the nodes (this build: local, sim)
        #[arg(long)]
        provider: String,
        #[command(flatten)]
        fields: TemplateFields,
    },
    /// Change a template; a deployed set picks the changes up at its next start
    Edit {
        name: String,
        #[command(flatten)]
        fields: TemplateFields,
    },
    /// List templates
    List,
    /// Show one template
    Show { name: String },
    /// Delete a template that has no nodes
    Delete { name: String },
    /// Check that the provider can deploy nodes from this template
    Validate { name: String },
    /// Let a template that paused itself after failed deployments deploy again
    Resume { name: String },
}

#[derive(Args)]
struct TemplateFields {
    #[arg(long)]
    description: Option<String>,
    /// Cores the provider account may run at once, proxies included [default: 20]
    #[arg(long)]
    quota_cores: Option<u32>,
    /// Small proxy instances deployed with a started set [default: 2]
    #[arg(long)]
    proxies: Option<u32>,
    /// Prefix of the names of new nodes, e.g. Burst- [default: <Provider>CN-]
    #[arg(long)]
    series_prefix: Option<String>,
    /// Deployments started per minute, at most [default: 300]
    #[arg(long)]
    deploy_rate: Option<u32>,
    /// Times a failed deployment of a node is tried again [default: 2]
    #[arg(long)]
    deploy_retries: Option<u32>,
    /// Consecutive failed deployments after which the template pauses itself [default: 5]
    #[arg(long)]
    pause_after_failures: Option<u32>,
    /// Hourly prices by size, e.g. Small=0.10,Medium=0.20; Small=list goes back to the list
    /// price [default: the 2011 list prices]
    #[arg(long)]
    rates: Option<String>,
    /// The currency of the prices [default: USD]
    #[arg(long)]
    currency: Option<String>,
    /// azure provider: the subscription's GUID
    #[arg(long)]
    subscription_id: Option<String>,
    /// azure provider: the cloud service name
    #[arg(long)]
    service_name: Option<String>,
    /// azure provider: the storage account name
    #[arg(long)]
    storage_account: Option<String>,
    /// azure provider: the management certificate, a PKCS#12 (PFX) file with a protected key
    #[arg(long)]
    certificate: Option<PathBuf>,
    /// azure provider: a file holding the certificate's password
    #[arg(long)]
    certificate_password_file: Option<PathBuf>,
    /// azure provider: the certificate's SHA-1 thumbprint, to check it (spaces and any case allowed)
    #[arg(long)]
    thumbprint: Option<String>,
    /// When the set runs: manual, or schedule (weekly windows)
    #[arg(long)]
    availability: Option<String>,
    /// A weekly window of a schedule, e.g. 'Mon-Fri 08:00-18:00' (repeat for more)
    #[arg(long = "window")]
    windows: Vec<String>,
    /// The time zone of the windows, e.g. Europe/Prague [default: UTC]
    #[arg(long)]
    timezone: Option<String>,
    /// How long before a window the set is started, e.g. 10m [default: 10m]
    #[arg(long)]
    lead_time: Option<String>,
    /// How long before a window's end the set is drained, e.g. 15m [default: 0]
    #[arg(long)]
    drain_before_end: Option<String>,
    /// local and sim providers: where node directories are created [default: STATE/nodes]
    #[arg(long)]
    work_root: Option<PathBuf>,
    /// Where the template's packages are kept: file:///DIR, az://ACCOUNT/CONTAINER or s3://BUCKET
    /// [default: the head node's store; an azure template's storage account]
    #[arg(long)]
    blob_store: Option<String>,
    /// Install this version of a package on the template's nodes: NAME=VERSION, or NAME=latest
    /// (repeat for more)
    #[arg(long = "pin-package")]
    pins: Vec<String>,
    /// sim provider: how long a deployment takes, MIN..MAX [default: 1s..3s]
    #[arg(long)]
    sim_deploy_time: Option<String>,
    /// sim provider: probability that a deployment fails, 0 to 1 [default: 0]
    #[arg(long)]
    sim_failure_rate: Option<f64>,
    /// sim provider: the most nodes the simulated cloud holds at once [default: unlimited]
    #[arg(long)]
    sim_capacity: Option<u32>,
    /// sim provider: seed that makes the rehearsal repeatable [default: 0]
    #[arg(long)]
    sim_seed: Option<u64>,
    /// sim provider: run nodes as light agents inside the head node, which finish each task at
    /// once (for rehearsing thousands of nodes)
    #[arg(long)]
    sim_light: bool,
}

impl TemplateFields {
    /// The JSON body of a create or edit request.
    fn body(self) -> Result<serde_json::Map<String, Value>> {
        let mut settings = serde_json::Map::new();
        if let Some(root) = self.work_root {
            let root = std::path::absolute(&root).unwrap_or(root);
            settings.insert("work_root".into(), Value::String(root.display().to_string()));
        }
        let sim = [
            ("deploy_time", self.sim_deploy_time.map(Value::from)),
            ("failure_rate", self.sim_failure_rate.map(Value::from)),
            ("capacity", self.sim_capacity.map(Value::from)),
            ("seed", self.sim_seed.map(Value::from)),
            ("light", self.sim_light.then_some(Value::Bool(true))),
            ("subscription_id", self.subscription_id.map(Value::from)),
            ("service_name", self.service_name.map(Value::from)),
            ("storage_account", self.storage_account.map(Value::from)),
            ("thumbprint", self.thumbprint.map(Value::from)),
        ];
        for (key, value) in sim {
            if let Some(v) = value {
                settings.insert(key.into(), v);
            }
        }
        let mut body = serde_json::Map::new();
        body.insert("settings".into(), Value::Object(settings));
        let fields = [
            ("description", self.description.map(Value::from)),
            ("quota_cores", self.quota_cores.map(Value::from)),
            ("proxies", self.proxies.map(Value::from)),
            ("series_prefix", self.series_prefix.map(Value::from)),
            ("deploy_rate", self.deploy_rate.map(Value::from)),
            ("deploy_retries", self.deploy_retries.map(Value::from)),
            ("pause_after_failures", self.pause_after_failures.map(Value::from)),
            ("rates", self.rates.map(Value::from)),
            ("currency", self.currency.map(Value::from)),
            ("availability", self.availability.map(Value::from)),
            ("windows", (!self.windows.is_empty()).then(|| Value::from(self.windows))),
            ("timezone", self.timezone.map(Value::from)),
            ("lead_time", self.lead_time.map(Value::from)),
            ("drain_before_end", self.drain_before_end.map(Value::from)),
            ("pin", (!self.pins.is_empty()).then(|| Value::from(self.pins))),
            ("blob_store", self.blob_store.map(Value::from)),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                body.insert(key.into(), v);
            }
        }
        if let Some(path) = &self.certificate {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read the certificate {}", path.display()))?;
            body.insert(
                "certificate".into(),
                Value::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            );
        }
        if let Some(path) = &self.certificate_password_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the certificate password file {}", path.display()))?;
            // The file's final line break is not part of the password.
            let password = text.trim_end_matches(['\n', '\r']);
            body.insert("certificate_password".into(), Value::from(password));
        }
        Ok(body)
    }
}

#[derive(Args)]
struct NodeSelection {
    /// Act on every node of this template
    #[arg(long)]
    template: Option<String>,
    /// Or on these nodes
    names: Vec<String>,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Add burst nodes from a template (they start NotDeployed)
    Add {
        #[arg(long)]
        template: String,
        #[arg(long)]
        count: u32,
        /// Small (1 core), Medium (2), Large (4) or ExtraLarge (8)
        #[arg(long)]
        size: String,
    },
    /// List nodes
    List {
        #[arg(long)]
        template: Option<String>,
    },
    /// Deploy nodes (Provisioning, then Offline when their agents connect)
    Start {
        #[command(flatten)]
        nodes: NodeSelection,
        /// Return once every started node is Offline (exit 1 if one fails)
        #[arg(long)]
        wait: bool,
    },
    /// Remove the deployment of nodes (back to NotDeployed)
    Stop(NodeSelection),
    /// Bring nodes online: they take work
    Online(NodeSelection),
    /// Take nodes offline: running tasks finish first, or are requeued with --force
    Offline {
        #[command(flatten)]
        nodes: NodeSelection,
        #[arg(long)]
        force: bool,
    },
    /// Remove nodes from the cluster
    Delete(NodeSelection),
    /// Print a node's lifecycle log
    Log { name: String },
    /// Revoke a node's certificate: its agent is refused until it joins again with a new token
    Revoke { name: String },
}

#[derive(Subcommand)]
enum JobCommand {
    /// Submit a job: -- COMMAND ARGS, or --file job.toml
    Submit(SubmitArgs),
    /// List jobs
    List,
    /// Show a job
    View { id: u64 },
    /// Wait for a job to end; exits 0 only if every task finished with exit code 0
    Wait { id: u64 },
    /// Cancel a job; running tasks are killed
    Cancel { id: u64 },
    /// Run the failed and canceled tasks of a Failed or Canceled job again (finished tasks
    /// stay finished)
    Requeue { id: u64 },
    /// Download every output the job's tasks uploaded to its area, as DIR/INDEX/PATH
    Output {
        id: u64,
        #[arg(long, default_value = ".")]
        to: PathBuf,
    },
}

#[derive(Args)]
struct SubmitArgs {
    #[arg(long)]
    name: Option<String>,
    /// Lowest, BelowNormal, Normal, AboveNormal or Highest
    #[arg(long)]
    priority: Option<String>,
    #[arg(long)]
    cores_per_task: Option<u32>,
    /// START-END[:STEP]: run COMMAND once per index, with * replaced by the index
    #[arg(long)]
    sweep: Option<String>,
    /// How often a task is requeued when its node is lost
    #[arg(long)]
    retries: Option<u32>,
    /// A JSON or TOML job file
    #[arg(long)]
    file: Option<PathBuf>,
    /// SOURCE[:LOCAL_PATH]: a blob URI or a local file (uploaded now) fetched into each task's
    /// directory before it runs; `*` is the sweep index (repeat for more)
    #[arg(long = "input")]
    inputs: Vec<String>,
    /// GLOB[:BLOB_PREFIX]: files of each task's directory uploaded after it ends [prefix
    /// default: the job's area, jobs/JOB/INDEX/] (repeat for more)
    #[arg(long = "output")]
    outputs: Vec<String>,
    /// When outputs are uploaded: success, failure or always [default: success]
    #[arg(long)]
    upload_on: Option<String>,
    /// The command to run, after --
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum TaskCommand {
    /// List the tasks of a job that have started
    List {
        id: u64,
        /// Only tasks in this state
        #[arg(long)]
        state: Option<String>,
    },
    /// Print a task's standard output (or error)
    Output {
        /// JOB.INDEX, e.g. 3.17
        task: String,
        #[arg(long)]
        stderr: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    // One crypto provider for every TLS connection of the process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let level = match cli.command {
        Command::Server(_) | Command::Agent(_) | Command::Proxy(_) => "info",
        _ => "warn",
    };
    let level = std::env::var("THUNDERHEAD_LOG").unwrap_or_else(|_| level.to_string());
    terminal::install_panic_hook();
    terminal::set_for_people(!cli.json);
    // Records are escaped as they are written; colour codes would be escaped with them.
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(|| terminal::LogWriter(std::io::stderr()))
        .with_max_level(
            level
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .init();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn run(cli: Cli) -> Result<i32> {
    let client =
        || Client::resolve(cli.server.as_deref(), cli.access.as_deref(), cli.token.as_deref(), cli.ca.as_deref());
    match cli.command {
        Command::Server(args) => serve(args),
        Command::Agent(args) => agent(args, cli.server, cli.ca),
        Command::Proxy(args) => {
            let server = cli.server.context("give the head node's URL with --server URL")?;
            let config =
                thunderhead_agent::ProxyConfig { server, listen: args.listen, address_file: args.address_file };
            runtime()?.block_on(thunderhead_agent::run_proxy(config))?;
            Ok(0)
        }
        Command::Quickstart(args) => quickstart::run(args),
        Command::Template(c) => template(&client()?, c, cli.json),
        Command::Node(c) => node(&client()?, c, cli.json),
        Command::Job(c) => job(&client()?, c, cli.json),
        Command::Task(c) => task(&client()?, c, cli.json),
        Command::Cost(args) => cost(&client()?, args, cli.json),
        Command::Package(c) => package(&client()?, c, cli.json),
        Command::User(c) => user(&client()?, c, cli.json),
        Command::Token(c) => join_token(&client()?, c, cli.json),
        Command::Bench(args) => bench::run(args, cli.json),
        Command::LightAgents(args) => light_agents(args, cli.server, cli.ca),
    }
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

fn serve(args: ServerArgs) -> Result<i32> {
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

fn light_agents(args: LightAgentsArgs, server: Option<String>, ca: Option<PathBuf>) -> Result<i32> {
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

fn agent(args: AgentArgs, global_server: Option<String>, ca: Option<PathBuf>) -> Result<i32> {
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
    };
    // One thread: an agent's work is a loop of small events, and every hand-off between threads
    // costs a context switch per task.
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(thunderhead_agent::run(config))?;
    Ok(0)
}

fn template(c: &Client, command: TemplateCommand, as_json: bool) -> Result<i32> {
    match command {
        TemplateCommand::Create { name, provider, fields } => {
            let mut body = fields.body()?;
            body.insert("name".into(), Value::from(name));
            body.insert("provider".into(), Value::from(provider));
            let t: TemplateView = c.post("/api/v1/templates", &body)?;
            if as_json {
                show::json(&t);
            } else {
                println!("created template {} (provider {})", t.name, t.provider);
            }
        }
        TemplateCommand::Edit { name, fields } => {
            let t: TemplateView = c.patch(&format!("/api/v1/templates/{name}"), &fields.body()?)?;
            if as_json {
                show::json(&t);
            } else {
                println!(
                    "changed template {}: deployments from now on use it; an availability policy applies at once",
                    t.name
                );
            }
        }
        TemplateCommand::Resume { name } => {
            let t: TemplateView = c.post(&format!("/api/v1/templates/{name}/resume"), &json!({}))?;
            if as_json {
                show::json(&t);
            } else {
                println!("template {} deploys again", t.name);
            }
        }
        TemplateCommand::List => {
            let list: Vec<TemplateView> = c.get("/api/v1/templates")?;
            if as_json {
                show::json(&list);
            } else {
                show::table(
                    &["name", "provider", "nodes", "description"],
                    list.iter()
                        .map(|t| vec![t.name.clone(), t.provider.clone(), t.nodes.to_string(), t.description.clone()])
                        .collect(),
                );
            }
        }
        TemplateCommand::Show { name } => {
            let t: TemplateView = c.get(&format!("/api/v1/templates/{name}"))?;
            if as_json {
                show::json(&t);
            } else {
                println!("name:        {}", t.name);
                println!("provider:    {}", t.provider);
                println!("description: {}", t.description);
                println!("nodes:       {} ({} cores)", t.nodes, t.node_cores);
                println!("quota:       {} cores (nodes and proxies)", t.quota_cores);
                println!("proxies:     {}", t.proxies);
                println!("names:       {}0001, …", t.series_prefix);
                println!(
                    "deploying:   {} per minute, {} retries, pauses after {} failures in a row",
                    t.deploy_rate, t.deploy_retries, t.pause_after_failures
                );
                let rates: Vec<String> = ["Small", "Medium", "Large", "ExtraLarge"]
                    .iter()
                    .map(|s| {
                        let size = NodeSize::parse(s).expect("known size");
                        let micros = t
                            .rates
                            .get(*s)
                            .copied()
                            .unwrap_or_else(|| thunderhead_core::cost::default_rate_micros(size));
                        format!("{s} {}", thunderhead_core::cost::format_money(micros))
                    })
                    .collect();
                println!("prices:      {} {} per hour", rates.join(", "), t.currency);
                if !t.pins.is_empty() {
                    let pins: Vec<String> = t.pins.iter().map(|(name, version)| format!("{name}={version}")).collect();
                    println!("pinned:      {}", pins.join(", "));
                }
                match &t.availability {
                    thunderhead_core::availability::Availability::Manual => println!("availability: manual"),
                    thunderhead_core::availability::Availability::Schedule {
                        windows,
                        timezone,
                        lead_time,
                        drain_before_end,
                    } => {
                        let windows: Vec<String> = windows.iter().map(ToString::to_string).collect();
                        println!(
                            "availability: schedule {} ({timezone}), started {} before, drained {} before the end",
                            windows.join("; "),
                            show::duration(*lead_time),
                            show::duration(*drain_before_end)
                        );
                    }
                }
                for p in &t.proxy_list {
                    let detail = p.url.clone().or_else(|| p.cause.clone()).unwrap_or_default();
                    println!("proxy:       {} {} {detail}", p.name, p.state);
                }
                if let Some(why) = &t.paused {
                    println!("PAUSED:      {why} (thunderhead template resume {})", t.name);
                }
                println!("created:     {}", show::time(Some(t.created_at)));
                for (k, v) in &t.settings {
                    println!("{k}: {}", v.as_str().map_or_else(|| v.to_string(), str::to_string));
                }
            }
        }
        TemplateCommand::Delete { name } => {
            c.delete(&format!("/api/v1/templates/{name}"))?;
            if !as_json {
                println!("deleted template {name}");
            }
        }
        TemplateCommand::Validate { name } => {
            let checks: Vec<Value> = c.post(&format!("/api/v1/templates/{name}/validate"), &json!({}))?;
            let ok = checks.iter().all(|c| c["ok"] == Value::Bool(true));
            if as_json {
                show::json(&checks);
            } else {
                show::table(
                    &["check", "result", "detail"],
                    checks
                        .iter()
                        .map(|c| {
                            vec![
                                c["name"].as_str().unwrap_or("").to_string(),
                                if c["ok"] == Value::Bool(true) { "OK" } else { "FAILED" }.to_string(),
                                c["detail"].as_str().unwrap_or("").to_string(),
                            ]
                        })
                        .collect(),
                );
            }
            return Ok(if ok { 0 } else { 1 });
        }
    }
    Ok(0)
}

fn node_rows(nodes: &[NodeView]) -> Vec<Vec<String>> {
    nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.template.clone().unwrap_or_else(|| "(on-premises)".into()),
                show::opt(&n.size),
                n.cores.to_string(),
                n.state.clone(),
                n.health.clone(),
                n.running_tasks.to_string(),
            ]
        })
        .collect()
}

/// Runs a node operation and prints what happened to each node; returns the per-node results.
fn node_action(
    c: &Client,
    action: NodeAction,
    sel: NodeSelection,
    force: bool,
    as_json: bool,
) -> Result<Vec<NodeActionResult>> {
    let request = NodeActionRequest { action, template: sel.template, names: sel.names, force };
    let results: Vec<NodeActionResult> = c.post("/api/v1/nodes/actions", &request)?;
    if as_json {
        show::json(&results);
    } else {
        show::table(
            &["node", "result", "state or reason"],
            results
                .iter()
                .map(|r| vec![r.node.clone(), if r.ok { "OK" } else { "FAILED" }.into(), r.message.clone()])
                .collect(),
        );
        if results.is_empty() {
            println!("no nodes to act on");
        }
    }
    for r in results.iter().filter(|r| !r.ok) {
        eprintln!("error: {}: {}", r.node, r.message);
    }
    Ok(results)
}

/// Exit code 1 if the operation failed on any node.
fn exit_code(results: &[NodeActionResult]) -> i32 {
    i32::from(results.iter().any(|r| !r.ok))
}

fn acted(results: Result<Vec<NodeActionResult>>) -> Result<i32> {
    results.map(|r| exit_code(&r))
}

fn node(c: &Client, command: NodeCommand, as_json: bool) -> Result<i32> {
    match command {
        NodeCommand::Add { template, count, size } => {
            // Checked here too, so the mistake is named before anything is sent.
            NodeSize::parse_burst(&size).map_err(|e| anyhow::anyhow!(e.message))?;
            let added: Vec<NodeView> =
                c.post("/api/v1/nodes", &json!({"template": template, "count": count, "size": size}))?;
            if as_json {
                show::json(&added);
            } else {
                let names: Vec<&str> = added.iter().map(|n| n.name.as_str()).collect();
                println!("added {} node(s) from template {template}: {}", added.len(), names.join(", "));
            }
        }
        NodeCommand::List { template } => {
            let path = match &template {
                Some(t) => format!("/api/v1/nodes?template={t}"),
                None => "/api/v1/nodes".to_string(),
            };
            let nodes: Vec<NodeView> = c.get(&path)?;
            if as_json {
                show::json(&nodes);
            } else {
                show::table(&["name", "template", "size", "cores", "state", "health", "running"], node_rows(&nodes));
            }
        }
        NodeCommand::Start { nodes, wait } => {
            let started = node_action(c, NodeAction::Start, nodes, false, as_json)?;
            if !wait || started.iter().all(|r| !r.ok) {
                return Ok(exit_code(&started));
            }
            let names: Vec<&str> = started.iter().filter(|r| r.ok).map(|r| r.node.as_str()).collect();
            let fetch = || -> Result<Vec<NodeView>> {
                let all: Vec<NodeView> = c.get("/api/v1/nodes")?;
                Ok(all.into_iter().filter(|n| names.contains(&n.name.as_str())).collect())
            };
            let done = |n: &NodeView| matches!(n.state.as_str(), "Offline" | "Online");
            wait::await_nodes(fetch, "Offline", std::time::Duration::from_secs(30 * 60), done)?;
            return Ok(exit_code(&started));
        }
        NodeCommand::Stop(sel) => return acted(node_action(c, NodeAction::Stop, sel, false, as_json)),
        NodeCommand::Online(sel) => return acted(node_action(c, NodeAction::Online, sel, false, as_json)),
        NodeCommand::Offline { nodes, force } => {
            return acted(node_action(c, NodeAction::Offline, nodes, force, as_json));
        }
        NodeCommand::Delete(sel) => return acted(node_action(c, NodeAction::Delete, sel, false, as_json)),
        NodeCommand::Log { name } => {
            let log: Vec<NodeLogEntry> = c.get(&format!("/api/v1/nodes/{name}/log"))?;
            if as_json {
                show::json(&log);
            } else {
                for entry in log {
                    println!("{}  {}", show::time(Some(entry.at)), entry.message);
                }
            }
        }
        NodeCommand::Revoke { name } => {
            let answer: Value = c.post(&format!("/api/v1/nodes/{name}/revoke"), &json!({}))?;
            if as_json {
                show::json(&answer);
            } else {
                println!(
                    "revoked {} certificate(s) of {name}: its agent is refused from its next connection until it joins again",
                    answer["revoked"]
                );
            }
        }
    }
    Ok(0)
}

fn read_job_file(path: &Path) -> Result<JobSubmission> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the job file {}", path.display()))?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let parsed = if is_toml {
        toml::from_str::<JobSubmission>(&text).map_err(|e| anyhow::anyhow!("{e}"))
    } else {
        serde_json::from_str::<JobSubmission>(&text).map_err(|e| anyhow::anyhow!("{e}"))
    };
    parsed.with_context(|| {
        format!("the job file {} is not a valid {} job file", path.display(), if is_toml { "TOML" } else { "JSON" })
    })
}

fn job(c: &Client, command: JobCommand, as_json: bool) -> Result<i32> {
    match command {
        JobCommand::Submit(args) => {
            let mut submission = match &args.file {
                Some(path) => {
                    if !args.command.is_empty() {
                        bail!("give either --file or a command after --, not both");
                    }
                    read_job_file(path)?
                }
                None => {
                    if args.command.is_empty() {
                        bail!(
                            "no command to run (give it after --, e.g. thunderhead job submit --sweep 1-10 -- echo '*')"
                        );
                    }
                    JobSubmission { command: Some(args.command), ..Default::default() }
                }
            };
            submission.name = args.name.or(submission.name);
            submission.priority = args.priority.or(submission.priority);
            submission.cores_per_task = args.cores_per_task.or(submission.cores_per_task);
            submission.sweep = args.sweep.or(submission.sweep);
            submission.retries = args.retries.or(submission.retries);
            if !args.inputs.is_empty() {
                // Local inputs go to the job's area, so the job's id is reserved first.
                let mut reserved: Option<u64> = None;
                let mut staged = Vec::new();
                for input in &args.inputs {
                    staged.push(stage_input(c, input, &mut reserved)?);
                }
                submission.inputs = Some(staged);
                submission.reserved_id = reserved;
            }
            if !args.outputs.is_empty() {
                submission.outputs = Some(args.outputs);
            }
            submission.upload_on = args.upload_on.or(submission.upload_on);
            let reply: SubmitReply = c.post("/api/v1/jobs", &submission)?;
            if as_json {
                show::json(&reply);
            } else {
                println!("{}", reply.id);
            }
        }
        JobCommand::List => {
            let jobs: Vec<JobView> = c.get("/api/v1/jobs")?;
            if as_json {
                show::json(&jobs);
            } else {
                show::table(
                    &["id", "name", "owner", "state", "priority", "tasks", "finished", "failed", "submitted"],
                    jobs.iter()
                        .map(|j| {
                            vec![
                                j.id.to_string(),
                                j.name.clone(),
                                j.owner.clone(),
                                j.state.clone(),
                                j.priority.clone(),
                                j.total_tasks.to_string(),
                                j.tasks.finished.to_string(),
                                j.tasks.failed.to_string(),
                                show::time(Some(j.submitted_at)),
                            ]
                        })
                        .collect(),
                );
            }
        }
        JobCommand::View { id } => {
            let j: JobView = c.get(&format!("/api/v1/jobs/{id}"))?;
            if as_json {
                show::json(&j);
            } else {
                print_job(&j);
            }
        }
        JobCommand::Wait { id } => return wait::wait(c, id, as_json),
        JobCommand::Output { id, to } => {
            let files: Vec<Value> = c.get_data(&format!("/api/v1/jobs/{id}/outputs"))?;
            for f in &files {
                let (index, path, location) = (
                    f["index"].as_str().unwrap_or("0"),
                    f["path"].as_str().unwrap_or("out"),
                    f["location"].as_str().unwrap_or(""),
                );
                let dest = to.join(index).join(path);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
                }
                c.download(&format!("/api/v1/blobs?location={}", thunderhead_agent::encode_query(location)), &dest)?;
            }
            if as_json {
                show::json(&files);
            } else {
                println!("downloaded {} output file(s) of job {id} into {}", files.len(), to.display());
            }
        }
        JobCommand::Cancel { id } => {
            let j: JobView = c.post(&format!("/api/v1/jobs/{id}/cancel"), &json!({}))?;
            if as_json {
                show::json(&j);
            } else {
                println!("job {id} canceled ({} task(s) canceled)", j.tasks.canceled);
            }
        }
        JobCommand::Requeue { id } => {
            let j: JobView = c.post(&format!("/api/v1/jobs/{id}/requeue"), &json!({}))?;
            if as_json {
                show::json(&j);
            } else {
                println!("job {id} requeued ({} task(s) queued again)", j.tasks.queued);
            }
        }
    }
    Ok(0)
}

/// Reads `--since`: an RFC 3339 time or date, or a span back from now.
fn parse_since(text: &str) -> Result<u64> {
    let now = std::time::SystemTime::now();
    let at = if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        t
    } else if let Ok(t) = humantime::parse_rfc3339_weak(&format!("{text} 00:00:00")) {
        t
    } else if let Ok(span) = humantime::parse_duration(text) {
        now.checked_sub(span).unwrap_or(std::time::UNIX_EPOCH)
    } else {
        bail!("--since \"{text}\" is neither a time nor a span (write e.g. 2026-11-01, 2026-11-01T08:00:00Z or 24h)")
    };
    Ok(at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

fn money(cost: &std::collections::BTreeMap<String, f64>) -> String {
    if cost.is_empty() {
        return "0.00".into();
    }
    cost.iter().map(|(c, v)| format!("{v:.2} {c}")).collect::<Vec<_>>().join(", ")
}

fn cost(c: &Client, args: CostArgs, as_json: bool) -> Result<i32> {
    let mut query = Vec::new();
    if let Some(t) = &args.template {
        query.push(format!("template={t}"));
    }
    if let Some(j) = args.job {
        query.push(format!("job={j}"));
    }
    if let Some(s) = &args.since {
        query.push(format!("since={}", parse_since(s)?));
    }
    let report: CostReport = c.get(&format!("/api/v1/cost?{}", query.join("&")))?;
    if as_json {
        show::json(&report);
        return Ok(0);
    }
    println!("from {} to {}", show::time(Some(report.since)), show::time(Some(report.until)));
    if !report.sets.is_empty() {
        show::table(
            &["set", "node-hours", "proxy-hours", "cost"],
            report
                .sets
                .iter()
                .map(|s| {
                    vec![
                        s.template.clone(),
                        format!("{:.2}", s.node_hours),
                        format!("{:.2}", s.proxy_hours),
                        money(&s.cost),
                    ]
                })
                .collect(),
        );
    }
    if !report.jobs.is_empty() {
        show::table(
            &["job", "name", "core-hours", "cost"],
            report
                .jobs
                .iter()
                .map(|j| vec![j.id.to_string(), j.name.clone(), format!("{:.3}", j.core_hours), money(&j.cost)])
                .collect(),
        );
    }
    println!("total: {}", money(&report.total));
    Ok(0)
}

fn package(c: &Client, command: PackageCommand, as_json: bool) -> Result<i32> {
    match command {
        PackageCommand::Upload { path, name, template } => {
            let packed;
            let (file, file_name) = if path.is_dir() {
                packed = tempfile::Builder::new().suffix(".tar.gz").tempfile()?;
                thunderhead_agent::archive::pack_dir(&path, packed.path())
                    .with_context(|| format!("cannot pack the directory {}", path.display()))?;
                let base = path.file_name().map_or("package".into(), |n| n.to_string_lossy().into_owned());
                (packed.path().to_path_buf(), format!("{base}.tar.gz"))
            } else {
                let n =
                    path.file_name().map(|n| n.to_string_lossy().into_owned()).context("give a file or a directory")?;
                (path.clone(), n)
            };
            let name = name.unwrap_or_else(|| {
                let stem = file_name.trim_end_matches(".tar.gz").trim_end_matches(".tgz").trim_end_matches(".zip");
                stem.to_string()
            });
            let mut query = format!("file={file_name}");
            if let Some(t) = &template {
                query.push_str(&format!("&template={t}"));
            }
            let p: PackageView = c.put_file(&format!("/api/v1/packages/{name}?{query}"), &file)?;
            if as_json {
                show::json(&p);
            } else {
                println!("uploaded package {} version {} ({} bytes, sha256 {})", p.name, p.version, p.size, p.sha256);
            }
        }
        PackageCommand::List => {
            let list: Vec<PackageView> = c.get("/api/v1/packages")?;
            if as_json {
                show::json(&list);
            } else {
                show::table(
                    &["name", "version", "versions", "template", "size", "uploaded"],
                    list.iter()
                        .map(|p| {
                            vec![
                                p.name.clone(),
                                p.version.to_string(),
                                p.versions.to_string(),
                                p.template.clone().unwrap_or_else(|| "(all)".into()),
                                p.size.to_string(),
                                show::time(Some(p.uploaded_at)),
                            ]
                        })
                        .collect(),
                );
            }
        }
        PackageCommand::View { name } => {
            let versions: Vec<PackageView> = c.get_data(&format!("/api/v1/packages/{name}"))?;
            if as_json {
                show::json(&versions);
            } else {
                show::table(
                    &["version", "file", "size", "sha256", "uploaded"],
                    versions
                        .iter()
                        .map(|p| {
                            vec![
                                p.version.to_string(),
                                p.file_name.clone(),
                                p.size.to_string(),
                                p.sha256.clone(),
                                show::time(Some(p.uploaded_at)),
                            ]
                        })
                        .collect(),
                );
            }
        }
        PackageCommand::Download { name, version, to } => {
            let versions: Vec<PackageView> = c.get(&format!("/api/v1/packages/{name}"))?;
            let chosen = match version {
                Some(v) => versions
                    .iter()
                    .find(|p| p.version == v)
                    .with_context(|| format!("package {name} has no version {v}"))?,
                None => &versions[0],
            };
            let to = to.unwrap_or_else(|| PathBuf::from(&chosen.file_name));
            let n = c.download(&format!("/api/v1/packages/{name}/download?version={}", chosen.version), &to)?;
            if !as_json {
                println!("downloaded {name} version {} to {} ({n} bytes)", chosen.version, to.display());
            }
        }
        PackageCommand::Remove { name, version } => {
            let mut path = format!("/api/v1/packages/{name}");
            if let Some(v) = version {
                path.push_str(&format!("?version={v}"));
            }
            let removed: Value = c.delete_json(&path)?;
            if as_json {
                show::json(&removed);
            } else {
                println!("removed package {name} versions {}", removed["removed"]);
            }
        }
        PackageCommand::Install { template } => {
            let results: Vec<NodeActionResult> = c.post("/api/v1/packages/install", &json!({"template": template}))?;
            if as_json {
                show::json(&results);
            } else {
                show::table(
                    &["node", "result", "detail"],
                    results
                        .iter()
                        .map(|r| vec![r.node.clone(), if r.ok { "OK" } else { "SKIPPED" }.into(), r.message.clone()])
                        .collect(),
                );
                println!("each node's log and `node list --json` (packages) show when the installation is done");
            }
        }
    }
    Ok(0)
}

/// An `--input`: a blob location is kept; a local file (its name may hold `*` runs, matched
/// against the directory's files) is uploaded now and named by its new location.
fn stage_input(c: &Client, input: &str, reserved: &mut Option<u64>) -> Result<String> {
    let (source, local) = thunderhead_core::staging::split_pair(input);
    let is_location = source.starts_with(thunderhead_core::staging::LOCAL_STORE)
        || ["file://", "az://", "s3://"].iter().any(|s| source.starts_with(s));
    if is_location {
        return Ok(input.to_string());
    }
    let path = Path::new(source);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let pattern = path.file_name().map(|n| n.to_string_lossy().into_owned()).context("the input names no file")?;
    if dir.to_string_lossy().contains('*') {
        bail!("input \"{input}\": only the file name of a local input may hold * (the sweep index)");
    }
    let id = match reserved {
        Some(id) => *id,
        None => {
            let reply: SubmitReply = c.post("/api/v1/jobs/reserve", &json!({}))?;
            *reserved = Some(reply.id);
            reply.id
        }
    };
    let matches = |name: &str| thunderhead_agent::glob_match(&pattern, name);
    let mut uploaded = 0;
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the directory {} of input {input}", dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && matches(&name) {
            let _: Value = c.put_file(&format!("/api/v1/jobs/{id}/inputs/{name}"), &entry.path())?;
            uploaded += 1;
        }
    }
    if uploaded == 0 {
        bail!("input \"{input}\" matches no file in {} (give an existing file, or a blob URI)", dir.display());
    }
    let location = format!("{}jobs/{id}/inputs/{pattern}", thunderhead_core::staging::LOCAL_STORE);
    Ok(match local {
        Some(l) => format!("{location}:{l}"),
        None => format!("{location}:{pattern}"),
    })
}

fn print_job(j: &JobView) {
    let t = &j.tasks;
    println!("job:       {} ({})", j.id, j.name);
    println!("state:     {}", j.state);
    println!("priority:  {}", j.priority);
    println!(
        "tasks:     {} total: {} queued, {} running, {} finished, {} failed, {} canceled",
        j.total_tasks, t.queued, t.running, t.finished, t.failed, t.canceled
    );
    if let thunderhead_core::view::JobSpecView::Sweep { command, range } = &j.spec {
        println!("sweep:     {range} of: {}", command.join(" "));
    }
    println!("submitted: {}", show::time(Some(j.submitted_at)));
    println!("started:   {}", show::time(j.started_at));
    println!("ended:     {}", show::time(j.ended_at));
}

/// The most task rows `task list` prints.
const TASK_LIST_LIMIT: u64 = 100_000;

fn parse_task_id(text: &str) -> Result<(u64, u64)> {
    let parsed = text.split_once('.').and_then(|(j, i)| Some((j.parse().ok()?, i.parse().ok()?)));
    parsed.with_context(|| format!("task \"{text}\" is not a task id (expected JOB.INDEX, e.g. 3.17)"))
}

fn task(c: &Client, command: TaskCommand, as_json: bool) -> Result<i32> {
    match command {
        TaskCommand::List { id, state } => {
            let mut path = format!("/api/v1/jobs/{id}/tasks?limit={TASK_LIST_LIMIT}");
            if let Some(s) = &state {
                path.push_str(&format!("&state={s}"));
            }
            let state_given = state;
            let tasks: Vec<TaskView> = c.get(&path)?;
            if as_json {
                show::json(&tasks);
            } else {
                show::table(
                    &["task", "state", "attempt", "node", "exit", "started", "ended"],
                    tasks
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.state.clone(),
                                t.attempt.to_string(),
                                show::opt(&t.node),
                                show::opt(&t.exit_code),
                                show::time(t.started_at),
                                show::time(t.ended_at),
                            ]
                        })
                        .collect(),
                );
                let job: JobView = c.get(&format!("/api/v1/jobs/{id}"))?;
                let listed = tasks.len() as u64;
                let whole = state_given.is_none() && listed < TASK_LIST_LIMIT;
                if whole && job.total_tasks > listed && !tasks.is_empty() {
                    println!("({} of {} tasks have started; the rest are queued)", listed, job.total_tasks);
                }
            }
        }
        TaskCommand::Output { task, stderr } => {
            let (id, index) = parse_task_id(&task)?;
            let answer: Value = c.get(&format!("/api/v1/jobs/{id}/tasks/{index}"))?;
            let output: TaskOutput = serde_json::from_value(answer["output"].clone())?;
            if as_json {
                show::json(&answer);
            } else {
                print!("{}", if stderr { &output.stderr } else { &output.stdout });
            }
        }
    }
    Ok(0)
}

fn user(c: &Client, command: UserCommand, as_json: bool) -> Result<i32> {
    let issued = |answer: Value, verb: &str| {
        if as_json {
            show::json(&answer);
            return;
        }
        let field = |k: &str| answer[k].as_str().unwrap_or_default().to_string();
        println!("{verb} {} ({})", field("name"), field("role"));
        println!("token (shown only now; keep it secret): {}", field("token"));
        println!("use it with: export THUNDERHEAD_TOKEN=<the token>   (or --token)");
    };
    match command {
        UserCommand::Add { name, role } => {
            let answer: Value = c.post("/api/v1/users", &json!({"name": name, "role": role}))?;
            issued(answer, "added user");
        }
        UserCommand::Token { name } => {
            let answer: Value = c.post(&format!("/api/v1/users/{name}/token"), &json!({}))?;
            issued(answer, "new token for");
        }
        UserCommand::Remove { name } => {
            let answer: Value = c.delete_json(&format!("/api/v1/users/{name}"))?;
            if as_json {
                show::json(&answer);
            } else {
                println!("removed user {name}: their token no longer works");
            }
        }
        UserCommand::List => {
            let users: Vec<thunderhead_core::access::UserView> = c.get("/api/v1/users")?;
            if as_json {
                show::json(&users);
            } else {
                show::table(
                    &["name", "role", "since"],
                    users
                        .iter()
                        .map(|u| vec![u.name.clone(), u.role.name().to_string(), show::time(Some(u.created_at))])
                        .collect(),
                );
            }
        }
        UserCommand::Whoami => {
            let me: thunderhead_core::access::Caller = c.get("/api/v1/whoami")?;
            if as_json {
                show::json(&me);
            } else {
                println!("{} ({})", me.name, me.role.name());
            }
        }
    }
    Ok(0)
}

fn join_token(c: &Client, command: TokenCommand, as_json: bool) -> Result<i32> {
    match command {
        TokenCommand::Create { template, expires } => {
            let body = json!({"template": template, "expires_in_secs": expires.as_secs()});
            let answer: Value = c.post("/api/v1/join-tokens", &body)?;
            if as_json {
                show::json(&answer);
            } else {
                let scope = answer["template"].as_str().map_or("any node".to_string(), |t| format!("nodes of {t}"));
                println!(
                    "join token {} for {scope}, until {}",
                    answer["id"].as_str().unwrap_or_default(),
                    show::time(answer["expires_at"].as_u64())
                );
                println!("token (shown only now; keep it secret): {}", answer["token"].as_str().unwrap_or_default());
                println!("join a node with: thunderhead agent --server URL --ca ca.pem --join-token <the token>");
            }
        }
        TokenCommand::List => {
            let tokens: Vec<thunderhead_core::access::JoinTokenView> = c.get("/api/v1/join-tokens")?;
            if as_json {
                show::json(&tokens);
            } else {
                show::table(
                    &["id", "for", "expires", "created"],
                    tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.template.clone().unwrap_or_else(|| "any node".into()),
                                show::time(Some(t.expires_at)),
                                show::time(Some(t.created_at)),
                            ]
                        })
                        .collect(),
                );
            }
        }
        TokenCommand::Remove { id } => {
            let answer: Value = c.delete_json(&format!("/api/v1/join-tokens/{id}"))?;
            if as_json {
                show::json(&answer);
            } else {
                println!("removed join token {id}");
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_parse_and_bad_ones_are_explained() {
        assert_eq!(parse_task_id("3.17").unwrap(), (3, 17));
        let err = parse_task_id("3-17").unwrap_err().to_string();
        assert!(err.contains("\"3-17\"") && err.contains("JOB.INDEX"), "{err}");
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
