//! The workers that send a run's requests, built the way wrk is: each worker owns keep-alive
//! HTTP/1.1 connections ([`super::http1`]) to its own targets and uses them inside its own
//! task, so a request costs no pool checkout, no hand-off between tasks and no lock, only
//! the exchange itself.
//!
//! # Who sends what
//! The run's requests are numbered 0, 1, 2, … and spread round-robin: request *n* goes to
//! target *n* mod *T*. Target *t*'s part of the run, its [`Share`], is therefore the numbers
//! *t*, *t*+*T*, *t*+2*T*, …, claimed in order through one atomic counter, up to its budget
//! (its part of `total_requests`), so per-server counts come out exact.
//!
//! Workers are dealt over the targets ([`homes`]): with at least as many workers as
//! targets, each worker serves one target and a target is shared by ⌊*C*/*T*⌋ or ⌈*C*/*T*⌉
//! workers; with fewer, each target has one worker, which serves its targets in turn. Either
//! way there are never more than `concurrency` requests in flight.
//!
//! - Closed model: a worker sends its next request as soon as the previous one is answered.
//! - Open model: a worker claims the next request of its targets, waits until it is due on
//!   the run's schedule, sends it, and measures its latency from when it was due.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::http1::{Connection, EncodedRequest};
use super::phases::{Turn, closed_turn};
use super::tally::{Batch, Outcome, Record, Tally};
use super::{Plan, lock};
use crate::error::{Error, Result};
use crate::targets::Target;

/// A worker with more targets than this opens a connection per request instead of keeping
/// one open to each, so a run holds at most this many times `concurrency` connections.
const KEPT_CONNECTIONS_PER_WORKER: usize = 4;

/// Where one target's requests go, prepared once per run.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    /// The server's id.
    pub id: u32,
    address: String,
    request: EncodedRequest,
}

impl Endpoint {
    /// `method path` on `target`'s node. Both the path and the address are written into the
    /// request as they are: the path was validated by `targets::path` (visible ASCII, a path
    /// and query), the address is checked here, so neither can break the request's framing.
    pub(super) fn new(target: &Target, method: &Method, path: &str) -> Result<Self> {
        HeaderValue::from_str(&target.address).map_err(|_| {
            Error::Unavailable(format!(
                "server {}'s node address {:?} cannot be reached over HTTP",
                target.id, target.address
            ))
        })?;
        Ok(Self {
            id: target.id,
            address: target.address.clone(),
            request: EncodedRequest::new(method, path, &target.address),
        })
    }
}

/// One target's part of the run: how many of its requests were claimed, and its budget.
pub(super) struct Share {
    claimed: AtomicU64,
    budget: u64,
}

impl Share {
    /// The shares of `targets` targets when `total` requests (if any) are spread round-robin.
    pub(super) fn split(total: Option<u64>, targets: usize) -> Vec<Self> {
        let targets_u64 = targets as u64;
        (0..targets_u64)
            .map(|t| Self {
                claimed: AtomicU64::new(0),
                budget: total.map_or(u64::MAX, |total| {
                    total / targets_u64 + u64::from(t < total % targets_u64)
                }),
            })
            .collect()
    }

    /// Claims this target's next request: its number within the share, or `None` when the
    /// budget is spent.
    fn claim(&self) -> Option<u64> {
        let k = self.claimed.fetch_add(1, Ordering::Relaxed);
        (k < self.budget).then_some(k)
    }

    fn next(&self) -> u64 {
        self.claimed.load(Ordering::Relaxed)
    }
}

/// The targets (by index) worker `worker` of `workers` serves, out of `targets`.
pub(super) fn homes(worker: usize, workers: usize, targets: usize) -> Vec<usize> {
    if workers >= targets {
        vec![worker % targets]
    } else {
        (worker..targets).step_by(workers).collect()
    }
}

/// What the workers of one run share.
pub(super) struct Run {
    pub plan: Arc<Plan>,
    pub shares: Vec<Share>,
    pub tally: Mutex<Tally>,
    pub cancel: CancellationToken,
    pub started: tokio::time::Instant,
    pub deadline: tokio::time::Instant,
    /// Open model: requests actually sent.
    pub sent: AtomicU64,
}

