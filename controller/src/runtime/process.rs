//! The process runtime: every server is a `farm agent` process that runs its `farm node`
//! child. Node N listens on `node_host:(base_port + N)`, or, with a base port of 0, on a port
//! the kernel picks, which its agent holds and reports in its hello.
//!
//! Each agent is watched by one task, which restarts it with backoff when it exits on its own
//! (the runtime's restart policy) and, on removal or shutdown, sends it SIGTERM, waits a grace
//! period, then kills it. Agents get their own process group, so a Ctrl-C in the terminal
//! reaches only `farm up`, which then stops them in order; and they run with
//! `--exit-with-parent`, so that even a `farm up` killed with SIGKILL leaves no agent (and so
//! no node) behind. Lifecycle actions go through the agents, which own the node processes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use farm_backoff::Backoff;
use farm_proto::v1::ServerActionKind;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::Registry;
use crate::runtime::{AgentCommand, Runtime, RuntimeError, Scaled, act_through_agent, server_name};

/// How long an agent gets to stop its node and exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Servers being started at once: a new agent holds a slot until its server is connected
/// (or [`START_SLOT_HOLD`] passed), so that a farm scaled far past what the machine can start
/// at once comes up in waves instead of a thousand processes fighting for two cores, and the
/// controller keeps answering meanwhile.
pub const START_SLOTS: usize = 32;
/// `nice(1)`, which starts the agents at [`SERVER_NICENESS`] where the system has it.
const NICE: &str = "/usr/bin/nice";
/// The niceness of agents and nodes (the controller's is 0).
const SERVER_NICENESS: &str = "10";
/// Longest a starting server holds its slot.
const START_SLOT_HOLD: Duration = Duration::from_secs(10);
/// How often a starting server's slot looks whether its agent connected.
const CONNECTED_POLL: Duration = Duration::from_millis(50);

/// Where and how the process runtime starts servers.
#[derive(Debug, Clone)]
pub struct ProcessRuntimeConfig {
    /// The `farm` binary, run as `farm agent ...`.
    pub binary: PathBuf,
    /// The controller's gRPC URL, given to every agent.
    pub controller_url: String,
    /// The address nodes listen on.
    pub node_host: IpAddr,
    /// Node N listens on `base_port + N`; 0 lets the kernel pick every node's port.
    pub base_port: u16,
    /// The farm's token, handed to every agent in its environment (never on its command
    /// line, where any user could read it).
    pub token: Option<farm_proto::auth::Token>,
    /// Whether nodes take per-request faults from request headers.
    pub allow_fault_headers: bool,
    /// Environment every agent (and so its node) gets besides its own: the trace exporter's
    /// settings ([`farm_telemetry::child_env`]).
    pub trace_env: Vec<(String, String)>,
    /// The CA file agents trust for an `https://` controller, handed to them in
    /// [`farm_proto::tls::CA_ENV`].
    pub tls_ca: Option<PathBuf>,
}

impl ProcessRuntimeConfig {
    /// The node address of server `id` (port 0 when the kernel picks it), or `None` past
    /// the last port.
    pub fn node_address(&self, id: u32) -> Option<SocketAddr> {
        if self.base_port == 0 {
            return Some(SocketAddr::new(self.node_host, 0));
        }
        let port = u16::try_from(u32::from(self.base_port) + id).ok()?;
        Some(SocketAddr::new(self.node_host, port))
    }

    /// Fails, naming the port and server, when a node port of `ids` is out of range or taken.
    /// Ports the kernel picks cannot be taken.
    pub fn check_ports(&self, ids: impl IntoIterator<Item = u32>) -> Result<(), RuntimeError> {
        if self.base_port == 0 {
            return Ok(());
        }
        for id in ids {
            let address = self.node_address(id).ok_or_else(|| {
                RuntimeError::Port(format!(
                    "server {id} has no port: {} + {id} is past 65535 (choose a lower --node-base-port)",
                    self.base_port
                ))
            })?;
            std::net::TcpListener::bind(address).map_err(|e| {
                RuntimeError::Port(format!(
                    "port {} for server {id}'s node is not free ({e}; is another farm running? choose other ports with --node-base-port)",
                    address.port()
                ))
            })?;
        }
        Ok(())
    }
}

/// One running server: how to stop it, and how to know it stopped.
#[derive(Debug)]
struct Server {
    stop: CancellationToken,
    stopped: CancellationToken,
}

