//! The REST shapes: what the JSON looks like, converted from and to the proto messages at
//! this edge and nowhere else.
//!
//! Conventions, kept everywhere: field names in snake_case; server ids are numbers; a
//! status or kind is a lowercase string (`"healthy"`, `"node_exited"`); HTTP methods keep
//! their canonical uppercase spelling (`"GET"`); times are `*_ms` (milliseconds since the
//! Unix epoch, or a duration when the name says so) and rates are per second. Numbers that
//! are not finite never appear (they become 0), so every body is valid JSON.
//!
//! Request bodies reject unknown fields (a typo is a 422 naming it, not a silent default),
//! and every bound a request can carry is written once here, in the schema attribute that
//! documents it, and checked by `validate` with the same constant before the controller is
//! called. The controller checks again; the two agree, so anything the schema accepts the
//! controller accepts too.

use farm_proto::limits::{
    self, MAX_BROADCAST_BODY_CHARS, MAX_HEALTH_TIMEOUT_MS, MAX_PATH_LEN, MAX_RUN_ID_LEN,
    MAX_TARGETS, NODE_PATH_PATTERN,
};
use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Lenient unsigned integers for request fields: JSON Schema (and so OpenAPI) counts `2.0`
/// as an integer, and so do many clients' serialisers, while serde does not. These accept
/// any JSON number that is a whole value in range (and, for path and query parameters, its
/// text), and refuse the rest with a message serde puts after the field's name.
pub mod uint {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

    /// The unsigned types read leniently.
    pub trait Whole: TryFrom<u64> {
        /// The largest value.
        const MAX: u64;
    }

    impl Whole for u32 {
        const MAX: u64 = u32::MAX as u64;
    }

    impl Whole for u64 {
        const MAX: u64 = u64::MAX;
    }

    /// A `T` read leniently.
    #[derive(Debug, Clone, Copy)]
    pub struct Uint<T>(pub T);

    struct UintVisitor<T>(PhantomData<T>);

    impl<T: Whole> UintVisitor<T> {
        fn fit<E: de::Error>(&self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), self))
        }
    }

    impl<T: Whole> Visitor<'_> for UintVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a whole number from 0 to {}", T::MAX)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.fit(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(v) => self.fit(v),
                Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
            }
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            // 2^64 is exactly representable; anything below it and whole fits a u64.
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                self.fit(v as u64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            if let Ok(n) = v.parse::<u64>() {
                return self.fit(n);
            }
            match v.parse::<f64>() {
                Ok(f) if f.is_finite() => self.visit_f64(f),
                _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
            }
        }
    }

    impl<'de, T: Whole> Deserialize<'de> for Uint<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UintVisitor(PhantomData)).map(Uint)
        }
    }

    /// For `#[serde(deserialize_with)]` on a `u32`/`u64` field.
    pub fn one<'de, D: Deserializer<'de>, T: Whole>(d: D) -> Result<T, D::Error> {
        Uint::<T>::deserialize(d).map(|u| u.0)
    }

    /// For an `Option<u32>` field.
    pub fn option<'de, D: Deserializer<'de>, T: Whole>(d: D) -> Result<Option<T>, D::Error> {
        Option::<Uint<T>>::deserialize(d).map(|o| o.map(|u| u.0))
    }

    /// For a `Vec<u32>` field.
    pub fn list<'de, D: Deserializer<'de>, T: Whole>(d: D) -> Result<Vec<T>, D::Error> {
        Vec::<Uint<T>>::deserialize(d).map(|v| v.into_iter().map(|u| u.0).collect())
    }
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

fn range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ApiError> {
    if value < min || value > max {
        return Err(ApiError::InvalidArgument(format!(
            "{field} must be {min} to {max}, got {value}"
        )));
    }
    Ok(())
}

fn server_ids(field: &str, ids: &[u32]) -> Result<(), ApiError> {
    if ids.len() > MAX_TARGETS {
        return Err(ApiError::InvalidArgument(format!(
            "{field} lists {} servers; at most {MAX_TARGETS}",
            ids.len()
        )));
    }
    if let Some(pos) = ids.iter().position(|&id| id == 0) {
        return Err(ApiError::InvalidArgument(format!(
            "{field}[{pos}] must be a server id (1 or more), got 0"
        )));
    }
    Ok(())
}

