//! Load tests through a front (a load balancer in front of the farm): the weights and the
//! failover drill a request may carry, and the per-server shares and drill figures of the
//! result.

use farm_proto::limits::{self, MAX_BACKEND_WEIGHT, MAX_BACKEND_WEIGHTS, MAX_FRONT_URL_LEN};
use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Latency, finite, range, uint};
use crate::error::ApiError;

/// The share of a run's requests one server should get, relative to the others named.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendWeight {
    /// The server.
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = u32::MAX))]
    pub server_id: u32,
    /// Its weight.
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = MAX_BACKEND_WEIGHT))]
    pub weight: u32,
}

/// How a failover drill takes its server down, and how it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailoverAction {
    /// SIGKILL of its node, as a crash, kept down until it is brought back with a start.
    Kill,
    /// A graceful stop; back with a start.
    Stop,
    /// Frozen; back with an unpause.
    Pause,
    /// Its `/health` answers 503 while every other route serves; back when that is cleared.
    Health,
}

impl FailoverAction {
    fn to_proto(self) -> pb::FailoverAction {
        match self {
            Self::Kill => pb::FailoverAction::Kill,
            Self::Stop => pb::FailoverAction::Stop,
            Self::Pause => pb::FailoverAction::Pause,
            Self::Health => pb::FailoverAction::Health,
        }
    }

    fn from_proto(raw: i32) -> Option<Self> {
        match pb::FailoverAction::try_from(raw).ok()? {
            pb::FailoverAction::Kill => Some(Self::Kill),
            pb::FailoverAction::Stop => Some(Self::Stop),
            pb::FailoverAction::Pause => Some(Self::Pause),
            pb::FailoverAction::Health => Some(Self::Health),
            pb::FailoverAction::Unspecified => None,
        }
    }
}

/// A server taken down during a run through a front, and brought back.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverDrill {
    /// The server.
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = u32::MAX))]
    pub server_id: u32,
    /// How it goes down.
    pub action: FailoverAction,
    /// When it goes down, in milliseconds after the run's start.
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = 0, max = u32::MAX))]
    pub at_ms: u32,
    /// How long it stays down, in milliseconds; `at_ms + down_ms` must fall within the run.
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = limits::MAX_FAILOVER_DOWN_MS))]
    pub down_ms: u32,
}

impl FailoverDrill {
    fn from_proto(d: pb::FailoverDrill) -> Option<Self> {
        Some(Self {
            server_id: d.server_id,
            action: FailoverAction::from_proto(d.action)?,
            at_ms: d.at_ms,
            down_ms: d.down_ms,
        })
    }
}

/// What a run through a front adds to a load-test request, checked and turned into the
/// spec's fields.
pub(super) struct FrontFields {
    pub front_url: String,
    pub weights: Vec<pb::BackendWeight>,
    pub failover: Option<pb::FailoverDrill>,
}

/// Checks the bounds the schema states; the controller checks the rest (where the front is,
/// which servers exist, whether the drill fits in the run).
pub(super) fn front_fields(
    front_url: Option<String>,
    weights: Vec<BackendWeight>,
    failover: Option<FailoverDrill>,
) -> Result<FrontFields, ApiError> {
    let front_url = front_url.unwrap_or_default();
    if front_url.len() > MAX_FRONT_URL_LEN {
        return Err(ApiError::InvalidArgument(format!(
            "front_url is longer than {MAX_FRONT_URL_LEN} bytes"
        )));
    }
    if weights.len() > MAX_BACKEND_WEIGHTS {
        return Err(ApiError::InvalidArgument(format!(
            "weights lists {} servers; at most {MAX_BACKEND_WEIGHTS}",
            weights.len()
        )));
    }
    for (i, w) in weights.iter().enumerate() {
        range(
            &format!("weights[{i}].weight"),
            w.weight,
            1,
            MAX_BACKEND_WEIGHT,
        )?;
    }
    if let Some(d) = &failover {
        range(
            "failover.down_ms",
            d.down_ms,
            1,
            limits::MAX_FAILOVER_DOWN_MS,
        )?;
    }
    Ok(FrontFields {
        front_url,
        weights: weights
            .into_iter()
            .map(|w| pb::BackendWeight {
                server_id: w.server_id,
                weight: w.weight,
            })
            .collect(),
        failover: failover.map(|d| pb::FailoverDrill {
            server_id: d.server_id,
            action: d.action.to_proto() as i32,
            at_ms: d.at_ms,
            down_ms: d.down_ms,
        }),
    })
}

/// The weights of a spec, as REST shows them.
pub(super) fn weights_from_proto(weights: Vec<pb::BackendWeight>) -> Vec<BackendWeight> {
    weights
        .into_iter()
        .map(|w| BackendWeight {
            server_id: w.server_id,
            weight: w.weight,
        })
        .collect()
}

