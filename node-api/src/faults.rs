//! A node's fault profile as its agent hands it over: what the node does wrong, and to which
//! requests.
//!
//! The agent writes one profile per line, as JSON, to its node's standard input (the node
//! reads it when started with `--fault-channel stdin`). Each line replaces the whole profile;
//! an empty object clears every fault. Nothing else can reach that pipe, so a client that can
//! reach the node's port cannot change its faults.
//!
//! Every fault says when it applies ([`FaultWhen`]): to which share of the requests in its
//! scope, for how long, and from which seed its decisions are drawn. The same seed gives
//! every node the same sequence of decisions for its requests in the order they arrive.
//!
//! The general faults (latency, abort, hang, throughput, connection, rate limit) never touch
//! the routes the farm watches a node by (`/health`, `/ready`, `/metrics`,
//! `/metrics/prometheus`): those have their own faults ([`HealthFault`], [`ReadinessFault`]), so that a slowed node still reports.
//!
//! Bounds are [`farm_proto::limits`]' `*_FAULT_*`, `*_HANG_*`, `*_THROUGHPUT_*`, `*_ABORT_*`
//! and `MAX_RETRY_AFTER_SECONDS`; [`FaultProfile::validate`] checks them and names the field.

use farm_proto::limits::{
    DEFAULT_HANG_MS, MAX_ABORT_STATUSES, MAX_ABORT_WEIGHT, MAX_FAULT_DELAY_MS,
    MAX_FAULT_DURATION_SECONDS, MAX_FAULT_PATH_PREFIX_LEN, MAX_FAULT_RATE_PER_SECOND,
    MAX_FAULT_STATUS, MAX_HANG_MS, MAX_RETRY_AFTER_SECONDS, MAX_THROUGHPUT_BYTES_PER_SECOND,
    MIN_FAULT_STATUS,
};
use farm_proto::v1 as pb;
use serde::{Deserialize, Serialize};

/// The routes only their own faults touch.
pub const WATCHED_ROUTES: [&str; 4] = ["/health", "/ready", "/metrics", "/metrics/prometheus"];

/// When a fault applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultWhen {
    /// Share of the requests in scope the fault hits, 0 to 100.
    pub percent: f64,
    /// Only requests whose path starts with this (it starts with `/`); `None`: every route
    /// but the watched ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The fault clears itself this long after the node receives it; `None`: until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_ms: Option<u64>,
    /// Seeds the fault's decisions.
    pub seed: u64,
}

impl Default for FaultWhen {
    fn default() -> Self {
        Self {
            percent: 100.0,
            path_prefix: None,
            remaining_ms: None,
            seed: 0,
        }
    }
}

/// How long a latency fault delays a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum LatencyShape {
    /// `delay_ms`, plus or minus up to `jitter_ms` (uniform), never below 0.
    Fixed {
        /// The delay, in milliseconds.
        delay_ms: u32,
        /// Largest deviation from it, in milliseconds.
        jitter_ms: u32,
    },
    /// Delays whose distribution has these percentiles: the quantile function runs linearly
    /// through (0, p50/2), (0.5, p50), (0.9, p90), (0.99, p99) and stays at p99 above.
    Percentiles {
        /// Median, in milliseconds.
        p50_ms: u32,
        /// 90th percentile, in milliseconds.
        p90_ms: u32,
        /// 99th percentile, in milliseconds.
        p99_ms: u32,
    },
}

/// Delays requests before they are served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyFault {
    /// When it applies.
    pub when: FaultWhen,
    /// How long.
    pub shape: LatencyShape,
}

/// Answers requests with an error status instead of serving them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortFault {
    /// When it applies: `percent` is the share of requests aborted.
    pub when: FaultWhen,
    /// The status codes an aborted request gets, each with its relative weight.
    pub statuses: Vec<StatusWeight>,
}

/// One status code of an abort fault's mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusWeight {
    /// The status code, 400 to 599.
    pub status: u16,
    /// Its weight among the mix, 1 to 1000.
    pub weight: u32,
}

/// Accepts requests and never answers, until the client goes away or `max_ms` passes (then
/// the connection is closed without an answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HangFault {
    /// When it applies.
    pub when: FaultWhen,
    /// Longest a request is held, in milliseconds, 1 to `MAX_HANG_MS`.
    pub max_ms: u32,
}