/// A node path as the schema's [`NODE_PATH_PATTERN`] says: unlike gRPC, REST has no empty
/// path (its default is `/`).
fn node_path(field: &str, path: &str) -> Result<(), ApiError> {
    if path.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "{field} must be a path on the node starting with a single \"/\", got \"\""
        )));
    }
    limits::check_node_path(path, field).map_err(ApiError::InvalidArgument)
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------

/// A lifecycle action on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start its node app.
    Start,
    /// Stop its node app; it stays stopped until started.
    Stop,
    /// Stop its node app and start it again.
    Restart,
    /// Kill it abruptly (SIGKILL); it comes back as after a crash. For chaos.
    Kill,
    /// Freeze it: it stays up but answers nothing until unpaused. For chaos.
    Pause,
    /// Thaw a paused server.
    Unpause,
}

impl From<Action> for pb::ServerActionKind {
    fn from(a: Action) -> Self {
        match a {
            Action::Start => Self::Start,
            Action::Stop => Self::Stop,
            Action::Restart => Self::Restart,
            Action::Kill => Self::Kill,
            Action::Pause => Self::Pause,
            Action::Unpause => Self::Unpause,
        }
    }
}

/// `POST /api/servers/{id}/action` body.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// What to do.
    pub action: Action,
}

/// What one server answered to a command.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// The server.
    pub server_id: u32,
    /// Whether the command succeeded there.
    pub ok: bool,
    /// What happened, or why it failed.
    pub message: String,
}

impl From<pb::CommandOutcome> for Outcome {
    fn from(o: pb::CommandOutcome) -> Self {
        Self {
            server_id: o.server_id,
            ok: o.ok,
            message: o.message,
        }
    }
}

/// The outcome of an action on one server. A refused action (`ok: false`, e.g. pausing a
/// stopped server) is still a 200: the request was valid, the server said no.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ActionResult {
    /// The server.
    pub server_id: u32,
    /// The action asked for.
    pub action: Action,
    /// Whether it succeeded.
    pub ok: bool,
    /// What happened, or why it failed.
    pub message: String,
}

// ---------------------------------------------------------------------------------------
// Health and metrics
// ---------------------------------------------------------------------------------------

/// `GET /api/health` query.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct HealthQuery {
    /// How long each server's /health probe may take, in milliseconds (default 1000).
    #[serde(default, deserialize_with = "uint::option")]
    #[schemars(range(min = 1, max = MAX_HEALTH_TIMEOUT_MS))]
    pub timeout_ms: Option<u32>,
}

impl HealthQuery {
    /// Checks the bounds the schema states.
    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(t) = self.timeout_ms {
            range("timeout_ms", t, 1, MAX_HEALTH_TIMEOUT_MS)?;
        }
        Ok(())
    }
}

/// One server's health, checked now.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerHealth {
    /// The server's id.
    pub server_id: u32,
    /// Its name.
    pub name: String,
    /// The verdict, from the probe and the sample freshness.
    pub status: ServerStatus,
    /// Why, in a few words.
    pub reason: String,
    /// Whether its /health answered 200 in time.
    pub probe_ok: bool,
    /// How long the probe took, in microseconds.
    pub probe_latency_us: u64,
    /// Age of its latest sample, in milliseconds.
    pub sample_age_ms: u64,
}

/// The health of every server, ordered by id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// How many servers are healthy.
    pub healthy: u32,
    /// How many servers there are.
    pub total: u32,
    /// How long the check took inside the controller, in microseconds.
    pub duration_us: u64,
    /// Each server's health.
    pub servers: Vec<ServerHealth>,
}

impl From<pb::CheckHealthResponse> for Health {
    fn from(r: pb::CheckHealthResponse) -> Self {
        Self {
            healthy: r.healthy,
            total: r.total,
            duration_us: r.duration_us,
            servers: r
                .servers
                .into_iter()
                .map(|s| ServerHealth {
                    server_id: s.server_id,
                    name: s.name,
                    status: s.status.into(),
                    reason: s.reason,
                    probe_ok: s.probe_ok,
                    probe_latency_us: s.probe_latency_us,
                    sample_age_ms: s.sample_age_ms,
                })
                .collect(),
        }
    }
}

