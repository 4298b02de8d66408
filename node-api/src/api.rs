//! The JSON bodies of the node's routes, shared by the server and its clients, and the
//! request headers that ask a node for a fault.
//!
//! Field names are snake_case on the wire, as in Rust.
//!
//! # Header faults
//!
//! A node started with `--allow-fault-headers` lets a request ask it to misbehave for that
//! request alone, with [`FAULT_DELAY_HEADER`], [`FAULT_ABORT_HEADER`],
//! [`FAULT_THROUGHPUT_HEADER`] and [`FAULT_PERCENT_HEADER`]; without the flag the node ignores
//! them. They apply to the request that carries them, whatever its route, on top of the node's
//! fault profile ([`crate::faults`]). A value out of its bounds gets a 400 [`ErrorReply`] that
//! names the header.

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

/// `GET /health`: `{"status":"healthy","server_id":N}` while the node serves, with status
/// 200; `{"status":"unhealthy","server_id":N}`, with the fault's status, for the requests a
/// health fault hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReply {
    /// `"healthy"`, or `"unhealthy"` under a health fault.
    pub status: String,
    /// The server's id.
    pub server_id: u32,
}

/// `GET /ready`: `{"ready":true,"server_id":N}` with status 200 while the node takes traffic;
/// `{"ready":false,"server_id":N}` with 503 for the requests a readiness fault hits (the node
/// is drained: a load balancer should send it nothing new, though it still serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyReply {
    /// Whether the node takes traffic.
    pub ready: bool,
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

/// The body of every error answer (every 4xx, the deliberate ones of `/error/{code}`, and
/// those of faults).
///
/// `error` is a human-readable message that names the offending field or parameter; a fault's
/// answer says `fault: ...` (`fault: aborted`, `fault: rate limited`). The optional fields
/// appear only where they apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong.
    pub error: String,
    /// The simulated status code, on the answers of `/error/{code}` and of faults only.
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
    /// The kinds of fault set on the node and not expired, named as the fields of
    /// [`FaultProfile`](crate::faults::FaultProfile) (`latency`, `abort`, `hang`, `throughput`,
    /// `connection`, `rate_limit`, `health`, `readiness`), in that order; empty when none is.
    pub faults_active: Vec<String>,
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

/// A header fault (see the module's documentation): delays the answer by this many
/// milliseconds, 0 to [`MAX_FAULT_DELAY_MS`](farm_proto::limits::MAX_FAULT_DELAY_MS).
pub const FAULT_DELAY_HEADER: &str = "x-farm-fault-delay-ms";
/// A header fault: answers this status (400 to 599) with `{"error":"fault: aborted","code":N}`
/// instead of serving the request.
pub const FAULT_ABORT_HEADER: &str = "x-farm-fault-abort";
/// A header fault: sends the answer's body at no more than this many bytes per second, 1 to
/// [`MAX_THROUGHPUT_BYTES_PER_SECOND`](farm_proto::limits::MAX_THROUGHPUT_BYTES_PER_SECOND).
pub const FAULT_THROUGHPUT_HEADER: &str = "x-farm-fault-throughput";
/// The share of the requests carrying header faults that they apply to, 0 to 100 (default 100;
/// a decimal fraction is allowed), drawn from one sequence per node (seed 0) in the order the
/// requests arrive.
pub const FAULT_PERCENT_HEADER: &str = "x-farm-fault-percent";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_metrics_decode_tolerates_missing_fields() {
        let m: NodeMetrics = serde_json::from_str(r#"{"server_id":3,"extra":1}"#).unwrap();
        assert_eq!(m.server_id, 3);
        assert_eq!(m.simulated_load, None);
        assert!(m.faults_active.is_empty());
    }
}
