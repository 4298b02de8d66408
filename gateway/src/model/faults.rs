//! Fault profiles: what a server does wrong on command, which servers a change aims at, and
//! what each server has after it. The same shapes go in (a request) and come out (a server's
//! profile, where `when.expires_at_ms` is filled in).
//!
//! The bounds are in the schema attributes; the controller checks every one of them with the
//! same constants and names the field (`faults.latency.delay_ms`), so they are not checked
//! twice here.

use farm_proto::limits::{
    MAX_ABORT_STATUSES, MAX_ABORT_WEIGHT, MAX_FAULT_DELAY_MS, MAX_FAULT_DURATION_SECONDS,
    MAX_FAULT_PATH_PREFIX_LEN, MAX_FAULT_RATE_PER_SECOND, MAX_FAULT_STATUS, MAX_HANG_MS,
    MAX_RETRY_AFTER_SECONDS, MAX_TARGETS, MAX_THROUGHPUT_BYTES_PER_SECOND, MIN_FAULT_STATUS,
};
use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Outcome, StatusFilter, server_ids, uint};
use crate::error::ApiError;

/// When a fault applies, and for how long.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultWhen {
    /// Share of the requests in scope that the fault hits, in percent; absent means 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<f64>,
    /// Only requests whose path starts with this; absent or empty means every route. `/health`,
    /// `/ready` and `/metrics` are touched only by the health and readiness faults.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = MAX_FAULT_PATH_PREFIX_LEN), regex(pattern = r"^(/[\s\S]*)?$"))]
    pub path_prefix: String,
    /// The fault clears itself this many seconds after it is set; 0 or absent: until cleared.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(min = 0, max = MAX_FAULT_DURATION_SECONDS))]
    pub duration_seconds: u32,
    /// Seeds the fault's decisions: the same seed gives each server the same sequence of
    /// decisions for its requests, in the order they arrive.
    #[serde(default, deserialize_with = "uint::one")]
    pub seed: u64,
    /// When the fault clears itself, in milliseconds since the Unix epoch; 0 when it lasts
    /// until cleared. Filled in by the farm; ignored in requests.
    #[serde(default, deserialize_with = "uint::one")]
    pub expires_at_ms: u64,
}

impl From<FaultWhen> for pb::FaultWhen {
    fn from(w: FaultWhen) -> Self {
        Self {
            percent: w.percent,
            path_prefix: w.path_prefix,
            duration_seconds: w.duration_seconds,
            seed: w.seed,
            expires_at_ms: 0,
        }
    }
}

impl From<pb::FaultWhen> for FaultWhen {
    fn from(w: pb::FaultWhen) -> Self {
        Self {
            percent: w.percent.map(super::finite),
            path_prefix: w.path_prefix,
            duration_seconds: w.duration_seconds,
            seed: w.seed,
            expires_at_ms: w.expires_at_ms,
        }
    }
}

fn when_in(when: Option<FaultWhen>) -> Option<pb::FaultWhen> {
    Some(when.unwrap_or_default().into())
}

fn when_out(when: Option<pb::FaultWhen>) -> Option<FaultWhen> {
    when.map(Into::into)
}

/// Delays requests: `delay_ms` plus or minus up to `jitter_ms`, or a shape given by
/// `p50_ms`, `p90_ms` and `p99_ms` (then `delay_ms` and `jitter_ms` stay 0).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyFault {
    /// When it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<FaultWhen>,
    /// The delay, in milliseconds.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(max = MAX_FAULT_DELAY_MS))]
    pub delay_ms: u32,
    /// Largest deviation from the delay, uniform either way, in milliseconds.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(max = MAX_FAULT_DELAY_MS))]
    pub jitter_ms: u32,
    /// Median delay of the shape, in milliseconds.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(max = MAX_FAULT_DELAY_MS))]
    pub p50_ms: u32,
    /// 90th percentile of the shape, in milliseconds (at least p50_ms).
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(max = MAX_FAULT_DELAY_MS))]
    pub p90_ms: u32,
    /// 99th percentile of the shape, in milliseconds (at least p90_ms).
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(max = MAX_FAULT_DELAY_MS))]
    pub p99_ms: u32,
}

/// One status code of an abort fault's mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusWeight {
    /// The status code.
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = MIN_FAULT_STATUS, max = MAX_FAULT_STATUS))]
    pub status: u32,
    /// Its weight in the mix.
    #[serde(default = "one", deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = MAX_ABORT_WEIGHT))]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Answers requests with an error status instead of serving them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbortFault {
    /// When it applies: `percent` is the share of requests aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<FaultWhen>,
    /// The status codes an aborted request gets, with their weights; absent means 503 alone.
    #[serde(default)]
    #[schemars(length(max = MAX_ABORT_STATUSES))]
    pub statuses: Vec<StatusWeight>,
}

