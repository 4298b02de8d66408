//! History: what the farm remembers across restarts of its controller. Its runs (load tests
//! and scenario runs, paged, newest first), its events (numbered, read onwards from a
//! number), and its metrics over a span of time (one point a second for the last hour, one
//! a minute for the last week). The controller keeps them; the gateway reads them.

use farm_proto::limits::MAX_RUN_ID_LEN;
use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Latency, LoadTestRun, ScenarioReport, finite, range, uint};
use crate::error::ApiError;

use farm_proto::limits::{
    DEFAULT_EVENTS_LIMIT, DEFAULT_RUNS_PAGE_SIZE, MAX_EVENTS_LIMIT, MAX_PAGE_TOKEN_LEN,
    MAX_RUNS_PAGE_SIZE,
};

/// What a run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A load test (`POST /api/load-test`, `POST /api/load-tests`, `farm load`).
    LoadTest,
    /// A scenario run (`POST /api/scenarios`, `farm scenario run`).
    Scenario,
    /// Not known (never sent by a current controller).
    Unknown,
}

impl From<i32> for RunKind {
    fn from(raw: i32) -> Self {
        match pb::RunKind::try_from(raw) {
            Ok(pb::RunKind::LoadTest) => Self::LoadTest,
            Ok(pb::RunKind::Scenario) => Self::Scenario,
            Ok(pb::RunKind::Unspecified) | Err(_) => Self::Unknown,
        }
    }
}

/// A kind of run to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKindFilter {
    /// Load tests only.
    LoadTest,
    /// Scenario runs only.
    Scenario,
}

impl From<RunKindFilter> for pb::RunKind {
    fn from(filter: RunKindFilter) -> Self {
        match filter {
            RunKindFilter::LoadTest => Self::LoadTest,
            RunKindFilter::Scenario => Self::Scenario,
        }
    }
}

/// Where a run of the history stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Going on.
    Running,
    /// A load test that ran to its end.
    Finished,
    /// A load test stopped before its end.
    Cancelled,
    /// A scenario run that ended with every assertion and steady-state check held.
    Passed,
    /// A scenario run that ended with an assertion or a steady-state check failed.
    Failed,
    /// A scenario run stopped early: an abort condition held, or it was stopped.
    Aborted,
    /// A scenario run that could not run (see its report's `reason`).
    Error,
    /// A run the controller was stopped during: it ended with the controller.
    Interrupted,
    /// Not known to this gateway.
    Unknown,
}

impl From<&str> for RunState {
    fn from(state: &str) -> Self {
        match state {
            "running" => Self::Running,
            "finished" => Self::Finished,
            "cancelled" => Self::Cancelled,
            "passed" => Self::Passed,
            "failed" => Self::Failed,
            "aborted" => Self::Aborted,
            "error" => Self::Error,
            "interrupted" => Self::Interrupted,
            _ => Self::Unknown,
        }
    }
}

/// One run of the history, in a line.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunSummary {
    /// Its id, e.g. `lt-3` or `sc-2`: `GET /api/runs/{run_id}` has it whole.
    pub run_id: String,
    /// What it was.
    pub kind: RunKind,
    /// A scenario's name, or a load test's method, path and targets (`GET /health on 3
    /// servers`).
    pub name: String,
    /// Where it stands.
    pub state: RunState,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// When it ended, in milliseconds since the Unix epoch; null while it runs.
    pub ended_at_ms: Option<u64>,
    /// Requests that ended (answered or failed).
    pub requests: u64,
    /// Of those, the ones that failed or were answered with status 500 or more.
    pub failures: u64,
    /// Ended requests per second over the run.
    pub requests_per_second: f64,
    /// Latency of its answered requests.
    pub latency: Latency,
    /// A scenario run: how many of its SLO assertions held (0 for a load test).
    pub verdicts_passed: u32,
    /// A scenario run: how many SLO assertions it has (0 for a load test).
    pub verdicts_total: u32,
}

