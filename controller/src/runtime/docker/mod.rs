//! The docker runtime: one container per server, driven through the Docker API (bollard).
//! This module and its children are the only place that talks to the engine.
//!
//! Every server is a container `<prefix>-server-N` on the farm's own bridge network
//! `<prefix>-net`, labelled as this farm's, with its node port published on
//! `127.0.0.1:(base + N)`. Inside, the agent supervises the node, as in the process runtime.
//! Everything the farm made is found again by its labels, so `farm down` cleans up also after
//! a controller crash, and nothing else on the engine is touched.
//!
//! # Layout
//! - this module: the runtime ([`DockerRuntime`]): creating servers (or adopting the running
//!   containers a crashed controller left, when they were made as they would be now), acting
//!   on them, scaling, making a server's container again when it vanished, and its errors
//!   ([`DockerError`]).
//! - `image`: the `FROM scratch` image around the static binary.
//! - `network`: the farm's network, and `farm down`.
//! - `spec`: what one server's container is.
//! - `events`: container states from the engine's event stream, the farm's restarts, and
//!   noticing a container that was removed from outside.

mod events;
mod image;
mod network;
mod spec;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as ApiError;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use farm_backoff::Backoff;
use farm_proto::v1::ServerActionKind;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use image::{check_static, dockerfile, ensure_image, image_tag};
pub use network::{Removed, down, ensure_network};

use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeError, Scaled};
use crate::status::RuntimeState;
pub(crate) use network::farm_filter;

/// Label that names the farm a container or network belongs to.
pub const LABEL_FARM: &str = "io.farm.name";
/// Label that carries a server container's id.
pub const LABEL_SERVER_ID: &str = "io.farm.server-id";
/// Label that carries a fingerprint of how a server container was made (`spec`).
pub const LABEL_SPEC: &str = "io.farm.spec";
/// The node's port inside every container.
pub const NODE_PORT: u16 = 8000;
/// How often a server container's engine health check probes its node, in seconds. Every
/// probe is a runc exec, costly on a small host with many servers; the controller tracks health
/// from the samples anyway, so the engine probes seldom. `farm compose` writes the same check.
pub const HEALTH_INTERVAL_SECONDS: i64 = 30;
/// How long one probe may take, in seconds.
pub const HEALTH_TIMEOUT_SECONDS: i64 = 2;
/// Failed probes in a row before the engine calls the container unhealthy.
pub const HEALTH_RETRIES: i64 = 3;
/// Seconds a stopping container gets before the engine kills it.
const STOP_TIMEOUT_SECONDS: i32 = 2;
/// How long after an unexpected death a container is started again.
const RESTART_DELAY: Duration = Duration::from_millis(250);
/// How long connecting to the engine may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at making a vanished container again in the background, with backoff between
/// them (about 20 s in all), before the farm gives up on it and says so.
const RECREATE_ATTEMPTS: u32 = 8;
/// Attempts when an action finds the container gone: the caller waits for the answer.
const ACT_RECREATE_ATTEMPTS: u32 = 3;

/// Why the docker runtime could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No engine answers.
    #[error(
        "no Docker engine answers ({0}); start dockerd, or run the farm as local processes (the default runtime)"
    )]
    NoEngine(String),
    /// A name the farm needs is used by something that is not this farm's.
    #[error(
        "the {kind} name {name:?} is taken by a {kind} that is not this farm's; remove it or choose another --name-prefix"
    )]
    NameTaken {
        /// "container" or "network".
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The image could not be built.
    #[error("building the image {tag} failed: {message}")]
    Build {
        /// The tag being built.
        tag: String,
        /// What the engine said.
        message: String,
    },
    /// The binary cannot go into a `FROM scratch` image.
    #[error("{0}")]
    Binary(String),
    /// A host port a server needs is taken.
    #[error(
        "port {port} for server {id}'s node is not free; choose other ports with --node-base-port"
    )]
    PortInUse {
        /// The server.
        id: u32,
        /// The port.
        port: u16,
    },
    /// The farm's containers were made by docker-compose, which owns their number.
    #[error(
        "this farm's containers were made by docker-compose; change the number of servers with `farm compose --servers N` and `docker-compose up -d`"
    )]
    Adopted,
    /// A server's container is gone, and docker-compose made it: only it can make it again.
    #[error(
        "server {0}'s container is gone; docker-compose made it, so `docker-compose up -d` makes it again"
    )]
    Vanished(u32),
    /// The farm's network is gone (`farm down`), so its servers' containers cannot be made again.
    #[error(
        "the farm's network {0} is gone (was `farm down` run?); its servers' containers are not made again"
    )]
    NetworkGone(String),
    /// The engine refused or failed an operation.
    #[error("docker {what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// What bollard reported.
        source: ApiError,
    },
}