/// One of a worker's targets.
struct Home {
    target: usize,
    connection: Option<Box<Connection>>,
    /// Its share is spent, or its next request falls after the end.
    done: bool,
}

/// One worker: its targets, its connections, its timer, its records not yet tallied.
pub(super) struct Worker {
    run: Arc<Run>,
    homes: Vec<Home>,
    keep_connections: bool,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Reset for every wait and every request; extending it costs no lock in tokio.
    timer: Pin<Box<Sleep>>,
    batch: Batch,
}

impl Worker {
    pub(super) fn new(run: Arc<Run>, homes: Vec<usize>) -> Self {
        let keep_connections = homes.len() <= KEPT_CONNECTIONS_PER_WORKER;
        Self {
            cancelled: Box::pin(run.cancel.clone().cancelled_owned()),
            timer: Box::pin(tokio::time::sleep_until(run.deadline)),
            homes: homes
                .into_iter()
                .map(|target| Home {
                    target,
                    connection: None,
                    done: false,
                })
                .collect(),
            keep_connections,
            batch: Batch::new(),
            run,
        }
    }

    /// Closed model, as worker `index`: sends request after request while the run's phase
    /// (and ramp) give it a turn, until the shares of its targets are spent, the time is
    /// up, or the run is cancelled.
    pub(super) async fn run_closed(mut self, index: usize) {
        let run = self.run.clone();
        let plan = &run.plan;
        let workers = plan.concurrency as usize;
        let mut turn = 0;
        loop {
            match closed_turn(
                &plan.phases,
                plan.ramp,
                index,
                workers,
                run.started.elapsed(),
            ) {
                Turn::Now => {}
                Turn::Never => break,
                Turn::From(at) => {
                    let at = run.started + at;
                    if at >= run.deadline || !self.wait_until(at).await {
                        break;
                    }
                    continue;
                }
            }
            let Some(home) = self.next_in_turn(&mut turn) else {
                break;
            };
            let target = self.homes[home].target;
            if run.shares[target].claim().is_none() {
                self.homes[home].done = true;
                continue;
            }
            let sent = Instant::now();
            let Some(outcome) = self.send(home).await else {
                break;
            };
            let answered = Instant::now();
            let latency = answered - sent;
            self.record(target, outcome, latency, latency, answered);
        }
        self.flush();
    }

    /// Open model: claims its targets' requests in the run's order, sends each when it is
    /// due on the run's schedule, and measures from then.
    pub(super) async fn run_open(mut self) {
        let run = self.run.clone();
        let Some(schedule) = run.plan.schedule.as_ref() else {
            return;
        };
        let targets = run.plan.targets.len() as u64;
        while let Some(home) = self.first_due(targets) {
            let target = self.homes[home].target;
            let Some(k) = run.shares[target].claim() else {
                self.homes[home].done = true;
                continue;
            };
            let n = k.saturating_mul(targets).saturating_add(target as u64);
            let due = schedule
                .due_at(n)
                .and_then(|d| run.started.checked_add(d))
                .filter(|due| *due < run.deadline);
            let Some(due) = due else {
                // Its later requests are due later still.
                self.homes[home].done = true;
                continue;
            };
            if !self.wait_until(due).await || tokio::time::Instant::now() >= run.deadline {
                break;
            }
            run.sent.fetch_add(1, Ordering::Relaxed);
            let sent = Instant::now();
            let Some(outcome) = self.send(home).await else {
                break;
            };
            let answered = Instant::now();
            let corrected = answered.saturating_duration_since(due.into_std());
            self.record(target, outcome, corrected, answered - sent, answered);
        }
        self.flush();
    }

    /// The next live home after `turn`, round-robin.
    fn next_in_turn(&self, turn: &mut usize) -> Option<usize> {
        let count = self.homes.len();
        let home = (0..count)
            .map(|i| (*turn + i) % count)
            .find(|&h| !self.homes[h].done)?;
        *turn = home + 1;
        Some(home)
    }

