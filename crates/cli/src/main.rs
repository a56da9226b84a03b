//! `thunderhead`: the head node (`server`), the compute-node agent (`agent`) and the client
//! (every other subcommand) in one binary.
//!
//! Each command group lives in a module of its own, with its arguments and its handler; this
//! file only parses the command line and hands it to the group.

mod api_path;
mod bench;
mod client;
mod cost;
mod job;
mod node;
mod output;
mod package;
mod process;
mod provider;
mod quickstart;
mod show;
mod task;
mod template;
mod terminal;
mod token;
mod user;
mod wait;

use anyhow::Result;
use clap::{Parser, Subcommand};
use client::Client;
use output::Output;
use std::path::PathBuf;

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
    Server(process::ServerArgs),
    /// Join this machine to a cluster as a compute node
    Agent(process::AgentArgs),
    /// Relay a set's agents to the head node (deployed by providers with each started set)
    Proxy(process::ProxyArgs),
    /// Start a throw-away head node, burst 4 local nodes and run a 240-task sweep on them
    Quickstart(quickstart::QuickstartArgs),
    /// Node templates: how burst nodes are deployed
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// Providers of the head node's build: what each deploys and the settings it takes
    #[command(subcommand)]
    Provider(provider::ProviderCommand),
    /// Compute nodes: burst nodes from templates, and on-premises nodes
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Jobs: sweeps and task sets
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Tasks of a job
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// What burst nodes cost: node-hours and cost per set, per job, and in total
    Cost(cost::CostArgs),
    /// Packages: application files installed on burst nodes (hpcpack, hpcsync)
    #[command(subcommand)]
    Package(package::PackageCommand),
    /// Users and their API tokens: who may do what (see docs/security.md)
    #[command(subcommand)]
    User(user::UserCommand),
    /// Join tokens: how agents of on-premises nodes join the cluster
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Measure against baselines taken in the same run (see docs/benchmarks.md)
    Bench(bench::BenchArgs),
    /// Host many light agents in this process (rehearsals and benchmarks at scale): each joins
    /// as an on-premises node and ends every task it is given at once with exit code 0
    #[command(hide = true)]
    LightAgents(process::LightAgentsArgs),
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

fn run(cli: Cli) -> Result<i32> {
    let client =
        || Client::resolve(cli.server.as_deref(), cli.access.as_deref(), cli.token.as_deref(), cli.ca.as_deref());
    let out = Output::new(cli.json);
    match cli.command {
        Command::Server(args) => process::serve(args),
        Command::Agent(args) => process::agent(args, cli.server, cli.ca),
        Command::Proxy(args) => process::proxy(args, cli.server),
        Command::LightAgents(args) => process::light_agents(args, cli.server, cli.ca),
        Command::Quickstart(args) => quickstart::run(args),
        Command::Template(c) => template::run(&client()?, c, out),
        Command::Provider(c) => provider::run(&client()?, c, out),
        Command::Node(c) => node::run(&client()?, c, out),
        Command::Job(c) => job::run(&client()?, c, out),
        Command::Task(c) => task::run(&client()?, c, out),
        Command::Cost(args) => cost::run(&client()?, args, out),
        Command::Package(c) => package::run(&client()?, c, out),
        Command::User(c) => user::run(&client()?, c, out),
        Command::Token(c) => token::run(&client()?, c, out),
        Command::Bench(args) => bench::run(args, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
