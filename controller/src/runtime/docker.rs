//! The docker runtime: one container per server, driven through the Docker API (bollard).
//! This module is the only place that talks to the engine.
//!
//! - The image is built here, `FROM scratch` around the static `farm` binary (nothing can be
//!   pulled), and tagged by the binary's content so a new build makes a new image.
//! - Every server is a container `<prefix>-server-N` on the farm's own bridge network
//!   `<prefix>-net`, labelled as this farm's, with a CPU and memory limit, a health check
//!   (the binary probes itself: a scratch image has no curl), an `unless-stopped` restart
//!   policy, and its node port published on `127.0.0.1:(base + N)`. Inside, the agent
//!   supervises the node, as in the process runtime.
//! - Container states come from the engine's event stream, never from polling. The engine
//!   treats `docker kill` as a manual stop and does not restart such a container, so this
//!   runtime does: a container that dies without the farm asking is started again after a
//!   short backoff — the farm's restart policy on top of the engine's.
//! - Everything the farm made is found again by its labels, so `farm down` cleans up also
//!   after a controller crash, and nothing else on the engine is touched.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as ApiError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, EventMessage, HealthConfig, HostConfig,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, EventsOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use farm_agent::backoff::Backoff;
use farm_proto::v1::ServerActionKind;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::Registry;
use crate::runtime::{Runtime, Scaled};
use crate::status::RuntimeState;

/// Label that names the farm a container or network belongs to.
pub const LABEL_FARM: &str = "io.farm.name";
/// Label that carries a server container's id.
pub const LABEL_SERVER_ID: &str = "io.farm.server-id";
/// The node's port inside every container.
pub const NODE_PORT: u16 = 8000;
/// How often a server container's engine health check probes its node, in seconds. Every
/// probe is a runc exec, costly on a small host with many servers; the controller tracks health
/// from the samples anyway, so it probes as the seed does. `farm compose` writes the same check.
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

/// Whether the ELF file at `path` is statically linked: it has no program interpreter.
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP)
    })
}

/// The image tag for `binary`: the farm's version and a hash of the binary's content.
pub fn image_tag(binary: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    binary.hash(&mut hasher);
    format!(
        "farm-server:{}-{:016x}",
        env!("CARGO_PKG_VERSION"),
        hasher.finish()
    )
}

/// The server image's recipe: the static binary and nothing else.
pub fn dockerfile() -> String {
    format!(
        "FROM scratch\nCOPY farm /farm\nLABEL {LABEL_FARM}.image=\"true\"\nEXPOSE {NODE_PORT}\nENTRYPOINT [\"/farm\"]\n"
    )
}

/// Whether `bytes` can go into a `FROM scratch` image; the error says how to get one that can.
pub fn check_static(bytes: &[u8], path: &Path) -> Result<(), DockerError> {
    if is_static_elf(bytes) {
        return Ok(());
    }
    Err(DockerError::Binary(format!(
        "{} is dynamically linked; a FROM scratch image needs the static build this repository makes by default (`cargo build --release -p farm`, see .cargo/config.toml)",
        path.display()
    )))
}