/// The farm's metrics, aggregated from every server's latest sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct FarmMetrics {
    /// When this was computed, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Number of servers.
    pub servers_total: u32,
    /// Servers that are healthy.
    pub healthy: u32,
    /// Servers that are degraded.
    pub degraded: u32,
    /// Servers whose node app is stopped.
    pub stopped: u32,
    /// Servers that are starting.
    pub starting: u32,
    /// Servers that are unreachable.
    pub unreachable: u32,
    /// Sum of every server's CPU, in percent of one core.
    pub cpu_percent_total: f64,
    /// Mean CPU per reporting server, in percent of one core.
    pub cpu_percent_mean: f64,
    /// Sum of every server's `memory_bytes`: what the servers cost the machine, in bytes.
    pub memory_bytes_total: u64,
    /// Requests served by all servers since they started.
    pub requests_total: u64,
    /// Errors (status 500 or more) served by all servers since they started.
    pub errors_total: u64,
    /// Requests per second across the farm.
    pub requests_per_second: f64,
    /// Errors per second across the farm.
    pub errors_per_second: f64,
    /// Highest p99 latency among the servers, in milliseconds.
    pub latency_p99_ms_max: f64,
    /// Mean of the servers' p50 latencies, in milliseconds.
    pub latency_p50_ms_mean: f64,
    /// Requests in flight across the farm.
    pub in_flight: u32,
}

impl From<pb::FarmMetrics> for FarmMetrics {
    fn from(m: pb::FarmMetrics) -> Self {
        Self {
            timestamp_ms: m.timestamp_ms,
            servers_total: m.servers_total,
            healthy: m.healthy,
            degraded: m.degraded,
            stopped: m.stopped,
            starting: m.starting,
            unreachable: m.unreachable,
            cpu_percent_total: finite(m.cpu_percent_total),
            cpu_percent_mean: finite(m.cpu_percent_mean),
            memory_bytes_total: m.memory_bytes_total,
            requests_total: m.requests_total,
            errors_total: m.errors_total,
            requests_per_second: finite(m.requests_per_second),
            errors_per_second: finite(m.errors_per_second),
            latency_p99_ms_max: finite(m.latency_p99_ms_max),
            latency_p50_ms_mean: finite(m.latency_p50_ms_mean),
            in_flight: m.in_flight,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Load tests
// ---------------------------------------------------------------------------------------

/// An HTTP method a request to a node may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum HttpMethod {
    /// GET.
    #[default]
    #[serde(rename = "GET")]
    Get,
    /// POST.
    #[serde(rename = "POST")]
    Post,
    /// PUT.
    #[serde(rename = "PUT")]
    Put,
    /// DELETE.
    #[serde(rename = "DELETE")]
    Delete,
    /// HEAD.
    #[serde(rename = "HEAD")]
    Head,
}

impl HttpMethod {
    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
        }
    }
}

fn default_path() -> String {
    "/".into()
}
fn default_concurrency() -> u32 {
    10
}
fn default_load_timeout_ms() -> u32 {
    10_000
}

