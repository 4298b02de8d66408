//! Load tests against servers of this farm, measured the way wrk2 and vegeta do.
//!
//! Two models, both spreading requests round-robin over the targets until a total is sent, a
//! duration has passed, or the run is cancelled:
//! - closed: `concurrency` workers, each sending its next request as soon as the previous one
//!   is answered (throughput follows the servers);
//! - open: a constant arrival rate. Request *i* is due at a fixed time on a schedule; it waits
//!   for one of `concurrency` workers, and its latency is measured from when it was *due*, so
//!   a stall that holds back the requests behind it shows in the figures instead of silently
//!   lowering the rate (coordinated omission). The latency from the actual send is kept
//!   beside it, uncorrected, to show the difference.
//!
//! An optional ramp raises the rate (open) or starts the workers (closed) linearly; or the
//! run goes through [`phases`], each with its own rate, ramped or not (open), or its own
//! workers (closed). Results come per phase and second by second as well as for the run.
//!
//! A run may go through a front instead ([`front`]): every request to one load balancer in
//! front of the farm, each answer attributed to the server that gave it, with an optional
//! failover drill that takes a server down during the run and brings it back.
//!
//! [`worker`] sends the requests over connections of its own ([`http1`]), [`tally`] keeps
//! the figures (HDR histograms, microseconds from 1 µs to 60 s). Progress is reported about
//! once a second; finished runs are kept, the last [`KEPT_RUNS`], to be fetched by id.

pub mod front;
pub mod http1;
pub mod phases;
mod tally;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use farm_history::History;
use farm_proto::v1::{LoadTestResult, LoadTestSpec, RunLoadTestResponse};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::targets::{self, Target};
use farm_proto::limits::{
    MAX_CONCURRENCY, MAX_DETACHED_LOAD_TESTS, MAX_DURATION_SECONDS, MAX_RATE_PER_SECOND,
    MAX_TIMEOUT_MS, MAX_TOTAL_REQUESTS,
};
use front::{Drills, Front, Network};
use phases::{Phase, Schedule, Shape};
use tally::Tally;
use worker::{Endpoint, Run, Share, Worker};

/// Finished runs kept for fetching by id.
pub const KEPT_RUNS: usize = 20;
/// How long `StopLoadTest` waits for a stopped run's final report: a cancelled run's
/// in-flight requests are dropped at once, so it ends well within this.
pub const STOP_WAIT: Duration = Duration::from_secs(5);
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// Each worker sends its next request when the previous one is answered.
    Closed,
    /// Requests are due at a constant rate, in requests per second.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

/// A validated load test, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    targets: Vec<Endpoint>,
    concurrency: u32,
    total: Option<u64>,
    duration: Duration,
    timeout: Duration,
    model: Model,
    /// Closed model without phases in the spec: the workers start one after another over it.
    ramp: Duration,
    /// The run's phases, end to end: the spec's, or the ramp and the steady part.
    phases: Vec<Phase>,
    /// Open model: when each request falls due.
    schedule: Option<Schedule>,
    /// The spec with defaults applied, reported with the result.
    spec: LoadTestSpec,
    /// A run through a front: every request goes to it.
    front: Option<Front>,
    /// Carries out a front's failover drill.
    drills: Option<Arc<dyn Drills>>,
}

