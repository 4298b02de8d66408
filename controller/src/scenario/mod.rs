//! Scenario runs: a scenario file ([`farm_scenario`]) carried out against the farm's
//! servers, from the steady state before to the verdicts.
//!
//! A run goes: check the servers it names; wait for the steady state before (each check
//! within its bound, else the run cannot run); start the load (one load test with the file's
//! phases); apply each fault at its offset and undo it at its end (or when the load ends);
//! every second, take the load's figures, judge the assertions provisionally and check the
//! abort rules; when the load ends, undo what is left, check the steady state after, and
//! judge for good. Fault decisions are seeded: a fault's share of servers and its own
//! random choices (an abort's percentage) follow from the run's seed and the fault's place
//! in the file, so the same seed gives the same decisions.
//!
//! Runs are kept in memory: every running one and the last [`KEPT_RUNS`] finished, at most
//! [`MAX_RUNNING`] running at once.

mod judge;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use farm_history::History;
use farm_proto::v1::{
    self as pb, LoadPhase, LoadTestSpec, ScenarioCheck, ScenarioFaultRecord, ScenarioPhaseWindow,
    ScenarioReport, ScenarioState, ServerActionKind,
};
use farm_scenario::{CheckKind, FaultAction, Model, Scenario, Selection, When};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::Farm;
use crate::faults::now_ms;
use crate::status::Status;

/// Finished runs kept for fetching by id.
pub const KEPT_RUNS: usize = 20;
/// Runs at once.
pub const MAX_RUNNING: usize = 2;
/// How long `StopScenario` waits for a stopped run's final report.
pub const STOP_WAIT: Duration = Duration::from_secs(15);
/// How often a steady-state check looks at the farm while it waits for it to hold.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// A profile fault also clears itself this long after its planned end, should the run never
/// clear it (a controller killed meanwhile).
const FAULT_MARGIN_SECONDS: u32 = 10;

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The file is not valid, or names servers the farm lacks.
    #[error("the scenario is not valid:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<farm_scenario::Problem>),
    /// As many runs as allowed are running.
    #[error("{0} scenarios are running, the most at once; stop one or wait")]
    TooMany(usize),
}

struct Entry {
    report: watch::Receiver<ScenarioReport>,
    stop: CancellationToken,
}

impl Entry {
    fn running(&self) -> bool {
        self.report.borrow().state == ScenarioState::Running as i32
    }
}

/// The scenario runs: running and kept; with a history, each is also written to it when it
/// starts and when it ends.
#[derive(Clone, Default)]
pub struct Scenarios {
    runs: Arc<Mutex<VecDeque<Entry>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    history: Option<History>,
}

/// Writes `report` to `history`, if there is one.
fn remember(history: Option<&History>, report: &ScenarioReport) {
    use prost::Message;
    let Some(history) = history else {
        return;
    };
    let state = ScenarioState::try_from(report.state)
        .unwrap_or(ScenarioState::Unspecified)
        .name();
    let passed = report.verdicts.iter().filter(|v| v.passed).count();
    let line = farm_history::summary(
        &report.run_id,
        pb::RunKind::Scenario,
        report.name.clone(),
        state,
        report.started_at_ms,
        report.ended_at_ms,
        report.load.as_ref(),
        (
            u32::try_from(passed).unwrap_or(u32::MAX),
            u32::try_from(report.verdicts.len()).unwrap_or(u32::MAX),
        ),
    );
    let event = farm_history::NewEvent {
        at_ms: now_ms(),
        server_id: 0,
        kind: if state == "running" {
            "run_started"
        } else {
            "run_ended"
        }
        .into(),
        detail: format!("{} {state}", report.run_id),
    };
    let encoded = report.encode_to_vec();
    crate::recorder::write(history, "a scenario run", move |h| {
        h.put_run(&line, &encoded)?;
        h.add_events(&[event])
    });
}

