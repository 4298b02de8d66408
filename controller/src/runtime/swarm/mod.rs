//! The swarm runtime: the farm's servers as Docker Swarm services, spread by the engine over
//! the nodes of a swarm, driven through a manager's API (bollard).
//!
//! Every server is a service `<prefix>-server-N` with one replica, on the farm's attachable
//! overlay network `<prefix>-net` under the alias `server-N`, its node port published in host
//! mode as `base + N` on whichever node runs it. One service per server, not one replicated
//! service whose tasks learn their id from `{{.Task.Slot}}`: the farm stops, starts and
//! restarts one chosen server, and scales down by removing the highest ids, and a replicated
//! service can do neither (its replicas are interchangeable; scaling down drops slots the
//! engine picks).
//!
//! This kernel has no IPVS, so there is no routing mesh and no virtual IP: services use
//! endpoint mode DNSRR and host-mode ports, and the address a task was given is read back from
//! its status. Tasks have no events, so the runtime polls them (`tasks`).
//!
//! No image is ever pulled: the image is built on the manager and copied to every other engine
//! the farm is given (`image`), and services name it by its ID, which a worker never tries to
//! pull (a tag it would, even when it has the image).
//!
//! # Layout
//! - this module: the settings, the errors, the runtime.
//! - [`controller`]: the farm's controller and gateway as a service on the farm's network.
//! - `image`: the server image on every engine.
//! - `network`: the farm's overlay network, and `down`.
//! - [`secrets`]: the controller's TLS files as swarm secrets.
//! - `spec`: what one server's service is.
//! - `tasks`: following the tasks: states, placement, moves.

pub mod controller;
mod image;
mod network;
pub mod secrets;
mod spec;
mod tasks;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::errors::Error as ApiError;
use bollard::models::{LocalNodeState, NodeSpecAvailabilityEnum, NodeState, Service, ServiceSpec};
use farm_proto::v1::ServerActionKind;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use bollard::Docker;
pub use image::spread_image;
pub use network::{Removed, down, ensure_network};

use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeError, Scaled};

/// Label that names the farm a service, task or network belongs to.
pub const LABEL_FARM: &str = crate::runtime::docker::LABEL_FARM;
/// Label that carries a server service's id.
pub const LABEL_SERVER_ID: &str = crate::runtime::docker::LABEL_SERVER_ID;
/// The node's port inside every task.
pub const NODE_PORT: u16 = crate::runtime::docker::NODE_PORT;
/// How often the runtime asks the manager for the farm's tasks.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Why the swarm runtime could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// No engine answers at an address.
    #[error("no Docker engine answers at {address} ({message})")]
    NoEngine {
        /// Where the farm looked.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// The engine given as the manager is not a manager of an active swarm.
    #[error(
        "the engine at {0} is not a manager of an active swarm; run `docker swarm init` there, or give a manager's address"
    )]
    NotAManager(String),
    /// A name the farm needs is used by something that is not this farm's.
    #[error(
        "the {kind} name {name:?} is taken by a {kind} that is not this farm's; remove it or choose another --name-prefix"
    )]
    NameTaken {
        /// "service" or "network".
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A server's published port would be past 65535.
    #[error("server {0}'s node port would be past 65535: choose a lower --node-base-port")]
    Port(u32),
    /// The image could not be made or copied.
    #[error("the server image: {0}")]
    Image(String),
    /// A secret of the farm is not as the farm made it.
    #[error("the farm's secret: {0}")]
    Secret(String),
    /// The engine refused or failed an operation.
    #[error("swarm {what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// What bollard reported.
        source: ApiError,
    },
}

fn api(what: impl Into<String>) -> impl FnOnce(ApiError) -> SwarmError {
    let what = what.into();
    move |source| SwarmError::Api { what, source }
}

/// Connects to the engine at `address` (`unix:///path`, or a socket path) and agrees on an
/// API version with it.
pub async fn connect(address: &str) -> Result<Docker, SwarmError> {
    let no_engine = |message: String| SwarmError::NoEngine {
        address: address.to_string(),
        message,
    };
    let docker = Docker::connect_with_unix(address, 120, bollard::API_DEFAULT_VERSION)
        .map_err(|e| no_engine(e.to_string()))?;
    crate::runtime::docker::negotiate(docker)
        .await
        .map_err(no_engine)
}

/// Checks that `docker` (reached at `address`) manages an active swarm.
pub async fn check_manager(docker: &Docker, address: &str) -> Result<(), SwarmError> {
    let info = docker.info().await.map_err(api("info"))?;
    let swarm = info.swarm.unwrap_or_default();
    if swarm.local_node_state == Some(LocalNodeState::ACTIVE)
        && swarm.control_available == Some(true)
    {
        Ok(())
    } else {
        Err(SwarmError::NotAManager(address.to_string()))
    }
}