/// The build context: a Dockerfile and the binary, as a tar archive in memory.
fn build_context(binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let dockerfile = dockerfile();
    let mut archive = tar::Builder::new(Vec::new());
    for (name, content, mode) in [
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("farm", binary, 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        archive.append_data(&mut header, name, content)?;
    }
    archive.into_inner()
}

/// Builds the server image for `binary` unless the engine has it; returns its tag.
pub async fn ensure_image(docker: &Docker, binary: &Path) -> Result<String, DockerError> {
    let bytes = std::fs::read(binary).map_err(|e| {
        DockerError::Binary(format!(
            "cannot read the farm binary {}: {e}",
            binary.display()
        ))
    })?;
    check_static(&bytes, binary)?;
    let tag = image_tag(&bytes);
    if docker.inspect_image(&tag).await.is_ok() {
        return Ok(tag);
    }
    tracing::info!(%tag, "Building the server image.");
    let context = build_context(&bytes).map_err(|e| DockerError::Build {
        tag: tag.clone(),
        message: e.to_string(),
    })?;
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .build();
    let mut build = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = build.next().await {
        let info = step.map_err(|e| DockerError::Build {
            tag: tag.clone(),
            message: e.to_string(),
        })?;
        if let Some(detail) = info.error_detail {
            return Err(DockerError::Build {
                tag,
                message: detail.message.unwrap_or_else(|| "unknown error".into()),
            });
        }
    }
    docker
        .inspect_image(&tag)
        .await
        .map_err(|e| DockerError::Build {
            tag: tag.clone(),
            message: format!("the engine reported success but has no image: {e}"),
        })?;
    Ok(tag)
}

fn farm_filter(prefix: &str) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![format!("{LABEL_FARM}={prefix}")])])
}

/// Creates the farm's network unless it exists; returns the host's address on it, which is
/// where containers reach the controller.
pub async fn ensure_network(
    docker: &Docker,
    config: &DockerRuntimeConfig,
) -> Result<IpAddr, DockerError> {
    let name = config.network_name();
    let existing = match docker.inspect_network(&name, None).await {
        Ok(network) => Some(network),
        Err(ApiError::DockerResponseServerError {
            status_code: 404, ..
        }) => None,
        Err(e) => return Err(api(format!("inspect network {name}"))(e)),
    };
    let network = match existing {
        Some(network) => {
            let ours = network
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_FARM))
                .is_some_and(|v| *v == config.prefix);
            if !ours {
                return Err(DockerError::NameTaken {
                    kind: "network",
                    name,
                });
            }
            network
        }
        None => {
            docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(HashMap::from([(
                        LABEL_FARM.to_string(),
                        config.prefix.clone(),
                    )])),
                    ..NetworkCreateRequest::default()
                })
                .await
                .map_err(api(format!("create network {name}")))?;
            docker
                .inspect_network(&name, None)
                .await
                .map_err(api(format!("inspect network {name}")))?
        }
    };
    network
        .ipam
        .and_then(|ipam| ipam.config)
        .into_iter()
        .flatten()
        .find_map(|c| c.gateway.and_then(|g| g.parse::<IpAddr>().ok()))
        .ok_or_else(|| DockerError::Binary(format!("network {name} has no IPv4 gateway")))
}

/// What `farm down` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Container names.
    pub containers: Vec<String>,
    /// Network names.
    pub networks: Vec<String>,
}