impl Plan {
    /// Validates `spec` against the farm in `registry`; the error names the field. A front
    /// may be on loopback or inside one of `networks` (the farm's own).
    pub fn new(spec: &LoadTestSpec, registry: &Registry, networks: &[Network]) -> Result<Self> {
        let LoadTestSpec {
            server_ids,
            path,
            method,
            concurrency,
            total_requests,
            duration_seconds,
            timeout_ms,
            rate_per_second,
            ramp_up_seconds,
            front_url,
            weights,
            failover,
            phases,
        } = spec;
        let concurrency = match *concurrency {
            0 => farm_proto::limits::DEFAULT_CONCURRENCY,
            c if c > MAX_CONCURRENCY => {
                return Err(Error::InvalidArgument(format!(
                    "spec.concurrency must be at most {MAX_CONCURRENCY}, got {c}"
                )));
            }
            c => c,
        };
        if *total_requests > MAX_TOTAL_REQUESTS {
            return Err(Error::InvalidArgument(format!(
                "spec.total_requests must be at most {MAX_TOTAL_REQUESTS}, got {total_requests}"
            )));
        }
        if *duration_seconds > MAX_DURATION_SECONDS {
            return Err(Error::InvalidArgument(format!(
                "spec.duration_seconds must be at most {MAX_DURATION_SECONDS}, got {duration_seconds}"
            )));
        }
        let total = (*total_requests > 0).then_some(*total_requests);
        let (duration, laid_phases, model) = if phases.is_empty() {
            let duration_seconds = match (*duration_seconds, total) {
                (0, None) => 60,
                (0, Some(_)) => MAX_DURATION_SECONDS,
                (d, _) => d,
            };
            let rate = *rate_per_second;
            let model = if rate == 0.0 {
                Model::Closed
            } else if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE_PER_SECOND {
                Model::Open { rate }
            } else {
                return Err(Error::InvalidArgument(format!(
                    "spec.rate_per_second must be 0 (closed model) or up to {MAX_RATE_PER_SECOND}, got {rate}"
                )));
            };
            if *ramp_up_seconds > duration_seconds {
                return Err(Error::InvalidArgument(format!(
                    "spec.ramp_up_seconds ({ramp_up_seconds}) must not exceed the run's duration ({duration_seconds} s)"
                )));
            }
            let duration = Duration::from_secs(u64::from(duration_seconds));
            let ramp = Duration::from_secs(u64::from(*ramp_up_seconds));
            let rate = if let Model::Open { rate } = model {
                rate
            } else {
                0.0
            };
            let laid = phases::implied(rate, ramp, duration, concurrency);
            (duration, laid, model)
        } else {
            if *rate_per_second != 0.0 || *ramp_up_seconds != 0 || *total_requests != 0 {
                return Err(Error::InvalidArgument(
                    "spec.phases set the pace: leave spec.rate_per_second, spec.ramp_up_seconds and spec.total_requests at 0".into(),
                ));
            }
            let (laid, shape) = phases::from_spec(phases, concurrency)?;
            let duration = laid.last().map_or(Duration::ZERO, |p| p.end);
            if *duration_seconds != 0
                && u128::from(*duration_seconds) != duration.as_millis().div_ceil(1000)
            {
                return Err(Error::InvalidArgument(format!(
                    "spec.duration_seconds ({duration_seconds}) must be 0 or the phases' length rounded up ({} s)",
                    duration.as_millis().div_ceil(1000)
                )));
            }
            let model = match shape {
                Shape::Open => Model::Open {
                    rate: Schedule::new(&laid).peak(),
                },
                Shape::Closed => Model::Closed,
            };
            (duration, laid, model)
        };
        let duration_seconds =
            u32::try_from(duration.as_millis().div_ceil(1000)).unwrap_or(u32::MAX);
        let method = targets::method(method, "spec.method")?;
        let path = targets::path(path, "spec.path")?;
        let timeout = targets::millis(
            *timeout_ms,
            farm_proto::limits::DEFAULT_LOAD_TIMEOUT_MS,
            MAX_TIMEOUT_MS,
            "spec.timeout_ms",
        )?;
        let front = if front_url.is_empty() {
            if !weights.is_empty() || failover.is_some() {
                return Err(Error::InvalidArgument(
                    "spec.weights and spec.failover need spec.front_url: they describe a run through a front".into(),
                ));
            }
            None
        } else {
            if !server_ids.is_empty() {
                return Err(Error::InvalidArgument(
                    "spec.server_ids and spec.front_url do not combine: a run goes to servers, or through a front".into(),
                ));
            }
            let address = Front::address(front_url, networks)?;
            let farm = registry.ids();
            if farm.is_empty() {
                return Err(Error::InvalidArgument(
                    "spec.front_url: the farm has no servers".into(),
                ));
            }
            let expected = Front::expected(weights, &farm)?;
            if let Some(drill) = failover {
                if *total_requests > 0 {
                    return Err(Error::InvalidArgument(
                        "spec.failover needs a run that lasts its duration: leave spec.total_requests at 0".into(),
                    ));
                }
                Front::drill(drill, duration, &farm)?;
            }
            Some(Front {
                url: front_url.clone(),
                address,
                expected,
                farm: farm.iter().copied().collect(),
                drill: *failover,
            })
        };
        let targets = match &front {
            Some(front) => vec![Endpoint::new(
                &Target {
                    id: 0,
                    address: front.address.clone(),
                },
                &method,
                &path,
            )?],
            None => targets::resolve(registry, server_ids, "spec.server_ids")?
                .iter()
                .map(|target| Endpoint::new(target, &method, &path))
                .collect::<Result<Vec<_>>>()?,
        };
        let spec = LoadTestSpec {
            server_ids: if front.is_some() {
                Vec::new()
            } else {
                targets.iter().map(|t| t.id).collect()
            },
            path,
            method: method.to_string(),
            concurrency,
            total_requests: *total_requests,
            duration_seconds,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            rate_per_second: *rate_per_second,
            ramp_up_seconds: *ramp_up_seconds,
            front_url: front_url.clone(),
            weights: weights.clone(),
            failover: *failover,
            phases: phases.clone(),
        };
        let schedule = matches!(model, Model::Open { .. }).then(|| Schedule::new(&laid_phases));
        Ok(Self {
            targets,
            concurrency,
            total,
            duration,
            timeout,
            model,
            ramp: Duration::from_secs(u64::from(*ramp_up_seconds)),
            phases: laid_phases,
            schedule,
            spec,
            front,
            drills: None,
        })
    }

