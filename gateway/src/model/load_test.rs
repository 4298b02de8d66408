//! Load tests: the request, the spec the controller runs, and the result.

use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::front::{
    BackendWeight, FailoverDrill, FrontResult, drill_from_proto, front_fields, weights_from_proto,
};
use super::{finite, node_path, range, server_ids, uint};
use crate::error::ApiError;
use farm_proto::limits::{
    self, MAX_LOAD_PHASES as MAX_PHASES, MAX_PATH_LEN, MAX_PHASE_NAME_LEN, MAX_RUN_ID_LEN,
    MAX_TARGETS, MIN_PHASE_MS, NODE_PATH_PATTERN,
};

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
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
        }
    }
}

pub(super) fn default_path() -> String {
    "/".into()
}
fn default_concurrency() -> u32 {
    farm_proto::limits::DEFAULT_CONCURRENCY
}
fn default_load_timeout_ms() -> u32 {
    farm_proto::limits::DEFAULT_LOAD_TIMEOUT_MS
}

/// `POST /api/load-test` and `POST /api/load-tests` body: a load test against servers of
/// this farm (never a URL: the host is always the target server's node). The first holds
/// the request open until the run ends and answers with its final result; the second
/// answers at once with the run's id.
///
/// Closed model (`rate_per_second` 0): `concurrency` workers each send their next request
/// when the previous one is answered. Open model (`rate_per_second` > 0): requests go out
/// at that rate whatever the answers do, latency measured from each request's intended
/// send time. The run ends after `total_requests` or `duration_seconds`, whichever first.
/// Or `phases` set the pace, one after another, and the run lasts their sum.
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
    /// A URL in front of the farm (a load balancer) to send every request to instead of the
    /// servers, e.g. `http://127.0.0.1:8080`: http only, no path (that is `path`), its host
    /// a loopback address, `localhost`, or (docker runtime) an address on the farm's network.
    /// Each answer is attributed to the server its `x-farm-server` header names. Not with
    /// `server_ids`.
    #[serde(default)]
    #[schemars(length(max = limits::MAX_FRONT_URL_LEN))]
    pub front_url: Option<String>,
    /// With `front_url`: the share each server should get; absent means equal over the farm.
    #[serde(default)]
    #[schemars(length(max = limits::MAX_BACKEND_WEIGHTS))]
    pub weights: Vec<BackendWeight>,
    /// With `front_url`: a server taken down during the run and brought back.
    #[serde(default)]
    pub failover: Option<FailoverDrill>,
    /// Stretches of the run, one after another, each with its own rate (open model: every
    /// phase has `rate`) or workers (closed model: none has). The run then lasts their sum,
    /// which must be within the gateway's maximum (`--max-load-test-seconds`, as for
    /// `duration_seconds`); `rate_per_second`, `ramp_up_seconds` and `total_requests` stay
    /// 0, and `duration_seconds`, if given, is the sum in whole seconds, rounded up.
    #[serde(default)]
    #[schemars(length(max = MAX_PHASES))]
    pub phases: Vec<LoadPhase>,
}

/// A phase name: 1 to 64 visible ASCII characters (so characters and bytes agree).
const PHASE_NAME_PATTERN: &str = "^[!-~]{1,64}$";
/// Longest phase, in milliseconds: the longest run (an hour).
pub const MAX_PHASE_MS: u32 = limits::MAX_DURATION_SECONDS * 1000;

/// One stretch of a load test with its own rate (open model) or workers (closed model).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadPhase {
    /// Its name, unique within the run: what the per-phase results call it.
    #[schemars(length(min = 1, max = MAX_PHASE_NAME_LEN), regex(pattern = PHASE_NAME_PATTERN))]
    pub name: String,
    /// How long it lasts, in milliseconds.
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = MIN_PHASE_MS, max = MAX_PHASE_MS))]
    pub duration_ms: u32,
    /// Open model: the rate at its start, in requests per second.
    #[serde(default)]
    #[schemars(range(min = 0, max = limits::MAX_RATE_PER_SECOND))]
    pub rate: Option<f64>,
    /// Open model: the rate at its end; the rate runs linearly from `rate` to it. Absent:
    /// `rate` throughout.
    #[serde(default)]
    #[schemars(range(min = 0, max = limits::MAX_RATE_PER_SECOND))]
    pub rate_to: Option<f64>,
    /// Closed model: its workers, at most the run's `concurrency`; 0 means the run's
    /// `concurrency`.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(min = 0, max = limits::MAX_CONCURRENCY))]
    pub concurrency: u32,
}

