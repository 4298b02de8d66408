//! Load tests: the request, the spec the controller runs, and the result.

use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::front::{
    BackendWeight, FailoverDrill, FrontResult, drill_from_proto, front_fields, weights_from_proto,
};
use super::{finite, node_path, range, server_ids, uint};
use crate::error::ApiError;
use farm_proto::limits::{self, MAX_PATH_LEN, MAX_RUN_ID_LEN, MAX_TARGETS, NODE_PATH_PATTERN};

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
            front_url: front.front_url,
            weights: front.weights,
            failover: front.failover,
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
    /// Per target server (empty for a run through a front: see `front`).
    pub per_server: Vec<ServerLoad>,
    /// The spec, defaults applied.
    pub spec: Option<LoadTestSpec>,
    /// A run through a front: how it spread the requests over the servers.
    pub front: Option<FrontResult>,
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