/// The swarm's nodes that can run tasks (ready, active) but whose engine is none of `engines`,
/// by hostname and address: the image does not reach them, and nothing is pulled, so a task
/// placed there fails.
pub async fn nodes_beyond(manager: &Docker, engines: &[Docker]) -> Result<Vec<String>, SwarmError> {
    let mut given = std::collections::HashSet::new();
    for engine in std::iter::once(manager).chain(engines) {
        let info = engine.info().await.map_err(api("info"))?;
        if let Some(id) = info
            .swarm
            .and_then(|s| s.node_id)
            .filter(|id| !id.is_empty())
        {
            given.insert(id);
        }
    }
    let nodes = manager.list_nodes(None).await.map_err(api("list nodes"))?;
    Ok(nodes
        .into_iter()
        .filter(|node| {
            let ready = node.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY);
            let active = node.spec.as_ref().and_then(|s| s.availability)
                == Some(NodeSpecAvailabilityEnum::ACTIVE);
            ready && active && node.id.as_ref().is_some_and(|id| !given.contains(id))
        })
        .map(|node| {
            let hostname = node
                .description
                .and_then(|d| d.hostname)
                .unwrap_or_default();
            let addr = node.status.and_then(|s| s.addr).unwrap_or_default();
            format!("{hostname} ({addr})")
        })
        .collect())
}

/// How the swarm runtime lays out a farm.
#[derive(Debug, Clone)]
pub struct SwarmRuntimeConfig {
    /// Names the farm: services `<prefix>-server-N`, network `<prefix>-net`, and the value of
    /// the [`LABEL_FARM`] label.
    pub prefix: String,
    /// The image every task runs, by ID (`sha256:...`), present on every node.
    pub image_id: String,
    /// The controller's gRPC URL as agents reach it.
    pub controller_url: String,
    /// Node N is published on port `base_port + N` of the swarm node that runs it; with 0,
    /// that node's engine picks a free port.
    pub base_port: u16,
    /// CPU limit per server, in cores.
    pub cpus: f64,
    /// Memory limit per server, in MiB.
    pub memory_mb: u64,
    /// Placement constraints every server's task obeys (`node.labels.zone==a`).
    pub constraints: Vec<String>,
    /// The farm's token, handed to every task in its environment.
    pub token: Option<farm_proto::auth::Token>,
    /// Whether nodes take per-request faults from request headers.
    pub allow_fault_headers: bool,
    /// The trace exporter's settings for every task.
    pub trace_env: Vec<(String, String)>,
    /// The CA secret every task is given to trust an `https://` controller.
    pub tls_ca: Option<secrets::SecretRef>,
    /// Where the farm's number of servers is kept across controller tasks (see
    /// [`read_servers`]); kept nowhere when `None`.
    pub servers_file: Option<PathBuf>,
}

/// The farm's number of servers as the file at `path` keeps it: `farm up` writes it when it
/// launches the farm and the controller's task after every scaling, so that the task the
/// engine starts next keeps the farm's size. `None` when the file holds no number of servers
/// the farm may have.
pub fn read_servers(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim()
        .parse()
        .ok()
        .filter(|n| (1..=farm_proto::limits::MAX_SERVERS).contains(n))
}

/// Keeps `servers` in the file at `path`, its directory made first.
pub fn write_servers(path: &Path, servers: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, format!("{servers}\n"))
}

impl SwarmRuntimeConfig {
    /// The service name of server `id`.
    pub fn service_name(&self, id: u32) -> String {
        format!("{}-server-{id}", self.prefix)
    }

    /// The farm's network name.
    pub fn network_name(&self) -> String {
        network_name(&self.prefix)
    }

    /// The port server `id`'s node is published on, on the swarm node that runs it: `None`
    /// when that node's engine picks it (base port 0), an error past 65535.
    pub fn published_port(&self, id: u32) -> Result<Option<u16>, SwarmError> {
        if self.base_port == 0 {
            return Ok(None);
        }
        u16::try_from(u32::from(self.base_port) + id)
            .map(Some)
            .map_err(|_| SwarmError::Port(id))
    }

    /// Where the controller reaches server `id`'s node: its alias on the farm's network.
    pub fn node_address(id: u32) -> String {
        format!("{}:{NODE_PORT}", super::server_name(id))
    }
}

/// The overlay network name of farm `prefix`.
pub fn network_name(prefix: &str) -> String {
    format!("{prefix}-net")
}