impl LoadPhase {
    /// Checks the bounds the schema states, naming the field as `field.<name>`.
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let name = &self.name;
        if name.is_empty()
            || name.len() > MAX_PHASE_NAME_LEN
            || !name.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ApiError::InvalidArgument(format!(
                "{field}.name must be 1 to {MAX_PHASE_NAME_LEN} visible ASCII characters, got {name:?}"
            )));
        }
        range(
            &format!("{field}.duration_ms"),
            self.duration_ms,
            MIN_PHASE_MS,
            MAX_PHASE_MS,
        )?;
        for (key, rate) in [("rate", self.rate), ("rate_to", self.rate_to)] {
            if let Some(rate) = rate {
                range(
                    &format!("{field}.{key}"),
                    rate,
                    0.0,
                    limits::MAX_RATE_PER_SECOND,
                )?;
            }
        }
        range(
            &format!("{field}.concurrency"),
            self.concurrency,
            0,
            limits::MAX_CONCURRENCY,
        )
    }

    fn into_proto(self) -> pb::LoadPhase {
        pb::LoadPhase {
            name: self.name,
            duration_ms: self.duration_ms,
            rate: self.rate,
            rate_to: self.rate_to,
            concurrency: self.concurrency,
        }
    }

    fn from_proto(p: pb::LoadPhase) -> Self {
        Self {
            name: p.name,
            duration_ms: p.duration_ms,
            rate: p.rate.map(finite),
            rate_to: p.rate_to.map(finite),
            concurrency: p.concurrency,
        }
    }
}

/// Checks `phases` against the bounds the schema states and against `max_seconds`, the
/// gateway's bound on a run; returns the run's length in whole seconds, rounded up (0
/// without phases). The rules across phases (all with a rate or none, unique names, workers
/// within the run's) are the controller's, which names the phase at fault.
fn phases_seconds(phases: &[LoadPhase], max_seconds: u32) -> Result<u32, ApiError> {
    if phases.len() > MAX_PHASES {
        return Err(ApiError::InvalidArgument(format!(
            "phases lists {} phases; at most {MAX_PHASES}",
            phases.len()
        )));
    }
    let mut total_ms: u64 = 0;
    for (i, phase) in phases.iter().enumerate() {
        phase.validate(&format!("phases[{i}]"))?;
        total_ms += u64::from(phase.duration_ms);
    }
    let seconds = total_ms.div_ceil(1000);
    if seconds > u64::from(max_seconds) {
        return Err(ApiError::InvalidArgument(format!(
            "phases last {:.1} s together; at most {max_seconds} s (the gateway's --max-load-test-seconds)",
            total_ms as f64 / 1000.0
        )));
    }
    // Within max_seconds here, so it fits.
    Ok(u32::try_from(seconds).unwrap_or(max_seconds))
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
        let front = front_fields(self.front_url, self.weights, self.failover)?;
        let phased = phases_seconds(&self.phases, max_seconds)?;
        let duration = if self.phases.is_empty() {
            self.duration_seconds.unwrap_or(if self.total_requests > 0 {
                max_seconds
            } else {
                60.min(max_seconds)
            })
        } else {
            for (field, set) in [
                ("rate_per_second", self.rate_per_second != 0.0),
                ("ramp_up_seconds", self.ramp_up_seconds != 0),
                ("total_requests", self.total_requests != 0),
            ] {
                if set {
                    return Err(ApiError::InvalidArgument(format!(
                        "{field} must be 0 with phases: the phases set the pace and the length"
                    )));
                }
            }
            if let Some(d) = self.duration_seconds
                && d != phased
            {
                return Err(ApiError::InvalidArgument(format!(
                    "duration_seconds must be absent with phases, or their length rounded up ({phased} s), got {d}"
                )));
            }
            // Explicit, so that the blocking route's deadline covers the whole run.
            phased
        };
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
            front_url: front.front_url,
            weights: front.weights,
            failover: front.failover,
            phases: self.phases.into_iter().map(LoadPhase::into_proto).collect(),
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
    /// The front the run went through, or null.
    pub front_url: Option<String>,
    /// The weights the shares were judged against (empty: equal).
    pub weights: Vec<BackendWeight>,
    /// The failover drill, or null.
    pub failover: Option<FailoverDrill>,
    /// The phases asked for (empty: the run's pace came from `rate_per_second` and
    /// `ramp_up_seconds`).
    pub phases: Vec<LoadPhase>,
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
            front_url: (!s.front_url.is_empty()).then_some(s.front_url),
            weights: weights_from_proto(s.weights),
            failover: drill_from_proto(s.failover),
            phases: s.phases.into_iter().map(LoadPhase::from_proto).collect(),
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

/// One second of a run: the requests that ended in it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LoadSecond {
    /// Seconds since the run's start: this entry covers `[second, second + 1)`.
    pub second: u32,
    /// Requests that ended (were answered or failed) in it.
    pub requests: u64,
    /// Of those, the ones that failed or were answered with status 500 or more.
    pub failures: u64,
    /// Latency of its answered requests, in milliseconds: median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// While the run goes on: requests may still end in this second, so its figures may
    /// still grow.
    pub provisional: bool,
}