    /// The live home whose next request comes first in the run's round-robin order.
    fn first_due(&self, targets: u64) -> Option<usize> {
        (0..self.homes.len())
            .filter(|&h| !self.homes[h].done)
            .min_by_key(|&h| {
                let target = self.homes[h].target;
                let next = self.run.shares[target].next();
                next.saturating_mul(targets).saturating_add(target as u64)
            })
    }

    /// Waits until `at`; false if the run was cancelled meanwhile.
    async fn wait_until(&mut self, at: tokio::time::Instant) -> bool {
        let now = tokio::time::Instant::now();
        if at <= now {
            return !self.run.cancel.is_cancelled();
        }
        if at - now > Batch::MAX_AGE && !self.batch.is_empty() {
            // A long wait would hold these records back from the per-second figures.
            self.flush();
        }
        self.timer.as_mut().reset(at);
        tokio::select! {
            biased;
            () = &mut self.cancelled => false,
            () = &mut self.timer => true,
        }
    }

    /// Sends one request to `home`'s target; `None` when the run ended first (cancelled, or
    /// out of time), which counts for nothing.
    async fn send(&mut self, home: usize) -> Option<Outcome> {
        let run = &*self.run;
        let now = tokio::time::Instant::now();
        if now >= run.deadline {
            return None;
        }
        self.timer
            .as_mut()
            .reset((now + run.plan.timeout).min(run.deadline));
        let home = &mut self.homes[home];
        let endpoint = &run.plan.targets[home.target];
        let kept = home.connection.take();
        let keep = self.keep_connections;
        let slot = &mut home.connection;
        let exchange = async {
            let connection = match kept {
                Some(connection) => connection,
                None => Connection::open(&endpoint.address).await?,
            };
            let (outcome, connection) = connection.exchange(&endpoint.request).await;
            if keep {
                *slot = connection;
            }
            outcome
        };
        tokio::select! {
            biased;
            () = &mut self.cancelled => None,
            outcome = exchange => Some(outcome),
            () = &mut self.timer => {
                (tokio::time::Instant::now() < run.deadline).then_some(Err("timeout"))
            }
        }
    }

    fn record(
        &mut self,
        target: usize,
        outcome: Outcome,
        latency: Duration,
        uncorrected: Duration,
        answered: Instant,
    ) {
        let record = Record {
            target,
            outcome,
            latency,
            uncorrected,
            at: answered.saturating_duration_since(self.run.started.into_std()),
        };
        if self.batch.push(record, answered) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.batch
            .flush_into(&mut lock(&self.run.tally), &self.run.plan);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_a_worker_and_no_worker_is_idle() {
        for (workers, targets) in [(1, 1), (64, 1), (10, 50), (50, 10), (7, 3), (3, 7)] {
            let all: Vec<Vec<usize>> = (0..workers).map(|w| homes(w, workers, targets)).collect();
            assert!(all.iter().all(|h| !h.is_empty()), "{workers}/{targets}");
            let mut served: Vec<usize> = all.concat();
            served.sort_unstable();
            served.dedup();
            assert_eq!(
                served,
                (0..targets).collect::<Vec<_>>(),
                "{workers}/{targets}"
            );
            if workers < targets {
                assert_eq!(all.concat().len(), targets, "one worker per target");
            }
        }
    }

    #[test]
    fn shares_split_a_total_exactly_and_round_robin() {
        let shares = Share::split(Some(10), 3);
        let budgets: Vec<u64> = shares.iter().map(|s| s.budget).collect();
        assert_eq!(budgets, [4, 3, 3]);
        assert_eq!(shares[1].claim(), Some(0));
        assert_eq!(shares[1].claim(), Some(1));
        assert_eq!(shares[1].claim(), Some(2));
        assert_eq!(shares[1].claim(), None);
        assert!(Share::split(None, 2).iter().all(|s| s.budget == u64::MAX));
    }
}
