//! The JSON bodies of the node's routes, shared by the server and its clients.
//!
//! Field names are snake_case on the wire, as in Rust.

use serde::{Deserialize, Serialize};

/// `GET /`: who this node is and a short summary of how it is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The server's id.
    pub server_id: u32,
    /// The server's name.
    pub name: String,
    /// Seconds since the app state was created.
    pub uptime_seconds: f64,
    /// Requests received so far, this one included (probes excluded).
    pub requests_total: u64,
    /// CPU use over the last ~1 s, in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory of the node process, in bytes.
    pub memory_rss_bytes: u64,
    /// The `farm-node` crate version.
    pub version: String,
}

/// `GET /health`: always `{"status":"healthy","server_id":N}` while the node serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReply {
    /// Always `"healthy"`: a node that can answer is healthy.
    pub status: String,
    /// The server's id.
    pub server_id: u32,
}

/// `GET /slow-endpoint`: the delay that was actually slept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayReply {
    /// The delay, in milliseconds.
    pub delay_ms: u64,
}

/// `POST /simulate-load` body. Every field is optional; an empty body means all defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadRequest {
    /// CPU to burn, in percent of one core: `0..=100 × cores` (default 50).
    pub cpu_percent: f64,
    /// Memory to hold resident, in MiB: `0..=1024` (default 0).
    pub memory_mb: u32,
    /// How long the load lasts, in seconds: `1..=300` (default 10).
    pub duration_seconds: u32,
}

impl Default for LoadRequest {
    fn default() -> Self {
        Self {
            cpu_percent: 50.0,
            memory_mb: 0,
            duration_seconds: 10,
        }
    }
}

/// The body of every error answer (every 4xx, and the deliberate ones of `/error/{code}`).
///
/// `error` is a human-readable message that names the offending field or parameter.
/// The optional fields appear only where they apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong.
    pub error: String,
    /// The simulated status code, on `/error/{code}` answers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The load already running, on a `409 Conflict` from `POST /simulate-load` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<LoadStatus>,
}

/// The body of `GET /metrics`.
///
/// Counters cover every request since start except probes (see [`crate::PROBE_HEADER`]).
/// Unknown or missing fields decode to their defaults, so an agent and a node of
/// neighbouring versions still understand each other.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeMetrics {
    /// The server's id.
    pub server_id: u32,
    /// The server's name.
    pub name: String,
    /// Seconds since the node started.
    pub uptime_seconds: f64,
    /// Requests received (in flight ones included).
    pub requests_total: u64,
    /// Requests answered with a status >= 500.
    pub errors_total: u64,
    /// Requests being handled right now.
    pub in_flight: u32,
    /// Median latency over the recent window, in milliseconds (0 when no request yet).
    pub latency_p50_ms: f64,
    /// 90th percentile latency over the recent window, in milliseconds.
    pub latency_p90_ms: f64,
    /// 99th percentile latency over the recent window, in milliseconds.
    pub latency_p99_ms: f64,
    /// Highest latency over the recent window, in milliseconds.
    pub latency_max_ms: f64,
    /// CPU use of the node process over the last ~1 s, in percent of one core (so up to
    /// `100 × cores`).
    pub cpu_percent: f64,
    /// Resident memory of the node process, in bytes.
    pub memory_rss_bytes: u64,
    /// Connections open now.
    pub connections_open: u32,
    /// Connections refused because the node was at its bound, since it started.
    pub connections_refused_total: u64,
    /// Bytes the node process read from storage (`/proc/self/io` `read_bytes`; 0 if
    /// unreadable).
    pub disk_read_bytes: u64,
    /// Bytes the node process wrote to storage (`/proc/self/io` `write_bytes`; 0 if
    /// unreadable).
    pub disk_write_bytes: u64,
    /// Request body bytes received, from the requests' content lengths.
    pub http_rx_bytes: u64,
    /// Response body bytes sent, from the responses' content lengths.
    pub http_tx_bytes: u64,
    /// The simulated load running now, if any.
    pub simulated_load: Option<LoadStatus>,
}

/// A simulated load, as accepted by `POST /simulate-load` and reported while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadStatus {
    /// CPU being burnt, in percent of one core.
    pub cpu_percent: f64,
    /// Memory held resident, in MiB.
    pub memory_mb: u32,
    /// The load's total duration, in seconds.
    pub duration_seconds: u32,
    /// Seconds left before the load ends by itself.
    pub remaining_seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_metrics_decode_tolerates_missing_fields() {
        let m: NodeMetrics = serde_json::from_str(r#"{"server_id":3,"extra":1}"#).unwrap();
        assert_eq!(m.server_id, 3);
        assert_eq!(m.simulated_load, None);
    }
}
