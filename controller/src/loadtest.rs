//! Load tests against servers of this farm, closed model: `concurrency` workers, each sending
//! its next request as soon as the previous one is answered, spread round-robin over the
//! targets, until a total is sent, a duration has passed, or the run is cancelled.
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
        Ok(Self {
            targets: targets::resolve(registry, server_ids, "spec.server_ids")?,
            method: targets::method(method, "spec.method")?,
            path: targets::path(path, "spec.path")?,
            concurrency,
            total,
            duration: Duration::from_secs(u64::from(duration_seconds)),
            timeout: targets::millis(*timeout_ms, 10_000, MAX_TIMEOUT_MS, "spec.timeout_ms")?,
        })
    }
}

/// What a run has measured so far.
struct Tally {
    started: Instant,
    latency: Histogram<u64>,
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

    fn record(
        &mut self,
        server: u32,
        outcome: std::result::Result<u16, &'static str>,
        latency: Duration,
    ) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_TRACKED_US);
        self.requests += 1;
        let failed = match outcome {
            Ok(status) => {
                *self.statuses.entry(status).or_default() += 1;
                self.latency.saturating_record(micros);
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

    fn result(&self) -> LoadTestResult {
        let elapsed = self.started.elapsed().as_secs_f64();
        LoadTestResult {
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

        for _ in 0..plan.concurrency {
            let (plan, tally, cancel, issued, client) = (
                plan.clone(),
                tally.clone(),
                cancel.clone(),
                issued.clone(),
                self.client.clone(),
            );
            workers.spawn(async move {
                loop {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if plan.total.is_some_and(|total| n >= total) {
                        return;
                    }
                    let target = &plan.targets[(n % plan.targets.len() as u64) as usize];
                    let sent = Instant::now();
                    let request = client.request(
                        plan.method.clone(),
                        &target.address,
                        &plan.path,
                        None,
                        plan.timeout,
                        0,
                    );
                    let outcome = tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep_until(deadline) => return,
                        reply = request => reply.map(|r| r.status).map_err(|e: ClientError| e.kind()),
                    };
                    lock(&tally).record(target.id, outcome, sent.elapsed());
                }
            });
        }
        workers.close();

        let finished = self.finished.clone();
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
                            result: Some(lock(&tally).result()),
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
                result: Some(lock(&tally).result()),
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