/// `POST /api/load-test` body: a load test against servers of this farm (never a URL:
/// the host is always the target server's node). The request stays open until the run
/// ends and answers with its final result.
///
/// Closed model (`rate_per_second` 0): `concurrency` workers each send their next request
/// when the previous one is answered. Open model (`rate_per_second` > 0): requests go out
/// at that rate whatever the answers do, latency measured from each request's intended
/// send time. The run ends after `total_requests` or `duration_seconds`, whichever first.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadTestRequest {
    /// Target servers; empty or absent means every server of the farm.
    #[serde(default, deserialize_with = "uint::list")]
    #[schemars(length(max = MAX_TARGETS), inner(range(min = 1, max = u32::MAX)))]
    pub server_ids: Vec<u32>,
    /// Node path to request, query included (at most 256 bytes).
    #[serde(default = "default_path")]
    #[schemars(length(max = MAX_PATH_LEN), regex(pattern = NODE_PATH_PATTERN))]
    pub path: String,
    /// HTTP method.
    #[serde(default)]
    pub method: HttpMethod,
    /// Concurrent workers (open model: most requests in flight).
    #[serde(default = "default_concurrency", deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = limits::MAX_CONCURRENCY))]
    pub concurrency: u32,
    /// Requests to send; 0 means until the duration ends.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(min = 0, max = limits::MAX_TOTAL_REQUESTS))]
    pub total_requests: u64,
    /// Longest run, in seconds. Absent: 60 (or the gateway's maximum when
    /// `total_requests` is set), never more than the gateway's maximum
    /// (`--max-load-test-seconds`, 300 by default; this document states the one in force).
    #[serde(default, deserialize_with = "uint::option")]
    #[schemars(range(min = 1, max = limits::DEFAULT_MAX_REST_LOAD_TEST_SECONDS))]
    pub duration_seconds: Option<u32>,
    /// Per-request timeout, in milliseconds.
    #[serde(default = "default_load_timeout_ms", deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = limits::MAX_TIMEOUT_MS))]
    pub timeout_ms: u32,
    /// Open model: requests per second; 0 means closed model.
    #[serde(default)]
    #[schemars(range(min = 0, max = limits::MAX_RATE_PER_SECOND))]
    pub rate_per_second: f64,
    /// Seconds over which the load ramps up linearly from zero; a ramp longer than the
    /// run is cut to the run's duration.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(min = 0, max = limits::DEFAULT_MAX_REST_LOAD_TEST_SECONDS))]
    pub ramp_up_seconds: u32,
}

impl LoadTestRequest {
    /// Checks the bounds the schema states (with `max_seconds`, the gateway's bound on a
    /// run) and builds the spec for the controller, the duration made explicit.
    pub fn into_spec(self, max_seconds: u32) -> Result<pb::LoadTestSpec, ApiError> {
        server_ids("server_ids", &self.server_ids)?;
        node_path("path", &self.path)?;
        range("concurrency", self.concurrency, 1, limits::MAX_CONCURRENCY)?;
        range(
            "total_requests",
            self.total_requests,
            0,
            limits::MAX_TOTAL_REQUESTS,
        )?;
        if let Some(d) = self.duration_seconds {
            range("duration_seconds", d, 1, max_seconds)?;
        }
        range("timeout_ms", self.timeout_ms, 1, limits::MAX_TIMEOUT_MS)?;
        range(
            "rate_per_second",
            self.rate_per_second,
            0.0,
            limits::MAX_RATE_PER_SECOND,
        )?;
        range("ramp_up_seconds", self.ramp_up_seconds, 0, max_seconds)?;
        let duration = self.duration_seconds.unwrap_or(if self.total_requests > 0 {
            max_seconds
        } else {
            60.min(max_seconds)
        });
        Ok(pb::LoadTestSpec {
            server_ids: self.server_ids,
            path: self.path,
            method: self.method.as_str().into(),
            concurrency: self.concurrency,
            total_requests: self.total_requests,
            duration_seconds: duration,
            timeout_ms: self.timeout_ms,
            rate_per_second: self.rate_per_second,
            ramp_up_seconds: self.ramp_up_seconds.min(duration),
        })
    }
}

/// The spec a run was started with, defaults applied.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LoadTestSpec {
    /// Target servers.
    pub server_ids: Vec<u32>,
    /// Node path.
    pub path: String,
    /// HTTP method, uppercase.
    pub method: String,
    /// Concurrent workers.
    pub concurrency: u32,
    /// Requests to send; 0 means until the duration ends.
    pub total_requests: u64,
    /// Longest run, in seconds.
    pub duration_seconds: u32,
    /// Per-request timeout, in milliseconds.
    pub timeout_ms: u32,
    /// Open model rate; 0 for the closed model.
    pub rate_per_second: f64,
    /// Ramp-up, in seconds.
    pub ramp_up_seconds: u32,
}

impl From<pb::LoadTestSpec> for LoadTestSpec {
    fn from(s: pb::LoadTestSpec) -> Self {
        Self {
            server_ids: s.server_ids,
            path: s.path,
            method: s.method,
            concurrency: s.concurrency,
            total_requests: s.total_requests,
            duration_seconds: s.duration_seconds,
            timeout_ms: s.timeout_ms,
            rate_per_second: finite(s.rate_per_second),
            ramp_up_seconds: s.ramp_up_seconds,
        }
    }
}

