//! `farm`: the one binary of the farm. It parses arguments and calls into the crates: the
//! user's verbs (`up`, `status`, `health`) and one subcommand per role (`controller`,
//! `agent`, `node`), so that a single static binary serves every process and container.
//!
//! # Layout
//! - `main.rs`: the command line, telemetry and the runtime per role.
//! - [`up`]: `farm up`, the controller plus a farm of local processes.
//! - [`roles`]: `farm controller`, `farm agent`, `farm node`.
//! - [`report`]: `farm status` and `farm health`, tables from a running controller.
//! - [`signal`]: the one `shutdown_signal()`.

mod report;
mod roles;
mod signal;
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
    /// Start a controller and a farm of servers as local processes (Ctrl-C stops them all).
    Up(up::UpArgs),
    /// List the servers of a running farm.
    Status(report::StatusArgs),
    /// Check every server's health now; exits 1 when any server is not healthy.
    Health(report::HealthArgs),
    /// Run the controller alone (agents started elsewhere connect to it).
    Controller(roles::ControllerArgs),
    /// Run one server's agent, which runs the server's node app.
    Agent(roles::AgentArgs),
    /// Run one server's node app.
    Node(roles::NodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet_role = matches!(cli.command, Command::Agent(_) | Command::Node(_));
    init_tracing(if quiet_role { "warn" } else { "info" });
    let outcome = match cli.command {
        Command::Up(args) => multi_thread(up::run(args)),
        Command::Controller(args) => multi_thread(roles::controller(args)),
        Command::Status(args) => current_thread(report::status(args)),
        Command::Health(args) => current_thread(report::health(args)),
        // A server is two small processes; one thread each keeps a farm of fifty light.
        Command::Agent(args) => current_thread(roles::agent(args)),
        Command::Node(args) => current_thread(roles::node(args)),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("farm: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
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