/// Sends the answer's body no faster than `bytes_per_second` (a slow drip).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThroughputFault {
    /// When it applies.
    pub when: FaultWhen,
    /// The cap, 1 to `MAX_THROUGHPUT_BYTES_PER_SECOND`.
    pub bytes_per_second: u32,
}

/// What a connection fault does to the connection instead of answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionFaultMode {
    /// Closes the connection without an answer (the client reads end of file).
    Close,
    /// Resets the TCP connection (the client reads a reset).
    Reset,
}

/// Drops the connection instead of answering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionFault {
    /// When it applies.
    pub when: FaultWhen,
    /// Close or reset.
    pub mode: ConnectionFaultMode,
}

/// Above `requests_per_second`, answers `status` with `Retry-After` instead of serving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFault {
    /// When it applies: only the requests it hits count against the rate.
    pub when: FaultWhen,
    /// Requests per second let through, 1 to `MAX_FAULT_RATE_PER_SECOND`.
    pub requests_per_second: u32,
    /// The status of a refused request, 400 to 599 (429 is usual).
    pub status: u16,
    /// The `Retry-After` of a refused request, in seconds, 0 to `MAX_RETRY_AFTER_SECONDS`.
    pub retry_after_seconds: u32,
}

/// `/health` answers `status` while the other routes keep serving: what a load balancer's
/// health check must notice. Its `when.path_prefix` is not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFault {
    /// When it applies (a share below 100 makes the health check flap).
    pub when: FaultWhen,
    /// The status `/health` answers, 400 to 599.
    pub status: u16,
}

/// The node is drained: `/ready` answers 503 while everything else keeps serving. Its
/// `when.path_prefix` is not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessFault {
    /// When it applies.
    pub when: FaultWhen,
}

/// Everything a node does wrong; each kind at most once. The default is a node that does
/// nothing wrong.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    pub readiness: Option<ReadinessFault>,
}

impl FaultProfile {
    /// Whether no fault is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks every value against its bound; the error names the field (`latency.delay_ms`).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(fault) = &self.latency {
            fault.when.validate("latency")?;
            match fault.shape {
                LatencyShape::Fixed {
                    delay_ms,
                    jitter_ms,
                } => {
                    at_most("latency.delay_ms", delay_ms, MAX_FAULT_DELAY_MS)?;
                    at_most("latency.jitter_ms", jitter_ms, MAX_FAULT_DELAY_MS)?;
                }
                LatencyShape::Percentiles {
                    p50_ms,
                    p90_ms,
                    p99_ms,
                } => {
                    at_most("latency.p99_ms", p99_ms, MAX_FAULT_DELAY_MS)?;
                    if !(p50_ms <= p90_ms && p90_ms <= p99_ms) {
                        return Err(format!(
                            "latency percentiles must not decrease: p50_ms {p50_ms}, p90_ms {p90_ms}, p99_ms {p99_ms}"
                        ));
                    }
                }
            }
        }
        if let Some(fault) = &self.abort {
            fault.when.validate("abort")?;
            if fault.statuses.is_empty() || fault.statuses.len() > MAX_ABORT_STATUSES {
                return Err(format!(
                    "abort.statuses must hold 1 to {MAX_ABORT_STATUSES} status codes, got {}",
                    fault.statuses.len()
                ));
            }
            for entry in &fault.statuses {
                status("abort.statuses.status", entry.status)?;
                if !(1..=MAX_ABORT_WEIGHT).contains(&entry.weight) {
                    return Err(format!(
                        "abort.statuses.weight must be 1 to {MAX_ABORT_WEIGHT}, got {}",
                        entry.weight
                    ));
                }
            }
        }
        if let Some(fault) = &self.hang {
            fault.when.validate("hang")?;
            between("hang.max_ms", fault.max_ms, 1, MAX_HANG_MS)?;
        }
        if let Some(fault) = &self.throughput {
            fault.when.validate("throughput")?;
            between(
                "throughput.bytes_per_second",
                fault.bytes_per_second,
                1,
                MAX_THROUGHPUT_BYTES_PER_SECOND,
            )?;
        }
        if let Some(fault) = &self.connection {
            fault.when.validate("connection")?;
        }
        if let Some(fault) = &self.rate_limit {
            fault.when.validate("rate_limit")?;
            between(
                "rate_limit.requests_per_second",
                fault.requests_per_second,
                1,
                MAX_FAULT_RATE_PER_SECOND,
            )?;
            status("rate_limit.status", fault.status)?;
            at_most(
                "rate_limit.retry_after_seconds",
                fault.retry_after_seconds,
                MAX_RETRY_AFTER_SECONDS,
            )?;
        }
        if let Some(fault) = &self.health {
            fault.when.validate("health")?;
            status("health.status", fault.status)?;
        }
        if let Some(fault) = &self.readiness {
            fault.when.validate("readiness")?;
        }
        Ok(())
    }
}