/// Latency percentiles from an HDR histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl From<pb::LatencySummary> for Latency {
    fn from(l: pb::LatencySummary) -> Self {
        Self {
            p50_ms: finite(l.p50_ms),
            p90_ms: finite(l.p90_ms),
            p99_ms: finite(l.p99_ms),
            p999_ms: finite(l.p999_ms),
            max_ms: finite(l.max_ms),
            mean_ms: finite(l.mean_ms),
        }
    }
}

/// Answers with one HTTP status.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StatusCount {
    /// The HTTP status.
    pub code: u32,
    /// How many answers had it.
    pub count: u64,
}

/// Requests that failed without an answer, by kind.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorCount {
    /// `connect`, `timeout` or `io`.
    pub kind: String,
    /// How many.
    pub count: u64,
}

/// One target server's share of a load test.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerLoad {
    /// The server.
    pub server_id: u32,
    /// Requests sent to it.
    pub requests: u64,
    /// Requests that failed or got status 500 or more.
    pub failures: u64,
    /// Its latencies.
    pub latency: Latency,
}

/// A load test's figures.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LoadTestResult {
    /// Requests completed (answered or failed).
    pub requests: u64,
    /// Requests answered with a status below 500.
    pub successes: u64,
    /// Requests that failed or got status 500 or more.
    pub failures: u64,
    /// Seconds the run took.
    pub elapsed_seconds: f64,
    /// Completed requests per second.
    pub requests_per_second: f64,
    /// Latency of answered requests (open model: from the intended send time).
    pub latency: Latency,
    /// Open model only: latency from the actual send time, for comparison.
    pub latency_uncorrected: Option<Latency>,
    /// Open model only: the rate asked for.
    pub target_rate: f64,
    /// Open model only: requests due but not sent because `concurrency` were in flight.
    pub dropped: u64,
    /// Answers per HTTP status.
    pub status_codes: Vec<StatusCount>,
    /// Failures without an answer, per kind.
    pub errors: Vec<ErrorCount>,
    /// Per target server.
    pub per_server: Vec<ServerLoad>,
    /// The spec, defaults applied.
    pub spec: Option<LoadTestSpec>,
}

impl From<pb::LoadTestResult> for LoadTestResult {
    fn from(r: pb::LoadTestResult) -> Self {
        Self {
            requests: r.requests,
            successes: r.successes,
            failures: r.failures,
            elapsed_seconds: finite(r.elapsed_seconds),
            requests_per_second: finite(r.requests_per_second),
            latency: r.latency.map(Latency::from).unwrap_or_default(),
            latency_uncorrected: r.latency_uncorrected.map(Latency::from),
            target_rate: finite(r.target_rate),
            dropped: r.dropped,
            status_codes: r
                .status_codes
                .into_iter()
                .map(|s| StatusCount {
                    code: s.code,
                    count: s.count,
                })
                .collect(),
            errors: r
                .errors
                .into_iter()
                .map(|e| ErrorCount {
                    kind: e.kind,
                    count: e.count,
                })
                .collect(),
            per_server: r
                .per_server
                .into_iter()
                .map(|s| ServerLoad {
                    server_id: s.server_id,
                    requests: s.requests,
                    failures: s.failures,
                    latency: s.latency.map(Latency::from).unwrap_or_default(),
                })
                .collect(),
            spec: r.spec.map(LoadTestSpec::from),
        }
    }
}

/// A load test run: its id and, once `done`, its final result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LoadTestRun {
    /// The run's id, e.g. `lt-1`.
    pub id: String,
    /// Whether the run has ended.
    pub done: bool,
    /// Why it ended early (`cancelled`), or null.
    pub stopped_reason: Option<String>,
    /// The figures.
    pub result: Option<LoadTestResult>,
}

impl From<pb::RunLoadTestResponse> for LoadTestRun {
    fn from(r: pb::RunLoadTestResponse) -> Self {
        Self {
            id: r.run_id,
            done: r.done,
            stopped_reason: (!r.stopped_reason.is_empty()).then_some(r.stopped_reason),
            result: r.result.map(LoadTestResult::from),
        }
    }
}

