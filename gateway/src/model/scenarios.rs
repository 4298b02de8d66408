//! Scenarios: a scenario file to start or check, and a run's report (its plan, faults,
//! steady-state checks, verdicts and the load's figures). The file's format is the
//! controller's business (`docs/scenarios.md`); the gateway passes the text on and bounds
//! only its size.

use farm_proto::limits::MAX_RUN_ID_LEN;
use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LoadTestResult, finite, uint};
use crate::error::ApiError;

use farm_proto::limits::MAX_SCENARIO_SOURCE_BYTES;

/// Checks the size of a scenario file's text, in bytes as the controller counts them.
fn source_size(source: &str) -> Result<(), ApiError> {
    if source.len() > MAX_SCENARIO_SOURCE_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "source is {} bytes; at most {MAX_SCENARIO_SOURCE_BYTES}",
            source.len()
        )));
    }
    Ok(())
}

/// `POST /api/scenarios` body: a scenario file to run.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartScenarioRequest {
    /// The scenario file's text (YAML; see `docs/scenarios.md`), at most 65,536 bytes in
    /// UTF-8. (`maxLength` counts characters: text beyond ASCII takes more than one byte
    /// each, and the byte bound is the one checked.)
    #[schemars(length(max = MAX_SCENARIO_SOURCE_BYTES))]
    pub source: String,
    /// Overrides the file's seed: the same seed gives the same fault decisions.
    #[serde(default, deserialize_with = "uint::option")]
    #[schemars(range(min = 0, max = u64::MAX))]
    pub seed: Option<u64>,
}

impl StartScenarioRequest {
    /// Checks the bound the schema states and builds the controller's request.
    pub fn into_proto(self) -> Result<pb::StartScenarioRequest, ApiError> {
        source_size(&self.source)?;
        Ok(pb::StartScenarioRequest {
            source: self.source,
            seed: self.seed,
        })
    }
}

/// `POST /api/scenarios/check` body: a scenario file to check against this farm.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckScenarioRequest {
    /// The scenario file's text (YAML; see `docs/scenarios.md`), at most 65,536 bytes in
    /// UTF-8, as for `POST /api/scenarios`.
    #[schemars(length(max = MAX_SCENARIO_SOURCE_BYTES))]
    pub source: String,
}

impl CheckScenarioRequest {
    /// Checks the bound the schema states and builds the controller's request.
    pub fn into_proto(self) -> Result<pb::CheckScenarioRequest, ApiError> {
        source_size(&self.source)?;
        Ok(pb::CheckScenarioRequest {
            source: self.source,
        })
    }
}

/// Where to follow a scenario run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioLinks {
    /// Its report: `GET` it while it runs and once it has ended.
    pub run: String,
    /// `POST` here to abort it.
    pub stop: String,
}

/// `POST /api/scenarios` answer: the run started and goes on by itself.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioStarted {
    /// The run's id, e.g. `sc-1`.
    pub run_id: String,
    /// Where to follow it.
    pub links: ScenarioLinks,
}

impl ScenarioStarted {
    /// The answer for run `run_id`.
    pub fn new(run_id: String) -> Self {
        let run = format!("/api/scenarios/{run_id}");
        Self {
            links: ScenarioLinks {
                stop: format!("{run}/stop"),
                run,
            },
            run_id,
        }
    }
}

/// One thing wrong with a scenario file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioProblem {
    /// Its line in the file, from 1; 0 when it concerns the whole file.
    pub line: u32,
    /// The field, as a path: `faults[1].servers`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// `POST /api/scenarios/check` answer: whether the file would run on this farm.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioCheckResult {
    /// Whether it would: no problems.
    pub valid: bool,
    /// Every problem found, in the order of the file.
    pub problems: Vec<ScenarioProblem>,
}

impl From<pb::CheckScenarioResponse> for ScenarioCheckResult {
    fn from(r: pb::CheckScenarioResponse) -> Self {
        Self {
            valid: r.valid,
            problems: r
                .problems
                .into_iter()
                .map(|p| ScenarioProblem {
                    line: p.line,
                    field: p.field,
                    message: p.message,
                })
                .collect(),
        }
    }
}

