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
//! - this module: the runtime ([`DockerRuntime`]): creating servers, acting on them, scaling,
//!   and its errors ([`DockerError`]).
//! - `image`: the `FROM scratch` image around the static binary.
//! - `network`: the farm's network, and `farm down`.
//! - `spec`: what one server's container is.
//! - `events`: container states from the engine's event stream, and the farm's restarts.

mod events;
mod image;
mod network;
mod spec;

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as ApiError;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use farm_proto::v1::ServerActionKind;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use image::{check_static, dockerfile, ensure_image, image_tag};
pub use network::{Removed, down, ensure_network};

use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeError, Scaled};
use network::farm_filter;

/// Label that names the farm a container or network belongs to.
pub const LABEL_FARM: &str = "io.farm.name";
/// Label that carries a server container's id.
pub const LABEL_SERVER_ID: &str = "io.farm.server-id";
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
    let negotiated = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
        .await
        .map_err(|_| DockerError::NoEngine("it did not answer within 5 s".into()))?
        .map_err(|e| DockerError::NoEngine(e.to_string()))?;
    Ok(negotiated)
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
    docker: Docker,
    config: DockerRuntimeConfig,
    registry: Registry,
    /// How new containers are made; `None` for a farm whose containers someone else made
    /// (docker-compose), which this runtime adopts and drives but does not create.
    making: Option<Making>,
    servers: Arc<Mutex<BTreeSet<u32>>>,
    /// Servers stopped on request: their `die` is expected and not restarted.
    stopping: Arc<Mutex<HashSet<u32>>>,
    scaling: tokio::sync::Mutex<()>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// What a managed farm needs to make containers.
