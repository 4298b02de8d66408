//! What a run has measured: HDR histograms, status and error counts, a per-server breakdown.
//!
//! Workers do not lock the tally per request: each keeps a [`Batch`] of records and adds it
//! in one go when it is full or a few tens of milliseconds old, so that the lock is taken
//! hundreds of times less often and progress reports lag by at most [`Batch::MAX_AGE`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use farm_proto::v1::{
    ErrorCount, LatencySummary, LoadSecond, LoadTestResult, PhaseResult, ServerLoadResult,
    StatusCount,
};
use hdrhistogram::Histogram;

use super::front::FrontTally;
use super::{Model, Plan};

/// Highest latency the histograms track, in microseconds (60 s).
const MAX_TRACKED_US: u64 = 60_000_000;

/// How one request ended: its answer, or the kind of failure (`connect`, `timeout`, `io`).
pub type Outcome = Result<Answer, &'static str>;

/// An answer's status, and the server its [`SERVER_HEADER`](farm_node_api::SERVER_HEADER)
/// names (what a run through a front attributes it to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The server that gave it, if the answer says.
    pub server: Option<u32>,
}

/// One request, as a worker saw it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Record {
    /// The target's index in the plan.
    pub target: usize,
    pub outcome: Outcome,
    /// From when the request was due (open model) or sent (closed model) to its answer.
    pub latency: Duration,
    /// From when it was actually sent to its answer.
    pub uncorrected: Duration,
    /// When it was answered (or failed), since the run's start.
    pub at: Duration,
}

/// A worker's records not yet added to the tally.
pub(super) struct Batch {
    records: Vec<Record>,
    since: Instant,
}

impl Batch {
    /// Most records a worker holds back.
    const CAPACITY: usize = 256;
    /// Longest a record is held back from progress reports, unless its worker is busy with a
    /// request (then up to the request's timeout).
    pub(super) const MAX_AGE: Duration = Duration::from_millis(50);

    pub(super) fn new() -> Self {
        Self {
            records: Vec::with_capacity(Self::CAPACITY),
            since: Instant::now(),
        }
    }

    /// Adds `record`, answered at `now`; true when the batch should be flushed.
    pub(super) fn push(&mut self, record: Record, now: Instant) -> bool {
        if self.records.is_empty() {
            self.since = now;
        }
        self.records.push(record);
        self.records.len() >= Self::CAPACITY || now.duration_since(self.since) >= Self::MAX_AGE
    }

    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Empties the batch into `tally`.
    pub(super) fn flush_into(&mut self, tally: &mut Tally, plan: &Plan) {
        for record in self.records.drain(..) {
            tally.record(record, plan);
        }
    }
}

/// What a run has measured so far.
pub(super) struct Tally {
    /// Latency from when each request was due (open model) or sent (closed model).
    latency: Histogram<u64>,
    /// Open model: latency from when each request was actually sent.
    uncorrected: Histogram<u64>,
    /// Open model: requests due before the end that were never sent.
    pub dropped: u64,
    /// By target index.
    per_server: Vec<ServerTally>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    requests: u64,
    failures: u64,
    /// Runs through a front: the figures by the server that answered.
    pub front: Option<FrontTally>,
    /// Second by second.
    seconds: Seconds,
    /// Phase by phase, in the plan's order.
    phases: Vec<PhaseTally>,
}

/// One phase's figures.
struct PhaseTally {
    requests: u64,
    failures: u64,
    latency: Histogram<u64>,
}

/// The per-second timeline. A second stays open, with a histogram of its own, while records
/// may still arrive for it (a worker holds records back for at most a request's timeout);
/// then it is closed into its figures and its histogram dropped, so a run of an hour keeps
/// an hour of small entries and only the last few histograms.
struct Seconds {
    closed: Vec<LoadSecond>,
    /// Seconds `closed.len()`, `closed.len() + 1`, … in order.
    open: VecDeque<OpenSecond>,
}

struct OpenSecond {
    requests: u64,
    failures: u64,
    latency: Histogram<u64>,
}

impl Seconds {
    fn record(&mut self, at: Duration, failed: bool, micros: Option<u64>) {
        let second = usize::try_from(at.as_secs()).unwrap_or(usize::MAX);
        if let Some(closed) = self.closed.get_mut(second) {
            // Late for a closed second: counted, its percentiles stay as they were.
            closed.requests += 1;
            closed.failures += u64::from(failed);
            return;
        }
        let index = second - self.closed.len();
        while self.open.len() <= index {
            self.open.push_back(OpenSecond {
                requests: 0,
                failures: 0,
                latency: histogram(2),
            });
        }
        let open = &mut self.open[index];
        open.requests += 1;
        open.failures += u64::from(failed);
        if let Some(micros) = micros {
            open.latency.saturating_record(micros);
        }
    }

    /// Closes every second that ends before `before`.
    fn close_before(&mut self, before: Duration) {
        while (self.closed.len() as u64 + 1) * 1000 <= before.as_millis() as u64 {
            let Some(open) = self.open.pop_front() else {
                // A second in which nothing ended.
                let second = self.closed.len() as u32;
                self.closed.push(LoadSecond {
                    second,
                    ..LoadSecond::default()
                });
                continue;
            };
            let second = self.closed.len() as u32;
            self.closed.push(open.figures(second, false));
        }
    }

    fn timeline(&self) -> Vec<LoadSecond> {
        let first_open = self.closed.len() as u32;
        self.closed
            .iter()
            .cloned()
            .chain(
                self.open
                    .iter()
                    .zip(first_open..)
                    .map(|(open, second)| open.figures(second, true)),
            )
            .collect()
    }
}