/// Where a scenario run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioState {
    /// Checking the steady state before the load, or running.
    Running,
    /// Ended; every assertion and steady-state check held.
    Passed,
    /// Ended; at least one assertion, or a steady-state check after the load, failed.
    Failed,
    /// Stopped early: an abort condition held, or it was stopped.
    Aborted,
    /// Could not run: the steady state did not hold before the load, or the farm refused a
    /// step (see `reason`).
    Error,
}

impl From<i32> for ScenarioState {
    fn from(raw: i32) -> Self {
        match pb::ScenarioState::try_from(raw) {
            Ok(pb::ScenarioState::Running) => Self::Running,
            Ok(pb::ScenarioState::Passed) => Self::Passed,
            Ok(pb::ScenarioState::Failed) => Self::Failed,
            Ok(pb::ScenarioState::Aborted) => Self::Aborted,
            // A state this gateway does not know is no verdict it can vouch for.
            Ok(pb::ScenarioState::Error | pb::ScenarioState::Unspecified) | Err(_) => Self::Error,
        }
    }
}

/// One load phase of a scenario, as planned.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioPhase {
    /// Its name.
    pub name: String,
    /// When it starts, in milliseconds after the load's start.
    pub start_ms: u32,
    /// When it ends, in milliseconds after the load's start.
    pub end_ms: u32,
    /// Open model: the rate at its start, in requests per second (0 in the closed model).
    pub rate_from: f64,
    /// Open model: the rate at its end (0 in the closed model).
    pub rate_to: f64,
    /// Closed model: its workers (0 in the open model).
    pub concurrency: u32,
}

/// One fault of a scenario: what was planned and what happened.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioFault {
    /// The fault's id in the file.
    pub id: String,
    /// Its kind as written: `latency`, `abort`, `hang`, `throughput`, `close`, `reset`,
    /// `rate_limit`, `health`, `readiness`, `partition`, `kill`, `stop`, `restart` or `pause`.
    pub kind: String,
    /// The servers it was applied to (when a `share` was asked for, the ones it drew).
    pub server_ids: Vec<u32>,
    /// When it was planned, in milliseconds after the load's start.
    pub at_ms: u32,
    /// How long it was planned to last, in milliseconds (0: an instant, such as a restart,
    /// or a kill left to the farm to restart).
    pub for_ms: u32,
    /// When it was applied, in milliseconds after the load's start; 0 while it has not been.
    pub applied_ms: u32,
    /// When it ended (undone, or cleared itself), in milliseconds after the load's start; 0
    /// while it has not.
    pub ended_ms: u32,
    /// What went wrong applying or undoing it; null when nothing did.
    pub error: Option<String>,
}

/// One steady-state check, before or after the load.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioCheck {
    /// `before` or `after`.
    pub when: String,
    /// The check as written, e.g. `all_healthy within 10s`.
    pub check: String,
    /// Whether it held.
    pub passed: bool,
    /// What was seen, e.g. `9 of 10 servers healthy after 10.0 s; server 4: unreachable`.
    pub detail: String,
    /// Its line in the file.
    pub line: u32,
}

/// One SLO assertion's verdict.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioVerdict {
    /// The assertion as written, normalised: `latency.p99 < 300ms during hold`.
    pub assertion: String,
    /// Whether it held.
    pub passed: bool,
    /// The figure it was judged on, in the metric's unit (milliseconds, a ratio from 0 to 1,
    /// or requests per second; for a recovery, the seconds it took, or -1 when it never
    /// recovered).
    pub observed: f64,
    /// The bound, in the same unit.
    pub threshold: f64,
    /// In words, with by how much it missed: `p99 412.0 ms against < 300 ms: 112.0 ms over`.
    pub detail: String,
    /// Its line in the file.
    pub line: u32,
    /// False while the run goes on and the verdict may still change.
    pub r#final: bool,
}

