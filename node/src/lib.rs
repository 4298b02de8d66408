//! `farm-node`: the simulated server of the farm.
//!
//! Every server in the farm runs this crate's HTTP app: a tiny service that answers
//! health checks, reports its own metrics, and on request misbehaves on purpose (slow
//! answers, error codes, large payloads, real CPU and memory load) so that the rest of
//! the farm has something realistic to watch. What its clients share with it (the JSON
//! bodies, the typed client, the `/proc` reader) lives in `farm-node-api`, and the bounds of
//! every request in `farm_proto::limits`.
//!
//! The node is meant to run on a `current_thread` tokio runtime next to its agent, with
//! a memory budget of a few MiB for the pair: request handling does not spawn threads,
//! hot paths avoid allocating, and large payloads are slices of one never-written zeroed
//! buffer that is not resident. The only other OS threads are the ones `POST /simulate-load`
//! starts on purpose to burn CPU and hold memory, which end with the load, and, with
//! `--fault-channel stdin`, the one that waits for fault profiles on standard input.
//!
//! # Layout
//!
//! - [`routes`]: the router ([`app`]), the documentation of every route, the handlers and
//!   their single error type.
//! - `server` (private): the accept loop and the per-connection service that counts
//!   requests and answers `GET /health` without going through the router.
//! - [`state`]: [`AppState`], the counters shared by the handlers and the counting code,
//!   and the background CPU sampler.
//! - `load` (private): the simulated load: validation of a request, the CPU burner
//!   threads and the resident memory they hold.
//! - `metrics` (private): the latency window behind the percentiles of `/metrics`.
//! - `prometheus` (private): the same figures in the Prometheus text format for
//!   `/metrics/prometheus`, and the latency histogram behind it.
//! - [`connections`]: how many connections a node holds, and for how long they may idle.
//! - `faults` (private): the fault engine: the profile its agent sets over a private
//!   channel ([`FaultChannel`]), the header faults a request may ask for, and what they do to
//!   each request, applied by `server` around the answer.
//!
//! [`run`] ties them together: it serves the routes of [`app`] on a listener until a
//! cancellation token fires. [`exit_with_parent`] is the watch that ends an orphaned node.

pub mod connections;
mod faults;
mod load;
mod metrics;
mod prometheus;
pub mod routes;
mod server;
pub mod state;

use std::time::Duration;

use farm_proto::limits::MAX_SERVER_NAME_LEN;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use routes::app;
pub use state::AppState;

/// The identity of one simulated server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The server's id, `N >= 1`.
    pub server_id: u32,
    /// The server's name, conventionally `server-N`.
    pub name: String,
    /// How many connections the node holds, and for how long they may sit idle.
    pub connections: connections::ConnectionLimits,
    /// Where the node's fault profiles come from; `None`: nowhere, the node does nothing wrong
    /// but what its routes are asked for.
    pub fault_channel: Option<FaultChannel>,
    /// Whether a request may ask for faults with the `x-farm-fault-*` headers
    /// ([`farm_node_api::api::FAULT_DELAY_HEADER`] and its neighbours); otherwise they are
    /// ignored.
    pub allow_fault_headers: bool,
}

/// Where a node reads its fault profiles: one JSON
/// [`FaultProfile`](farm_node_api::faults::FaultProfile) per line, each replacing the whole
/// profile (`{}` clears it). A line that does not parse or is out of bounds is logged and
/// changes nothing; at end of input the profile in force stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultChannel {
    /// The process's standard input, a pipe from the agent that nothing else can write to:
    /// a client that reaches the node's port cannot change its faults.
    Stdin,
}

impl Config {
    /// Checks the config before anything binds: the id must be at least 1 and the name
    /// non-empty and at most [`MAX_SERVER_NAME_LEN`] bytes.
    pub fn validate(&self) -> Result<(), Error> {
        if self.server_id == 0 {
            return Err(Error::InvalidConfig("server_id must be >= 1".into()));
        }
        if self.name.is_empty() || self.name.len() > MAX_SERVER_NAME_LEN {
            return Err(Error::InvalidConfig(format!(
                "name must be 1..={MAX_SERVER_NAME_LEN} bytes long"
            )));
        }
        Ok(())
    }
}

/// Why [`run`] failed. Once it serves, it only returns on shutdown: per-connection errors
/// are the clients' business, and accept errors are retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The [`Config`] was rejected by [`Config::validate`].
    #[error("invalid node config: {0}")]
    InvalidConfig(String),
    /// The thread that reads the fault channel could not be started.
    #[error("cannot read the fault channel: {0}")]
    FaultChannel(#[source] std::io::Error),
}

/// Serves the node app for `config` on `listener` until `shutdown` is cancelled.
///
/// On cancellation the node stops accepting connections, ends any simulated load, cuts
/// short the sleeps of `/slow-endpoint` (they answer 503) and lets every connection
/// finish its in-flight request, giving each at most 5 s so that a stalled client cannot
/// hold shutdown up. The background CPU sampler that feeds `cpu_percent` runs for as long
/// as this function does.
///
/// With [`FaultChannel::Stdin`] it reads fault profiles from standard input while it runs.
///
/// It does not watch the parent process: spawn [`exit_with_parent`] for that.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    match config.fault_channel {
        Some(FaultChannel::Stdin) => {
            run_with_fault_channel(config, listener, shutdown, std::io::stdin()).await
        }
        None => serve(config, listener, shutdown, None::<std::io::Empty>).await,
    }
}

/// Like [`run`], reading fault profiles from `channel` (lines as [`FaultChannel`] describes)
/// whatever `config.fault_channel` says: the same reader that serves standard input, for a
/// caller that holds the other end of a pipe (tests, an embedding program).
pub async fn run_with_fault_channel(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    channel: impl std::io::Read + Send + 'static,
) -> Result<(), Error> {
    serve(config, listener, shutdown, Some(channel)).await
}

async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    channel: Option<impl std::io::Read + Send + 'static>,
) -> Result<(), Error> {
    config.validate()?;
    let state = AppState::new(&config);
    if let Some(channel) = channel {
        faults::spawn_channel(channel, state.clone()).map_err(Error::FaultChannel)?;
    }
    let sampler = tokio::spawn(state::sample_cpu(state.clone(), shutdown.child_token()));

    server::serve(listener, state, shutdown.clone()).await;
    // The sampler's token is a child of `shutdown`, which has fired: it is returning.
    // It cannot panic, so a join error carries nothing to report.
    let _ = sampler.await;
    Ok(())
}

/// How often [`exit_with_parent`] looks at the parent pid.
const PARENT_POLL: Duration = Duration::from_millis(250);

/// Cancels `token` when this process's parent dies, then returns; also returns when
/// `token` is cancelled by someone else.
///
/// A node is the child of its agent. If the agent is SIGKILLed it cannot stop its child,
/// and the kernel re-parents the orphan (to init or a subreaper), which changes
/// [`std::os::unix::process::parent_id`]. Polling that every 250 ms is portable and
/// needs no `prctl(PR_SET_PDEATHSIG)` (which would need `unsafe` or a libc dependency).
///
/// The parent pid is read when this function is *called*, not when the returned future
/// is first polled, so `tokio::spawn(exit_with_parent(token.clone()))` early in `main`
/// notices a parent that dies before the task gets to run.
pub fn exit_with_parent(token: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
    let parent = std::os::unix::process::parent_id();
    async move {
        let mut tick = tokio::time::interval(PARENT_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            if std::os::unix::process::parent_id() != parent {
                tracing::warn!(parent, "parent process died; shutting down");
                token.cancel();
                return;
            }
        }
    }
}