impl From<pb::LoadSecond> for LoadSecond {
    fn from(s: pb::LoadSecond) -> Self {
        Self {
            second: s.second,
            requests: s.requests,
            failures: s.failures,
            p50_ms: finite(s.p50_ms),
            p90_ms: finite(s.p90_ms),
            p99_ms: finite(s.p99_ms),
            max_ms: finite(s.max_ms),
            provisional: s.provisional,
        }
    }
}

/// One phase's figures: the requests that ended during it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PhaseResult {
    /// The phase's name (`ramp` and `steady` for a run without phases).
    pub name: String,
    /// When it starts, in milliseconds since the run's start.
    pub start_ms: u32,
    /// When it ends, in milliseconds since the run's start.
    pub end_ms: u32,
    /// Requests that ended during it.
    pub requests: u64,
    /// Of those, failures (no answer, or status 500 or more).
    pub failures: u64,
    /// Ended requests per second of the phase (so far, while it runs).
    pub requests_per_second: f64,
    /// Latency of its answered requests (two significant digits).
    pub latency: Latency,
}

impl From<pb::PhaseResult> for PhaseResult {
    fn from(p: pb::PhaseResult) -> Self {
        Self {
            name: p.name,
            start_ms: p.start_ms,
            end_ms: p.end_ms,
            requests: p.requests,
            failures: p.failures,
            requests_per_second: finite(p.requests_per_second),
            latency: p.latency.map(Latency::from).unwrap_or_default(),
        }
    }
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
    /// Per target server (empty for a run through a front: see `front`).
    pub per_server: Vec<ServerLoad>,
    /// The spec, defaults applied.
    pub spec: Option<LoadTestSpec>,
    /// A run through a front: how it spread the requests over the servers.
    pub front: Option<FrontResult>,
    /// Second by second from the run's start, one entry per second of the run at most.
    pub timeline: Vec<LoadSecond>,
    /// Phase by phase: the spec's phases, or the ramp (if any) and the steady part.
    pub phases: Vec<PhaseResult>,
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
            front: r.front.map(FrontResult::from),
            timeline: r.timeline.into_iter().map(LoadSecond::from).collect(),
            phases: r.phases.into_iter().map(PhaseResult::from).collect(),
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