/// Accepts requests and never answers, until the client goes away or `max_ms` passes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HangFault {
    /// When it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<FaultWhen>,
    /// Longest a request is held, in milliseconds; 0 or absent means 60000.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(max = MAX_HANG_MS))]
    pub max_ms: u32,
}

/// Sends answers' bodies no faster than a cap: a slow drip.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThroughputFault {
    /// When it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<FaultWhen>,
    /// The cap, in bytes per second.
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = MAX_THROUGHPUT_BYTES_PER_SECOND))]
    pub bytes_per_second: u32,
}

/// What a connection fault does to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionMode {
    /// Close the connection without an answer: the client reads end of file.
    Close,
    /// Reset the TCP connection: the client reads a reset.
    Reset,
}

/// Drops the connection instead of answering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionFault {
    /// When it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<FaultWhen>,
    /// Close or reset.
    pub mode: ConnectionMode,
}

/// Answers requests above a rate with an error and `Retry-After`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFault {
    /// When it applies: only the requests it hits count against the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<FaultWhen>,
    /// Requests per second let through.
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = MAX_FAULT_RATE_PER_SECOND))]
    pub requests_per_second: u32,
    /// The status of a refused request; 0 or absent means 429.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(max = MAX_FAULT_STATUS))]
    pub status: u32,
    /// The `Retry-After` of a refused request, in seconds.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(max = MAX_RETRY_AFTER_SECONDS))]
    pub retry_after_seconds: u32,
}

/// Makes `/health` answer an error while the other routes keep serving.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthFault {
    /// When it applies (a percent below 100 makes the health check flap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<FaultWhen>,
    /// The status `/health` answers; 0 or absent means 503.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(max = MAX_FAULT_STATUS))]
    pub status: u32,
}

/// Drains the server (`/ready` answers 503), or cuts it off from the farm's network (docker
/// runtime only): a fault with nothing to set but when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlainFault {
    /// When it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<FaultWhen>,
}

/// Everything a server does wrong, each kind at most once. A request names at least one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultProfile {
    /// Slow answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyFault>,
    /// Error answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortFault>,
    /// No answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang: Option<HangFault>,
    /// Slow bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<ThroughputFault>,
    /// Dropped connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionFault>,
    /// A rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitFault>,
    /// A failing `/health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthFault>,
    /// A drained `/ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<PlainFault>,
    /// Cut off from the farm's network (docker runtime only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<PlainFault>,
}

impl From<FaultProfile> for pb::FaultProfile {
    fn from(p: FaultProfile) -> Self {
        Self {
            latency: p.latency.map(|f| pb::LatencyFault {
                when: when_in(f.when),
                delay_ms: f.delay_ms,
                jitter_ms: f.jitter_ms,
                p50_ms: f.p50_ms,
                p90_ms: f.p90_ms,
                p99_ms: f.p99_ms,
            }),
            abort: p.abort.map(|f| pb::AbortFault {
                when: when_in(f.when),
                statuses: f
                    .statuses
                    .into_iter()
                    .map(|s| pb::StatusWeight {
                        status: s.status,
                        weight: s.weight,
                    })
                    .collect(),
            }),
            hang: p.hang.map(|f| pb::HangFault {
                when: when_in(f.when),
                max_ms: f.max_ms,
            }),
            throughput: p.throughput.map(|f| pb::ThroughputFault {
                when: when_in(f.when),
                bytes_per_second: f.bytes_per_second,
            }),
            connection: p.connection.map(|f| pb::ConnectionFault {
                when: when_in(f.when),
                mode: match f.mode {
                    ConnectionMode::Close => pb::ConnectionFaultMode::Close,
                    ConnectionMode::Reset => pb::ConnectionFaultMode::Reset,
                } as i32,
            }),
            rate_limit: p.rate_limit.map(|f| pb::RateLimitFault {
                when: when_in(f.when),
                requests_per_second: f.requests_per_second,
                status: f.status,
                retry_after_seconds: f.retry_after_seconds,
            }),
            health: p.health.map(|f| pb::HealthFault {
                when: when_in(f.when),
                status: f.status,
            }),
            readiness: p.readiness.map(|f| pb::ReadinessFault {
                when: when_in(f.when),
            }),
            partition: p.partition.map(|f| pb::PartitionFault {
                when: when_in(f.when),
            }),
        }
    }
}