    /// The same plan, its failover drill (if any) carried out by `drills`.
    pub fn with_drills(mut self, drills: Arc<dyn Drills>) -> Self {
        self.drills = Some(drills);
        self
    }
}

/// How many requests the open schedule makes due within `elapsed`, capped by the total.
fn scheduled_by(plan: &Plan, elapsed: Duration) -> u64 {
    let due = plan.schedule.as_ref().map_or(0, |s| s.due_by(elapsed));
    plan.total.map_or(due, |total| due.min(total))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A run that goes on by itself (started by [`LoadTests::start_detached`]): its latest
/// report, and how to stop it.
#[derive(Debug)]
struct Detached {
    latest: RunLoadTestResponse,
    stop: CancellationToken,
}

/// Why a detached run could not start or stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetachedError {
    /// As many detached runs as allowed are running.
    #[error("{0} load tests started this way are running, the most at once; stop one or wait")]
    TooMany(usize),
    /// No running detached run has that id.
    #[error("no load test {0:?} is running, nor among the kept finished ones")]
    NotRunning(String),
}

/// Runs load tests and keeps the finished ones; with a history, also writes every run to
/// it when it starts and when it ends.
#[derive(Debug, Clone)]
pub struct LoadTests {
    finished: Arc<Mutex<VecDeque<RunLoadTestResponse>>>,
    detached: Arc<Mutex<HashMap<String, Detached>>>,
    next_id: Arc<AtomicU64>,
    history: Option<History>,
}

impl Default for LoadTests {
    fn default() -> Self {
        Self {
            finished: Arc::default(),
            detached: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            history: None,
        }
    }
}

/// A load test's line in the history.
fn history_line(run: &RunLoadTestResponse, started_at_ms: u64) -> farm_proto::v1::RunSummary {
    let result = run.result.as_ref();
    let spec = result.and_then(|r| r.spec.as_ref());
    let name = spec.map_or_else(String::new, |s| {
        let target = if s.front_url.is_empty() {
            match s.server_ids.len() {
                1 => "1 server".to_string(),
                n => format!("{n} servers"),
            }
        } else {
            s.front_url.clone()
        };
        format!("{} {} on {target}", s.method, s.path)
    });
    let state = run.state();
    farm_history::summary(
        &run.run_id,
        farm_proto::v1::RunKind::LoadTest,
        name,
        state,
        started_at_ms,
        if run.done { farm_proto::now_ms() } else { 0 },
        result,
        (0, 0),
    )
}

impl LoadTests {
    /// Load tests written to `history` too, their ids going on from the last it holds.
    pub fn with_history(history: History) -> farm_history::Result<Self> {
        let last = history.last_run_number("lt-")?;
        Ok(Self {
            next_id: Arc::new(AtomicU64::new(last + 1)),
            history: Some(history),
            ..Self::default()
        })
    }

    /// Writes `run` to the history, if there is one.
    fn remember(&self, run: &RunLoadTestResponse, started_at_ms: u64) {
        use prost::Message;
        let Some(history) = &self.history else {
            return;
        };
        let line = history_line(run, started_at_ms);
        let report = run.encode_to_vec();
        let event = farm_history::NewEvent {
            at_ms: farm_proto::now_ms(),
            server_id: 0,
            kind: if run.done { "run_ended" } else { "run_started" }.into(),
            detail: format!("{} {}", run.run_id, line.state),
        };
        crate::recorder::write(history, "a load test", move |h| {
            h.put_run(&line, &report)?;
            h.add_events(&[event])
        });
    }

