//! `farm`: the one binary of the farm. It parses arguments and calls into the crates: the
//! user's verbs (`up`, `status`, `health`) and one subcommand per role (`controller`,
//! `gateway`, `agent`, `node`), so that a single static binary serves every process and
//! container.
//!
//! # Layout
//! - `main.rs`: the command line, telemetry and the runtime per role.
//! - [`up`]: `farm up`, the controller, the gateway and a farm of local processes.
//! - [`roles`]: `farm controller`, `farm gateway`, `farm agent`, `farm node`.
//! - [`report`]: `farm status` and `farm health`, tables from a running controller.
//! - [`loadtest`]: `farm load-test`, a load test run by the controller's engine.
//! - [`fault`]: `farm fault set|clear|list`, servers that misbehave on command.
//! - [`lb`]: `farm lb config haproxy|nginx|caddy`, a load balancer's config for the farm.
//! - [`docker`]: `farm down`, `farm compose`, `farm probe` and the docker runtime's settings.
//! - [`signal`]: the one `shutdown_signal()`.
//! - [`token`]: the farm's token and the data directory that keeps it.

mod docker;
mod fault;
mod lb;
mod loadtest;
mod report;
mod roles;
mod signal;
mod token;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A server farm simulator: N servers on one machine, each a small HTTP app plus an agent
/// that streams its metrics to a central controller.
#[derive(Debug, Parser)]
#[command(name = "farm", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a controller, the gateway and a farm of servers as local processes (Ctrl-C
    /// stops them all).
    Up(up::UpArgs),
    /// List the servers of a running farm.
    Status(report::StatusArgs),
    /// Check every server's health now; exits 1 when any server is not healthy.
    Health(report::HealthArgs),
    /// Run a load test against servers of a running farm, with live progress.
    LoadTest(loadtest::LoadTestArgs),
    /// Make servers misbehave on command: set, clear and list their faults.
    Fault(fault::FaultArgs),
    /// Put a load balancer in front of the farm: `farm lb config haproxy|nginx|caddy` writes
    /// its config (and with --watch keeps it current).
    Lb(lb::LbArgs),
    /// Run the controller alone (agents started elsewhere connect to it).
    Controller(roles::ControllerArgs),
    /// Run the gateway alone: REST, /docs, /metrics and grpc-web for a controller.
    Gateway(roles::GatewayArgs),
    /// Run one server's agent, which runs the server's node app.
    Agent(roles::AgentArgs),
    /// Run one server's node app.
    Node(roles::NodeArgs),
    /// Remove every container and network of a docker farm, found by its labels.
    Down(docker::DownArgs),
    /// Write compose/docker-compose.yml (and its Dockerfile and binary) for a whole farm.
    Compose(docker::ComposeArgs),
    /// Probe a node's /health; exits 0 when it answers 200 (the containers' health check).
    Probe(docker::ProbeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet_role = matches!(
        cli.command,
        Command::Agent(_) | Command::Node(_) | Command::Probe(_)
    );
    init_tracing(if quiet_role { "warn" } else { "info" });
    let outcome = match cli.command {
        Command::Up(args) => multi_thread(up::run(args)),
        Command::Controller(args) => multi_thread(roles::controller(args)),
        Command::Gateway(args) => multi_thread(roles::gateway(args)),
        Command::Status(args) => current_thread(report::status(args)),
        Command::Health(args) => current_thread(report::health(args)),
        Command::LoadTest(args) => current_thread(loadtest::run(args)),
        Command::Fault(args) => current_thread(fault::run(args)),
        Command::Lb(args) => current_thread(lb::run(args)),
        // A server is two small processes; one thread each keeps a farm of fifty light.
        Command::Agent(args) => current_thread(roles::agent(args)),
        Command::Node(args) => current_thread(roles::node(args)),
        Command::Down(args) => current_thread(docker::down(args)),
        Command::Probe(args) => current_thread(docker::probe(args)),
        Command::Compose(args) => current_thread(docker::compose(args)),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("farm: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error, filtered by `RUST_LOG` (`warn`, `info,farm_controller=debug`, ...)
/// or `default_filter`. A `Targets` filter rather than `EnvFilter`: it needs no regex engine,
/// which keeps fifty agents and nodes small in memory. Colours only on a terminal.
fn init_tracing(default_filter: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| match v.parse::<Targets>() {
            Ok(targets) => Some(targets),
            Err(e) => {
                eprintln!("farm: ignoring RUST_LOG={v:?}: {e}");
                None
            }
        });
    let filter =
        from_env.unwrap_or_else(|| default_filter.parse().expect("a valid default filter"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        )
        .with(filter)
        .init();
}

fn current_thread<F: Future<Output = anyhow::Result<ExitCode>>>(
    future: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn multi_thread<F: Future<Output = anyhow::Result<ExitCode>>>(
    future: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}
