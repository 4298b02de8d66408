//! The farm's controller and gateway as one swarm service, `<prefix>-controller`, on the
//! farm's overlay: agents reach it there by that name wherever their tasks run. Its task runs
//! `farm up` in its controller-task role on the manager's node, with the manager's socket
//! mounted, and drives the swarm as any manager's client does. Its gRPC and REST ports are
//! published in host mode on that node, and the farm's data directory (token, history, the
//! farm's number of servers) is mounted from it, so that all three outlive the task.
//!
//! The task never removes the servers' services: the engine restarts it whatever ends it (a
//! crash, `docker stop`, its engine restarted), and the next task takes the servers over as
//! they are. Only removing the service ends the farm's controller; `farm up` outside the swarm
//! and `farm down` do that, then remove the rest of the farm.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, Mount, MountType, NetworkAttachmentConfig, Service,
    ServiceSpec, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::ListTasksOptionsBuilder;

use super::secrets::{self, SecretRef, TlsFile};
use super::{LABEL_FARM, SwarmError, api, network, spec};

/// Label that marks the farm's controller service.
pub const LABEL_ROLE: &str = "io.farm.role";
/// The value of [`LABEL_ROLE`] on the controller's service.
const ROLE_CONTROLLER: &str = "controller";
/// The controller's gRPC port inside its task, on the farm's network.
pub const GRPC_PORT: u16 = 50051;
/// The gateway's port inside the controller's task.
pub const GATEWAY_PORT: u16 = 8000;
/// Where the farm's data directory is mounted in the controller's task.
pub const DATA_DIR_IN_TASK: &str = "/data";
/// Where the manager's socket is mounted in the controller's task.
pub const SOCKET_IN_TASK: &str = "/var/run/docker.sock";
/// How long the controller's task may take to stop (its history written, its streams closed).
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// Delay before the engine starts the controller's next task.
const RESTART_DELAY_NS: i64 = 1_000_000_000;

/// The controller's service name of farm `prefix`.
pub fn service_name(prefix: &str) -> String {
    format!("{prefix}-controller")
}

/// The controller's gRPC URL as the farm's agents reach it over the farm's network
/// (`https://` when it serves TLS).
pub fn url_on_network(prefix: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}:{GRPC_PORT}", service_name(prefix))
}

/// Whether `service` is a farm's controller service.
pub(super) fn is_controller(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .and_then(|l| l.get(LABEL_ROLE))
        .is_some_and(|role| role == ROLE_CONTROLLER)
}

/// What the controller's service runs and how it is reached. No `Debug`: it holds the farm's
/// token (in `env`) and the TLS key.
#[derive(Clone)]
pub struct ControllerService {
    /// The farm's name prefix.
    pub prefix: String,
    /// The farm's image, by ID, present on the manager's node.
    pub image_id: String,
    /// The arguments of the farm binary in the task (`up ...`).
    pub args: Vec<String>,
    /// The task's environment, `NAME=value`.
    pub env: Vec<String>,
    /// The manager's socket on its node, mounted at [`SOCKET_IN_TASK`].
    pub manager_socket: PathBuf,
    /// The farm's data directory on the manager's node, mounted at [`DATA_DIR_IN_TASK`].
    pub data_dir: PathBuf,
    /// The port the controller's gRPC API is published on; 0 lets the engine pick.
    pub grpc_port: u16,
    /// The port the gateway is published on (0: the engine picks); `None` without a gateway.
    pub gateway_port: Option<u16>,
    /// The controller's TLS files (certificate, key, CA) with their PEM, made secrets of the
    /// farm and given to its task; none for plaintext.
    pub tls_files: Vec<(TlsFile, Vec<u8>)>,
}

/// Creates the controller's service on the node of `manager` (whose socket it mounts),
/// replacing one this farm left behind.
pub async fn start(manager: &Docker, service: &ControllerService) -> Result<(), SwarmError> {
    let node_id = manager
        .info()
        .await
        .map_err(api("info"))?
        .swarm
        .and_then(|s| s.node_id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| SwarmError::NotAManager("the --swarm-manager engine".into()))?;
    let name = service_name(&service.prefix);
    // A controller this farm left running goes first, its task let finish, so that two never
    // drive the same servers.
    network::remove_services(manager, &service.prefix, is_controller, STOP_GRACE).await?;
    network::clear_services(manager, &service.prefix, &HashSet::from([name.clone()])).await?;
    let secrets = if service.tls_files.is_empty() {
        Vec::new()
    } else {
        secrets::create(manager, &service.prefix, &service.tls_files).await?
    };
    manager
        .create_service(service_spec(service, &node_id, &secrets), None)
        .await
        .map_err(api(format!("create service {name}")))?;
    Ok(())
}