    /// A run by id: a detached run's latest report while it runs, else a finished run.
    pub fn get(&self, run_id: &str) -> Option<RunLoadTestResponse> {
        if let Some(running) = lock(&self.detached).get(run_id) {
            return Some(running.latest.clone());
        }
        lock(&self.finished)
            .iter()
            .find(|r| r.run_id == run_id)
            .cloned()
    }

    /// Starts `plan` on its own: its reports are kept for [`Self::get`], and it stops at its
    /// end, on [`Self::stop`] or on `shutdown`. At most [`MAX_DETACHED_LOAD_TESTS`] at once.
    pub fn start_detached(
        &self,
        plan: Plan,
        shutdown: &CancellationToken,
    ) -> Result<String, DetachedError> {
        let stop = shutdown.child_token();
        let (run_id, mut progress) = {
            let mut detached = lock(&self.detached);
            if detached.len() >= MAX_DETACHED_LOAD_TESTS {
                return Err(DetachedError::TooMany(MAX_DETACHED_LOAD_TESTS));
            }
            let (run_id, progress) = self.start(plan, &stop);
            // The first report comes after a second; until then the run is known as started.
            detached.insert(
                run_id.clone(),
                Detached {
                    latest: RunLoadTestResponse {
                        run_id: run_id.clone(),
                        ..RunLoadTestResponse::default()
                    },
                    stop: stop.clone(),
                },
            );
            (run_id, progress)
        };
        let (id, detached) = (run_id.clone(), self.detached.clone());
        tokio::spawn(async move {
            while let Some(report) = progress.recv().await {
                let done = report.done;
                let mut running = lock(&detached);
                if done {
                    running.remove(&report.run_id);
                    return;
                }
                if let Some(run) = running.get_mut(&report.run_id) {
                    run.latest = report;
                }
            }
            lock(&detached).remove(&id);
        });
        Ok(run_id)
    }

    /// Stops a detached run; it finishes as cancelled, and its final report is kept.
    pub fn stop(&self, run_id: &str) -> Result<(), DetachedError> {
        let running = lock(&self.detached);
        let run = running
            .get(run_id)
            .ok_or_else(|| DetachedError::NotRunning(run_id.to_string()))?;
        run.stop.cancel();
        Ok(())
    }

    /// Every kept run, oldest first.
    pub fn list(&self) -> Vec<RunLoadTestResponse> {
        lock(&self.finished).iter().cloned().collect()
    }

