//! Servers: their status, latest sample, events, and the list.

use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{finite, uint};
use crate::error::ApiError;

/// The controller's verdict on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServerStatus {
    /// Fresh samples, node app running and answering /health.
    Healthy,
    /// Running, but overloaded or failing its health probe.
    Degraded,
    /// The node app was stopped on request.
    Stopped,
    /// Started, and not reporting a running node yet.
    Starting,
    /// No fresh sample (agent gone or silent), or paused.
    Unreachable,
    /// Not known (never sent by a current controller).
    Unknown,
}

impl From<i32> for ServerStatus {
    fn from(raw: i32) -> Self {
        match pb::ServerStatus::try_from(raw) {
            Ok(pb::ServerStatus::Healthy) => Self::Healthy,
            Ok(pb::ServerStatus::Degraded) => Self::Degraded,
            Ok(pb::ServerStatus::Stopped) => Self::Stopped,
            Ok(pb::ServerStatus::Starting) => Self::Starting,
            Ok(pb::ServerStatus::Unreachable) => Self::Unreachable,
            Ok(pb::ServerStatus::Unspecified) | Err(_) => Self::Unknown,
        }
    }
}

impl ServerStatus {
    /// The lowercase name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Stopped => "stopped",
            Self::Starting => "starting",
            Self::Unreachable => "unreachable",
            Self::Unknown => "unknown",
        }
    }

    /// Every status a server can have, for the Prometheus status gauge.
    pub const ALL: [ServerStatus; 5] = [
        Self::Healthy,
        Self::Degraded,
        Self::Stopped,
        Self::Starting,
        Self::Unreachable,
    ];
}

/// A status to filter servers by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    /// Healthy servers.
    Healthy,
    /// Degraded servers.
    Degraded,
    /// Stopped servers.
    Stopped,
    /// Starting servers.
    Starting,
    /// Unreachable servers.
    Unreachable,
}

impl From<StatusFilter> for pb::ServerStatus {
    fn from(filter: StatusFilter) -> Self {
        match filter {
            StatusFilter::Healthy => Self::Healthy,
            StatusFilter::Degraded => Self::Degraded,
            StatusFilter::Stopped => Self::Stopped,
            StatusFilter::Starting => Self::Starting,
            StatusFilter::Unreachable => Self::Unreachable,
        }
    }
}

/// `GET /api/servers` query.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct ServersQuery {
    /// Only servers with this status.
    pub status: Option<StatusFilter>,
}

/// The state of a server's node app, as its agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Not known yet.
    Unknown,
    /// Being started.
    Starting,
    /// Running and answering /health.
    Running,
    /// Stopped on request.
    Stopped,
    /// Exited on its own; the agent restarts it.
    Crashed,
    /// Running but failing /health.
    Unhealthy,
    /// Frozen on request.
    Paused,
}

impl From<i32> for NodeState {
    fn from(raw: i32) -> Self {
        match pb::NodeState::try_from(raw) {
            Ok(pb::NodeState::Starting) => Self::Starting,
            Ok(pb::NodeState::Running) => Self::Running,
            Ok(pb::NodeState::Stopped) => Self::Stopped,
            Ok(pb::NodeState::Crashed) => Self::Crashed,
            Ok(pb::NodeState::Unhealthy) => Self::Unhealthy,
            Ok(pb::NodeState::Paused) => Self::Paused,
            Ok(pb::NodeState::Unspecified) | Err(_) => Self::Unknown,
        }
    }
}

/// One reading of a server's metrics, taken by its agent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Sample {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The node app's state then.
    pub node_state: NodeState,
    /// CPU of node plus agent, in percent of one core.
    pub cpu_percent: f64,
    /// Memory the server costs the machine, in bytes: the proportional set size (PSS) of
    /// node plus agent, whose shared pages (the one farm binary) are divided among every
    /// process that maps them; in a container, the container's memory use.
    pub memory_bytes: u64,
    /// Resident memory (RSS) of node plus agent, in bytes: counts shared pages in full in
    /// each process; 0 in a container.
    pub memory_resident_bytes: u64,
    /// The server's memory limit in bytes; 0 when it has none.
    pub memory_limit_bytes: u64,
    /// CPU of the node process alone, in percent of one core.
    pub node_cpu_percent: f64,
    /// Proportional memory (PSS) of the node process alone, in bytes.
    pub node_memory_bytes: u64,
    /// Requests the node has served since it started (probes excluded).
    pub requests_total: u64,
    /// Of those, answers with status 500 or more.
    pub errors_total: u64,
    /// Requests being served at that moment.
    pub in_flight: u32,
    /// Median latency of recent requests, in milliseconds.
    pub latency_p50_ms: f64,
    /// 99th percentile latency of recent requests, in milliseconds.
    pub latency_p99_ms: f64,
    /// Bytes read from storage.
    pub disk_read_bytes: u64,
    /// Bytes written to storage.
    pub disk_write_bytes: u64,
    /// Bytes received on the network.
    pub net_rx_bytes: u64,
    /// Bytes sent on the network.
    pub net_tx_bytes: u64,
    /// Seconds since the node process started.
    pub node_uptime_seconds: f64,
    /// Times the agent restarted the node after it exited on its own.
    pub node_restarts: u32,
    /// Whether a simulated load is running.
    pub simulating_load: bool,
    /// Number of processes.
    pub pids: u32,
    /// Cores the server may use; 0 when unlimited.
    pub cpu_limit_cores: f64,
    /// Connections the node holds now.
    pub connections_open: u32,
    /// Connections the node refused at its bound since it started.
    pub connections_refused_total: u64,
}