/// The kept load tests (the last 20), oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LoadTestList {
    /// The runs.
    pub runs: Vec<LoadTestRun>,
}

/// The `{id}` of `/api/load-tests/{id}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct LoadTestPath {
    /// The run's id, as `POST /api/load-test` returned it.
    #[schemars(length(min = 1, max = MAX_RUN_ID_LEN))]
    pub id: String,
}

impl LoadTestPath {
    /// Checks the bound the schema states.
    pub fn validate(&self) -> Result<(), ApiError> {
        let chars = self.id.chars().count();
        if chars == 0 || chars > MAX_RUN_ID_LEN {
            return Err(ApiError::InvalidArgument(format!(
                "id must be 1 to {MAX_RUN_ID_LEN} characters, got {chars}"
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Simulated load, broadcast, scale
// ---------------------------------------------------------------------------------------

fn default_load_seconds() -> u32 {
    10
}

/// `POST /api/simulate-load` body: make servers of this farm burn CPU and hold memory.
/// At least one of `cpu_percent` and `memory_mb` must be above 0.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = asks_for_something)]
pub struct SimulateLoadRequest {
    /// Target servers; empty or absent means every server of the farm.
    #[serde(default, deserialize_with = "uint::list")]
    #[schemars(length(max = MAX_TARGETS), inner(range(min = 1, max = u32::MAX)))]
    pub server_ids: Vec<u32>,
    /// CPU to burn, in percent of one core. Each server refuses more than 100 per core it
    /// has (its outcome says so).
    #[serde(default)]
    #[schemars(range(min = 0, max = limits::MAX_LOAD_CPU_PERCENT))]
    pub cpu_percent: f64,
    /// Memory to hold, in MiB.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(min = 0, max = limits::MAX_LOAD_MEMORY_MB))]
    pub memory_mb: u32,
    /// How long to hold the load, in seconds.
    #[serde(default = "default_load_seconds", deserialize_with = "uint::one")]
    #[schemars(range(min = limits::MIN_LOAD_DURATION_SECONDS, max = limits::MAX_LOAD_DURATION_SECONDS))]
    pub duration_seconds: u32,
}

/// The schema of "at least one of cpu_percent and memory_mb above 0", which no field
/// attribute can say.
fn asks_for_something(schema: &mut schemars::Schema) {
    schema.insert(
        "anyOf".into(),
        serde_json::json!([
            {"required": ["cpu_percent"], "properties": {"cpu_percent": {"exclusiveMinimum": 0}}},
            {"required": ["memory_mb"], "properties": {"memory_mb": {"minimum": 1}}}
        ]),
    );
}

impl SimulateLoadRequest {
    /// Checks the bounds the schema states and builds the controller's request.
    pub fn into_proto(self) -> Result<pb::SimulateLoadRequest, ApiError> {
        server_ids("server_ids", &self.server_ids)?;
        range(
            "cpu_percent",
            self.cpu_percent,
            0.0,
            limits::MAX_LOAD_CPU_PERCENT,
        )?;
        range("memory_mb", self.memory_mb, 0, limits::MAX_LOAD_MEMORY_MB)?;
        range(
            "duration_seconds",
            self.duration_seconds,
            limits::MIN_LOAD_DURATION_SECONDS,
            limits::MAX_LOAD_DURATION_SECONDS,
        )?;
        if self.cpu_percent == 0.0 && self.memory_mb == 0 {
            return Err(ApiError::InvalidArgument(
                "the load asks for nothing: set cpu_percent or memory_mb above 0".into(),
            ));
        }
        Ok(pb::SimulateLoadRequest {
            server_ids: self.server_ids,
            load: Some(pb::LoadSpec {
                cpu_percent: self.cpu_percent,
                memory_mb: self.memory_mb,
                duration_seconds: self.duration_seconds,
            }),
        })
    }
}

/// One outcome per target server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Outcomes {
    /// The outcomes, in the order the servers were asked.
    pub outcomes: Vec<Outcome>,
}

fn default_broadcast_timeout_ms() -> u32 {
    5000
}

/// `POST /api/broadcast` body: one HTTP request sent to servers of this farm at once (a
/// path on each node, never a URL).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    /// Target servers; empty or absent means every server of the farm.
    #[serde(default, deserialize_with = "uint::list")]
    #[schemars(length(max = MAX_TARGETS), inner(range(min = 1, max = u32::MAX)))]
    pub server_ids: Vec<u32>,
    /// HTTP method.
    #[serde(default)]
    pub method: HttpMethod,
    /// Node path, query included (at most 256 bytes).
    #[serde(default = "default_path")]
    #[schemars(length(max = MAX_PATH_LEN), regex(pattern = NODE_PATH_PATTERN))]
    pub path: String,
    /// Request body, sent with `content-type: application/json` when not empty (at most
    /// 16384 characters, which is at most 64 KiB).
    #[serde(default)]
    #[schemars(length(max = MAX_BROADCAST_BODY_CHARS))]
    pub body: String,
    /// Deadline for every answer, in milliseconds.
    #[serde(
        default = "default_broadcast_timeout_ms",
        deserialize_with = "uint::one"
    )]
    #[schemars(range(min = 1, max = limits::MAX_BROADCAST_TIMEOUT_MS))]
    pub timeout_ms: u32,
}

impl BroadcastRequest {
    /// Checks the bounds the schema states and builds the controller's request.
    pub fn into_proto(self) -> Result<pb::BroadcastRequest, ApiError> {
        server_ids("server_ids", &self.server_ids)?;
        node_path("path", &self.path)?;
        let chars = self.body.chars().count();
        if chars > MAX_BROADCAST_BODY_CHARS {
            return Err(ApiError::InvalidArgument(format!(
                "body is {chars} characters; at most {MAX_BROADCAST_BODY_CHARS}"
            )));
        }
        range(
            "timeout_ms",
            self.timeout_ms,
            1,
            limits::MAX_BROADCAST_TIMEOUT_MS,
        )?;
        Ok(pb::BroadcastRequest {
            server_ids: self.server_ids,
            method: self.method.as_str().into(),
            path: self.path,
            body: self.body,
            timeout_ms: self.timeout_ms,
        })
    }
}

/// One server's answer to a broadcast.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BroadcastReply {
    /// The server.
    pub server_id: u32,
    /// Whether an HTTP answer came back in time.
    pub ok: bool,
    /// The HTTP status; 0 when there was no answer.
    pub status_code: u32,
    /// How long the answer took, in milliseconds.
    pub latency_ms: f64,
    /// The start of the answer's body (at most 4 KiB).
    pub body: String,
    /// Whether the body was cut to fit.
    pub body_truncated: bool,
    /// Why there was no answer, or null.
    pub error: Option<String>,
}

/// One reply per target server, ordered by id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BroadcastResult {
    /// The replies.
    pub replies: Vec<BroadcastReply>,
}