impl From<pb::RunSummary> for RunSummary {
    fn from(r: pb::RunSummary) -> Self {
        Self {
            run_id: r.run_id,
            kind: r.kind.into(),
            name: r.name,
            state: r.state.as_str().into(),
            started_at_ms: r.started_at_ms,
            ended_at_ms: (r.ended_at_ms != 0).then_some(r.ended_at_ms),
            requests: r.requests,
            failures: r.failures,
            requests_per_second: finite(r.requests_per_second),
            latency: r.latency.map(Latency::from).unwrap_or_default(),
            verdicts_passed: r.verdicts_passed,
            verdicts_total: r.verdicts_total,
        }
    }
}

/// `GET /api/runs` query.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct RunsQuery {
    /// Runs per page (default 20).
    #[serde(default, deserialize_with = "uint::option")]
    #[schemars(range(min = 1, max = MAX_RUNS_PAGE_SIZE))]
    pub page_size: Option<u32>,
    /// Where to go on: a previous page's `next_page_token`, at most 64 bytes; absent (or
    /// empty) for the newest runs. A token the farm did not hand out is a 400.
    #[schemars(length(max = MAX_PAGE_TOKEN_LEN))]
    pub page_token: Option<String>,
    /// Only runs of this kind; absent for both.
    pub kind: Option<RunKindFilter>,
}

impl RunsQuery {
    /// Checks the bounds the schema states and builds the controller's request.
    pub fn into_proto(self) -> Result<pb::ListRunsRequest, ApiError> {
        let page_size = self.page_size.unwrap_or(DEFAULT_RUNS_PAGE_SIZE);
        range("page_size", page_size, 1, MAX_RUNS_PAGE_SIZE)?;
        let page_token = self.page_token.unwrap_or_default();
        if page_token.len() > MAX_PAGE_TOKEN_LEN {
            return Err(ApiError::InvalidArgument(format!(
                "page_token is {} bytes; at most {MAX_PAGE_TOKEN_LEN}",
                page_token.len()
            )));
        }
        Ok(pb::ListRunsRequest {
            page_size,
            page_token,
            kind: self
                .kind
                .map_or(pb::RunKind::Unspecified, pb::RunKind::from) as i32,
        })
    }
}

/// `GET /api/runs` answer: one page of the history's runs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunList {
    /// The runs, newest first.
    pub runs: Vec<RunSummary>,
    /// The next (older) page: pass it as `page_token`; null on the last page.
    pub next_page_token: Option<String>,
    /// Runs in the history (of the kind asked for), on every page.
    pub total: u64,
}

impl From<pb::ListRunsResponse> for RunList {
    fn from(r: pb::ListRunsResponse) -> Self {
        Self {
            runs: r.runs.into_iter().map(Into::into).collect(),
            next_page_token: (!r.next_page_token.is_empty()).then_some(r.next_page_token),
            total: r.total,
        }
    }
}

/// The `{run_id}` of `/api/runs/{run_id}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct RunPath {
    /// The run's id, as `GET /api/runs` lists it (or as the run's own start answered it).
    #[schemars(length(min = 1, max = MAX_RUN_ID_LEN))]
    pub run_id: String,
}

impl RunPath {
    /// Checks the bound the schema states. An id within it that is still longer than the
    /// controller reads (64 bytes: characters beyond ASCII take more than one) names no run,
    /// as every run id is ASCII: that is answered here, as the controller would answer an
    /// unknown id.
    pub fn validate(&self) -> Result<(), ApiError> {
        let chars = self.run_id.chars().count();
        if chars == 0 || chars > MAX_RUN_ID_LEN {
            return Err(ApiError::InvalidArgument(format!(
                "run_id must be 1 to {MAX_RUN_ID_LEN} characters, got {chars}"
            )));
        }
        if self.run_id.len() > MAX_RUN_ID_LEN {
            return Err(self.not_found());
        }
        Ok(())
    }

    fn not_found(&self) -> ApiError {
        ApiError::NotFound(format!("no run {:?} in the farm's history", self.run_id))
    }
}