impl OpenSecond {
    fn figures(&self, second: u32, provisional: bool) -> LoadSecond {
        let summary = summary(&self.latency);
        LoadSecond {
            second,
            requests: self.requests,
            failures: self.failures,
            p50_ms: summary.p50_ms,
            p90_ms: summary.p90_ms,
            p99_ms: summary.p99_ms,
            max_ms: summary.max_ms,
            provisional,
        }
    }
}

struct ServerTally {
    id: u32,
    requests: u64,
    failures: u64,
    latency: Histogram<u64>,
}

pub(super) fn histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, significant_digits)
        .expect("static histogram bounds are valid")
}

pub(super) fn to_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TRACKED_US)
}

impl Tally {
    /// An empty tally for `plan`'s targets: one histogram for the run at three significant
    /// digits, one per server at two (a thousand targets must not cost a gigabyte). A run
    /// through a front counts by the server that answered instead of by target.
    pub(super) fn new(plan: &Plan) -> Self {
        let front = plan.front.as_ref().map(FrontTally::new);
        Self {
            front,
            latency: histogram(3),
            uncorrected: histogram(3),
            dropped: 0,
            per_server: plan
                .targets
                .iter()
                .filter(|_| plan.front.is_none())
                .map(|t| ServerTally {
                    id: t.id,
                    requests: 0,
                    failures: 0,
                    latency: histogram(2),
                })
                .collect(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            requests: 0,
            failures: 0,
            seconds: Seconds {
                closed: Vec::new(),
                open: VecDeque::new(),
            },
            phases: plan
                .phases
                .iter()
                .map(|_| PhaseTally {
                    requests: 0,
                    failures: 0,
                    latency: histogram(2),
                })
                .collect(),
        }
    }

    /// Closes the seconds no record can still arrive for, `elapsed` into the run: records
    /// reach the tally at most a request's timeout (plus a batch's age) after they end.
    pub(super) fn close_seconds(&mut self, plan: &Plan, elapsed: Duration, finished: bool) {
        if finished {
            // Every second the run lasted, and any later one a request still ended in.
            self.seconds
                .close_before(Duration::from_secs(elapsed.as_secs()));
            let open = self.seconds.open.len() as u64;
            let through = self.seconds.closed.len() as u64 + open;
            self.seconds.close_before(Duration::from_secs(through));
        } else {
            self.seconds
                .close_before(elapsed.saturating_sub(plan.timeout + Duration::from_secs(1)));
        }
    }

    fn record(&mut self, record: Record, plan: &Plan) {
        let micros = to_micros(record.latency);
        self.requests += 1;
        let failed = match record.outcome {
            Ok(Answer { status, .. }) => {
                *self.statuses.entry(status).or_default() += 1;
                self.latency.saturating_record(micros);
                self.uncorrected
                    .saturating_record(to_micros(record.uncorrected));
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
        let answered = record.outcome.is_ok().then_some(micros);
        self.seconds.record(record.at, failed, answered);
        // The phase it ended in; one that ends after the last phase counts in the last.
        let phase = plan
            .phases
            .iter()
            .position(|p| record.at < p.end)
            .unwrap_or(plan.phases.len().saturating_sub(1));
        if let Some(p) = self.phases.get_mut(phase) {
            p.requests += 1;
            p.failures += u64::from(failed);
            if let Some(micros) = answered {
                p.latency.saturating_record(micros);
            }
        }
        if let Some(front) = self.front.as_mut() {
            front.record(&record, failed);
        }
        if let Some(s) = self.per_server.get_mut(record.target) {
            s.requests += 1;
            if failed {
                s.failures += 1;
            }
            if record.outcome.is_ok() {
                s.latency.saturating_record(micros);
            }
        }
    }

    /// The figures so far, `elapsed` into the run.
    pub(super) fn result(&self, plan: &Plan, elapsed: Duration) -> LoadTestResult {
        let phases = plan
            .phases
            .iter()
            .zip(&self.phases)
            .map(|(phase, tally)| {
                let lasted = elapsed.min(phase.end).saturating_sub(phase.start);
                PhaseResult {
                    name: phase.name.clone(),
                    start_ms: millis(phase.start),
                    end_ms: millis(phase.end),
                    requests: tally.requests,
                    failures: tally.failures,
                    requests_per_second: if lasted.is_zero() {
                        0.0
                    } else {
                        tally.requests as f64 / lasted.as_secs_f64()
                    },
                    latency: Some(summary(&tally.latency)),
                }
            })
            .collect();
        let elapsed = elapsed.as_secs_f64();
        let open_rate = match plan.model {
            Model::Open { rate } => Some(rate),
            Model::Closed => None,
        };
        LoadTestResult {
            latency_uncorrected: open_rate.map(|_| summary(&self.uncorrected)),
            target_rate: open_rate.unwrap_or(0.0),
            dropped: self.dropped,
            spec: Some(plan.spec.clone()),
            front: self
                .front
                .as_ref()
                .zip(plan.front.as_ref())
                .map(|(tally, front)| tally.result(front)),
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
                .map(|s| ServerLoadResult {
                    server_id: s.id,
                    requests: s.requests,
                    failures: s.failures,
                    latency: Some(summary(&s.latency)),
                })
                .collect(),
            timeline: self.seconds.timeline(),
            phases,
        }
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

pub(super) fn summary(h: &Histogram<u64>) -> LatencySummary {
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