#[derive(Debug, Clone)]
struct Making {
    image: String,
    controller_url: String,
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
        let runtime = Self {
            docker,
            config,
            registry,
            making: Some(Making {
                image,
                controller_url,
            }),
            servers: Arc::default(),
            stopping: Arc::default(),
            scaling: tokio::sync::Mutex::new(()),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        };
        runtime.follow_events();
        runtime
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
        };
        let existing = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&farm_filter(&prefix))
                    .build(),
            ))
            .await
            .map_err(api("list containers"))?;
        let ids: BTreeSet<u32> = existing
            .iter()
            .filter_map(|c| c.labels.as_ref()?.get(LABEL_SERVER_ID)?.parse().ok())
            .collect();
        let runtime = Self {
            docker,
            config,
            registry,
            making: None,
            servers: Arc::new(Mutex::new(ids)),
            stopping: Arc::default(),
            scaling: tokio::sync::Mutex::new(()),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        };
        runtime.follow_events();
        Ok(runtime)
    }

    /// The runtime's settings.
    pub fn config(&self) -> &DockerRuntimeConfig {
        &self.config
    }

    /// Creates and starts servers `ids`, a few at a time. Checks every name and port first,
    /// so that a conflict fails before anything is made.
    pub async fn start(&self, ids: &[u32]) -> Result<(), DockerError> {
        let Some(making) = self.making.clone() else {
            return Err(DockerError::Adopted);
        };
        let mut addresses = Vec::with_capacity(ids.len());
        for &id in ids {
            let address = self
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

        let slots = Arc::new(tokio::sync::Semaphore::new(self.config.concurrency.max(1)));
        let mut creations = JoinSet::new();
        for (id, address) in addresses {
            self.registry.expect(
                id,
                super::server_name(id),
                address.to_string(),
                "docker".into(),
            );
            lock(&self.servers).insert(id);
            let (docker, name, body, slots) = (
                self.docker.clone(),
                self.config.container_name(id),
                spec::container_spec(&self.config, &making, id, address),
                slots.clone(),
            );
            creations.spawn(async move {
                let _slot = slots.acquire_owned().await.expect("never closed");
                let options = CreateContainerOptionsBuilder::default().name(&name).build();
                docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(api(format!("create container {name}")))?;
                docker
                    .start_container(&name, None)
                    .await
                    .map_err(api(format!("start container {name}")))
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
        let wanted: HashSet<String> = ids
            .iter()
            .map(|&id| self.config.container_name(id))
            .collect();
        let all = self
            .docker
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
            let ours = container
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_FARM))
                .is_some_and(|v| *v == self.config.prefix);
            if !ours {
                return Err(DockerError::NameTaken {
                    kind: "container",
                    name,
                });
            }
            self.docker
                .remove_container(
                    &name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await
                .map_err(api(format!("remove stale container {name}")))?;
        }
        Ok(())
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

#[tonic::async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn act(&self, id: u32, action: ServerActionKind) -> Result<String, RuntimeError> {
        if !lock(&self.servers).contains(&id) {
            return Err(RuntimeError::UnknownServer(id));
        }
        let name = self.config.container_name(id);
        let docker = &self.docker;
        match action {
            ServerActionKind::Start => {
                lock(&self.stopping).remove(&id);
                done_or_already(
                    docker.start_container(&name, None).await,
                    "container started",
                    "container already running",
                )
            }
            ServerActionKind::Stop => {
                lock(&self.stopping).insert(id);
                let options = StopContainerOptionsBuilder::default()
                    .t(STOP_TIMEOUT_SECONDS)
                    .build();
                done_or_already(
                    docker.stop_container(&name, Some(options)).await,
                    "container stopped",
                    "container already stopped",
                )
            }
            ServerActionKind::Restart => {
                lock(&self.stopping).insert(id);
                let options = RestartContainerOptionsBuilder::default()
                    .t(STOP_TIMEOUT_SECONDS)
                    .build();
                let result = docker.restart_container(&name, Some(options)).await;
                lock(&self.stopping).remove(&id);
                done_or_already(result, "container restarted", "container restarted")
            }
            ServerActionKind::Kill => {
                lock(&self.stopping).remove(&id);
                let options = KillContainerOptionsBuilder::default()
                    .signal("SIGKILL")
                    .build();
                done_or_already(
                    docker.kill_container(&name, Some(options)).await,
                    "container killed; the farm restarts it",
                    "container was not running",
                )
            }
            ServerActionKind::Pause => done_or_already(
                docker.pause_container(&name).await,
                "container paused",
                "container already paused",
            ),
            ServerActionKind::Unpause => done_or_already(
                docker.unpause_container(&name).await,
                "container unpaused",
                "container was not paused",
            ),
            ServerActionKind::Unspecified => {
                Err(RuntimeError::InvalidArgument("no action given".into()))
            }
        }
    }

    async fn scale(&self, servers: u32) -> Result<Scaled, RuntimeError> {
        if self.making.is_none() {
            return Err(DockerError::Adopted.into());
        }
        let _one_at_a_time = self.scaling.lock().await;
        let current: Vec<u32> = lock(&self.servers).iter().copied().collect();
        // A plan either adds or removes, never both.
        let scaled = Scaled::plan(&current, servers)?;
        if !scaled.added.is_empty() {
            self.start(&scaled.added).await?;
            return Ok(scaled);
        }
        let mut removals = JoinSet::new();
        for &id in &scaled.removed {
            lock(&self.stopping).insert(id);
            let (docker, name) = (self.docker.clone(), self.config.container_name(id));
            removals.spawn(async move {
                docker
                    .remove_container(
                        &name,
                        Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                    )
                    .await
                    .map_err(api(format!("remove container {name}")))
            });
        }
        while let Some(joined) = removals.join_next().await {
            if let Ok(Err(e)) = joined {
                return Err(e.into());
            }
        }
        for &id in &scaled.removed {
            lock(&self.servers).remove(&id);
            self.registry.remove(id);
        }
        Ok(scaled)
    }

    async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        if self.making.is_none() {
            // docker-compose made these containers; `docker-compose down` removes them.
            return;
        }
        match down(&self.docker, &self.config.prefix).await {
            Ok(removed) => tracing::info!(
                containers = removed.containers.len(),
                networks = removed.networks.len(),
                "Removed the farm's containers and network."
            ),
            Err(e) => {
                tracing::error!(error = %e, "Could not remove every container; run `farm down`.")
            }
        }
        lock(&self.servers).clear();
    }
}