impl FaultWhen {
    fn validate(&self, fault: &str) -> Result<(), String> {
        if !(self.percent.is_finite() && (0.0..=100.0).contains(&self.percent)) {
            return Err(format!(
                "{fault}.when.percent must be 0 to 100, got {}",
                self.percent
            ));
        }
        if let Some(prefix) = &self.path_prefix
            && (!prefix.starts_with('/') || prefix.len() > MAX_FAULT_PATH_PREFIX_LEN)
        {
            return Err(format!(
                "{fault}.when.path_prefix must start with / and be at most {MAX_FAULT_PATH_PREFIX_LEN} bytes"
            ));
        }
        let longest = u64::from(MAX_FAULT_DURATION_SECONDS) * 1000;
        if self.remaining_ms.is_some_and(|ms| ms > longest) {
            return Err(format!(
                "{fault}.when.remaining_ms must be at most {longest}"
            ));
        }
        Ok(())
    }
}

/// The node's part of a profile as the farm's API gives it (`expires_at_ms` set, in
/// milliseconds since the Unix epoch; `now_ms` is the clock now), with the API's defaults
/// filled in and every bound checked; the error names the field (`latency.delay_ms`). A fault
/// whose time has passed is left out; the partition is not the node's and is left out too.
pub fn from_proto(profile: &pb::FaultProfile, now_ms: u64) -> Result<FaultProfile, String> {
    let when = |when: &Option<pb::FaultWhen>| -> Option<FaultWhen> {
        let when = when.clone().unwrap_or_default();
        let remaining_ms = match when.expires_at_ms {
            0 => None,
            at if at <= now_ms => return None,
            at => Some(at - now_ms),
        };
        Some(FaultWhen {
            percent: when.percent.unwrap_or(100.0),
            path_prefix: (!when.path_prefix.is_empty()).then_some(when.path_prefix),
            remaining_ms,
            seed: when.seed,
        })
    };
    let code = |field: &str, value: u32, default: u16| -> Result<u16, String> {
        match value {
            0 => Ok(default),
            value => u16::try_from(value).map_err(|_| {
                format!("{field} must be {MIN_FAULT_STATUS} to {MAX_FAULT_STATUS}, got {value}")
            }),
        }
    };
    let mut node = FaultProfile::default();
    if let Some(fault) = &profile.latency
        && let Some(when) = when(&fault.when)
    {
        let percentiles = fault.p50_ms != 0 || fault.p90_ms != 0 || fault.p99_ms != 0;
        let fixed = fault.delay_ms != 0 || fault.jitter_ms != 0;
        let shape = match (fixed, percentiles) {
            (true, true) => {
                return Err(
                    "latency takes delay_ms and jitter_ms, or p50_ms, p90_ms and p99_ms, not both"
                        .into(),
                );
            }
            (_, true) => LatencyShape::Percentiles {
                p50_ms: fault.p50_ms,
                p90_ms: fault.p90_ms,
                p99_ms: fault.p99_ms,
            },
            (_, false) => LatencyShape::Fixed {
                delay_ms: fault.delay_ms,
                jitter_ms: fault.jitter_ms,
            },
        };
        node.latency = Some(LatencyFault { when, shape });
    }
    if let Some(fault) = &profile.abort
        && let Some(when) = when(&fault.when)
    {
        let statuses = if fault.statuses.is_empty() {
            vec![StatusWeight {
                status: 503,
                weight: 1,
            }]
        } else {
            fault
                .statuses
                .iter()
                .map(|entry| {
                    Ok(StatusWeight {
                        status: code("abort.statuses.status", entry.status, 0)?,
                        weight: entry.weight,
                    })
                })
                .collect::<Result<_, String>>()?
        };
        node.abort = Some(AbortFault { when, statuses });
    }
    if let Some(fault) = &profile.hang
        && let Some(when) = when(&fault.when)
    {
        let max_ms = match fault.max_ms {
            0 => DEFAULT_HANG_MS,
            ms => ms,
        };
        node.hang = Some(HangFault { when, max_ms });
    }
    if let Some(fault) = &profile.throughput
        && let Some(when) = when(&fault.when)
    {
        node.throughput = Some(ThroughputFault {
            when,
            bytes_per_second: fault.bytes_per_second,
        });
    }
    if let Some(fault) = &profile.connection
        && let Some(when) = when(&fault.when)
    {
        let mode = match pb::ConnectionFaultMode::try_from(fault.mode) {
            Ok(pb::ConnectionFaultMode::Close) => ConnectionFaultMode::Close,
            Ok(pb::ConnectionFaultMode::Reset) => ConnectionFaultMode::Reset,
            _ => {
                return Err(format!(
                    "connection.mode must be close or reset, got {}",
                    fault.mode
                ));
            }
        };
        node.connection = Some(ConnectionFault { when, mode });
    }
    if let Some(fault) = &profile.rate_limit
        && let Some(when) = when(&fault.when)
    {
        node.rate_limit = Some(RateLimitFault {
            when,
            requests_per_second: fault.requests_per_second,
            status: code("rate_limit.status", fault.status, 429)?,
            retry_after_seconds: fault.retry_after_seconds,
        });
    }
    if let Some(fault) = &profile.health
        && let Some(when) = when(&fault.when)
    {
        node.health = Some(HealthFault {
            when,
            status: code("health.status", fault.status, 503)?,
        });
    }
    if let Some(fault) = &profile.readiness
        && let Some(when) = when(&fault.when)
    {
        node.readiness = Some(ReadinessFault { when });
    }
    node.validate()?;
    Ok(node)
}