impl From<pb::FaultProfile> for FaultProfile {
    fn from(p: pb::FaultProfile) -> Self {
        Self {
            latency: p.latency.map(|f| LatencyFault {
                when: when_out(f.when),
                delay_ms: f.delay_ms,
                jitter_ms: f.jitter_ms,
                p50_ms: f.p50_ms,
                p90_ms: f.p90_ms,
                p99_ms: f.p99_ms,
            }),
            abort: p.abort.map(|f| AbortFault {
                when: when_out(f.when),
                statuses: f
                    .statuses
                    .into_iter()
                    .map(|s| StatusWeight {
                        status: s.status,
                        weight: s.weight,
                    })
                    .collect(),
            }),
            hang: p.hang.map(|f| HangFault {
                when: when_out(f.when),
                max_ms: f.max_ms,
            }),
            throughput: p.throughput.map(|f| ThroughputFault {
                when: when_out(f.when),
                bytes_per_second: f.bytes_per_second,
            }),
            connection: p.connection.map(|f| ConnectionFault {
                when: when_out(f.when),
                mode: match pb::ConnectionFaultMode::try_from(f.mode) {
                    Ok(pb::ConnectionFaultMode::Close) => ConnectionMode::Close,
                    _ => ConnectionMode::Reset,
                },
            }),
            rate_limit: p.rate_limit.map(|f| RateLimitFault {
                when: when_out(f.when),
                requests_per_second: f.requests_per_second,
                status: f.status,
                retry_after_seconds: f.retry_after_seconds,
            }),
            health: p.health.map(|f| HealthFault {
                when: when_out(f.when),
                status: f.status,
            }),
            readiness: p.readiness.map(|f| PlainFault {
                when: when_out(f.when),
            }),
            partition: p.partition.map(|f| PlainFault {
                when: when_out(f.when),
            }),
        }
    }
}

/// One kind of fault, to clear it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Latency.
    Latency,
    /// Abort.
    Abort,
    /// Hang.
    Hang,
    /// Throughput.
    Throughput,
    /// Connection.
    Connection,
    /// Rate limit.
    RateLimit,
    /// Health.
    Health,
    /// Readiness.
    Readiness,
    /// Partition.
    Partition,
}

impl From<FaultKind> for pb::FaultKind {
    fn from(kind: FaultKind) -> Self {
        match kind {
            FaultKind::Latency => Self::Latency,
            FaultKind::Abort => Self::Abort,
            FaultKind::Hang => Self::Hang,
            FaultKind::Throughput => Self::Throughput,
            FaultKind::Connection => Self::Connection,
            FaultKind::RateLimit => Self::RateLimit,
            FaultKind::Health => Self::Health,
            FaultKind::Readiness => Self::Readiness,
            FaultKind::Partition => Self::Partition,
        }
    }
}

/// The servers a change aims at: exactly one of `server_ids`, `status` and `all`; then,
/// optionally, a random share of those.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultTargets {
    /// These servers.
    #[serde(default, deserialize_with = "uint::list")]
    #[schemars(length(max = MAX_TARGETS), inner(range(min = 1, max = u32::MAX)))]
    pub server_ids: Vec<u32>,
    /// Or the servers in this status now.
    #[serde(default)]
    pub status: Option<StatusFilter>,
    /// Or every server of the farm.
    #[serde(default)]
    pub all: bool,
    /// A random share of the servers chosen above, in percent; 0 or absent means all of
    /// them. At least one server is chosen.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub share_percent: f64,
    /// Seeds the share's choice: the same seed over the same servers chooses the same ones.
    #[serde(default, deserialize_with = "uint::one")]
    pub share_seed: u64,
}

impl FaultTargets {
    fn into_proto(self) -> Result<pb::FaultTargets, ApiError> {
        server_ids("targets.server_ids", &self.server_ids)?;
        Ok(pb::FaultTargets {
            server_ids: self.server_ids,
            status: self
                .status
                .map_or(pb::ServerStatus::Unspecified, Into::into) as i32,
            all: self.all,
            share_percent: self.share_percent,
            share_seed: self.share_seed,
        })
    }

    /// One server.
    pub fn one(id: u32) -> pb::FaultTargets {
        pb::FaultTargets {
            server_ids: vec![id],
            ..pb::FaultTargets::default()
        }
    }
}