impl From<pb::BroadcastResponse> for BroadcastResult {
    fn from(r: pb::BroadcastResponse) -> Self {
        Self {
            replies: r
                .replies
                .into_iter()
                .map(|r| BroadcastReply {
                    server_id: r.server_id,
                    ok: r.ok,
                    status_code: r.status_code,
                    latency_ms: finite(r.latency_ms),
                    body: r.body,
                    body_truncated: r.body_truncated,
                    error: (!r.error.is_empty()).then_some(r.error),
                })
                .collect(),
        }
    }
}

/// `POST /api/scale` body.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// How many servers the farm should have. New servers take the next ids; scaling down
    /// removes the highest. At least 1 (the REST API keeps the farm usable; stop it with
    /// Ctrl-C), at most the gateway's `--max-servers` (this document states the one in
    /// force).
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = limits::MAX_SERVERS))]
    pub servers: u32,
}

impl ScaleRequest {
    /// Checks the bounds the schema states (with `max`, the gateway's bound).
    pub fn into_proto(self, max: u32) -> Result<pb::ScaleFarmRequest, ApiError> {
        range("servers", self.servers, 1, max)?;
        Ok(pb::ScaleFarmRequest {
            servers: self.servers,
        })
    }
}

/// What scaling did.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScaleResult {
    /// Ids of the servers added.
    pub added: Vec<u32>,
    /// Ids of the servers removed.
    pub removed: Vec<u32>,
    /// How many servers the farm has now.
    pub servers: u32,
}