/// `GET /api/runs/{run_id}` answer: one run of the history, whole.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunDetail {
    /// The run in a line, as `GET /api/runs` lists it.
    pub summary: RunSummary,
    /// A load test's last report, as `GET /api/load-tests/{id}` gives it; null for a
    /// scenario run.
    pub load_test: Option<LoadTestRun>,
    /// A scenario run's last report, as `GET /api/scenarios/{run_id}` gives it; null for a
    /// load test.
    pub scenario: Option<ScenarioReport>,
}

impl RunDetail {
    /// The run the controller answered with; it answers an unknown id with a not-found
    /// status, so a missing summary means the same.
    pub fn new(path: &RunPath, r: pb::GetRunResponse) -> Result<Self, ApiError> {
        let summary = r.summary.ok_or_else(|| path.not_found())?;
        let (load_test, scenario) = match r.run {
            Some(pb::get_run_response::Run::LoadTest(run)) => (Some(run.into()), None),
            Some(pb::get_run_response::Run::Scenario(report)) => (None, Some(report.into())),
            None => (None, None),
        };
        Ok(Self {
            summary: summary.into(),
            load_test,
            scenario,
        })
    }
}

/// What happened, in an event of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FarmEventKind {
    /// A server was added (the farm scaled up).
    Added,
    /// A server was removed (the farm scaled down).
    Removed,
    /// A server's status changed (healthy, degraded, stopped, starting, unreachable).
    Status,
    /// A server's agent linked to the controller again.
    AgentConnected,
    /// A server's agent's link to the controller broke.
    AgentDisconnected,
    /// Faults were set on a server.
    FaultSet,
    /// Faults were cleared on a server.
    FaultCleared,
    /// A load test or scenario run started.
    RunStarted,
    /// A load test or scenario run ended.
    RunEnded,
    /// The controller started.
    ControllerStarted,
    /// Not known to this gateway (see `detail`).
    Unknown,
}

impl From<&str> for FarmEventKind {
    fn from(kind: &str) -> Self {
        match kind {
            "added" => Self::Added,
            "removed" => Self::Removed,
            "status" => Self::Status,
            "agent_connected" => Self::AgentConnected,
            "agent_disconnected" => Self::AgentDisconnected,
            "fault_set" => Self::FaultSet,
            "fault_cleared" => Self::FaultCleared,
            "run_started" => Self::RunStarted,
            "run_ended" => Self::RunEnded,
            "controller_started" => Self::ControllerStarted,
            _ => Self::Unknown,
        }
    }
}

/// One thing that happened to the farm or a server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FarmEvent {
    /// Its place in the history: events are numbered in the order they happened.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The server it concerns; 0 for the farm as a whole.
    pub server_id: u32,
    /// What.
    pub kind: FarmEventKind,
    /// In words: `healthy -> unreachable: agent disconnected`, `latency, abort`,
    /// `lt-3 finished`.
    pub detail: String,
}

impl From<pb::FarmEvent> for FarmEvent {
    fn from(e: pb::FarmEvent) -> Self {
        Self {
            seq: e.seq,
            at_ms: e.at_ms,
            server_id: e.server_id,
            kind: e.kind.as_str().into(),
            detail: e.detail,
        }
    }
}

/// `GET /api/events` query.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct EventsQuery {
    /// Events after this sequence number (absent or 0: from the oldest kept); pass the
    /// previous answer's `last_seq` to read on.
    #[serde(default, deserialize_with = "uint::option")]
    #[schemars(range(min = 0, max = u64::MAX))]
    pub after_seq: Option<u64>,
    /// Most events to answer with (default 100).
    #[serde(default, deserialize_with = "uint::option")]
    #[schemars(range(min = 1, max = MAX_EVENTS_LIMIT))]
    pub limit: Option<u32>,
    /// Only events of this server (0: the farm's own); absent for all.
    #[serde(default, deserialize_with = "uint::option")]
    #[schemars(range(min = 0, max = u32::MAX))]
    pub server_id: Option<u32>,
    /// The newest `limit` events instead (`after_seq` is then ignored), still oldest first.
    #[serde(default)]
    pub newest: Option<bool>,
}