/// `POST /api/faults` body: set faults on servers. Each kind given replaces that kind on
/// every target; kinds not given stay.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetFaultsRequest {
    /// Which servers.
    pub targets: FaultTargets,
    /// The faults to set (at least one kind).
    pub faults: FaultProfile,
}

impl SetFaultsRequest {
    /// The controller's request.
    pub fn into_proto(self) -> Result<pb::SetFaultsRequest, ApiError> {
        Ok(pb::SetFaultsRequest {
            targets: Some(self.targets.into_proto()?),
            faults: Some(self.faults.into()),
        })
    }
}

/// `POST /api/faults/clear` body: clear faults on servers.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearFaultsRequest {
    /// Which servers.
    pub targets: FaultTargets,
    /// The kinds to clear; empty or absent means every kind.
    #[serde(default)]
    pub kinds: Vec<FaultKind>,
}

impl ClearFaultsRequest {
    /// The controller's request.
    pub fn into_proto(self) -> Result<pb::ClearFaultsRequest, ApiError> {
        Ok(pb::ClearFaultsRequest {
            targets: Some(self.targets.into_proto()?),
            kinds: kinds(&self.kinds),
        })
    }
}

/// The kinds as the controller takes them.
pub fn kinds(kinds: &[FaultKind]) -> Vec<i32> {
    kinds
        .iter()
        .map(|&k| pb::FaultKind::from(k) as i32)
        .collect()
}

/// `DELETE /api/servers/{id}/faults` query.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearFaultsQuery {
    /// The one kind to clear; absent means every kind.
    pub kind: Option<FaultKind>,
}

/// One server's fault profile.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerFaults {
    /// The server.
    pub server_id: u32,
    /// Its faults.
    pub faults: FaultProfile,
}

impl From<pb::ServerFaults> for ServerFaults {
    fn from(s: pb::ServerFaults) -> Self {
        Self {
            server_id: s.server_id,
            faults: s.faults.unwrap_or_default().into(),
        }
    }
}

/// What a change did: one outcome per target server, and each one's profile after it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FaultsResult {
    /// The outcomes, ordered by id: ok once the node (or, for a partition, the runtime)
    /// applied the change; a server whose agent is away keeps the profile and gets it when
    /// its agent connects.
    pub outcomes: Vec<Outcome>,
    /// Each target server's profile after the change, ordered by id.
    pub servers: Vec<ServerFaults>,
}

impl FaultsResult {
    /// From a `SetFaults` or `ClearFaults` answer's parts.
    pub fn new(outcomes: Vec<pb::CommandOutcome>, servers: Vec<pb::ServerFaults>) -> Self {
        Self {
            outcomes: outcomes.into_iter().map(Into::into).collect(),
            servers: servers.into_iter().map(Into::into).collect(),
        }
    }
}

/// `GET /api/faults`: the servers that have faults.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FaultList {
    /// The servers, ordered by id.
    pub servers: Vec<ServerFaults>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_goes_to_the_controller_and_comes_back_the_same() {
        let json = r#"{
            "latency": {"when": {"percent": 50, "seed": 7, "duration_seconds": 30}, "delay_ms": 200, "jitter_ms": 50},
            "abort": {"statuses": [{"status": 503, "weight": 20}, {"status": 500, "weight": 5}]},
            "connection": {"mode": "reset"},
            "readiness": {}
        }"#;
        let profile: FaultProfile = serde_json::from_str(json).unwrap();
        let proto = pb::FaultProfile::from(profile.clone());
        assert_eq!(
            proto.latency.as_ref().unwrap().when.as_ref().unwrap().seed,
            7
        );
        assert_eq!(
            proto.connection.as_ref().unwrap().mode,
            pb::ConnectionFaultMode::Reset as i32
        );
        let mut back = FaultProfile::from(proto);
        // A fault given without `when` comes back with the defaults spelled out.
        back.abort.as_mut().unwrap().when = None;
        back.connection.as_mut().unwrap().when = None;
        back.readiness.as_mut().unwrap().when = None;
        assert_eq!(back, profile);
    }

    #[test]
    fn unknown_fault_fields_and_kinds_are_refused_by_name() {
        let e = serde_json::from_str::<FaultProfile>(r#"{"lag": {}}"#).unwrap_err();
        assert!(e.to_string().contains("lag"), "{e}");
        let e = serde_json::from_str::<FaultProfile>(r#"{"latency": {"delay": 5}}"#).unwrap_err();
        assert!(e.to_string().contains("delay"), "{e}");
        let e = serde_json::from_str::<ClearFaultsRequest>(
            r#"{"targets": {"all": true}, "kinds": ["lag"]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("lag"), "{e}");
    }
}
