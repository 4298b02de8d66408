//! The process runtime: every server is a `farm agent` process that runs its `farm node`
//! child. Node N listens on `node_host:(base_port + N)`.
//!
//! Each agent is watched by one task, which restarts it with backoff when it exits on its own
//! (the runtime's restart policy) and, on shutdown, sends it SIGTERM, waits a grace period,
//! then kills it. Agents get their own process group, so a Ctrl-C in the terminal reaches
//! only `farm up`, which then stops them in order; and they run with `--exit-with-parent`,
//! so that even a `farm up` killed with SIGKILL leaves no agent (and so no node) behind.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use farm_agent::backoff::Backoff;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::Registry;
use crate::runtime::server_name;

/// How long an agent gets to stop its node and exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Where and how the process runtime starts servers.
#[derive(Debug, Clone)]
pub struct ProcessRuntimeConfig {
    /// The `farm` binary, run as `farm agent ...`.
    pub binary: PathBuf,
    /// The controller's gRPC URL, given to every agent.
    pub controller_url: String,
    /// The address nodes listen on.
    pub node_host: IpAddr,
    /// Node N listens on `base_port + N`.
    pub base_port: u16,
    /// Extra environment for the agents (e.g. their log filter).
    pub env: Vec<(String, String)>,
}

impl ProcessRuntimeConfig {
    /// The node address of server `id`, or `None` past the last port.
    pub fn node_address(&self, id: u32) -> Option<std::net::SocketAddr> {
        let port = u16::try_from(u32::from(self.base_port) + id).ok()?;
        Some(std::net::SocketAddr::new(self.node_host, port))
    }
}

/// Runs servers as local processes.
#[derive(Debug)]
pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    registry: Registry,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl ProcessRuntime {
    /// A runtime that registers its servers in `registry`.
    pub fn new(config: ProcessRuntimeConfig, registry: Registry) -> Self {
        Self {
            config,
            registry,
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Starts servers `ids`; returns at once, the agents register by themselves.
    pub fn start(&self, ids: impl IntoIterator<Item = u32>) -> Result<(), String> {
        for id in ids {
            let address = self.config.node_address(id).ok_or_else(|| {
                format!(
                    "server {id}: port {} + {id} is past 65535",
                    self.config.base_port
                )
            })?;
            self.registry
                .expect(id, server_name(id), address.to_string(), "process".into());
            let (config, shutdown) = (self.config.clone(), self.shutdown.clone());
            self.tracker
                .spawn(async move { keep_running(config, id, address, shutdown).await });
        }
        Ok(())
    }

    /// Stops every agent (and with it every node) and waits until all have exited.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

fn agent_command(config: &ProcessRuntimeConfig, id: u32, address: std::net::SocketAddr) -> Command {
    let mut command = Command::new(&config.binary);
    command
        .arg("agent")
        .args(["--id", &id.to_string()])
        .args(["--controller", &config.controller_url])
        .args(["--node-listen", &address.to_string()])
        .args(["--runtime", "process"])
        .arg("--exit-with-parent")
        .envs(config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// Keeps agent `id` running until `shutdown`, then stops it.
async fn keep_running(
    config: ProcessRuntimeConfig,
    id: u32,
    address: std::net::SocketAddr,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(10),
        Duration::from_secs(30),
    );
    loop {
        let mut child = match agent_command(&config, id, address).spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(server_id = id, error = %e, "Cannot start the agent.");
                if wait_or_cancel(backoff.next_delay(), &shutdown).await {
                    return;
                }
                continue;
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {
                stop(&mut child).await;
                return;
            }
            exit = child.wait() => {
                let status = exit.map_or_else(|e| e.to_string(), |s| s.to_string());
                tracing::warn!(server_id = id, %status, "Agent exited; restarting it.");
                if wait_or_cancel(backoff.next_delay(), &shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `delay`; true when cancelled meanwhile.
async fn wait_or_cancel(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// SIGTERM, a grace period, then SIGKILL.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}
