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
//! - [`scenario`]: `farm scenario run|check|list|show|stop`, incidents as code.
//! - [`history`]: `farm runs list|show|compare` and `farm events`, from the farm's history.
//! - [`lb`]: `farm lb config haproxy|nginx|caddy`, a load balancer's config for the farm.
//! - [`docker`]: `farm down`, `farm compose`, `farm probe` and the docker runtime's settings.
//! - [`signal`]: the one `shutdown_signal()`.
//! - [`swarm`]: the swarm runtime's settings and `farm down` for a swarm farm.
//! - [`token`]: the farm's token and the data directory that keeps it.

mod docker;
mod fault;
mod history;
mod lb;
mod loadtest;
mod report;
mod roles;
mod scenario;
mod signal;
mod swarm;
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
    Up(Box<up::UpArgs>),
    /// List the servers of a running farm.
    Status(report::StatusArgs),
    /// Check every server's health now; exits 1 when any server is not healthy.
    Health(report::HealthArgs),
    /// Run a load test against servers of a running farm, with live progress.
    LoadTest(loadtest::LoadTestArgs),
    /// Make servers misbehave on command: set, clear and list their faults.
    Fault(fault::FaultArgs),
    /// Incidents as code: run and check scenario files (load phases, faults at offsets, SLO
    /// verdicts).
    Scenario(scenario::ScenarioArgs),
    /// The farm's past and running load tests and scenario runs, kept across restarts: list,
    /// show, compare two.
    Runs(history::RunsArgs),
    /// The farm's events (servers added, status changes, faults, runs), kept across
    /// restarts; --follow keeps printing them.
    Events(history::EventsArgs),
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

/// How often the long-running multi-threaded roles (`farm up`, `farm controller`, `farm
/// gateway`) hand the allocator's free pages back to the system: glibc's arenas keep the pages
/// those roles free, and their resident memory crept up for hours while the memory they held
/// stayed flat (`BENCHMARKS.md` has the soaks before and after).
const GIVE_BACK_FREE_MEMORY_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Trims the allocator every [`GIVE_BACK_FREE_MEMORY_EVERY`], for as long as the runtime runs.
async fn give_back_free_memory() {
    let mut every = tokio::time::interval(GIVE_BACK_FREE_MEMORY_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // It walks every arena under its lock and gives pages back one call at a time: off
        // the async workers.
        let _ = tokio::task::spawn_blocking(farm_trim::give_back_free_memory).await;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet_role = matches!(
        cli.command,
        Command::Agent(_) | Command::Node(_) | Command::Probe(_)
    );
    // The long-running roles use every core; a server's two processes and the one-shot verbs
    // one thread each, which keeps fifty servers light.
    let many_threads = matches!(
        cli.command,
        Command::Up(_) | Command::Controller(_) | Command::Gateway(_)
    );
    let runtime = if many_threads {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("farm: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (components, otlp_flag) = traced_components(&cli.command);
    // The exporters' channels are made inside the runtime.
    let telemetry = {
        let _inside = runtime.enter();
        init_tracing(
            if quiet_role { "warn" } else { "info" },
            components,
            otlp_flag.as_deref(),
        )
    };
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("farm: {error}");
            return ExitCode::FAILURE;
        }
    };
    if many_threads {
        runtime.spawn(give_back_free_memory());
    }
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(*args).await,
            Command::Controller(args) => roles::controller(args).await,
            Command::Gateway(args) => roles::gateway(args).await,
            Command::Status(args) => report::status(args).await,
            Command::Health(args) => report::health(args).await,
            Command::LoadTest(args) => loadtest::run(args).await,
            Command::Fault(args) => fault::run(args).await,
            Command::Scenario(args) => scenario::run(args).await,
            Command::Runs(args) => history::runs(args).await,
            Command::Events(args) => history::events(args).await,
            Command::Lb(args) => lb::run(args).await,
            Command::Agent(args) => roles::agent(args).await,
            Command::Node(args) => roles::node(args).await,
            Command::Down(args) => docker::down(args).await,
            Command::Probe(args) => docker::probe(args).await,
            Command::Compose(args) => docker::compose(args).await,
        }
    });
    if let Some(telemetry) = telemetry {
        // Inside the runtime: the exporters' gRPC channels run on it, and a one-thread runtime
        // moves only while something blocks on it.
        runtime.block_on(async move {
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        });
    }
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("farm: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The parts of the farm a command runs, whose spans it exports when tracing is on, and its
/// `--otlp-endpoint`. The one-shot verbs export nothing.
fn traced_components(command: &Command) -> (&'static [farm_telemetry::Component], Option<String>) {
    use farm_telemetry::Component;
    match command {
        Command::Up(args) => (
            &[Component::Gateway, Component::Controller],
            args.trace.otlp_endpoint.clone(),
        ),
        Command::Controller(args) => (&[Component::Controller], args.trace.otlp_endpoint.clone()),
        Command::Gateway(args) => (&[Component::Gateway], args.trace.otlp_endpoint.clone()),
        Command::Agent(args) => (&[Component::Agent], args.trace.otlp_endpoint.clone()),
        Command::Node(args) => (&[Component::Node], args.trace.otlp_endpoint.clone()),
        _ => (&[], None),
    }
}

/// Logs to standard error, filtered by `RUST_LOG` (`warn`, `info,farm_controller=debug`, ...)
/// or `default_filter`. A `Targets` filter rather than `EnvFilter`: it needs no regex engine,
/// which keeps fifty agents and nodes small in memory. Colours only on a terminal.
///
/// With an OTLP endpoint (`otlp_flag`, or the standard environment) the spans of `components`
/// are exported too; the log filter never shows them, and they cost nothing while tracing is
/// off (no layer wants them). Needs to run inside the Tokio runtime.
fn init_tracing(
    default_filter: &str,
    components: &[farm_telemetry::Component],
    otlp_flag: Option<&str>,
) -> anyhow::Result<Option<farm_telemetry::Telemetry>> {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
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
    let filter = from_env
        .unwrap_or_else(|| default_filter.parse().expect("a valid default filter"))
        .with_target(farm_telemetry::target::ALL, LevelFilter::OFF);
    let (telemetry, layers) = if components.is_empty() {
        (None, Vec::new())
    } else {
        match farm_telemetry::Settings::from_env(|name| std::env::var(name).ok(), otlp_flag)
            .map_err(anyhow::Error::msg)?
        {
            Some(settings) => {
                let (telemetry, layers) = farm_telemetry::Telemetry::start(&settings, components)
                    .map_err(anyhow::Error::msg)?;
                (Some(telemetry), layers)
            }
            None => (None, Vec::new()),
        }
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false)
                .with_filter(filter),
        )
        // An empty list of layers would say "never" to every callsite and silence the logs
        // too: no list at all while tracing is off.
        .with((!layers.is_empty()).then_some(layers))
        .init();
    Ok(telemetry)
}