/// The failover drill of a spec, as REST shows it.
pub(super) fn drill_from_proto(drill: Option<pb::FailoverDrill>) -> Option<FailoverDrill> {
    drill.and_then(FailoverDrill::from_proto)
}

/// One server's part of a run through a front.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BackendShare {
    /// The server, from the `x-farm-server` header of its answers.
    pub server_id: u32,
    /// Answers it gave.
    pub requests: u64,
    /// Of those, answers with status 500 or more.
    pub failures: u64,
    /// Its latencies through the front.
    pub latency: Latency,
    /// Its share of the attributed answers, 0 to 1.
    pub share: f64,
    /// The share it should have had, 0 to 1.
    pub expected_share: f64,
}

/// Answers of one server in one second.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BackendCount {
    /// The server.
    pub server_id: u32,
    /// Its answers in that second.
    pub requests: u64,
}

/// One second of a run through a front.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ShareSecond {
    /// Seconds since the run's start.
    pub second: u32,
    /// Requests completed in it.
    pub requests: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Of those, requests no server of the farm answered (the front's own answers, or none).
    pub unattributed: u64,
    /// Answers per server.
    pub backends: Vec<BackendCount>,
}

/// What a failover drill measured, in milliseconds; null where not seen.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FailoverResult {
    /// The drill as asked.
    pub drill: Option<FailoverDrill>,
    /// When the server was taken down, since the run's start.
    pub action_at_ms: Option<f64>,
    /// When the farm had brought it back, since the run's start.
    pub back_at_ms: Option<f64>,
    /// Why taking it down or bringing it back failed; empty when both worked.
    pub error: String,
    /// The first failure after the action, from the action.
    pub first_error_ms: Option<f64>,
    /// Failures from the action until the server was back.
    pub failed_requests: u64,
    /// Failover time: the last failure before the server was back, from the action.
    pub failover_ms: Option<f64>,
    /// Detection time: the last request sent to the server (and answered) before it was back,
    /// from the action.
    pub detection_ms: Option<f64>,
    /// Re-admission time: the first request sent to it after it was back, from its return.
    pub readmission_ms: Option<f64>,
}

/// How a front spread a run's requests over the farm's servers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FrontResult {
    /// The front's URL.
    pub url: String,
    /// Every server expected or seen.
    pub backends: Vec<BackendShare>,
    /// Requests no server of the farm answered: the front's own answers, or none at all.
    pub unattributed: u64,
    /// Largest over smallest share / expected share; 1 is fair, 0 means a server got none.
    pub max_min_ratio: f64,
    /// Largest |share − expected| / expected.
    pub max_deviation: f64,
    /// One entry per second with answers.
    pub timeline: Vec<ShareSecond>,
    /// Whether the timeline stopped at its bound.
    pub timeline_truncated: bool,
    /// The failover drill's figures, when one was asked for.
    pub failover: Option<FailoverResult>,
}

impl From<pb::FrontResult> for FrontResult {
    fn from(f: pb::FrontResult) -> Self {
        let finite_opt = |x: Option<f64>| x.map(finite);
        Self {
            url: f.url,
            backends: f
                .backends
                .into_iter()
                .map(|b| BackendShare {
                    server_id: b.server_id,
                    requests: b.requests,
                    failures: b.failures,
                    latency: b.latency.map(Latency::from).unwrap_or_default(),
                    share: finite(b.share),
                    expected_share: finite(b.expected_share),
                })
                .collect(),
            unattributed: f.unattributed,
            max_min_ratio: finite(f.max_min_ratio),
            max_deviation: finite(f.max_deviation),
            timeline: f
                .timeline
                .into_iter()
                .map(|s| ShareSecond {
                    second: s.second,
                    requests: s.requests,
                    failures: s.failures,
                    unattributed: s.unattributed,
                    backends: s
                        .backends
                        .into_iter()
                        .map(|b| BackendCount {
                            server_id: b.server_id,
                            requests: b.requests,
                        })
                        .collect(),
                })
                .collect(),
            timeline_truncated: f.timeline_truncated,
            failover: f.failover.map(|r| FailoverResult {
                drill: drill_from_proto(r.drill),
                action_at_ms: finite_opt(r.action_at_ms),
                back_at_ms: finite_opt(r.back_at_ms),
                error: r.error,
                first_error_ms: finite_opt(r.first_error_ms),
                failed_requests: r.failed_requests,
                failover_ms: finite_opt(r.failover_ms),
                detection_ms: finite_opt(r.detection_ms),
                readmission_ms: finite_opt(r.readmission_ms),
            }),
        }
    }
}