/// A scenario run: the plan, what happened, and the verdicts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioReport {
    /// The run's id, e.g. `sc-1`.
    pub run_id: String,
    /// The scenario's name.
    pub name: String,
    /// The seed its fault decisions used.
    pub seed: u64,
    /// Where it stands.
    pub state: ScenarioState,
    /// Why it was aborted or could not run; null otherwise.
    pub reason: Option<String>,
    /// The abort condition that held, as written; null when none did.
    pub aborted_by: Option<String>,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// When it ended, in milliseconds since the Unix epoch; null while it runs.
    pub ended_at_ms: Option<u64>,
    /// When its load started, in milliseconds since the Unix epoch (every `*_ms` offset of
    /// the report counts from it); null before.
    pub load_started_at_ms: Option<u64>,
    /// The load's phases.
    pub phases: Vec<ScenarioPhase>,
    /// The faults.
    pub faults: Vec<ScenarioFault>,
    /// The steady-state checks done so far.
    pub checks: Vec<ScenarioCheck>,
    /// One verdict per SLO assertion (provisional while it runs: see `final`).
    pub verdicts: Vec<ScenarioVerdict>,
    /// The load's figures, with its per-second `timeline` (empty in the run list) and
    /// per-phase results; null before the load starts.
    pub load: Option<LoadTestResult>,
}

fn text(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn instant(ms: u64) -> Option<u64> {
    (ms != 0).then_some(ms)
}

impl From<pb::ScenarioReport> for ScenarioReport {
    fn from(r: pb::ScenarioReport) -> Self {
        Self {
            run_id: r.run_id,
            name: r.name,
            seed: r.seed,
            state: r.state.into(),
            reason: text(r.reason),
            aborted_by: text(r.aborted_by),
            started_at_ms: r.started_at_ms,
            ended_at_ms: instant(r.ended_at_ms),
            load_started_at_ms: instant(r.load_started_at_ms),
            phases: r
                .phases
                .into_iter()
                .map(|p| ScenarioPhase {
                    name: p.name,
                    start_ms: p.start_ms,
                    end_ms: p.end_ms,
                    rate_from: finite(p.rate_from),
                    rate_to: finite(p.rate_to),
                    concurrency: p.concurrency,
                })
                .collect(),
            faults: r
                .faults
                .into_iter()
                .map(|f| ScenarioFault {
                    id: f.id,
                    kind: f.kind,
                    server_ids: f.server_ids,
                    at_ms: f.at_ms,
                    for_ms: f.for_ms,
                    applied_ms: f.applied_ms,
                    ended_ms: f.ended_ms,
                    error: text(f.error),
                })
                .collect(),
            checks: r
                .checks
                .into_iter()
                .map(|c| ScenarioCheck {
                    when: c.when,
                    check: c.check,
                    passed: c.passed,
                    detail: c.detail,
                    line: c.line,
                })
                .collect(),
            verdicts: r
                .verdicts
                .into_iter()
                .map(|v| ScenarioVerdict {
                    assertion: v.assertion,
                    passed: v.passed,
                    observed: finite(v.observed),
                    threshold: finite(v.threshold),
                    detail: v.detail,
                    line: v.line,
                    r#final: v.r#final,
                })
                .collect(),
            load: r.load.map(LoadTestResult::from),
        }
    }
}

/// The running scenario runs and the kept finished ones (the last 20), oldest first, without
/// their per-second timelines (`GET /api/scenarios/{run_id}` has them).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioRunList {
    /// The runs.
    pub runs: Vec<ScenarioReport>,
}

/// The `{run_id}` of `/api/scenarios/{run_id}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct ScenarioPath {
    /// The run's id, as `POST /api/scenarios` returned it.
    #[schemars(length(min = 1, max = MAX_RUN_ID_LEN))]
    pub run_id: String,
}

impl ScenarioPath {
    /// Checks the bound the schema states, as every run's id is checked: an id within it
    /// that is longer than the controller reads names no run (404), not a bad request.
    pub fn validate(&self) -> Result<(), ApiError> {
        super::history::RunPath {
            run_id: self.run_id.clone(),
        }
        .validate()
    }
}