impl std::fmt::Debug for Scenarios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenarios").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Parses `source` and checks it against the farm: the scenario, or every problem found.
pub fn check(farm: &Farm, source: &str) -> Result<Scenario, Vec<farm_scenario::Problem>> {
    let scenario = farm_scenario::parse(source)?;
    let problems = scenario.check_servers(&farm.registry().ids(), farm.can_partition());
    if problems.is_empty() {
        Ok(scenario)
    } else {
        Err(problems)
    }
}

impl Scenarios {
    /// Scenario runs, written to `history` too when there is one, their ids going on from
    /// the last it holds.
    pub fn new(history: Option<History>) -> Self {
        let last = history
            .as_ref()
            .and_then(|h| h.last_run_number("sc-").ok())
            .unwrap_or(0);
        Self {
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(last)),
            history,
            ..Self::default()
        }
    }

    /// Checks and starts `source` on `farm`; the run goes on by itself until it ends, is
    /// stopped, or `shutdown`. Returns its id and its reports.
    pub fn start(
        &self,
        farm: &Farm,
        source: &str,
        seed: Option<u64>,
        shutdown: &CancellationToken,
    ) -> Result<(String, watch::Receiver<ScenarioReport>), StartError> {
        let scenario = check(farm, source).map_err(StartError::Invalid)?;
        let seed = seed
            .or(scenario.seed)
            .unwrap_or_else(|| rand::random::<u64>() >> 11);
        let mut runs = lock(&self.runs);
        if runs.iter().filter(|r| r.running()).count() >= MAX_RUNNING {
            return Err(StartError::TooMany(MAX_RUNNING));
        }
        let run_id = format!(
            "sc-{}",
            self.next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1
        );
        let report = planned(&run_id, &scenario, seed);
        remember(self.history.as_ref(), &report);
        let (tx, rx) = watch::channel(report);
        let stop = shutdown.child_token();
        runs.push_back(Entry {
            report: rx.clone(),
            stop: stop.clone(),
        });
        // Keeps every running run and the last KEPT_RUNS finished ones.
        while runs.iter().filter(|r| !r.running()).count() > KEPT_RUNS {
            let Some(oldest) = runs.iter().position(|r| !r.running()) else {
                break;
            };
            runs.remove(oldest);
        }
        drop(runs);
        tracing::info!(%run_id, name = %scenario.name, seed, "Scenario started.");
        let runner = Runner {
            farm: farm.clone(),
            scenario: Arc::new(scenario),
            seed,
            report: Arc::new(tx),
            stop,
            history: self.history.clone(),
        };
        tokio::spawn(runner.run());
        Ok((run_id, rx))
    }

    /// A run's latest report.
    pub fn get(&self, run_id: &str) -> Option<ScenarioReport> {
        lock(&self.runs)
            .iter()
            .find(|r| r.report.borrow().run_id == run_id)
            .map(|r| r.report.borrow().clone())
    }

    /// A run's reports, to follow it.
    pub fn follow(&self, run_id: &str) -> Option<watch::Receiver<ScenarioReport>> {
        lock(&self.runs)
            .iter()
            .find(|r| r.report.borrow().run_id == run_id)
            .map(|r| r.report.clone())
    }

    /// Aborts a run; false when no run has that id.
    pub fn stop(&self, run_id: &str) -> bool {
        match lock(&self.runs)
            .iter()
            .find(|r| r.report.borrow().run_id == run_id)
        {
            Some(run) => {
                run.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Every kept run, oldest first, without its per-second timeline.
    pub fn list(&self) -> Vec<ScenarioReport> {
        lock(&self.runs)
            .iter()
            .map(|r| {
                let mut report = r.report.borrow().clone();
                if let Some(load) = report.load.as_mut() {
                    load.timeline.clear();
                }
                report
            })
            .collect()
    }
}

/// A run's report before anything has happened: the plan.
fn planned(run_id: &str, scenario: &Scenario, seed: u64) -> ScenarioReport {
    let phases = scenario
        .load
        .phases
        .iter()
        .scan(Duration::ZERO, |start, phase| {
            let window = ScenarioPhaseWindow {
                name: phase.name.clone(),
                start_ms: millis(*start),
                end_ms: millis(*start + phase.duration),
                rate_from: phase.rate_from,
                rate_to: phase.rate_to,
                concurrency: phase.concurrency,
            };
            *start += phase.duration;
            Some(window)
        })
        .collect();
    let faults = scenario
        .faults
        .iter()
        .map(|fault| ScenarioFaultRecord {
            id: fault.id.clone(),
            kind: fault.action.kind().to_string(),
            at_ms: millis(fault.at),
            for_ms: fault.duration.map_or(0, millis),
            ..ScenarioFaultRecord::default()
        })
        .collect();
    ScenarioReport {
        run_id: run_id.to_string(),
        name: scenario.name.clone(),
        seed,
        state: ScenarioState::Running as i32,
        started_at_ms: now_ms(),
        phases,
        faults,
        ..ScenarioReport::default()
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A fault's own seed, from the run's seed and its place in the file.
fn fault_seed(seed: u64, index: usize) -> u64 {
    // splitmix64's finaliser: neighbouring places get unrelated seeds.
    let mut z = seed.wrapping_add((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One run under way.
struct Runner {
    farm: Farm,
    scenario: Arc<Scenario>,
    seed: u64,
    report: Arc<watch::Sender<ScenarioReport>>,
    stop: CancellationToken,
    history: Option<History>,
}

impl Runner {
    async fn run(self) {
        let outcome = self.go().await;
        let (state, reason) = match outcome {
            Ok(state) => (state, String::new()),
            Err(Ended::Aborted(reason)) => (ScenarioState::Aborted, reason),
            Err(Ended::CouldNotRun(reason)) => (ScenarioState::Error, reason),
        };
        self.report.send_modify(|r| {
            r.state = state as i32;
            if r.reason.is_empty() {
                r.reason = reason;
            }
            r.ended_at_ms = now_ms();
        });
        let report = self.report.borrow();
        tracing::info!(run_id = %report.run_id, state = ?state, reason = %report.reason, "Scenario ended.");
        remember(self.history.as_ref(), &report);
    }

    async fn go(&self) -> Result<ScenarioState, Ended> {
        let scenario = &self.scenario;
        // The steady state before.
        let mut held = true;
        for check in scenario
            .steady_state
            .iter()
            .filter(|c| c.when != When::After)
        {
            held &= self.check(check, "before").await?;
        }
        if !held {
            return Err(Ended::CouldNotRun(
                "the steady state did not hold before the load".into(),
            ));
        }

        // The load.
        let spec = self.load_spec()?;
        let plan = self
            .farm
            .load_test_plan(Some(spec))
            .await
            .map_err(|status| Ended::CouldNotRun(format!("the load: {}", status.message())))?;
        let load_stop = self.stop.child_token();
        let (_, mut progress) = self.farm.load_tests().start(plan, &load_stop);
        let load_started = tokio::time::Instant::now();
        self.report.send_modify(|r| r.load_started_at_ms = now_ms());

        // The faults, each on its own clock, undone at its end or when the load ends.
        let load_over = CancellationToken::new();
        let faults = TaskTracker::new();
        for index in 0..scenario.faults.len() {
            faults.spawn(self.fault(index, load_started, load_stop.clone(), load_over.clone()));
        }
        faults.close();

        let mut aborted_by = None;
        let mut last = None;
        loop {
            tokio::select! {
                report = progress.recv() => {
                    let Some(report) = report else { break };
                    let done = report.done;
                    let load = report.result.unwrap_or_default();
                    let rule = judge::abort_rule(scenario, &load).map(|r| r.text.clone());
                    self.report.send_modify(|r| {
                        r.verdicts = judge::verdicts(scenario, &load, &r.faults, false);
                        r.load = Some(load.clone());
                    });
                    last = Some(load);
                    if done {
                        break;
                    }
                    if let Some(rule) = rule.filter(|_| aborted_by.is_none()) {
                        tracing::info!(%rule, "Scenario aborted by its rule.");
                        aborted_by = Some(rule);
                        load_stop.cancel();
                    }
                }
                () = self.stop.cancelled(), if !load_stop.is_cancelled() => {
                    load_stop.cancel();
                }
            }
        }
        load_over.cancel();
        faults.wait().await;

        let stopped = self.stop.is_cancelled();
        if let Some(rule) = &aborted_by {
            self.report.send_modify(|r| r.aborted_by = rule.clone());
        }
        let load = last.unwrap_or_default();
        self.report.send_modify(|r| {
            r.verdicts = judge::verdicts(scenario, &load, &r.faults, true);
            r.load = Some(load.clone());
        });
        if let Some(rule) = aborted_by {
            return Err(Ended::Aborted(format!("abort condition held: {rule}")));
        }
        if stopped {
            return Err(Ended::Aborted("stopped before its end".into()));
        }
        // A fault that did not go as planned leaves the run's question unanswered.
        if let Some(fault) = self
            .report
            .borrow()
            .faults
            .iter()
            .find(|f| !f.error.is_empty())
        {
            return Err(Ended::CouldNotRun(format!(
                "fault {} did not go as planned: {}",
                fault.id, fault.error
            )));
        }

        // The steady state after.
        let mut held = true;
        for check in scenario
            .steady_state
            .iter()
            .filter(|c| c.when != When::Before)
        {
            held &= self.check(check, "after").await?;
        }
        let passed = held && self.report.borrow().verdicts.iter().all(|v| v.passed);
        Ok(if passed {
            ScenarioState::Passed
        } else {
            ScenarioState::Failed
        })
    }

    /// The load test the file's target and load describe.
    fn load_spec(&self) -> Result<LoadTestSpec, Ended> {
        let scenario = &self.scenario;
        let target = &scenario.target;
        let open = scenario.load.model == Model::Open;
        Ok(LoadTestSpec {
            server_ids: match &target.servers.selection {
                Selection::All => Vec::new(),
                Selection::Ids(ids) => ids.clone(),
            },
            path: target.path.clone(),
            method: target.method.clone(),
            concurrency: scenario.load.concurrency,
            timeout_ms: millis(target.timeout),
            phases: scenario
                .load
                .phases
                .iter()
                .map(|p| LoadPhase {
                    name: p.name.clone(),
                    duration_ms: millis(p.duration),
                    rate: open.then_some(p.rate_from),
                    rate_to: open.then_some(p.rate_to),
                    concurrency: if open { 0 } else { p.concurrency },
                })
                .collect(),
            ..LoadTestSpec::default()
        })
    }

    /// One steady-state check, `when` ("before" or "after"): waits up to its bound for it
    /// to hold, and records it. Err when the run was stopped meanwhile.
    async fn check(&self, check: &farm_scenario::Check, when: &str) -> Result<bool, Ended> {
        let deadline = tokio::time::Instant::now() + check.within;
        let started = tokio::time::Instant::now();
        let (passed, detail) = loop {
            // The steady state is the farm's: every server, not only the load's targets.
            let statuses: Vec<(u32, Status, String)> = self.farm.registry().read(|entries| {
                entries
                    .map(|e| (e.id, e.status, e.status_reason.clone()))
                    .collect()
            });
            let healthy = statuses.iter().filter(|s| s.1 == Status::Healthy).count();
            let wanted = match check.kind {
                CheckKind::AllHealthy => statuses.len().max(1),
                CheckKind::MinHealthy(n) => n as usize,
            };
            let waited = started.elapsed().as_secs_f64();
            if healthy >= wanted {
                break (
                    true,
                    format!(
                        "{healthy} of {} servers healthy after {waited:.1} s",
                        statuses.len()
                    ),
                );
            }
            if tokio::time::Instant::now() >= deadline {
                let unhealthy: Vec<String> = statuses
                    .iter()
                    .filter(|s| s.1 != Status::Healthy)
                    .take(5)
                    .map(|(id, status, reason)| {
                        format!("server {id}: {} {reason}", status.as_str())
                    })
                    .collect();
                break (
                    false,
                    format!(
                        "{healthy} of {} servers healthy after {waited:.1} s; {}",
                        statuses.len(),
                        unhealthy.join("; ")
                    ),
                );
            }
            tokio::select! {
                () = self.stop.cancelled() => {
                    return Err(Ended::Aborted(format!("stopped during the steady-state check {when}")));
                }
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        };
        self.report.send_modify(|r| {
            r.checks.push(ScenarioCheck {
                when: when.to_string(),
                check: check.text.clone(),
                passed,
                detail,
                line: check.line,
            });
        });
        Ok(passed)
    }

    /// Fault `index`: waits for its offset, applies it, waits for its end (or the load's),
    /// undoes what it did, and records each step.
    fn fault(
        &self,
        index: usize,
        load_started: tokio::time::Instant,
        load_stop: CancellationToken,
        load_over: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let farm = self.farm.clone();
        let scenario = self.scenario.clone();
        let report = self.report.clone();
        let seed = fault_seed(self.seed, index);
        async move {
            let fault = &scenario.faults[index];
            let since_load = |at: tokio::time::Instant| millis(at - load_started).max(1);
            // A run stopped or aborted before a fault's time never applies it.
            tokio::select! {
                () = load_stop.cancelled() => return,
                () = load_over.cancelled() => return,
                () = tokio::time::sleep_until(load_started + fault.at) => {}
            }
            let record = |change: &dyn Fn(&mut ScenarioFaultRecord)| {
                report.send_modify(|r| change(&mut r.faults[index]));
            };
            let ids = match farm.choose(&fault.servers.selection, fault.share, seed) {
                Ok(ids) => ids,
                Err(error) => {
                    record(&|f| f.error = format!("choosing its servers: {error}"));
                    return;
                }
            };
            record(&|f| f.server_ids = ids.clone());
            let remaining = scenario.load_duration().saturating_sub(fault.at);
            let lasts = fault.duration.unwrap_or(remaining);
            let applied = farm.apply(fault, &ids, lasts, seed).await;
            let applied_at = tokio::time::Instant::now();
            record(&|f| {
                f.applied_ms = since_load(applied_at);
                f.error = applied.failed.join("; ");
            });
            // Only the servers that took it are undone; the others never changed.
            if applied.took.is_empty() {
                return;
            }
            let undo = match (&fault.action, fault.duration) {
                // An instant: a restart, or a kill the farm restarts by itself.
                (FaultAction::Restart, _) | (FaultAction::Kill, None) => {
                    record(&|f| f.ended_ms = f.applied_ms);
                    return;
                }
                (action, _) => action,
            };
            tokio::select! {
                () = load_over.cancelled() => {}
                () = tokio::time::sleep_until(applied_at + lasts) => {}
            }
            let undone = farm.undo(undo, &applied.took).await;
            let ended_at = tokio::time::Instant::now();
            record(&|f| {
                f.ended_ms = since_load(ended_at);
                if !undone.failed.is_empty() {
                    let undoing = format!("undoing it: {}", undone.failed.join("; "));
                    f.error = if f.error.is_empty() {
                        undoing
                    } else {
                        format!("{}; {undoing}", f.error)
                    };
                }
            });
        }
    }
}

/// What an action did to the servers it named.
#[derive(Debug, Default)]
struct Outcome {
    /// The servers it took on.
    took: Vec<u32>,
    /// The others, each with why: "server 3: …".
    failed: Vec<String>,
}

impl Outcome {
    fn of(outcomes: Vec<pb::CommandOutcome>) -> Self {
        let mut outcome = Self::default();
        for o in outcomes {
            if o.ok {
                outcome.took.push(o.server_id);
            } else {
                outcome
                    .failed
                    .push(format!("server {}: {}", o.server_id, o.message));
            }
        }
        outcome
    }

    fn none_of(ids: &[u32], why: &str) -> Self {
        Self {
            took: Vec::new(),
            failed: ids.iter().map(|id| format!("server {id}: {why}")).collect(),
        }
    }
}

/// How a run ended, other than with verdicts.
enum Ended {
    Aborted(String),
    CouldNotRun(String),
}

// === The farm's levers, as a scenario pulls them ===

impl Farm {
    /// The servers of `selection`, then a seeded `share` (percent) of them.
    fn choose(
        &self,
        selection: &Selection,
        share: Option<f64>,
        seed: u64,
    ) -> Result<Vec<u32>, String> {
        let targets = pb::FaultTargets {
            server_ids: match selection {
                Selection::All => Vec::new(),
                Selection::Ids(ids) => ids.clone(),
            },
            all: matches!(selection, Selection::All),
            share_percent: share.unwrap_or(0.0),
            share_seed: seed,
            ..pb::FaultTargets::default()
        };
        crate::faults::select(self.registry(), Some(&targets)).map_err(|e| e.to_string())
    }

    /// Applies `fault` to `ids` for `lasts`; its random choices follow `seed`.
    async fn apply(
        &self,
        fault: &farm_scenario::Fault,
        ids: &[u32],
        lasts: Duration,
        seed: u64,
    ) -> Outcome {
        let down = match (&fault.action, fault.duration) {
            (FaultAction::Profile(profile), _) => {
                let mut profile = profile.clone();
                // It clears itself a little after its end too, should the run never clear it.
                let seconds = u32::try_from(lasts.as_secs())
                    .unwrap_or(u32::MAX)
                    .saturating_add(1 + FAULT_MARGIN_SECONDS);
                for (_, when) in crate::faults::whens_mut(&mut profile) {
                    let when = when.get_or_insert_with(pb::FaultWhen::default);
                    when.duration_seconds = seconds;
                    when.seed = seed;
                }
                return match self.set_faults_on(ids, profile).await {
                    Ok(outcomes) => Outcome::of(outcomes),
                    Err(why) => Outcome::none_of(ids, &why),
                };
            }
            (FaultAction::Restart, _) => {
                return Outcome::of(self.act_on(ids, ServerActionKind::Restart).await);
            }
            (FaultAction::Kill, None) => {
                return Outcome::of(self.act_on(ids, ServerActionKind::Kill).await);
            }
            // Held down: the farm's restart after a crash is held back until the end.
            (FaultAction::Kill, Some(_)) => pb::FailoverAction::Kill,
            (FaultAction::Stop, _) => pb::FailoverAction::Stop,
            (FaultAction::Pause, _) => pb::FailoverAction::Pause,
        };
        let down_ms = millis(lasts);
        let mut outcome = Outcome::default();
        for &id in ids {
            match crate::loadtest::front::Drills::take_down(self, id, down, down_ms).await {
                Ok(()) => outcome.took.push(id),
                Err(e) => outcome.failed.push(format!("server {id}: {e}")),
            }
        }
        outcome
    }

    /// Undoes what `action` did to `ids`.
    async fn undo(&self, action: &FaultAction, ids: &[u32]) -> Outcome {
        let up = match action {
            FaultAction::Profile(_) => {
                let kind = action.profile_kind().unwrap_or(pb::FaultKind::Unspecified);
                return Outcome::of(self.clear_faults_on(ids, kind).await);
            }
            FaultAction::Kill | FaultAction::Stop => ServerActionKind::Start,
            FaultAction::Pause => ServerActionKind::Unpause,
            FaultAction::Restart => return Outcome::default(),
        };
        Outcome::of(self.act_on(ids, up).await)
    }
}