impl From<pb::ScaleFarmResponse> for ScaleResult {
    fn from(r: pb::ScaleFarmResponse) -> Self {
        Self {
            added: r.added,
            removed: r.removed,
            servers: r.servers,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The API itself
// ---------------------------------------------------------------------------------------

/// Where to find things.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Links {
    /// Interactive API documentation (works offline).
    pub docs: String,
    /// The OpenAPI 3.1 document.
    pub openapi: String,
    /// Prometheus metrics.
    pub metrics: String,
    /// The servers.
    pub servers: String,
    /// The farm's health.
    pub health: String,
    /// The farm's aggregated metrics.
    pub farm_metrics: String,
    /// The kept load tests.
    pub load_tests: String,
    /// grpc-web base URL for `farm.v1.FarmService` (POST `/farm.v1.FarmService/<Method>`).
    pub grpc_web: String,
}

/// `GET /`: what this is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ApiInfo {
    /// `farm`.
    pub name: String,
    /// The gateway's version.
    pub version: String,
    /// One line on what this is.
    pub description: String,
    /// Where to find things.
    pub links: Links,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_paths_are_the_contracts_without_the_empty_one() {
        assert!(node_path("path", "/data/4?x=1").is_ok());
        for bad in ["", "data", "//evil/x", "/<x>"] {
            let e = node_path("path", bad).unwrap_err();
            assert!(e.to_string().contains("path"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn load_test_defaults_fit_the_gateway_bound() {
        let req: LoadTestRequest = serde_json::from_str("{}").unwrap();
        let spec = req.into_spec(300).unwrap();
        assert_eq!(spec.duration_seconds, 60);
        assert_eq!(spec.path, "/");
        assert_eq!(spec.method, "GET");
        assert_eq!(spec.concurrency, 10);
        let req: LoadTestRequest =
            serde_json::from_str(r#"{"total_requests": 5, "ramp_up_seconds": 9}"#).unwrap();
        let spec = req.into_spec(2).unwrap_err();
        assert!(spec.to_string().contains("ramp_up_seconds"), "{spec}");
        let req: LoadTestRequest =
            serde_json::from_str(r#"{"duration_seconds": 3, "ramp_up_seconds": 9}"#).unwrap();
        let spec = req.into_spec(300).unwrap();
        assert_eq!(spec.ramp_up_seconds, 3, "the ramp is cut to the run");
        let req: LoadTestRequest = serde_json::from_str(r#"{"duration_seconds": 301}"#).unwrap();
        let e = req.into_spec(300).unwrap_err();
        assert!(e.to_string().contains("duration_seconds"), "{e}");
    }

    #[test]
    fn whole_floats_count_as_integers() {
        let r: ScaleRequest = serde_json::from_str(r#"{"servers": 4.0}"#).unwrap();
        assert_eq!(r.servers, 4);
        for bad in [
            r#"{"servers": 4.5}"#,
            r#"{"servers": -1}"#,
            r#"{"servers": 4294967296}"#,
        ] {
            let e = serde_json::from_str::<ScaleRequest>(bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("whole number from 0 to 4294967295"),
                "{bad}: {e}"
            );
        }
        let r: LoadTestRequest =
            serde_json::from_str(r#"{"server_ids": [1.0, 2], "duration_seconds": 3.0}"#).unwrap();
        assert_eq!(r.server_ids, [1, 2]);
        assert_eq!(r.duration_seconds, Some(3));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e =
            serde_json::from_str::<ActionRequest>(r#"{"action":"stop","force":true}"#).unwrap_err();
        assert!(e.to_string().contains("force"), "{e}");
    }

    #[test]
    fn simulated_load_must_ask_for_something() {
        let r: SimulateLoadRequest = serde_json::from_str(r#"{"duration_seconds": 5}"#).unwrap();
        assert!(r.into_proto().is_err());
        let r: SimulateLoadRequest = serde_json::from_str(r#"{"memory_mb": 1}"#).unwrap();
        assert_eq!(r.into_proto().unwrap().load.unwrap().duration_seconds, 10);
    }
}
