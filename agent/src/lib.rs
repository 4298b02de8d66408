//! The agent: the sidecar that makes a node app a server of the farm.
//!
//! One agent runs per server. It starts the node app as its child process and keeps it
//! running, samples the server's metrics, and holds one bidirectional gRPC stream to the
//! controller over which it sends samples and events and receives commands.
//!
//! # Layout
//! - [`supervisor`]: owns the node child process; restarts it when it exits on its own and
//!   starts / stops / restarts it on command; publishes the node's state.
//! - [`sampler`]: turns `/proc` readings and the node's `/metrics` into a `MetricsSample`.
//! - [`cgroup`]: a container's own CPU, memory, pids and I/O from its cgroup (v1 and v2).
//! - [`link`]: the stream to the controller: hello, reconnects with backoff and jitter, and a
//!   bounded outbox that holds what could not be sent while the controller was away.
//!
//! Retries use `farm-backoff`, node probes `farm-node-api`; the controller is met only on
//! the wire, through the `farm.v1` contract.
//!
//! The agent stops on one [`CancellationToken`]; it then stops its node and returns.

pub mod cgroup;
mod commands;
mod link;
mod sampler;

pub mod supervisor;

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use link::OUTBOX_CAPACITY;

/// Everything an agent needs to know, validated before anything starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server id, at least 1.
    pub server_id: u32,
    /// Display name, `server-N` unless given.
    pub name: String,
    /// The controller's gRPC address, as a URL (`http://127.0.0.1:50051`).
    pub controller_url: String,
    /// Where the node app listens; the agent probes it there. Port 0 lets the kernel pick a
    /// port, which the agent then holds for the node for as long as it runs (see [`NodePort`]).
    pub node_listen: SocketAddr,
    /// How the controller reaches the node app (host:port), told in the hello; the node's
    /// own address when `None`.
    pub node_advertise: Option<String>,
    /// The program and arguments that start the node app; the agent adds `--listen ADDR`
    /// (and `--reuse-port` when it holds the port), and `--fault-channel stdin`: the node's
    /// standard input is the pipe over which the agent hands it its faults.
    pub node_command: Vec<String>,
    /// Which runtime started this server, told in the hello.
    pub runtime: String,
    /// The sample interval until the controller sets one.
    pub sample_interval: Duration,
    /// The farm's token, sent with the stream; a controller that has one refuses a stream
    /// without it.
    pub token: Option<farm_proto::auth::Token>,
    /// The CA certificates (PEM) trusted for an `https://` controller.
    pub tls_ca: Option<Vec<u8>>,
}

/// Why an agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; nothing was started.
    #[error("invalid agent configuration: {0}")]
    Config(String),
    /// The node's port could not be had.
    #[error("cannot hold a port for the node at {address}: {source}")]
    NodePort {
        /// The address asked for.
        address: SocketAddr,
        /// Why the kernel refused.
        source: std::io::Error,
    },
    /// The controller URL cannot be used (not a URL, or `https://` without a CA).
    #[error("controller address: {0}")]
    ControllerUrl(String),
}

/// The node's port, known before the node starts.
///
/// A fixed port is the node's to bind. For port 0 the agent binds a socket of its own with
/// `SO_REUSEPORT` (bound, never listening), learns the port the kernel gave it, and keeps the
/// socket for its lifetime. The node then binds the same port with `SO_REUSEPORT` at every
/// start, so a restarted node comes back on the same port, and no other program (which would
/// need `SO_REUSEPORT` and the same user) can take the port in between. Connections only
/// ever reach the node's listening socket.
#[derive(Debug)]
pub struct NodePort {
    /// Where the node listens.
    pub address: SocketAddr,
    /// The agent's hold on `address`, when the kernel picked it.
    held: Option<tokio::net::TcpSocket>,
}

impl NodePort {
    /// Holds a port for `listen` when it asks for port 0; takes `listen` as it is otherwise.
    pub fn reserve(listen: SocketAddr) -> Result<Self, Error> {
        if listen.port() != 0 {
            return Ok(Self {
                address: listen,
                held: None,
            });
        }
        let failed = |source| Error::NodePort {
            address: listen,
            source,
        };
        let socket = match listen {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(failed)?;
        socket.set_reuseport(true).map_err(failed)?;
        socket.bind(listen).map_err(failed)?;
        let address = socket.local_addr().map_err(failed)?;
        Ok(Self {
            address,
            held: Some(socket),
        })
    }

    /// The arguments that tell the node where to listen.
    pub fn node_args(&self) -> Vec<String> {
        let mut args = vec!["--listen".to_string(), self.address.to_string()];
        if self.held.is_some() {
            args.push("--reuse-port".into());
        }
        args
    }

    /// Where the agent itself reaches the node: its listen address, or loopback when the
    /// node listens on every interface (as it does in a container).
    pub fn probe_address(&self) -> SocketAddr {
        let mut address = self.address;
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        address
    }
}

impl Config {
    /// Checks the configuration before anything starts.
    pub fn validate(&self) -> Result<(), Error> {
        if self.server_id == 0 {
            return Err(Error::Config("server id must be at least 1".into()));
        }
        if self.node_command.is_empty() {
            return Err(Error::Config("the node command is empty".into()));
        }
        let interval_ms = self.sample_interval.as_millis();
        let bounds = farm_proto::limits::MIN_SAMPLE_INTERVAL_MS as u128
            ..=farm_proto::limits::MAX_SAMPLE_INTERVAL_MS as u128;
        if !bounds.contains(&interval_ms) {
            return Err(Error::Config(format!(
                "sample interval {interval_ms} ms is outside {} to {} ms",
                bounds.start(),
                bounds.end()
            )));
        }
        Ok(())
    }
}

/// Runs the agent until `shutdown` is cancelled: starts the node, then keeps the link to the
/// controller. On shutdown the node is stopped before this returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    config.validate()?;
    let endpoint = farm_proto::tls::endpoint(&config.controller_url, config.tls_ca.as_deref())
        .map_err(Error::ControllerUrl)?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);

    let node_port = NodePort::reserve(config.node_listen)?;
    let mut command = config.node_command.clone();
    command.extend(node_port.node_args());
    command.extend(["--fault-channel".into(), "stdin".into()]);
    let probe_address = node_port.probe_address().to_string();
    let advertise = config
        .node_advertise
        .clone()
        .unwrap_or_else(|| node_port.address.to_string());

    let (events_tx, events_rx) = tokio::sync::mpsc::channel(64);
    let supervisor = supervisor::spawn(
        supervisor::NodeSpec {
            command,
            address: probe_address.clone(),
        },
        events_tx,
        shutdown.child_token(),
    );
    link::run(
        link::Link::new(
            config,
            link::NodeAddresses {
                probe: probe_address,
                advertise,
            },
            endpoint,
            supervisor.clone(),
            events_rx,
        ),
        shutdown,
    )
    .await;
    supervisor.stopped().await;
    // The node has stopped: the port may go.
    drop(node_port);
    Ok(())
}
