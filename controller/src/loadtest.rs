//! Load tests against servers of this farm, measured the way wrk2 and vegeta do.
//!
//! Two models, both spreading requests round-robin over the targets until a total is sent, a
//! duration has passed, or the run is cancelled:
//! - closed: `concurrency` workers, each sending its next request as soon as the previous one
//!   is answered (throughput follows the servers);
//! - open: a constant arrival rate. Request *i* is due at a fixed time on a schedule; it waits
//!   for one of `concurrency` slots, and its latency is measured from when it was *due*, so a
//!   stall that holds back the requests behind it shows in the figures instead of silently
//!   lowering the rate (coordinated omission). The latency from the actual send is kept
//!   beside it, uncorrected, to show the difference.
//!
//! An optional ramp raises the rate (open) or starts the workers (closed) linearly.
//!
//! Latencies go into HDR histograms (microseconds, 1 µs to 60 s), one for the run at three
//! significant digits and one per server at two (a thousand targets must not cost a
//! gigabyte). Progress is reported about once a second; finished runs are kept, the last
//! [`KEPT_RUNS`], to be fetched by id.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use farm_node::client::{ClientError, NodeClient};
use farm_proto::v1::{
    ErrorCount, LatencySummary, LoadTestResult, LoadTestSpec, RunLoadTestResponse,
    ServerLoadResult, StatusCount,
};
use hdrhistogram::Histogram;
use http::Method;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::targets::{self, Target};

/// Most concurrent workers.
pub const MAX_CONCURRENCY: u32 = 1000;
/// Most requests in one run.
pub const MAX_TOTAL_REQUESTS: u64 = 10_000_000;
/// Highest open-model rate, in requests per second.
pub const MAX_RATE_PER_SECOND: f64 = 1_000_000.0;
/// Longest run, in seconds.
pub const MAX_DURATION_SECONDS: u32 = 3600;
/// Longest per-request timeout, in milliseconds.
pub const MAX_TIMEOUT_MS: u32 = 60_000;
/// Finished runs kept for fetching by id.
pub const KEPT_RUNS: usize = 20;
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Highest latency the histograms track, in microseconds (60 s).
const MAX_TRACKED_US: u64 = 60_000_000;

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
    targets: Vec<Target>,
    method: Method,
    path: String,
    concurrency: u32,
    total: Option<u64>,
    duration: Duration,
    timeout: Duration,
    model: Model,
    ramp: Duration,
    /// The spec with defaults applied, reported with the result.
    spec: LoadTestSpec,
}

impl Plan {
    /// Validates `spec` against the farm in `registry`; the error names the field.
    pub fn new(spec: &LoadTestSpec, registry: &Registry) -> Result<Self> {
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
        } = spec;
        let concurrency = match *concurrency {
            0 => 10,
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
        let method = targets::method(method, "spec.method")?;
        let path = targets::path(path, "spec.path")?;
        let timeout = targets::millis(*timeout_ms, 10_000, MAX_TIMEOUT_MS, "spec.timeout_ms")?;
        let targets = targets::resolve(registry, server_ids, "spec.server_ids")?;
        let spec = LoadTestSpec {
            server_ids: targets.iter().map(|t| t.id).collect(),
            path: path.clone(),
            method: method.to_string(),
            concurrency,
            total_requests: *total_requests,
            duration_seconds,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            rate_per_second: *rate_per_second,
            ramp_up_seconds: *ramp_up_seconds,
        };
        Ok(Self {
            targets,
            method,
            path,
            concurrency,
            total,
            duration: Duration::from_secs(u64::from(duration_seconds)),
            timeout,
            model,
            ramp: Duration::from_secs(u64::from(*ramp_up_seconds)),
            spec,
        })
    }
}

/// What a run has measured so far.
struct Tally {
    started: Instant,
    /// Latency from when each request was due (open model) or sent (closed model).
    latency: Histogram<u64>,
    /// Open model: latency from when each request was actually sent.
    uncorrected: Histogram<u64>,
    /// Open model: requests due before the end that were never sent.
    dropped: u64,
    per_server: BTreeMap<u32, ServerTally>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    requests: u64,
    failures: u64,
}