/// Runs servers as local processes.
#[derive(Debug)]
pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    registry: Registry,
    servers: Mutex<BTreeMap<u32, Server>>,
    /// Serialises scaling: two concurrent scale requests must not pick the same new ids.
    scaling: tokio::sync::Mutex<()>,
    /// The start slots (see [`START_SLOTS`]).
    starting: Arc<tokio::sync::Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl ProcessRuntime {
    /// A runtime that registers its servers in `registry`.
    pub fn new(config: ProcessRuntimeConfig, registry: Registry) -> Self {
        Self {
            config,
            registry,
            servers: Mutex::default(),
            scaling: tokio::sync::Mutex::new(()),
            starting: Arc::new(tokio::sync::Semaphore::new(START_SLOTS)),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    fn servers(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Server>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts servers `ids`; returns at once, the agents register by themselves.
    pub fn start(&self, ids: impl IntoIterator<Item = u32>) -> Result<(), RuntimeError> {
        for id in ids {
            let address = self.config.node_address(id).ok_or_else(|| {
                RuntimeError::Port(format!(
                    "server {id}: port {} + {id} is past 65535",
                    self.config.base_port
                ))
            })?;
            self.registry
                .expect(id, server_name(id), address.to_string(), "process".into());
            let server = Server {
                stop: self.shutdown.child_token(),
                stopped: CancellationToken::new(),
            };
            let (config, registry, starting, stop, stopped) = (
                self.config.clone(),
                self.registry.clone(),
                self.starting.clone(),
                server.stop.clone(),
                server.stopped.clone(),
            );
            self.tracker.spawn(async move {
                keep_running(config, registry, starting, id, address, stop).await;
                stopped.cancel();
            });
            self.servers().insert(id, server);
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn act(&self, id: u32, action: ServerActionKind) -> Result<String, RuntimeError> {
        act_through_agent(&self.registry, id, action).await
    }

    async fn scale(&self, servers: u32) -> Result<Scaled, RuntimeError> {
        let _one_at_a_time = self.scaling.lock().await;
        let current: Vec<u32> = self.servers().keys().copied().collect();
        // A plan either adds or removes, never both.
        let scaled = Scaled::plan(&current, servers)?;
        if !scaled.added.is_empty() {
            self.config.check_ports(scaled.added.iter().copied())?;
            self.start(scaled.added.iter().copied())?;
            return Ok(scaled);
        }
        let stopping: Vec<CancellationToken> = {
            let mut running = self.servers();
            scaled
                .removed
                .iter()
                .filter_map(|id| running.remove(id))
                .map(|server| {
                    server.stop.cancel();
                    server.stopped
                })
                .collect()
        };
        for stopped in stopping {
            stopped.cancelled().await;
        }
        for &id in &scaled.removed {
            self.registry.remove(id);
        }
        Ok(scaled)
    }

    async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.servers().clear();
    }
}

fn agent_command(config: &ProcessRuntimeConfig, id: u32, address: SocketAddr) -> Command {
    let agent = AgentCommand {
        id,
        controller_url: config.controller_url.clone(),
        node_listen: address.to_string(),
        node_advertise: None,
        runtime: "process",
        exit_with_parent: true,
        allow_fault_headers: config.allow_fault_headers,
    };
    // Servers run at a lower scheduling priority than the controller and the gateway, so
    // that a farm too big for its machine leaves them the CPU to keep answering. `nice`
    // executes the binary in its own place: the agent is still farm up's child.
    static HAS_NICE: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| Path::new(NICE).exists());
    let mut command = if *HAS_NICE {
        let mut nice = Command::new(NICE);
        nice.args(["-n", SERVER_NICENESS]).arg(&config.binary);
        nice
    } else {
        Command::new(&config.binary)
    };
    if let Some(token) = &config.token {
        command.env(farm_proto::auth::TOKEN_ENV, token.as_str());
    }
    if let Some(ca) = &config.tls_ca {
        command.env(farm_proto::tls::CA_ENV, ca);
    }
    if !config.trace_env.is_empty() {
        for name in farm_telemetry::CHILD_ENV_REMOVED {
            command.env_remove(name);
        }
        command.envs(config.trace_env.iter().map(|(k, v)| (k, v)));
    }
    command
        .args(agent.args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// Keeps agent `id` running until `stop`, then stops it.
async fn keep_running(
    config: ProcessRuntimeConfig,
    registry: Registry,
    starting: Arc<tokio::sync::Semaphore>,
    id: u32,
    address: SocketAddr,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(10),
        Duration::from_secs(30),
    );
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => return,
            slot = starting.clone().acquire_owned() => slot,
        };
        let mut child = match agent_command(&config, id, address).spawn() {
            Ok(child) => {
                // This agent is the server's: its hello replaces whatever stream holds it.
                registry.vouch(id);
                if let Ok(slot) = slot {
                    tokio::spawn(hold_until_connected(registry.clone(), id, slot));
                }
                child
            }
            Err(e) => {
                tracing::error!(server_id = id, error = %e, "Cannot start the agent.");
                if wait_or_cancel(backoff.next_delay(), &stop).await {
                    return;
                }
                continue;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {
                terminate(&mut child).await;
                return;
            }
            exit = child.wait() => {
                let status = exit.map_or_else(|e| e.to_string(), |s| s.to_string());
                tracing::warn!(server_id = id, %status, "Agent exited; restarting it.");
                if wait_or_cancel(backoff.next_delay(), &stop).await {
                    return;
                }
            }
        }
    }
}

/// Keeps a start slot until server `id`'s agent is connected, or [`START_SLOT_HOLD`] passed.
async fn hold_until_connected(
    registry: Registry,
    id: u32,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    // A look every 50 ms, not a wake-up at every change of the farm: a farm that scales by a
    // thousand changes hundreds of times a second, and every slot would look each time.
    let connected = async {
        while registry.link(id).is_none() {
            tokio::time::sleep(CONNECTED_POLL).await;
        }
    };
    let _ = tokio::time::timeout(START_SLOT_HOLD, connected).await;
}

/// Sleeps `delay`; true when cancelled meanwhile.
async fn wait_or_cancel(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// SIGTERM, a grace period, then SIGKILL.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}