fn at_most(field: &str, value: u32, max: u32) -> Result<(), String> {
    between(field, value, 0, max)
}

fn between(field: &str, value: u32, min: u32, max: u32) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{field} must be {min} to {max}, got {value}"))
    }
}

fn status(field: &str, value: u16) -> Result<(), String> {
    if (MIN_FAULT_STATUS..=MAX_FAULT_STATUS).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be {MIN_FAULT_STATUS} to {MAX_FAULT_STATUS}, got {value}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_crosses_the_pipe_as_one_json_line_and_back() {
        let profile = FaultProfile {
            latency: Some(LatencyFault {
                when: FaultWhen {
                    seed: 7,
                    ..FaultWhen::default()
                },
                shape: LatencyShape::Fixed {
                    delay_ms: 200,
                    jitter_ms: 50,
                },
            }),
            connection: Some(ConnectionFault {
                when: FaultWhen {
                    percent: 5.0,
                    path_prefix: Some("/data".into()),
                    remaining_ms: Some(30_000),
                    seed: 1,
                },
                mode: ConnectionFaultMode::Reset,
            }),
            ..FaultProfile::default()
        };
        let line = serde_json::to_string(&profile).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(
            serde_json::from_str::<FaultProfile>(&line).unwrap(),
            profile
        );
        assert!(
            serde_json::from_str::<FaultProfile>("{}")
                .unwrap()
                .is_empty()
        );
        assert!(serde_json::from_str::<FaultProfile>(r#"{"lag":{}}"#).is_err());
    }

    #[test]
    fn values_past_their_bounds_are_refused_by_name() {
        let mut profile = FaultProfile {
            abort: Some(AbortFault {
                when: FaultWhen {
                    percent: 150.0,
                    ..FaultWhen::default()
                },
                statuses: vec![StatusWeight {
                    status: 503,
                    weight: 1,
                }],
            }),
            ..FaultProfile::default()
        };
        assert!(
            profile
                .validate()
                .unwrap_err()
                .starts_with("abort.when.percent")
        );
        profile.abort.as_mut().unwrap().when.percent = 30.0;
        assert_eq!(profile.validate(), Ok(()));
        profile.abort.as_mut().unwrap().statuses[0].status = 200;
        assert!(
            profile
                .validate()
                .unwrap_err()
                .starts_with("abort.statuses.status")
        );
        let delayed = FaultProfile {
            latency: Some(LatencyFault {
                when: FaultWhen::default(),
                shape: LatencyShape::Fixed {
                    delay_ms: MAX_FAULT_DELAY_MS + 1,
                    jitter_ms: 0,
                },
            }),
            ..FaultProfile::default()
        };
        assert!(
            delayed
                .validate()
                .unwrap_err()
                .starts_with("latency.delay_ms")
        );
    }
}
