//! Health checks, and the farm's aggregated metrics.

use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ServerStatus, finite, range, uint};
use crate::error::ApiError;
use farm_proto::limits::MAX_HEALTH_TIMEOUT_MS;

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
    /// Agent streams the controller refused since it started: no or a wrong farm token, a
    /// server another live stream holds, an unexpected node address, or a full farm.
    pub agent_streams_refused: u64,
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
            agent_streams_refused: m.agent_streams_refused,
        }
    }
}