struct ServerTally {
    requests: u64,
    failures: u64,
    latency: Histogram<u64>,
}

fn histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, significant_digits)
        .expect("static histogram bounds are valid")
}

impl Tally {
    fn new(targets: &[Target]) -> Self {
        Self {
            started: Instant::now(),
            latency: histogram(3),
            uncorrected: histogram(3),
            dropped: 0,
            per_server: targets
                .iter()
                .map(|t| {
                    (
                        t.id,
                        ServerTally {
                            requests: 0,
                            failures: 0,
                            latency: histogram(2),
                        },
                    )
                })
                .collect(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            requests: 0,
            failures: 0,
        }
    }

    /// Records one request: `latency` from when it was due, `uncorrected` from when it was
    /// sent (the same in the closed model).
    fn record(
        &mut self,
        server: u32,
        outcome: std::result::Result<u16, &'static str>,
        latency: Duration,
        uncorrected: Duration,
    ) {
        let micros = to_micros(latency);
        self.requests += 1;
        let failed = match outcome {
            Ok(status) => {
                *self.statuses.entry(status).or_default() += 1;
                self.latency.saturating_record(micros);
                self.uncorrected.saturating_record(to_micros(uncorrected));
                status >= 500
            }
            Err(kind) => {
                *self.errors.entry(kind).or_default() += 1;
                true
            }
        };
        if failed {
            self.failures += 1;
        }
        if let Some(s) = self.per_server.get_mut(&server) {
            s.requests += 1;
            if failed {
                s.failures += 1;
            }
            if outcome.is_ok() {
                s.latency.saturating_record(micros);
            }
        }
    }

    fn result(&self, plan: &Plan) -> LoadTestResult {
        let elapsed = self.started.elapsed().as_secs_f64();
        let open_rate = match plan.model {
            Model::Open { rate } => Some(rate),
            Model::Closed => None,
        };
        LoadTestResult {
            latency_uncorrected: open_rate.map(|_| summary(&self.uncorrected)),
            target_rate: open_rate.unwrap_or(0.0),
            dropped: self.dropped,
            spec: Some(plan.spec.clone()),
            requests: self.requests,
            successes: self.requests - self.failures,
            failures: self.failures,
            elapsed_seconds: elapsed,
            requests_per_second: if elapsed > 0.0 {
                self.requests as f64 / elapsed
            } else {
                0.0
            },
            latency: Some(summary(&self.latency)),
            status_codes: self
                .statuses
                .iter()
                .map(|(&code, &count)| StatusCount {
                    code: u32::from(code),
                    count,
                })
                .collect(),
            errors: self
                .errors
                .iter()
                .map(|(&kind, &count)| ErrorCount {
                    kind: kind.to_string(),
                    count,
                })
                .collect(),
            per_server: self
                .per_server
                .iter()
                .map(|(&server_id, s)| ServerLoadResult {
                    server_id,
                    requests: s.requests,
                    failures: s.failures,
                    latency: Some(summary(&s.latency)),
                })
                .collect(),
        }
    }
}

fn to_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TRACKED_US)
}

/// When request `n` (from 0) is due, after the run's start, at `rate` per second with a linear
/// ramp from zero over `ramp`: during the ramp n(t) = rate·t²/(2·ramp), after it the rate is
/// constant. `None` when that lies beyond what a `Duration` holds (a vanishingly small rate):
/// such a request is never due within any run.
fn due_at(n: u64, rate: f64, ramp: Duration) -> Option<Duration> {
    let n = n as f64;
    let ramp_s = ramp.as_secs_f64();
    let ramp_requests = rate * ramp_s / 2.0;
    let seconds = if n < ramp_requests {
        (2.0 * n * ramp_s / rate).sqrt()
    } else {
        ramp_s + (n - ramp_requests) / rate
    };
    Duration::try_from_secs_f64(seconds).ok()
}

fn summary(h: &Histogram<u64>) -> LatencySummary {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
    }
}