/// Runs servers as swarm services.
#[derive(Debug)]
pub struct SwarmRuntime {
    shared: Arc<Shared>,
    scaling: tokio::sync::Mutex<()>,
}

/// What the runtime shares with its task poller.
#[derive(Debug)]
struct Shared {
    docker: Docker,
    config: SwarmRuntimeConfig,
    registry: Registry,
    /// The servers this runtime owns.
    servers: Mutex<BTreeSet<u32>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SwarmRuntime {
    /// A runtime on a manager whose swarm has the image and the network ready. Starts
    /// following the farm's tasks at once.
    pub fn new(docker: Docker, config: SwarmRuntimeConfig, registry: Registry) -> Self {
        let shared = Arc::new(Shared {
            docker,
            config,
            registry,
            servers: Mutex::default(),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        tasks::follow(&shared);
        Self {
            shared,
            scaling: tokio::sync::Mutex::new(()),
        }
    }

    /// Starts the farm's first `servers` servers, or as many as [`read_servers`] says the
    /// farm has. Services this farm already has (its controller's task was started again, or
    /// a new `farm up` replaced a crashed one) are taken over: each is updated to the service
    /// this runtime would make, stopped or running as it was, which the engine does without
    /// touching a task whose spec is unchanged. Services beyond `servers` go, and are dropped
    /// from the registry should their agents have got in as servers no runtime announced.
    pub async fn start_farm(&self, servers: u32) -> Result<(), SwarmError> {
        let shared = &self.shared;
        let servers = shared
            .config
            .servers_file
            .as_deref()
            .and_then(read_servers)
            .unwrap_or(servers);
        // Those beyond go first, their tasks let stop: an agent still running could link
        // again and come back into the registry as a server no runtime announced.
        let beyond = network::remove_services(
            &shared.docker,
            &shared.config.prefix,
            |service| network::server_id(service).is_some_and(|id| id > servers),
            network::TASKS_GONE_WITHIN,
        )
        .await?;
        for id in beyond.iter().filter_map(network::server_id) {
            tracing::info!(
                server = id,
                "Removed the service of a server beyond the farm's."
            );
            shared.registry.remove(id);
        }
        let existing = network::farm_services(&shared.docker, &shared.config.prefix).await?;
        let mut kept = BTreeSet::new();
        for service in &existing {
            let Some(id) = network::server_id(service) else {
                continue;
            };
            if id <= servers && self.adopt(id, service).await.is_ok() {
                kept.insert(id);
            }
        }
        let missing: Vec<u32> = (1..=servers).filter(|id| !kept.contains(id)).collect();
        self.start(&missing).await
    }

    /// Takes over server `id`'s existing `service`, updated to this runtime's spec of it
    /// and running. On an error the service is left to [`Self::start`], which replaces it.
    async fn adopt(&self, id: u32, service: &Service) -> Result<(), ApiError> {
        let shared = &self.shared;
        let mut spec = spec::service_spec(&shared.config, id);
        let current = service.spec.as_ref();
        let forced = current
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.force_update);
        if let Some(template) = spec.task_template.as_mut() {
            // The count of forced restarts is part of the spec: the same count, no restart.
            template.force_update = forced;
        }
        // A server stopped through the farm (no replica) stays stopped.
        if let Some(mode) = current.and_then(|s| s.mode.clone()) {
            spec.mode = Some(mode);
        }
        let version = service.version.as_ref().and_then(|v| v.index).unwrap_or(0);
        self.own(id);
        let updated = self
            .update_spec(&shared.config.service_name(id), spec, version)
            .await;
        match &updated {
            Ok(()) => tracing::info!(server = id, "Took over the server's service."),
            Err(error) => {
                tracing::info!(server = id, %error, "Cannot take over the server's service; replacing it.");
                self.disown(id);
            }
        }
        updated
    }

    /// Counts server `id` as the farm's, and announces it to the registry (which then
    /// admits its agent).
    fn own(&self, id: u32) {
        self.shared.registry.expect(
            id,
            super::server_name(id),
            SwarmRuntimeConfig::node_address(id),
            "swarm".into(),
        );
        lock(&self.shared.servers).insert(id);
    }

    /// Undoes [`Self::own`]: server `id` is not the farm's.
    fn disown(&self, id: u32) {
        lock(&self.shared.servers).remove(&id);
        self.shared.registry.remove(id);
    }

    /// Creates the services of servers `ids`; the engine schedules their tasks. A service of
    /// this farm left with a name a new server needs (a farm that crashed) is removed first.
    /// A server whose service could not be made is not the farm's.
    pub async fn start(&self, ids: &[u32]) -> Result<(), SwarmError> {
        let shared = &self.shared;
        for &id in ids {
            shared.config.published_port(id)?;
        }
        let names = ids
            .iter()
            .map(|&id| shared.config.service_name(id))
            .collect();
        network::clear_services(&shared.docker, &shared.config.prefix, &names).await?;
        for &id in ids {
            self.own(id);
            let name = shared.config.service_name(id);
            if let Err(e) = shared
                .docker
                .create_service(spec::service_spec(&shared.config, id), None)
                .await
            {
                self.disown(id);
                return Err(api(format!("create service {name}"))(e));
            }
        }
        Ok(())
    }

    /// Sets server `id`'s replicas (0 stops it, 1 starts it), or has the engine replace its
    /// task (`restart`).
    async fn update(&self, id: u32, replicas: Option<i64>, restart: bool) -> Result<(), ApiError> {
        let name = self.shared.config.service_name(id);
        let docker = &self.shared.docker;
        let service = docker.inspect_service(&name, None).await?;
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = service.spec.unwrap_or_default();
        if let Some(replicas) = replicas {
            spec.mode = Some(spec::replicated(replicas));
        }
        if restart {
            let template = spec.task_template.get_or_insert_with(Default::default);
            template.force_update = Some(template.force_update.unwrap_or(0) + 1);
        }
        self.update_spec(&name, spec, version).await
    }

    /// Replaces service `name`'s spec, which the engine is at `version` of.
    async fn update_spec(
        &self,
        name: &str,
        spec: ServiceSpec,
        version: u64,
    ) -> Result<(), ApiError> {
        // The engine's versions grow by one a change; one past i32 is a swarm of billions of
        // changes, which the engine's own API (an i32 here) cannot address either.
        let options = bollard::query_parameters::UpdateServiceOptionsBuilder::default()
            .version(i32::try_from(version).unwrap_or(i32::MAX))
            .build();
        self.shared
            .docker
            .update_service(name, spec, options, None)
            .await
            .map(|_| ())
    }
}

#[tonic::async_trait]
impl Runtime for SwarmRuntime {
    fn name(&self) -> &'static str {
        "swarm"
    }

    async fn act(&self, id: u32, action: ServerActionKind) -> Result<String, RuntimeError> {
        if !lock(&self.shared.servers).contains(&id) {
            return Err(RuntimeError::UnknownServer(id));
        }
        let (replicas, restart, said) = match action {
            ServerActionKind::Start => (Some(1), false, "service scaled to 1"),
            ServerActionKind::Stop => (Some(0), false, "service scaled to 0"),
            ServerActionKind::Restart => (Some(1), true, "task replaced"),
            // The agent kills its node and pauses it: a swarm has no pause, and killing a
            // task's container needs the engine of the node that runs it.
            ServerActionKind::Kill | ServerActionKind::Pause | ServerActionKind::Unpause => {
                return super::act_through_agent(&self.shared.registry, id, action).await;
            }
            ServerActionKind::Unspecified => {
                return Err(RuntimeError::InvalidArgument("action is required".into()));
            }
        };
        self.update(id, replicas, restart)
            .await
            .map_err(|e| RuntimeError::Swarm(api(format!("update server {id}"))(e)))?;
        Ok(said.to_string())
    }

    async fn scale(&self, servers: u32) -> Result<Scaled, RuntimeError> {
        let _one_at_a_time = self.scaling.lock().await;
        let current: Vec<u32> = lock(&self.shared.servers).iter().copied().collect();
        let scaled = Scaled::plan(&current, servers)?;
        if !scaled.added.is_empty() {
            self.start(&scaled.added).await?;
        }
        for &id in &scaled.removed {
            lock(&self.shared.servers).remove(&id);
            let name = self.shared.config.service_name(id);
            if let Err(e) = network::remove_service(&self.shared.docker, &name).await {
                // Still there: still the farm's.
                lock(&self.shared.servers).insert(id);
                return Err(e.into());
            }
            self.shared.registry.remove(id);
        }
        if let Some(path) = &self.shared.config.servers_file
            && let Err(error) = write_servers(path, servers)
        {
            tracing::warn!(%error, path = %path.display(), "Cannot keep the farm's number of servers; a controller task started again would start the number farm up was given.");
        }
        Ok(scaled)
    }

    /// Stops following the tasks and leaves every service as it is: the controller's task
    /// ends here, and the engine starts its next one, which takes the servers over (only
    /// `farm up` outside the swarm, or `farm down`, removes the farm).
    async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}