impl From<pb::MetricsSample> for Sample {
    fn from(s: pb::MetricsSample) -> Self {
        Self {
            timestamp_ms: s.timestamp_ms,
            node_state: s.node_state.into(),
            cpu_percent: finite(s.cpu_percent),
            memory_bytes: s.memory_bytes,
            memory_resident_bytes: s.memory_resident_bytes,
            memory_limit_bytes: s.memory_limit_bytes,
            node_cpu_percent: finite(s.node_cpu_percent),
            node_memory_bytes: s.node_memory_bytes,
            requests_total: s.requests_total,
            errors_total: s.errors_total,
            in_flight: s.in_flight,
            latency_p50_ms: finite(s.latency_p50_ms),
            latency_p99_ms: finite(s.latency_p99_ms),
            disk_read_bytes: s.disk_read_bytes,
            disk_write_bytes: s.disk_write_bytes,
            net_rx_bytes: s.net_rx_bytes,
            net_tx_bytes: s.net_tx_bytes,
            node_uptime_seconds: finite(s.node_uptime_seconds),
            node_restarts: s.node_restarts,
            simulating_load: s.simulating_load,
            pids: s.pids,
            cpu_limit_cores: finite(s.cpu_limit_cores),
            connections_open: s.connections_open,
            connections_refused_total: s.connections_refused_total,
        }
    }
}

/// One server of the farm.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Server {
    /// Server id, 1 or more.
    pub id: u32,
    /// Display name, `server-N`.
    pub name: String,
    /// The controller's verdict.
    pub status: ServerStatus,
    /// Why it has that status, in a few words.
    pub status_reason: String,
    /// Where its node app listens, `host:port`.
    pub node_address: String,
    /// What runs it: `process`, `docker`, or empty when started by hand.
    pub runtime: String,
    /// Version of its agent.
    pub agent_version: String,
    /// Whether its agent's stream is open now.
    pub connected: bool,
    /// When its latest sample arrived, in milliseconds since the Unix epoch; 0 before any.
    pub last_seen_ms: u64,
    /// Its latest sample; null before the first.
    pub metrics: Option<Sample>,
    /// Requests per second it served, from its last two samples.
    pub requests_per_second: f64,
    /// Errors (status 500 or more) per second, from its last two samples.
    pub errors_per_second: f64,
    /// The faults it has now; empty when it does nothing wrong.
    pub faults: super::FaultProfile,
    /// Where it runs, for a runtime that spreads servers over machines (swarm): the machine
    /// and the address its node port is published on there. Empty otherwise.
    pub placement: String,
}

impl From<pb::Server> for Server {
    fn from(s: pb::Server) -> Self {
        Self {
            id: s.id,
            name: s.name,
            status: s.status.into(),
            status_reason: s.status_reason,
            node_address: s.node_address,
            runtime: s.runtime,
            agent_version: s.agent_version,
            connected: s.connected,
            last_seen_ms: s.last_seen_ms,
            metrics: s.metrics.map(Sample::from),
            requests_per_second: finite(s.requests_per_second),
            errors_per_second: finite(s.errors_per_second),
            faults: s.faults.unwrap_or_default().into(),
            placement: s.placement,
        }
    }
}

/// Every server, ordered by id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerList {
    /// The servers.
    pub servers: Vec<Server>,
}

/// What happened to a server's node app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Not known.
    Unknown,
    /// Exited without being asked to.
    NodeExited,
    /// Started again after exiting.
    NodeRestarted,
    /// Stopped answering /health.
    NodeUnhealthy,
    /// Answers /health again.
    NodeHealthy,
    /// Stopped on request.
    NodeStopped,
    /// Started on request.
    NodeStarted,
}

impl From<i32> for EventKind {
    fn from(raw: i32) -> Self {
        use pb::AgentEventKind as K;
        match K::try_from(raw) {
            Ok(K::NodeExited) => Self::NodeExited,
            Ok(K::NodeRestarted) => Self::NodeRestarted,
            Ok(K::NodeUnhealthy) => Self::NodeUnhealthy,
            Ok(K::NodeHealthy) => Self::NodeHealthy,
            Ok(K::NodeStopped) => Self::NodeStopped,
            Ok(K::NodeStarted) => Self::NodeStarted,
            Ok(K::Unspecified) | Err(_) => Self::Unknown,
        }
    }
}

/// One thing that happened to a server's node app.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// When, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// What.
    pub kind: EventKind,
    /// Detail, such as the exit status.
    pub message: String,
}

impl From<pb::AgentEvent> for Event {
    fn from(e: pb::AgentEvent) -> Self {
        Self {
            timestamp_ms: e.timestamp_ms,
            kind: e.kind.into(),
            message: e.message,
        }
    }
}

/// One server with its recent history.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerDetail {
    /// The server.
    pub server: Server,
    /// Its most recent samples, oldest first (at most 120).
    pub history: Vec<Sample>,
    /// Its most recent events, oldest first (at most 50).
    pub events: Vec<Event>,
}

impl TryFrom<pb::GetServerResponse> for ServerDetail {
    type Error = ApiError;

    fn try_from(r: pb::GetServerResponse) -> Result<Self, ApiError> {
        let server = r.server.ok_or_else(|| {
            tracing::warn!("GetServer answered without a server.");
            ApiError::BadGateway("the controller answered without the server".into())
        })?;
        Ok(Self {
            server: server.into(),
            history: r.history.into_iter().map(Sample::from).collect(),
            events: r.events.into_iter().map(Event::from).collect(),
        })
    }
}

/// The `{id}` of `/api/servers/{id}`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
pub struct ServerPath {
    /// The server's id.
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = u32::MAX))]
    pub id: u32,
}