/// Removes every container and network labelled as farm `prefix`'s, and nothing else.
pub async fn down(docker: &Docker, prefix: &str) -> Result<Removed, DockerError> {
    let filters = farm_filter(prefix);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(api("list containers"))?;
    let mut removed = Removed::default();
    let mut removals = JoinSet::new();
    for container in containers {
        let Some(id) = container.id else { continue };
        let name = container
            .names
            .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()))
            .unwrap_or_else(|| id.clone());
        let docker = docker.clone();
        removals.spawn(async move {
            let result = docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
            (name, result)
        });
    }
    while let Some(Ok((name, result))) = removals.join_next().await {
        match result {
            Ok(())
            | Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                removed.containers.push(name);
            }
            Err(e) => return Err(api(format!("remove container {name}"))(e)),
        }
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(api("list networks"))?;
    for network in networks {
        let Some(name) = network.name else { continue };
        match docker.remove_network(&name).await {
            Ok(())
            | Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                removed.networks.push(name);
            }
            Err(e) => return Err(api(format!("remove network {name}"))(e)),
        }
    }
    removed.containers.sort();
    Ok(removed)
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

    fn container_body(&self, making: &Making, id: u32, address: SocketAddr) -> ContainerCreateBody {
        let port_key = format!("{NODE_PORT}/tcp");
        let seconds = |s: i64| s * 1_000_000_000;
        ContainerCreateBody {
            image: Some(making.image.clone()),
            cmd: Some(vec![
                "agent".into(),
                "--id".into(),
                id.to_string(),
                "--controller".into(),
                making.controller_url.clone(),
                "--node-listen".into(),
                format!("0.0.0.0:{NODE_PORT}"),
                "--node-advertise".into(),
                address.to_string(),
                "--runtime".into(),
                "docker".into(),
            ]),
            labels: Some(HashMap::from([
                (LABEL_FARM.to_string(), self.config.prefix.clone()),
                (LABEL_SERVER_ID.to_string(), id.to_string()),
            ])),
            exposed_ports: Some(vec![port_key.clone()]),
            healthcheck: Some(HealthConfig {
                test: Some(vec![
                    "CMD".into(),
                    "/farm".into(),
                    "probe".into(),
                    format!("127.0.0.1:{NODE_PORT}"),
                ]),
                interval: Some(seconds(HEALTH_INTERVAL_SECONDS)),
                timeout: Some(seconds(HEALTH_TIMEOUT_SECONDS)),
                retries: Some(HEALTH_RETRIES),
                start_period: Some(seconds(2)),
                start_interval: None,
            }),
            host_config: Some(HostConfig {
                nano_cpus: Some((self.config.cpus * 1e9) as i64),
                memory: Some(i64::try_from(self.config.memory_mb << 20).unwrap_or(i64::MAX)),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                port_bindings: Some(HashMap::from([(
                    port_key,
                    Some(vec![PortBinding {
                        host_ip: Some(address.ip().to_string()),
                        host_port: Some(address.port().to_string()),
                    }]),
                )])),
                network_mode: Some(self.config.network_name()),
                ..HostConfig::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    self.config.network_name(),
                    EndpointSettings {
                        aliases: Some(vec![format!("server-{id}")]),
                        ..EndpointSettings::default()
                    },
                )])),
            }),
            ..ContainerCreateBody::default()
        }
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
                self.container_body(&making, id, address),
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

    /// Follows the engine's events for this farm's containers until shutdown, reconnecting
    /// when the stream breaks.
    fn follow_events(&self) {
        let (docker, registry, servers, stopping, prefix, shutdown) = (
            self.docker.clone(),
            self.registry.clone(),
            self.servers.clone(),
            self.stopping.clone(),
            self.config.prefix.clone(),
            self.shutdown.clone(),
        );
        let tracker = self.tracker.clone();
        self.tracker.spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5), Duration::from_secs(30));
            let mut filters = farm_filter(&prefix);
            filters.insert("type", vec!["container".into()]);
            loop {
                let mut events = docker.events(Some(EventsOptionsBuilder::default().filters(&filters).build()));
                loop {
                    let event = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        event = events.next() => event,
                    };
                    match event {
                        Some(Ok(event)) => {
                            backoff.reset();
                            on_event(&event, &registry, &servers, &stopping, &docker, &tracker, &shutdown, &prefix);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "Docker event stream failed; following again.");
                            break;
                        }
                        None => break,
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        });
    }
}