fn api(what: impl Into<String>) -> impl FnOnce(ApiError) -> DockerError {
    let what = what.into();
    move |source| DockerError::Api { what, source }
}

/// Connects to the local engine (`DOCKER_HOST` or the default socket) and agrees on an
/// API version with it.
pub async fn connect() -> Result<Docker, DockerError> {
    let docker =
        Docker::connect_with_local_defaults().map_err(|e| DockerError::NoEngine(e.to_string()))?;
    negotiate(docker).await.map_err(DockerError::NoEngine)
}

/// Agrees on an API version with the engine behind `docker` (this farm speaks to engines
/// older than bollard's default), waiting [`CONNECT_TIMEOUT`] at most; says why it could not.
pub(crate) async fn negotiate(docker: Docker) -> Result<Docker, String> {
    tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
        .await
        .map_err(|_| format!("it did not answer within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())
}

/// How the docker runtime lays out a farm.
#[derive(Debug, Clone)]
pub struct DockerRuntimeConfig {
    /// Names the farm: containers `<prefix>-server-N`, network `<prefix>-net`, and the
    /// value of the [`LABEL_FARM`] label.
    pub prefix: String,
    /// The static `farm` binary that goes into the image.
    pub binary: PathBuf,
    /// The controller's gRPC port on the host.
    pub controller_port: u16,
    /// Host address the node ports are published on.
    pub publish_host: IpAddr,
    /// Node N is published on `base_port + N`.
    pub base_port: u16,
    /// CPU limit per server, in cores.
    pub cpus: f64,
    /// Memory limit per server, in MiB.
    pub memory_mb: u64,
    /// Containers created and started at the same time.
    pub concurrency: usize,
    /// The farm's token, handed to every container in its environment.
    pub token: Option<farm_proto::auth::Token>,
    /// Whether nodes take per-request faults from request headers.
    pub allow_fault_headers: bool,
}

impl DockerRuntimeConfig {
    /// The container name of server `id`.
    pub fn container_name(&self, id: u32) -> String {
        format!("{}-server-{id}", self.prefix)
    }

    /// The farm's network name.
    pub fn network_name(&self) -> String {
        format!("{}-net", self.prefix)
    }

    /// The host address server `id`'s node is published on.
    pub fn node_address(&self, id: u32) -> Option<SocketAddr> {
        let port = u16::try_from(u32::from(self.base_port) + id).ok()?;
        Some(SocketAddr::new(self.publish_host, port))
    }
}

/// Runs servers as containers.
#[derive(Debug)]
pub struct DockerRuntime {
    shared: Arc<Shared>,
    scaling: tokio::sync::Mutex<()>,
}

/// What the runtime shares with its background tasks: the event follower, the farm's
/// restarts and the making again of vanished containers.
#[derive(Debug)]
struct Shared {
    docker: Docker,
    config: DockerRuntimeConfig,
    registry: Registry,
    /// How new containers are made; `None` for a farm whose containers someone else made
    /// (docker-compose), which this runtime adopts and drives but does not create.
    making: Option<Making>,
    /// The servers this runtime owns. `start` adds them and scaling down drops them before
    /// their containers go; an adopting runtime adds each as its container shows up. Only an
    /// owned server's container is made again when it vanishes.
    servers: Mutex<BTreeSet<u32>>,
    /// Servers stopped on request: their `die` is expected and not restarted.
    stopping: Mutex<HashSet<u32>>,
    /// Servers whose vanished container is being made again, or was given up on (adopting:
    /// was reported gone), so that the `die` and the `destroy` of one removal lead to one
    /// recreation. A `start` event clears it.
    vanished: Mutex<HashSet<u32>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// What a managed farm needs to make containers.
#[derive(Debug, Clone)]
struct Making {
    image: String,
    controller_url: String,
    /// Environment every container gets besides the token: the trace exporter's settings, a
    /// loopback collector rewritten to the host's address on the farm's network.
    trace_env: Vec<(String, String)>,
}

/// The server id a container of the farm carries in its [`LABEL_SERVER_ID`].
fn server_id(container: &ContainerSummary) -> Option<u32> {
    container
        .labels
        .as_ref()?
        .get(LABEL_SERVER_ID)?
        .parse()
        .ok()
}

/// Every container labelled as farm `prefix`'s.
async fn farm_containers(
    docker: &Docker,
    prefix: &str,
) -> Result<Vec<ContainerSummary>, DockerError> {
    docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&farm_filter(prefix))
                .build(),
        ))
        .await
        .map_err(api("list containers"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DockerRuntime {
    /// A runtime for an engine, an image and a network that are ready; containers reach the
    /// controller at `controller_host`. Starts following the engine's events at once.
    pub fn new(
        docker: Docker,
        config: DockerRuntimeConfig,
        registry: Registry,
        image: String,
        controller_host: IpAddr,
    ) -> Self {
        let controller_url = format!(
            "http://{}",
            SocketAddr::new(controller_host, config.controller_port)
        );
        Self::with(Shared {
            docker,
            config,
            registry,
            making: Some(Making {
                image,
                controller_url,
                trace_env: farm_telemetry::child_env(Some(controller_host)),
            }),
            servers: Mutex::default(),
            stopping: Mutex::default(),
            vanished: Mutex::default(),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// A runtime for containers made by someone else (docker-compose) and labelled as farm
    /// `prefix`'s: it follows their events and acts on them through the engine, adopting
    /// each server as it appears; it neither creates nor removes containers.
    pub async fn adopt(
        docker: Docker,
        prefix: String,
        registry: Registry,
    ) -> Result<Self, DockerError> {
        let config = DockerRuntimeConfig {
            prefix: prefix.clone(),
            binary: PathBuf::new(),
            controller_port: 0,
            publish_host: IpAddr::from([127, 0, 0, 1]),
            base_port: 0,
            cpus: 0.0,
            memory_mb: 0,
            concurrency: 1,
            token: None,
            allow_fault_headers: false,
        };
        let ids: BTreeSet<u32> = farm_containers(&docker, &prefix)
            .await?
            .iter()
            .filter_map(server_id)
            .collect();
        Ok(Self::with(Shared {
            docker,
            config,
            registry,
            making: None,
            servers: Mutex::new(ids),
            stopping: Mutex::default(),
            vanished: Mutex::default(),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }))
    }

    /// A runtime around `shared`, following the engine's events from now on.
    fn with(shared: Shared) -> Self {
        let shared = Arc::new(shared);
        events::follow(&shared);
        Self {
            shared,
            scaling: tokio::sync::Mutex::new(()),
        }
    }

    /// The runtime's settings.
    pub fn config(&self) -> &DockerRuntimeConfig {
        &self.shared.config
    }

    /// Starts the farm's first `servers` servers: removes this farm's containers beyond
    /// `servers`, adopts what a controller that crashed left running, and makes the rest.
    pub async fn start_farm(&self, servers: u32) -> Result<(), DockerError> {
        let shared = &self.shared;
        let Some(making) = shared.making.clone() else {
            return Err(DockerError::Adopted);
        };
        let existing = farm_containers(&shared.docker, &shared.config.prefix).await?;
        // First the strays, whose agents are calling in too: removed, and dropped from the
        // registry should one have got in as a server no runtime announced.
        for id in existing
            .iter()
            .filter_map(server_id)
            .filter(|&id| id > servers)
        {
            tracing::info!(
                server = id,
                "Removing a container of this farm beyond its servers."
            );
            shared.remove_server_container(id).await?;
            shared.registry.remove(id);
        }
        let adoptable = self.adoptable(&existing, &making, servers);
        let adopted = self.take_over(adoptable).await;
        let rest: Vec<u32> = (1..=servers).filter(|id| !adopted.contains(id)).collect();
        self.start(&rest).await
    }

    /// The servers up to `servers` whose container in `existing` is running on the farm's
    /// network and was made as this farm would make it now (its [`LABEL_SPEC`]), with their
    /// node's address: a controller that crashed left them, and their agents are calling for
    /// the controller that starts again. Those are taken as they are, with their uptime,
    /// instead of being made again.
    fn adoptable(
        &self,
        existing: &[ContainerSummary],
        making: &Making,
        servers: u32,
    ) -> Vec<(u32, SocketAddr)> {
        let config = &self.shared.config;
        let mut adoptable = Vec::new();
        for container in existing {
            let Some(id) = server_id(container).filter(|&id| id <= servers) else {
                continue;
            };
            let running = container.state == Some(ContainerSummaryStateEnum::RUNNING);
            // A server a partition cut off stays cut off: its agent cannot call in.
            let connected = container
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .is_some_and(|n| n.contains_key(&config.network_name()));
            let Some(address) = config.node_address(id) else {
                continue;
            };
            let now = spec::container_spec(config, making, id, address);
            let expected = now.labels.as_ref().and_then(|l| l.get(LABEL_SPEC));
            let made = container.labels.as_ref().and_then(|l| l.get(LABEL_SPEC));
            if running && connected && made.is_some() && made == expected {
                adoptable.push((id, address));
            }
        }
        adoptable
    }

    /// Owns the `adoptable` servers as they run and announces them; answers those it took.
    async fn take_over(&self, adoptable: Vec<(u32, SocketAddr)>) -> BTreeSet<u32> {
        let shared = &self.shared;
        lock(&shared.servers).extend(adoptable.iter().map(|&(id, _)| id));
        let mut adopted = BTreeSet::new();
        for (id, address) in adoptable {
            // A container removed between the listing and now sent its `destroy` while its
            // server was not yet owned, so nothing made it again: look once more, now that
            // it is owned.
            let name = shared.config.container_name(id);
            let running = shared
                .docker
                .inspect_container(&name, None)
                .await
                .ok()
                .and_then(|c| c.state?.running)
                .unwrap_or(false);
            if !running {
                lock(&shared.servers).remove(&id);
                continue;
            }
            shared.registry.expect(
                id,
                super::server_name(id),
                address.to_string(),
                "docker".into(),
            );
            shared.registry.set_runtime_state(id, RuntimeState::Running);
            if let Some(handoff) = shared.registry.faults_unknown(id) {
                // Its agent called in before the runtime announced it: clear what it holds.
                shared.tracker.spawn(async move {
                    if let Err(error) = crate::faults::hand_over(handoff, None).await {
                        tracing::warn!(server_id = id, %error, "Could not clear an adopted server's faults.");
                    }
                });
            }
            adopted.insert(id);
        }
        if !adopted.is_empty() {
            tracing::info!(
                servers = adopted.len(),
                "Adopted the running containers a previous controller of this farm left."
            );
        }
        adopted
    }

    /// Creates and starts servers `ids`, a few at a time. Checks every name and port first,
    /// so that a conflict fails before anything is made.
    pub async fn start(&self, ids: &[u32]) -> Result<(), DockerError> {
        let shared = &self.shared;
        let Some(making) = shared.making.clone() else {
            return Err(DockerError::Adopted);
        };
        let mut addresses = Vec::with_capacity(ids.len());
        for &id in ids {
            let address = shared
                .config
                .node_address(id)
                .ok_or(DockerError::PortInUse { id, port: 0 })?;
            if std::net::TcpListener::bind(address).is_err() {
                return Err(DockerError::PortInUse {
                    id,
                    port: address.port(),
                });
            }
            addresses.push((id, address));
        }
        self.clear_names(ids).await?;

        let slots = Arc::new(tokio::sync::Semaphore::new(
            shared.config.concurrency.max(1),
        ));
        let mut creations = JoinSet::new();
        for (id, address) in addresses {
            shared.registry.expect(
                id,
                super::server_name(id),
                address.to_string(),
                "docker".into(),
            );
            lock(&shared.servers).insert(id);
            let (shared, making, slots) = (shared.clone(), making.clone(), slots.clone());
            creations.spawn(async move {
                let _slot = slots.acquire_owned().await.expect("never closed");
                shared.make_container(&making, id, true).await
            });
        }
        let mut first_error = None;
        while let Some(joined) = creations.join_next().await {
            if let Ok(Err(e)) = joined {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes containers of this farm left with names the new servers need (a previous run
    /// that crashed); refuses when a name belongs to something else.
    async fn clear_names(&self, ids: &[u32]) -> Result<(), DockerError> {
        let (docker, config) = (&self.shared.docker, &self.shared.config);
        let wanted: HashSet<String> = ids.iter().map(|&id| config.container_name(id)).collect();
        let all = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default().all(true).build(),
            ))
            .await
            .map_err(api("list containers"))?;
        for container in all {
            let Some(name) = container
                .names
                .as_ref()
                .and_then(|n| {
                    n.iter()
                        .map(|n| n.trim_start_matches('/'))
                        .find(|n| wanted.contains(*n))
                })
                .map(str::to_string)
            else {
                continue;
            };
            if !config.is_ours(container.labels.as_ref()) {
                return Err(DockerError::NameTaken {
                    kind: "container",
                    name,
                });
            }
            docker
                .remove_container(
                    &name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await
                .map_err(api(format!("remove stale container {name}")))?;
        }
        Ok(())
    }

    /// Carries out `action` on server `id`'s container: what the engine said, and what to
    /// answer when it did it or found it done already.
    async fn act_on_container(
        &self,
        id: u32,
        action: ServerActionKind,
    ) -> (Result<(), ApiError>, &'static str, &'static str) {
        let shared = &self.shared;
        let name = shared.config.container_name(id);
        let docker = &shared.docker;
        match action {
            ServerActionKind::Start => {
                lock(&shared.stopping).remove(&id);
                (
                    docker.start_container(&name, None).await,
                    "container started",
                    "container already running",
                )
            }
            ServerActionKind::Stop => {
                lock(&shared.stopping).insert(id);
                let options = StopContainerOptionsBuilder::default()
                    .t(STOP_TIMEOUT_SECONDS)
                    .build();
                (
                    docker.stop_container(&name, Some(options)).await,
                    "container stopped",
                    "container already stopped",
                )
            }
            ServerActionKind::Restart => {
                lock(&shared.stopping).insert(id);
                let options = RestartContainerOptionsBuilder::default()
                    .t(STOP_TIMEOUT_SECONDS)
                    .build();
                let result = docker.restart_container(&name, Some(options)).await;
                lock(&shared.stopping).remove(&id);
                (result, "container restarted", "container restarted")
            }
            ServerActionKind::Kill => {
                lock(&shared.stopping).remove(&id);
                let options = KillContainerOptionsBuilder::default()
                    .signal("SIGKILL")
                    .build();
                (
                    docker.kill_container(&name, Some(options)).await,
                    "container killed; the farm restarts it",
                    "container was not running",
                )
            }
            ServerActionKind::Pause => (
                docker.pause_container(&name).await,
                "container paused",
                "container already paused",
            ),
            ServerActionKind::Unpause => (
                docker.unpause_container(&name).await,
                "container unpaused",
                "container was not paused",
            ),
            ServerActionKind::Unspecified => unreachable!("refused by `act`"),
        }
    }
}

impl DockerRuntimeConfig {
    /// Whether `labels` mark a container or network as this farm's.
    fn is_ours(&self, labels: Option<&HashMap<String, String>>) -> bool {
        labels
            .and_then(|l| l.get(LABEL_FARM))
            .is_some_and(|v| *v == self.prefix)
    }
}

impl Shared {
    /// Removes server `id`'s container on the farm's behalf: its `die` is expected, not
    /// restarted, and a container already gone is fine.
    async fn remove_server_container(&self, id: u32) -> Result<(), DockerError> {
        lock(&self.stopping).insert(id);
        let name = self.config.container_name(id);
        match self
            .docker
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
        {
            Ok(())
            | Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(api(format!("remove container {name}"))(e)),
        }
    }

    /// Whether server `id` is this farm's and the runtime is not shutting down: only then is
    /// a vanished container made again.
    fn owns(&self, id: u32) -> bool {
        !self.shutdown.is_cancelled() && lock(&self.servers).contains(&id)
    }

    /// Creates server `id`'s container from its spec and, when `start`, starts it. A
    /// container of this farm that already holds the name (one made at the same time by
    /// another path, or the old one whose removal is still under way) is taken as it is:
    /// starting it tells which, and a failed start is retried by the caller.
    async fn make_container(
        &self,
        making: &Making,
        id: u32,
        start: bool,
    ) -> Result<(), DockerError> {
        let name = self.config.container_name(id);
        let address = self
            .config
            .node_address(id)
            .ok_or(DockerError::PortInUse { id, port: 0 })?;
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let body = spec::container_spec(&self.config, making, id, address);
        match self.docker.create_container(Some(options), body).await {
            Ok(_) => {}
            Err(ApiError::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                let existing = self
                    .docker
                    .inspect_container(&name, None)
                    .await
                    .map_err(api(format!("inspect container {name}")))?;
                if !self
                    .config
                    .is_ours(existing.config.as_ref().and_then(|c| c.labels.as_ref()))
                {
                    return Err(DockerError::NameTaken {
                        kind: "container",
                        name,
                    });
                }
            }
            Err(e) => return Err(api(format!("create container {name}"))(e)),
        }
        // A server that a partition fault cut off stays cut off in a container made again.
        if self
            .registry
            .get(id)
            .is_some_and(|entry| entry.faults.partition.is_some())
        {
            network::partition(&self.docker, &self.config, id, true).await?;
        }
        if !start {
            return Ok(());
        }
        match self.docker.start_container(&name, None).await {
            Ok(())
            | Err(ApiError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(api(format!("start container {name}"))(e)),
        }
    }

    /// Server `id`'s container is gone (its `destroy` event, or the engine answering 404)
    /// while the server may still be this farm's: makes it again in the background, one
    /// recreation per server at a time. An adopted farm cannot: it says so and marks the
    /// server stopped.
    fn vanished(self: &Arc<Self>, id: u32, why: &'static str) {
        if !self.owns(id) || !lock(&self.vanished).insert(id) {
            return;
        }
        if self.making.is_none() {
            tracing::warn!(server_id = id, why, "{}", DockerError::Vanished(id));
            lock(&self.stopping).insert(id);
            self.registry.set_runtime_state(id, RuntimeState::Stopped);
            return;
        }
        let shared = self.clone();
        self.tracker.spawn(async move {
            match shared.recreate(id, why, RECREATE_ATTEMPTS).await {
                Ok(_) => {
                    lock(&shared.vanished).remove(&id);
                }
                // Left in `vanished`, so that the other event of the same removal does not
                // try and fail again; a start action still tries, and the container's next
                // `start` clears it.
                Err(e) => tracing::error!(
                    server_id = id,
                    error = %e,
                    "Gave up making the server's container again; a start action tries again."
                ),
            }
        });
    }

    /// Makes server `id`'s vanished container again, from the same spec on the same network,
    /// and starts it unless the server was stopped on request; the event stream then reports
    /// its state. Up to `attempts` tries with backoff; gives up at once when the farm's
    /// network is gone (`farm down`) or a foreign container holds the name. False when
    /// nothing was made because the server left the farm or the runtime shuts down.
    async fn recreate(&self, id: u32, why: &str, attempts: u32) -> Result<bool, DockerError> {
        let Some(making) = &self.making else {
            return Err(DockerError::Vanished(id));
        };
        tracing::warn!(
            server_id = id,
            why,
            "The server's container is gone; making it again."
        );
        let mut backoff = Backoff::new(
            RESTART_DELAY,
            Duration::from_secs(5),
            Duration::from_secs(60),
        );
        let mut attempt = 1;
        loop {
            if !self.owns(id) {
                return Ok(false);
            }
            match self.recreate_once(making, id).await {
                Ok(made) => {
                    if made {
                        tracing::info!(
                            server_id = id,
                            attempt,
                            "Made the server's container again."
                        );
                    }
                    return Ok(made);
                }
                Err(e @ (DockerError::NetworkGone(_) | DockerError::NameTaken { .. })) => {
                    return Err(e);
                }
                Err(e) if attempt >= attempts => return Err(e),
                Err(e) => tracing::warn!(
                    server_id = id,
                    attempt,
                    error = %e,
                    "Making the server's container again failed; trying again."
                ),
            }
            attempt += 1;
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(false),
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn recreate_once(&self, making: &Making, id: u32) -> Result<bool, DockerError> {
        // The engine accepts a container on a missing network and only fails its start.
        let network = self.config.network_name();
        match self.docker.inspect_network(&network, None).await {
            Ok(_) => {}
            Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(DockerError::NetworkGone(network)),
            Err(e) => return Err(api(format!("inspect network {network}"))(e)),
        }
        let start = !lock(&self.stopping).contains(&id);
        self.make_container(making, id, start).await?;
        if !self.owns(id) {
            // Scaled down or shutting down while it was being made: leave nothing behind.
            let name = self.config.container_name(id);
            let _ = self
                .docker
                .remove_container(
                    &name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
            return Ok(false);
        }
        Ok(true)
    }
}

/// Accepts 304 (already in that state) as success.
fn done_or_already(
    result: Result<(), ApiError>,
    done: &str,
    already: &str,
) -> Result<String, RuntimeError> {
    match result {
        Ok(()) => Ok(done.into()),
        Err(ApiError::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(already.into()),
        Err(e) => Err(DockerError::Api {
            what: "act on a container".into(),
            source: e,
        }
        .into()),
    }
}

/// Whether the engine answered 404: no such container (or, on start, no such network).
fn is_missing(result: &Result<(), ApiError>) -> bool {
    matches!(
        result,
        Err(ApiError::DockerResponseServerError {
            status_code: 404,
            ..
        })
    )
}

#[tonic::async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn can_partition(&self) -> bool {
        true
    }

    async fn networks(&self) -> Vec<crate::loadtest::front::Network> {
        network::subnets(&self.shared.docker, &self.shared.config).await
    }

    async fn partition(&self, id: u32, cut: bool) -> Result<String, RuntimeError> {
        if !lock(&self.shared.servers).contains(&id) {
            return Err(RuntimeError::UnknownServer(id));
        }
        Ok(network::partition(&self.shared.docker, &self.shared.config, id, cut).await?)
    }

    async fn act(&self, id: u32, action: ServerActionKind) -> Result<String, RuntimeError> {
        if !lock(&self.shared.servers).contains(&id) {
            return Err(RuntimeError::UnknownServer(id));
        }
        if action == ServerActionKind::Unspecified {
            return Err(RuntimeError::InvalidArgument("no action given".into()));
        }
        let (result, done, already) = self.act_on_container(id, action).await;
        let wants_running = matches!(
            action,
            ServerActionKind::Start
                | ServerActionKind::Restart
                | ServerActionKind::Kill
                | ServerActionKind::Pause
        );
        if !(wants_running && is_missing(&result)) {
            return done_or_already(result, done, already);
        }
        // The container was removed from outside while the server is still the farm's:
        // make it again, running, and carry the action out on the new one.
        lock(&self.shared.stopping).remove(&id);
        let made = self
            .shared
            .recreate(id, "an action found no container", ACT_RECREATE_ATTEMPTS)
            .await?;
        if !made {
            return Err(RuntimeError::UnknownServer(id));
        }
        if matches!(action, ServerActionKind::Start | ServerActionKind::Restart) {
            return Ok("container was gone; made it again and started it".into());
        }
        let (result, done, already) = self.act_on_container(id, action).await;
        done_or_already(result, done, already)
            .map(|message| format!("container was gone; made it again, then {message}"))
    }

    async fn scale(&self, servers: u32) -> Result<Scaled, RuntimeError> {
        let shared = &self.shared;
        if shared.making.is_none() {
            return Err(DockerError::Adopted.into());
        }
        let _one_at_a_time = self.scaling.lock().await;
        let current: Vec<u32> = lock(&shared.servers).iter().copied().collect();
        // A plan either adds or removes, never both.
        let scaled = Scaled::plan(&current, servers)?;
        if !scaled.added.is_empty() {
            self.start(&scaled.added).await?;
            return Ok(scaled);
        }
        let mut removals = JoinSet::new();
        for &id in &scaled.removed {
            // Dropped before its container goes, so that its `destroy` does not bring it back.
            lock(&shared.servers).remove(&id);
            let shared = shared.clone();
            removals.spawn(async move { (id, shared.remove_server_container(id).await) });
        }
        let mut first_error = None;
        while let Some(joined) = removals.join_next().await {
            match joined {
                Ok((id, Ok(()))) => {
                    shared.registry.remove(id);
                }
                Ok((id, Err(e))) => {
                    // Its container is still there: the server stays in the farm.
                    lock(&shared.servers).insert(id);
                    lock(&shared.stopping).remove(&id);
                    first_error.get_or_insert(e);
                }
                Err(_) => {}
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(scaled),
        }
    }

    async fn shutdown(&self) {
        let shared = &self.shared;
        shared.shutdown.cancel();
        shared.tracker.close();
        shared.tracker.wait().await;
        if shared.making.is_none() {
            // docker-compose made these containers; `docker-compose down` removes them.
            return;
        }
        match down(&shared.docker, &shared.config.prefix).await {
            Ok(removed) => tracing::info!(
                containers = removed.containers.len(),
                networks = removed.networks.len(),
                "Removed the farm's containers and network."
            ),
            Err(e) => {
                tracing::error!(error = %e, "Could not remove every container; run `farm down`.")
            }
        }
        lock(&shared.servers).clear();
    }
}