/// Claims the next request number, or `None` when the total is reached.
fn next_request(plan: &Plan, issued: &AtomicU64) -> Option<u64> {
    let n = issued.fetch_add(1, Ordering::Relaxed);
    if plan.total.is_some_and(|total| n >= total) {
        return None;
    }
    Some(n)
}

/// Request `n`'s server: round-robin over the targets.
fn target_of(plan: &Plan, n: u64) -> &Target {
    &plan.targets[(n % plan.targets.len() as u64) as usize]
}

/// How many requests the open schedule makes due within `elapsed`, capped by the total.
fn scheduled_by(plan: &Plan, rate: f64, elapsed: Duration) -> u64 {
    let t = elapsed.as_secs_f64();
    let ramp = plan.ramp.as_secs_f64();
    let due = if t < ramp {
        rate * t * t / (2.0 * ramp)
    } else {
        rate * ramp / 2.0 + rate * (t - ramp)
    };
    let due = due.floor() as u64;
    plan.total.map_or(due, |total| due.min(total))
}

/// Sends request `n`; `None` when the run was cancelled or its time ran out meanwhile.
async fn send(
    client: &NodeClient,
    plan: &Plan,
    n: u64,
    cancel: &CancellationToken,
    deadline: tokio::time::Instant,
) -> Option<std::result::Result<u16, &'static str>> {
    let target = target_of(plan, n);
    let request = client.request(
        plan.method.clone(),
        &target.address,
        &plan.path,
        None,
        plan.timeout,
        0,
    );
    tokio::select! {
        _ = cancel.cancelled() => None,
        _ = tokio::time::sleep_until(deadline) => None,
        reply = request => Some(reply.map(|r| r.status).map_err(|e: ClientError| e.kind())),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs load tests and keeps the finished ones.
#[derive(Debug, Clone)]
pub struct LoadTests {
    client: NodeClient,
    finished: Arc<Mutex<VecDeque<RunLoadTestResponse>>>,
    next_id: Arc<AtomicU64>,
}

impl Default for LoadTests {
    fn default() -> Self {
        Self {
            client: NodeClient::new(),
            finished: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl LoadTests {
    /// A finished run by id.
    pub fn get(&self, run_id: &str) -> Option<RunLoadTestResponse> {
        lock(&self.finished)
            .iter()
            .find(|r| r.run_id == run_id)
            .cloned()
    }

    /// Every kept run, oldest first.
    pub fn list(&self) -> Vec<RunLoadTestResponse> {
        lock(&self.finished).iter().cloned().collect()
    }

    /// Starts `plan`; progress and then the final result arrive on the returned channel.
    /// Dropping the receiver cancels the run; so does `shutdown`.
    pub fn start(
        &self,
        plan: Plan,
        shutdown: &CancellationToken,
    ) -> mpsc::Receiver<RunLoadTestResponse> {
        let run_id = format!("lt-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (progress_tx, progress_rx) = mpsc::channel(4);
        let tally = Arc::new(Mutex::new(Tally::new(&plan.targets)));
        let cancel = shutdown.child_token();
        let workers = TaskTracker::new();
        let issued = Arc::new(AtomicU64::new(0));
        let deadline = tokio::time::Instant::now() + plan.duration;
        let plan = Arc::new(plan);
        tracing::info!(%run_id, targets = plan.targets.len(), concurrency = plan.concurrency, "Load test started.");

        let started = tokio::time::Instant::now();
        match plan.model {
            Model::Closed => {
                for worker in 0..plan.concurrency {
                    let delay = plan
                        .ramp
                        .mul_f64(f64::from(worker) / f64::from(plan.concurrency));
                    let (plan, tally, cancel, issued, client) = (
                        plan.clone(),
                        tally.clone(),
                        cancel.clone(),
                        issued.clone(),
                        self.client.clone(),
                    );
                    workers.spawn(async move {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep_until(started + delay) => {}
                        }
                        while let Some(n) = next_request(&plan, &issued) {
                            let sent = Instant::now();
                            let Some(outcome) = send(&client, &plan, n, &cancel, deadline).await
                            else {
                                return;
                            };
                            let latency = sent.elapsed();
                            lock(&tally).record(target_of(&plan, n).id, outcome, latency, latency);
                        }
                    });
                }
            }
            Model::Open { rate } => {
                let slots = Arc::new(tokio::sync::Semaphore::new(plan.concurrency as usize));
                let (plan, tally, cancel, client, tracker) = (
                    plan.clone(),
                    tally.clone(),
                    cancel.clone(),
                    self.client.clone(),
                    workers.clone(),
                );
                workers.spawn(async move {
                    while let Some(n) = next_request(&plan, &issued) {
                        let due = due_at(n, rate, plan.ramp).and_then(|d| started.checked_add(d));
                        let Some(due) = due.filter(|due| *due < deadline) else {
                            break;
                        };
                        let permit = tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep_until(deadline) => break,
                            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                        };
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep_until(due) => {}
                        }
                        let (plan, tally, cancel, client) =
                            (plan.clone(), tally.clone(), cancel.clone(), client.clone());
                        tracker.spawn(async move {
                            let sent = Instant::now();
                            let outcome = send(&client, &plan, n, &cancel, deadline).await;
                            drop(permit);
                            if let Some(outcome) = outcome {
                                let done = Instant::now();
                                let corrected = done.saturating_duration_since(due.into_std());
                                lock(&tally).record(target_of(&plan, n).id, outcome, corrected, done - sent);
                            }
                        });
                    }
                    // What the schedule asked for by the end, less what was sent, was held back
                    // by requests in flight.
                    let due_by_end = scheduled_by(&plan, rate, deadline.saturating_duration_since(started));
                    let sent = issued.load(Ordering::Relaxed).min(due_by_end);
                    lock(&tally).dropped = due_by_end.saturating_sub(sent);
                });
            }
        }
        workers.close();

        let finished = self.finished.clone();
        let plan = plan.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(
                tokio::time::Instant::now() + PROGRESS_EVERY,
                PROGRESS_EVERY,
            );
            let mut stopped_reason = String::new();
            loop {
                tokio::select! {
                    _ = workers.wait() => break,
                    _ = progress_tx.closed() => {
                        stopped_reason = "cancelled".into();
                        cancel.cancel();
                        workers.wait().await;
                        break;
                    }
                    _ = cancel.cancelled() => {
                        stopped_reason = "cancelled".into();
                        workers.wait().await;
                        break;
                    }
                    _ = ticker.tick() => {
                        let progress = RunLoadTestResponse {
                            run_id: run_id.clone(),
                            done: false,
                            result: Some(lock(&tally).result(&plan)),
                            stopped_reason: String::new(),
                        };
                        // A slow reader skips a progress report rather than stalling the run.
                        let _ = progress_tx.try_send(progress);
                    }
                }
            }
            let last = RunLoadTestResponse {
                run_id: run_id.clone(),
                done: true,
                result: Some(lock(&tally).result(&plan)),
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
            let _ = progress_tx.send(last).await;
        });
        progress_rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_due_on_a_steady_schedule_after_the_ramp() {
        let ms = |d: Option<Duration>| d.unwrap().as_secs_f64() * 1000.0;
        assert_eq!(ms(due_at(0, 100.0, Duration::ZERO)), 0.0);
        assert!((ms(due_at(50, 100.0, Duration::ZERO)) - 500.0).abs() < 1e-9);
        // A 2 s ramp to 100/s makes 100 requests due in its course, the 100th at 2 s.
        assert!((ms(due_at(100, 100.0, Duration::from_secs(2))) - 2000.0).abs() < 1e-6);
        assert!((ms(due_at(25, 100.0, Duration::from_secs(2))) - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn a_vanishing_rate_is_never_due_and_does_not_panic() {
        assert_eq!(due_at(5, 1e-300, Duration::ZERO), None);
        assert_eq!(
            due_at(u64::MAX, f64::MIN_POSITIVE, Duration::from_secs(1)),
            None
        );
    }
}
