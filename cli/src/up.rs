//! `farm up`: the controller and N servers as local processes, until Ctrl-C or SIGTERM.
//!
//! Everything that can be checked is checked before anything starts: the flags, the
//! controller's port and every node port. Then the controller serves, the process runtime
//! starts the agents, and `farm up` prints where everything is and how long the farm took
//! to turn healthy. On a signal it stops the agents first (each stops its node), then the
//! controller, and exits with nothing left behind.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use farm_controller::runtime::{MAX_SERVERS, ProcessRuntime, ProcessRuntimeConfig};
use farm_controller::status::Status;
use farm_controller::{Registry, Runtime};
use tokio_util::sync::CancellationToken;

use crate::roles::{DEFAULT_CONTROLLER_LISTEN, bind};
use crate::signal::shutdown_signal;

/// How long `farm up` waits for the farm to turn healthy before saying so.
const HEALTHY_WAIT: Duration = Duration::from_secs(30);

/// `farm up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Number of servers (1 to 1000).
    #[arg(long, short = 'n', env = "FARM_SERVERS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SERVERS)))]
    servers: u32,
    /// Address the controller's gRPC server listens on.
    #[arg(long, env = "FARM_CONTROLLER_LISTEN", default_value = DEFAULT_CONTROLLER_LISTEN)]
    listen: SocketAddr,
    /// Address the node apps listen on.
    #[arg(long, env = "FARM_NODE_HOST", default_value = "127.0.0.1")]
    node_host: IpAddr,
    /// Node N listens on this port plus N.
    #[arg(long, env = "FARM_NODE_BASE_PORT", default_value_t = 8000)]
    node_base_port: u16,
    /// Sample interval of the agents, in milliseconds (100 to 60000).
    #[arg(long, env = "FARM_SAMPLE_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(100..=60_000))]
    sample_interval_ms: u32,
}

pub(crate) async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let runtime_config = ProcessRuntimeConfig {
        binary: std::env::current_exe().context("cannot find the farm binary")?,
        controller_url: String::new(),
        node_host: args.node_host,
        base_port: args.node_base_port,
    };
    if runtime_config.node_address(args.servers).is_none() {
        bail!(
            "--node-base-port {} leaves no port for server {}: ports stop at 65535",
            args.node_base_port,
            args.servers
        );
    }
    let listener = bind(args.listen, "controller", "--listen").await?;
    let controller_addr = listener.local_addr()?;
    runtime_config
        .check_ports(1..=args.servers)
        .map_err(anyhow::Error::msg)?;

    let registry = Registry::new(Duration::from_millis(u64::from(args.sample_interval_ms)));

    let connect_host = if controller_addr.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        controller_addr.ip()
    };
    let controller_url = format!(
        "http://{}",
        SocketAddr::new(connect_host, controller_addr.port())
    );
    let runtime = Arc::new(ProcessRuntime::new(
        ProcessRuntimeConfig {
            controller_url: controller_url.clone(),
            ..runtime_config.clone()
        },
        registry.clone(),
    ));
    let controller_shutdown = CancellationToken::new();
    let controller = tokio::spawn(farm_controller::serve(
        listener,
        registry.clone(),
        Some(runtime.clone() as Arc<dyn Runtime>),
        controller_shutdown.clone(),
    ));
    let started = Instant::now();
    runtime
        .start(1..=args.servers)
        .map_err(anyhow::Error::msg)?;

    let first = runtime_config.node_address(1).expect("checked above");
    let last = runtime_config
        .node_address(args.servers)
        .expect("checked above");
    println!(
        "farm: controller  {controller_url}   (grpcurl -plaintext {} list)",
        SocketAddr::new(connect_host, controller_addr.port())
    );
    println!(
        "farm: servers     {} as local processes, nodes on http://{first} .. http://{last}",
        args.servers
    );

    tokio::select! {
        _ = shutdown_signal() => {
            println!("farm: stopping before the farm turned healthy");
        }
        healthy = wait_healthy(&registry, args.servers) => {
            if healthy {
                println!("farm: all {} servers healthy in {:.2} s; Ctrl-C stops the farm", args.servers, started.elapsed().as_secs_f64());
            } else {
                println!("farm: not every server turned healthy within {} s; see `farm health`; Ctrl-C stops the farm", HEALTHY_WAIT.as_secs());
            }
            shutdown_signal().await;
        }
    }

    println!("farm: stopping {} servers", args.servers);
    runtime.shutdown().await;
    controller_shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(5), controller).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("farm: controller ended with an error: {e}"),
        Ok(Err(e)) => eprintln!("farm: controller task failed: {e}"),
        Err(_) => eprintln!("farm: controller did not stop within 5 s"),
    }
    println!("farm: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Waits until `servers` servers are healthy; false after [`HEALTHY_WAIT`].
async fn wait_healthy(registry: &Registry, servers: u32) -> bool {
    let mut changes = registry.subscribe();
    let deadline = tokio::time::Instant::now() + HEALTHY_WAIT;
    loop {
        let healthy =
            registry.read(|entries| entries.filter(|e| e.status == Status::Healthy).count());
        if healthy >= servers as usize {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return false,
            changed = changes.changed() => if changed.is_err() { return false },
        }
    }
}