fn service_spec(service: &ControllerService, node_id: &str, secrets: &[SecretRef]) -> ServiceSpec {
    let labels = HashMap::from([
        (LABEL_FARM.to_string(), service.prefix.clone()),
        (LABEL_ROLE.to_string(), ROLE_CONTROLLER.to_string()),
    ]);
    let bind = |source: &std::path::Path, target: &str| Mount {
        target: Some(target.to_string()),
        source: Some(source.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        ..Default::default()
    };
    let publish = |target: u16, published: u16| EndpointPortConfig {
        name: None,
        protocol: Some(EndpointPortConfigProtocolEnum::TCP),
        target_port: Some(i64::from(target)),
        published_port: (published != 0).then_some(i64::from(published)),
        publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
    };
    let mut ports = vec![publish(GRPC_PORT, service.grpc_port)];
    if let Some(port) = service.gateway_port {
        ports.push(publish(GATEWAY_PORT, port));
    }
    ServiceSpec {
        name: Some(service_name(&service.prefix)),
        labels: Some(labels.clone()),
        mode: Some(spec::replicated(1)),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                // By ID: nothing is pulled.
                image: Some(service.image_id.clone()),
                labels: Some(labels),
                args: Some(service.args.clone()),
                env: Some(service.env.clone()),
                mounts: Some(vec![
                    bind(&service.manager_socket, SOCKET_IN_TASK),
                    bind(&service.data_dir, DATA_DIR_IN_TASK),
                ]),
                secrets: (!secrets.is_empty())
                    .then(|| secrets.iter().map(SecretRef::for_task).collect()),
                stop_grace_period: Some(i64::try_from(STOP_GRACE.as_nanos()).unwrap_or(i64::MAX)),
                ..Default::default()
            }),
            // On the manager's node: its socket is mounted from there.
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![format!("node.id=={node_id}")]),
                ..Default::default()
            }),
            // Whatever ends the task: only removing the service ends the farm's controller.
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(RESTART_DELAY_NS),
                max_attempts: None,
                window: None,
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(super::network_name(&service.prefix)),
                aliases: None,
                driver_opts: None,
            }]),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            // No IPVS here: no virtual IP, and ports published on the node that runs the task.
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(ports),
        }),
        ..Default::default()
    }
}

/// Where the controller's task is reached from outside the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The controller's gRPC API.
    pub grpc: SocketAddr,
    /// The gateway, when the farm has one.
    pub gateway: Option<SocketAddr>,
}

/// What the controller's service is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerTask {
    /// A task runs, published there.
    Running(Published),
    /// No task runs yet (or any more).
    NotRunning {
        /// The engine's latest word on a task of the service, if it says anything.
        said: Option<String>,
        /// Whether a task of the service failed or was rejected (not merely not started
        /// yet).
        failed: bool,
    },
}

/// Looks at the controller's service of farm `prefix`.
pub async fn look(manager: &Docker, prefix: &str) -> Result<ControllerTask, SwarmError> {
    let name = service_name(prefix);
    let filters = HashMap::from([("service".to_string(), vec![name.clone()])]);
    let tasks = manager
        .list_tasks(Some(
            ListTasksOptionsBuilder::default().filters(&filters).build(),
        ))
        .await
        .map_err(api(format!("list the tasks of {name}")))?;
    let running = tasks.iter().find(|t| {
        t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
            && t.desired_state == Some(TaskState::RUNNING)
    });
    let Some(task) = running else {
        // While the engine prepares the next task, the one before says what went wrong: the
        // latest word of any task, and whether any failed.
        let ended = |t: &&Task| {
            matches!(
                t.status.as_ref().and_then(|s| s.state),
                Some(TaskState::FAILED | TaskState::REJECTED)
            )
        };
        let said = tasks
            .iter()
            .filter_map(|t| {
                let err = t.status.as_ref()?.err.clone()?;
                (!err.trim().is_empty()).then(|| (t.created_at.clone().unwrap_or_default(), err))
            })
            .max()
            .map(|(_, err)| err);
        let failed = tasks.iter().any(|t| ended(&t));
        return Ok(ControllerTask::NotRunning { said, failed });
    };
    let node_id = task.node_id.clone().unwrap_or_default();
    let node = manager
        .inspect_node(&node_id)
        .await
        .map_err(api(format!("inspect node {node_id}")))?;
    let ip: Option<IpAddr> = super::tasks::node_addr(&node).and_then(|a| a.parse().ok());
    let port_of = |target: u16| {
        task.status
            .as_ref()?
            .port_status
            .as_ref()?
            .ports
            .as_ref()?
            .iter()
            .find(|p| p.target_port == Some(i64::from(target)))?
            .published_port
            .and_then(|p| u16::try_from(p).ok())
    };
    let (Some(ip), Some(grpc)) = (ip, port_of(GRPC_PORT)) else {
        return Ok(ControllerTask::NotRunning {
            said: None,
            failed: false,
        });
    };
    Ok(ControllerTask::Running(Published {
        grpc: SocketAddr::new(ip, grpc),
        gateway: port_of(GATEWAY_PORT).map(|port| SocketAddr::new(ip, port)),
    }))
}

/// The most bytes of the controller's log [`last_log_lines`] returns.
const MAX_LOG_BYTES: usize = 64 * 1024;

/// The last `lines` lines the controller's tasks of farm `prefix` wrote (standard output and
/// error), as the engine keeps them; at most [`MAX_LOG_BYTES`].
pub async fn last_log_lines(manager: &Docker, prefix: &str, lines: u32) -> String {
    use tokio_stream::StreamExt;
    let options = bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&lines.to_string())
        .build();
    let mut logs = manager.service_logs(&service_name(prefix), Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        if text.len() >= MAX_LOG_BYTES {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text
}