impl EventsQuery {
    /// Checks the bounds the schema states and builds the controller's request.
    pub fn into_proto(self) -> Result<pb::ListEventsRequest, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_EVENTS_LIMIT);
        range("limit", limit, 1, MAX_EVENTS_LIMIT)?;
        Ok(pb::ListEventsRequest {
            after_seq: self.after_seq.unwrap_or(0),
            limit,
            server_id: self.server_id,
            newest: self.newest.unwrap_or(false),
        })
    }
}

/// `GET /api/events` answer: events of the history, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventList {
    /// The events.
    pub events: Vec<FarmEvent>,
    /// The newest event's sequence number in the history (of every server, not only the
    /// ones asked for): pass it as `after_seq` to read what happens next.
    pub last_seq: u64,
}

impl From<pb::ListEventsResponse> for EventList {
    fn from(r: pb::ListEventsResponse) -> Self {
        Self {
            events: r.events.into_iter().map(Into::into).collect(),
            last_seq: r.last_seq,
        }
    }
}

/// A server's or the farm's metrics at one time, averaged over the answer's resolution.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MetricPoint {
    /// The start of the second or minute it covers, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// CPU, in percent of one core (the farm: the sum over its servers).
    pub cpu_percent: f64,
    /// Memory, in bytes (the farm: the sum over its servers).
    pub memory_bytes: u64,
    /// Requests per second served.
    pub requests_per_second: f64,
    /// Errors (status 500 or more) per second served.
    pub errors_per_second: f64,
    /// The farm: its healthy servers; a server: 1 when healthy, else 0 (a minute's point
    /// averages them, so it may lie in between).
    pub healthy: f64,
}

impl From<pb::MetricPoint> for MetricPoint {
    fn from(p: pb::MetricPoint) -> Self {
        Self {
            at_ms: p.at_ms,
            cpu_percent: finite(p.cpu_percent),
            memory_bytes: p.memory_bytes,
            requests_per_second: finite(p.requests_per_second),
            errors_per_second: finite(p.errors_per_second),
            healthy: finite(p.healthy),
        }
    }
}

/// `GET /api/metrics/history` query. The span is at most a week; that rule across
/// parameters is the controller's, whose 400 names the parameter at fault.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct MetricHistoryQuery {
    /// The server; absent or 0 for the farm as a whole.
    #[serde(default, deserialize_with = "uint::option")]
    #[schemars(range(min = 0, max = u32::MAX))]
    pub server_id: Option<u32>,
    /// The span's start, in milliseconds since the Unix epoch; absent or 0: an hour before
    /// `to_ms`.
    #[serde(default, deserialize_with = "uint::option")]
    #[schemars(range(min = 0, max = u64::MAX))]
    pub from_ms: Option<u64>,
    /// The span's end, in milliseconds since the Unix epoch; absent or 0: now.
    #[serde(default, deserialize_with = "uint::option")]
    #[schemars(range(min = 0, max = u64::MAX))]
    pub to_ms: Option<u64>,
}

impl MetricHistoryQuery {
    /// Builds the controller's request (every value the schema allows is one it takes).
    pub fn into_proto(self) -> pb::GetMetricHistoryRequest {
        pb::GetMetricHistoryRequest {
            server_id: self.server_id.unwrap_or(0),
            from_ms: self.from_ms.unwrap_or(0),
            to_ms: self.to_ms.unwrap_or(0),
        }
    }
}

/// `GET /api/metrics/history` answer: the span's points, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MetricHistory {
    /// Seconds each point covers: 1 when the span lies within the last hour, else 60.
    pub resolution_seconds: u32,
    /// The points, one per second or minute that has figures.
    pub points: Vec<MetricPoint>,
}

impl From<pb::GetMetricHistoryResponse> for MetricHistory {
    fn from(r: pb::GetMetricHistoryResponse) -> Self {
        Self {
            resolution_seconds: r.resolution_seconds,
            points: r.points.into_iter().map(Into::into).collect(),
        }
    }
}