    /// Starts `plan`; returns its id, and the channel on which progress and then the final
    /// result arrive. Dropping the receiver cancels the run; so does `shutdown`.
    pub fn start(
        &self,
        plan: Plan,
        shutdown: &CancellationToken,
    ) -> (String, mpsc::Receiver<RunLoadTestResponse>) {
        let run_id = format!("lt-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let id = run_id.clone();
        let started_at_ms = farm_proto::now_ms();
        self.remember(
            &RunLoadTestResponse {
                run_id: run_id.clone(),
                result: Some(LoadTestResult {
                    spec: Some(plan.spec.clone()),
                    ..LoadTestResult::default()
                }),
                ..RunLoadTestResponse::default()
            },
            started_at_ms,
        );
        let (progress_tx, progress_rx) = mpsc::channel(4);
        let started = tokio::time::Instant::now();
        let run = Arc::new(Run {
            shares: Share::split(plan.total, plan.targets.len()),
            tally: Mutex::new(Tally::new(&plan)),
            cancel: shutdown.child_token(),
            started,
            deadline: started + plan.duration,
            sent: AtomicU64::new(0),
            plan: Arc::new(plan),
        });
        let plan = run.plan.clone();
        tracing::info!(%run_id, targets = plan.targets.len(), concurrency = plan.concurrency, "Load test started.");
        // One span for the run and one per phase (the ramp, then the steady part), in the
        // caller's trace; none per request.
        let run_span = tracing::info_span!(
            target: farm_telemetry::target::CONTROLLER,
            "load test",
            otel.name = %format!("load test {run_id}"),
            farm.load_test.id = %run_id,
            farm.load_test.targets = plan.targets.len(),
            farm.load_test.concurrency = plan.concurrency,
            farm.load_test.front = %plan.spec.front_url,
        );

        let workers = TaskTracker::new();
        let concurrency = plan.concurrency as usize;
        for index in 0..concurrency {
            let worker = Worker::new(
                run.clone(),
                worker::homes(index, concurrency, plan.targets.len()),
            );
            match plan.model {
                Model::Closed => workers.spawn(worker.run_closed(index)),
                Model::Open { .. } => workers.spawn(worker.run_open()),
            };
        }
        if let (Some(drill), Some(drills)) = (
            plan.front.as_ref().and_then(|f| f.drill),
            plan.drills.clone(),
        ) {
            // Tracked with the workers, so that the run ends only once its server is back.
            workers.spawn(tracing::Instrument::instrument(
                front::run_drill(drill, drills, run.clone()),
                run_span.clone(),
            ));
        }
        workers.close();

        let finished = self.finished.clone();
        let this = self.clone();
        let phases_of = run_span.clone();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let phase = |name: &str| {
                    tracing::info_span!(
                        target: farm_telemetry::target::CONTROLLER,
                        parent: &phases_of,
                        "load test phase",
                        otel.name = %name,
                    )
                };
                // The phases in order; the span of the one under way.
                let mut next_phase = 0;
                let mut current_phase = None;
                let mut enter_phases = |elapsed: Duration| {
                    while let Some(p) = plan.phases.get(next_phase).filter(|p| p.start <= elapsed) {
                        current_phase = Some(phase(&p.name));
                        next_phase += 1;
                    }
                };
                enter_phases(Duration::ZERO);
                let mut ticker = tokio::time::interval_at(
                    tokio::time::Instant::now() + PROGRESS_EVERY,
                    PROGRESS_EVERY,
                );
                loop {
                    tokio::select! {
                        _ = workers.wait() => break,
                        _ = progress_tx.closed() => {
                            run.cancel.cancel();
                            workers.wait().await;
                            break;
                        }
                        _ = run.cancel.cancelled() => {
                            workers.wait().await;
                            break;
                        }
                        _ = ticker.tick() => {
                            let elapsed = run.started.elapsed();
                            enter_phases(elapsed);
                            let result = {
                                let mut tally = lock(&run.tally);
                                tally.close_seconds(&plan, elapsed, false);
                                tally.result(&plan, elapsed)
                            };
                            let progress = RunLoadTestResponse {
                                run_id: run_id.clone(),
                                done: false,
                                result: Some(result),
                                stopped_reason: String::new(),
                            };
                            // A slow reader skips a progress report rather than stalling the run.
                            let _ = progress_tx.try_send(progress);
                        }
                    }
                }
                // Said by the token, not by the branch that ended the loop: workers stop at once
                // when the run is cancelled, so their end can come first.
                let stopped_reason = if run.cancel.is_cancelled() {
                    "cancelled".to_string()
                } else {
                    String::new()
                };
                if let (Model::Open { .. }, "") = (plan.model, stopped_reason.as_str()) {
                    // What the schedule asked for by the end, less what was sent, was held back
                    // by requests in flight.
                    let horizon = tokio::time::Instant::now().min(run.deadline) - run.started;
                    let due = scheduled_by(&plan, horizon);
                    lock(&run.tally).dropped = due.saturating_sub(run.sent.load(Ordering::Relaxed));
                }
                drop(current_phase);
                let elapsed = run.started.elapsed();
                let result = {
                    let mut tally = lock(&run.tally);
                    tally.close_seconds(&plan, elapsed, true);
                    tally.result(&plan, elapsed)
                };
                let last = RunLoadTestResponse {
                    run_id: run_id.clone(),
                    done: true,
                    result: Some(result),
                    stopped_reason,
                };
                tracing::info!(%run_id, requests = last.result.as_ref().map_or(0, |r| r.requests), "Load test finished.");
                {
                    let mut kept = lock(&finished);
                    if kept.len() >= KEPT_RUNS {
                        kept.pop_front();
                    }
                    kept.push_back(last.clone());
                }
                this.remember(&last, started_at_ms);
                let _ = progress_tx.send(last).await;
            },
            run_span,
        ));
        (id, progress_rx)
    }
}