/// Turns one engine event into a server state, and restarts a container that died without
/// the farm asking.
#[allow(clippy::too_many_arguments)]
fn on_event(
    event: &EventMessage,
    registry: &Registry,
    servers: &Mutex<BTreeSet<u32>>,
    stopping: &Arc<Mutex<HashSet<u32>>>,
    docker: &Docker,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    prefix: &str,
) {
    let Some(attributes) = event.actor.as_ref().and_then(|a| a.attributes.as_ref()) else {
        return;
    };
    let Some(id) = attributes
        .get(LABEL_SERVER_ID)
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return;
    };
    let action = event.action.as_deref().unwrap_or_default();
    if action == "destroy" {
        return;
    }
    lock(servers).insert(id);
    let state = match action {
        "start" => {
            // Started by anyone: a later death is a crash again.
            lock(stopping).remove(&id);
            RuntimeState::Running
        }
        "unpause" | "restart" => RuntimeState::Running,
        "pause" => RuntimeState::Paused,
        // `docker stop`, from anyone (this farm, the CLI, docker-compose), begins with a
        // kill by SIGTERM; `docker kill` sends SIGKILL. A graceful stop is a deliberate one:
        // remember it, so that the death that follows is not restarted.
        "kill" => {
            let signal = attributes
                .get("signal")
                .map(String::as_str)
                .unwrap_or_default();
            if !matches!(signal, "9" | "SIGKILL" | "KILL") {
                lock(stopping).insert(id);
            }
            return;
        }
        "stop" => {
            lock(stopping).insert(id);
            RuntimeState::Stopped
        }
        "die" => {
            if lock(stopping).contains(&id) {
                RuntimeState::Stopped
            } else {
                let code = attributes
                    .get("exitCode")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(-1);
                let name = format!("{prefix}-server-{id}");
                let (docker, shutdown, stopping) =
                    (docker.clone(), shutdown.clone(), stopping.clone());
                tracker.spawn(async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        // Long enough for the `stop` event that follows a `docker stop`.
                        _ = tokio::time::sleep(RESTART_DELAY) => {
                            if lock(&stopping).contains(&id) {
                                return;
                            }
                            tracing::warn!(server_id = id, "Container died on its own; restarting it.");
                            if let Err(e) = docker.start_container(&name, None).await {
                                tracing::warn!(server_id = id, error = %e, "Restart failed.");
                            }
                        }
                    }
                });
                RuntimeState::Exited(code)
            }
        }
        _ => return,
    };
    registry.set_runtime_state(id, state);
}

/// Accepts 304 (already in that state) as success.
fn done_or_already(
    result: Result<(), ApiError>,
    done: &str,
    already: &str,
) -> Result<String, String> {
    match result {
        Ok(()) => Ok(done.into()),
        Err(ApiError::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(already.into()),
        Err(e) => Err(e.to_string()),
    }
}

#[tonic::async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn act(&self, id: u32, action: ServerActionKind) -> Result<String, String> {
        if !lock(&self.servers).contains(&id) {
            return Err(format!("server {id} is not a container of this farm"));
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
            ServerActionKind::Unspecified => Err("no action given".into()),
        }
    }

    async fn scale(&self, servers: u32) -> Result<Scaled, String> {
        if self.making.is_none() {
            return Err(DockerError::Adopted.to_string());
        }
        let _one_at_a_time = self.scaling.lock().await;
        let current: Vec<u32> = lock(&self.servers).iter().copied().collect();
        // A plan either adds or removes, never both.
        let scaled = Scaled::plan(&current, servers)?;
        if !scaled.added.is_empty() {
            self.start(&scaled.added).await.map_err(|e| e.to_string())?;
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
                    .map_err(|e| format!("remove container {name}: {e}"))
            });
        }
        while let Some(joined) = removals.join_next().await {
            if let Ok(Err(e)) = joined {
                return Err(e);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_binaries_are_told_apart() {
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // The repository builds static binaries (.cargo/config.toml), tests included.
        assert!(is_static_elf(&this));
        let shell = std::fs::read("/bin/sh").unwrap();
        assert!(!is_static_elf(&shell));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    #[test]
    fn the_tag_follows_the_binary() {
        assert_eq!(image_tag(b"one"), image_tag(b"one"));
        assert_ne!(image_tag(b"one"), image_tag(b"two"));
        assert!(image_tag(b"one").starts_with("farm-server:"));
    }

    #[test]
    fn the_context_holds_the_dockerfile_and_the_binary() {
        let tar = build_context(b"\x7fELF...").unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "farm"]);
    }
}
