//! The node's fault engine: what a node does wrong on purpose, to which requests.
//!
//! The farm exists to watch servers misbehave: a load balancer that must route around a slow
//! node, a health check that must notice a failing one, a client that must retry a reset. The
//! node's agent hands it a [`FaultProfile`] over a private channel ([`channel`]), and a client
//! allowed to may ask for faults on its own request with headers ([`farm_node_api::api`]'s
//! `FAULT_*_HEADER`). This module turns both into a [`Plan`] per request; the connection
//! service (`crate::server`) carries it out around the answer, in this order:
//!
//! connection (close or reset) → rate limit → abort → hang → latency → serve → throughput.
//!
//! A fault that ends the request (the first four) spares the later ones their draws.
//!
//! # Scope and decisions
//!
//! The general faults (latency, abort, hang, throughput, connection, rate limit) apply to the
//! requests whose path starts with their `when.path_prefix` (every path without one), but never
//! to the routes the farm watches a node by ([`WATCHED_ROUTES`]): a slowed node still reports.
//! Those routes have their own faults: health (`GET /health` answers an error status) and
//! readiness (`GET /ready` answers 503).
//!
//! Each fault counts the requests in its scope from 0, from the moment its profile is set, and
//! decides for the `n`-th from draws that are a pure function of its seed and `n` ([`draw`]):
//! given the same seed, every node makes the same sequence of decisions for its requests in the
//! order they arrive, and the request path takes no lock. A fault with `remaining_ms` is gone
//! once that much time has passed since its line was received.
//!
//! # Cost
//!
//! A node with no fault set and header faults off pays one relaxed atomic load per request
//! ([`Faults::idle`]); `GET /health` is benchmarked against nginx. Past that load, a connection
//! keeps its own reference to the profile in force and takes the lock that guards it only when
//! the profile has changed since its last request.

mod channel;
mod draw;
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use farm_node_api::api::{
    FAULT_ABORT_HEADER, FAULT_DELAY_HEADER, FAULT_PERCENT_HEADER, FAULT_THROUGHPUT_HEADER,
};
use farm_node_api::faults::WATCHED_ROUTES;
use farm_node_api::faults::{ConnectionFaultMode, FaultProfile, FaultWhen, LatencyShape};
use farm_proto::limits::{
    MAX_FAULT_DELAY_MS, MAX_FAULT_STATUS, MAX_THROUGHPUT_BYTES_PER_SECOND, MIN_FAULT_STATUS,
};
use http::{HeaderMap, HeaderName, Method, StatusCode};

pub(crate) use channel::spawn as spawn_channel;
pub(crate) use wire::{ResetSwitch, Socket, Throttled};

use draw::{Draws, Limiter};

/// Every kind of fault a profile may set, named as the fields of [`FaultProfile`], in its
/// order: the names `/metrics` reports in `faults_active`.
pub(crate) const KINDS: [&str; 8] = [
    "latency",
    "abort",
    "hang",
    "throughput",
    "connection",
    "rate_limit",
    "health",
    "readiness",
];

/// Every fault of a node: the profile in force and whether requests may add their own.
#[derive(Debug)]
pub(crate) struct Faults {
    /// `--allow-fault-headers`.
    headers: bool,
    /// The generation of the profile in `armed`, or 0 when no fault is set or every one has
    /// expired: the one load a request pays when nothing is set.
    generation: AtomicU64,
    /// The profile in force. Replaced as a whole; connections keep a reference to it.
    armed: Mutex<Arc<Armed>>,
    /// How many requests have carried header faults: the header percent's draws.
    header_requests: AtomicU64,
}

/// A connection's reference to the profile in force, refreshed when the profile changes.
#[derive(Debug, Default)]
pub(crate) struct View {
    armed: Option<Arc<Armed>>,
}

/// What the faults do to one request, in the order the service carries it out.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// Ends the request before it is served.
    pub(crate) stop: Option<Stop>,
    /// Waits this long before serving.
    pub(crate) delay: Duration,
    /// Answers this instead of serving.
    pub(crate) answer: Option<Answer>,
    /// Sends the body at no more than this many bytes a second.
    pub(crate) throughput: Option<u32>,
}

/// How a request ends before it is served.
#[derive(Debug, PartialEq)]
pub(crate) enum Stop {
    /// A header fault's value is out of bounds: 400, the message names the header.
    BadHeader(String),
    /// The connection is closed or reset, without an answer.
    Drop(ConnectionFaultMode),
    /// The rate limit refuses it.
    Refuse {
        status: StatusCode,
        retry_after_seconds: u32,
    },
    /// Answered with an error status.
    Abort(StatusCode),
    /// Never answered: held until the client leaves, this long passes or the node shuts down,
    /// then the connection is closed.
    Hang(Duration),
}

/// What a watched route answers under its fault.
#[derive(Debug, PartialEq)]
pub(crate) enum Answer {
    /// `GET /health`: `{"status":"unhealthy"}` with this status.
    Unhealthy(StatusCode),
    /// `GET /ready`: 503 `{"ready":false}`.
    Unready,
}

impl Plan {
    fn is_noop(&self) -> bool {
        *self == Self::default()
    }
}

impl Faults {
    /// No fault set; header faults allowed or not.
    pub(crate) fn new(allow_headers: bool) -> Self {
        Self {
            headers: allow_headers,
            generation: AtomicU64::new(0),
            armed: Mutex::new(Arc::new(Armed::new(
                &FaultProfile::default(),
                0,
                Instant::now(),
            ))),
            header_requests: AtomicU64::new(0),
        }
    }

    /// Whether no request can be touched now: no fault set, and no header faults allowed.
    /// The fast path's one atomic load.
    #[inline]
    pub(crate) fn idle(&self) -> bool {
        !self.headers && self.generation.load(Ordering::Relaxed) == 0
    }

    /// Replaces the whole profile (an empty one clears every fault). Each fault's count starts
    /// over, and its `remaining_ms` counts from now.
    pub(crate) fn replace(&self, profile: &FaultProfile) {
        let mut armed = lock(&self.armed);
        let generation = armed.generation + 1;
        *armed = Arc::new(Armed::new(profile, generation, Instant::now()));
        let live = if profile.is_empty() { 0 } else { generation };
        self.generation.store(live, Ordering::Release);
    }

    /// The kinds of fault set and not expired, named as in [`FaultProfile`], in its order.
    pub(crate) fn active(&self) -> Vec<String> {
        if self.generation.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let armed = Arc::clone(&lock(&self.armed));
        armed.active(Instant::now())
    }

    /// What the faults do to `request`; `None` when nothing.
    pub(crate) fn plan<B>(&self, view: &mut View, request: &http::Request<B>) -> Option<Plan> {
        let headers = if self.headers {
            match HeaderFaults::parse(request.headers()) {
                Ok(headers) => headers.and_then(|h| h.drawn(&self.header_requests)),
                Err(message) => {
                    return Some(Plan {
                        stop: Some(Stop::BadHeader(message)),
                        ..Plan::default()
                    });
                }
            }
        } else {
            None
        };
        let armed = self.current(view);
        if armed.is_none() && headers.is_none() {
            return None;
        }
        let now = Instant::now();
        let mut plan = Plan::default();
        if let Some(armed) = armed
            && armed.expired(now)
        {
            // Back to the fast path, unless a new profile has been set meanwhile.
            let _ = self.generation.compare_exchange(
                armed.generation,
                0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        let target = Target {
            path: request.uri().path(),
            method: request.method(),
            now,
        };
        plan_request(armed, headers.as_ref(), &target, &mut plan);
        (!plan.is_noop()).then_some(plan)
    }

    /// The profile in force, through `view`'s reference, refreshed if the profile changed.
    fn current<'v>(&self, view: &'v mut View) -> Option<&'v Armed> {
        let generation = self.generation.load(Ordering::Acquire);
        if generation == 0 {
            return None;
        }
        let stale = view
            .armed
            .as_ref()
            .is_none_or(|armed| armed.generation != generation);
        if stale {
            view.armed = Some(Arc::clone(&lock(&self.armed)));
        }
        view.armed.as_deref()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the plan looks at in a request.
struct Target<'a> {
    path: &'a str,
    method: &'a Method,
    now: Instant,
}

/// Fills `plan` for one request, fault by fault in the order they act; a fault that ends the
/// request ends the planning too.
fn plan_request(
    armed: Option<&Armed>,
    headers: Option<&HeaderFaults>,
    target: &Target<'_>,
    plan: &mut Plan,
) {
    let watched = WATCHED_ROUTES.contains(&target.path);
    // The general faults, or none on a watched route.
    let general = armed.filter(|_| !watched);

    if let Some((mode, _)) = general.and_then(|a| hit(a.connection.as_ref(), target)) {
        plan.stop = Some(Stop::Drop(*mode));
        return;
    }
    if let Some((limit, _)) = general.and_then(|a| hit(a.rate_limit.as_ref(), target))
        && !limit.limiter.admit(target.now)
    {
        plan.stop = Some(Stop::Refuse {
            status: limit.status,
            retry_after_seconds: limit.retry_after_seconds,
        });
        return;
    }
    if let Some((mix, draws)) = general.and_then(|a| hit(a.abort.as_ref(), target)) {
        plan.stop = Some(Stop::Abort(mix.pick(draws.unit(1))));
        return;
    }
    if let Some(status) = headers.and_then(|h| h.abort) {
        plan.stop = Some(Stop::Abort(status));
        return;
    }
    if let Some((max, _)) = general.and_then(|a| hit(a.hang.as_ref(), target)) {
        plan.stop = Some(Stop::Hang(*max));
        return;
    }
    if let Some((shape, draws)) = general.and_then(|a| hit(a.latency.as_ref(), target)) {
        plan.delay = draw::millis(match *shape {
            LatencyShape::Fixed {
                delay_ms,
                jitter_ms,
            } => draw::jittered(delay_ms, jitter_ms, draws.unit(1)),
            LatencyShape::Percentiles {
                p50_ms,
                p90_ms,
                p99_ms,
            } => draw::quantile(p50_ms, p90_ms, p99_ms, draws.unit(1)),
        });
    }
    if let Some(delay_ms) = headers.and_then(|h| h.delay_ms) {
        plan.delay += Duration::from_millis(u64::from(delay_ms));
    }
    if watched && matches!(*target.method, Method::GET | Method::HEAD) {
        let watched_fault = armed.and_then(|armed| match target.path {
            "/health" => {
                hit(armed.health.as_ref(), target).map(|(status, _)| Answer::Unhealthy(*status))
            }
            "/ready" => hit(armed.readiness.as_ref(), target).map(|((), _)| Answer::Unready),
            _ => None,
        });
        plan.answer = watched_fault;
    }
    let profile_rate = general
        .and_then(|a| hit(a.throughput.as_ref(), target))
        .map(|(rate, _)| *rate);
    let header_rate = headers.and_then(|h| h.throughput);
    plan.throughput = match (profile_rate, header_rate) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
}

/// What `fault` (if set) does to the request and the request's draws, if it hits it.
fn hit<'a, T>(fault: Option<&'a Fault<T>>, target: &Target<'_>) -> Option<(&'a T, Draws)> {
    fault.and_then(|fault| fault.hit(target))
}

/// A profile as the engine keeps it: each fault with its scope, its count and its deadline.
#[derive(Debug)]
struct Armed {
    /// Which profile this is, counted from 1 since the node started (0: the initial empty one).
    generation: u64,
    latency: Option<Fault<LatencyShape>>,
    abort: Option<Fault<Mix>>,
    hang: Option<Fault<Duration>>,
    throughput: Option<Fault<u32>>,
    connection: Option<Fault<ConnectionFaultMode>>,
    rate_limit: Option<Fault<RateLimit>>,
    health: Option<Fault<StatusCode>>,
    readiness: Option<Fault<()>>,
    /// When the last fault expires; `None` if one never does (or none is set).
    expires: Option<Instant>,
}

impl Armed {
    fn new(profile: &FaultProfile, generation: u64, received: Instant) -> Self {
        let mut armed = Self {
            generation,
            latency: profile
                .latency
                .as_ref()
                .map(|f| Fault::new(&f.when, received, f.shape.clone())),
            abort: profile
                .abort
                .as_ref()
                .map(|f| Fault::new(&f.when, received, Mix::new(&f.statuses))),
            hang: profile.hang.as_ref().map(|f| {
                Fault::new(
                    &f.when,
                    received,
                    Duration::from_millis(u64::from(f.max_ms)),
                )
            }),
            throughput: profile
                .throughput
                .as_ref()
                .map(|f| Fault::new(&f.when, received, f.bytes_per_second)),
            connection: profile
                .connection
                .as_ref()
                .map(|f| Fault::new(&f.when, received, f.mode)),
            rate_limit: profile.rate_limit.as_ref().map(|f| {
                Fault::new(
                    &f.when,
                    received,
                    RateLimit {
                        limiter: Limiter::new(f.requests_per_second, received),
                        status: status_code(f.status),
                        retry_after_seconds: f.retry_after_seconds,
                    },
                )
            }),
            health: profile
                .health
                .as_ref()
                .map(|f| Fault::new(&f.when, received, status_code(f.status))),
            readiness: profile
                .readiness
                .as_ref()
                .map(|f| Fault::new(&f.when, received, ())),
            expires: None,
        };
        let deadlines: Vec<Option<Instant>> =
            armed.gates().map(|(_, gate)| gate.deadline).collect();
        armed.expires = if deadlines.is_empty() || deadlines.contains(&None) {
            None
        } else {
            deadlines.into_iter().flatten().max()
        };
        armed
    }

    /// Each fault set, by name, in [`KINDS`]'s order.
    fn gates(&self) -> impl Iterator<Item = (&'static str, &Gate)> {
        // In the order of `KINDS`, which names them.
        let gates = [
            self.latency.as_ref().map(|f| &f.gate),
            self.abort.as_ref().map(|f| &f.gate),
            self.hang.as_ref().map(|f| &f.gate),
            self.throughput.as_ref().map(|f| &f.gate),
            self.connection.as_ref().map(|f| &f.gate),
            self.rate_limit.as_ref().map(|f| &f.gate),
            self.health.as_ref().map(|f| &f.gate),
            self.readiness.as_ref().map(|f| &f.gate),
        ];
        KINDS
            .into_iter()
            .zip(gates)
            .filter_map(|(name, gate)| gate.map(|gate| (name, gate)))
    }

    fn active(&self, now: Instant) -> Vec<String> {
        self.gates()
            .filter(|(_, gate)| gate.live(now))
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// Whether every fault has expired.
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|expires| now >= expires)
    }
}

/// One fault: when it applies, and what it does.
#[derive(Debug)]
struct Fault<T> {
    gate: Gate,
    what: T,
}

impl<T> Fault<T> {
    fn new(when: &FaultWhen, received: Instant, what: T) -> Self {
        Self {
            gate: Gate {
                fraction: when.percent / 100.0,
                path_prefix: when.path_prefix.as_deref().map(Box::from),
                deadline: when
                    .remaining_ms
                    .map(|ms| received + Duration::from_millis(ms)),
                seed: when.seed,
                counted: AtomicU64::new(0),
            },
            what,
        }
    }

    /// What the fault does to this request and the request's draws, if it is live, the
    /// request is in its scope and the draw hits it.
    fn hit(&self, target: &Target<'_>) -> Option<(&T, Draws)> {
        self.gate.draw(target).map(|draws| (&self.what, draws))
    }
}

/// When a fault applies.
#[derive(Debug)]
struct Gate {
    /// The share of requests in scope it hits, 0 to 1.
    fraction: f64,
    path_prefix: Option<Box<str>>,
    deadline: Option<Instant>,
    seed: u64,
    /// Requests in scope so far: the next one's place in the sequence.
    counted: AtomicU64,
}

impl Gate {
    fn live(&self, now: Instant) -> bool {
        self.deadline.is_none_or(|deadline| now < deadline)
    }

    /// Takes the request's place in the sequence if it is in scope; its draws if it is hit.
    fn draw(&self, target: &Target<'_>) -> Option<Draws> {
        if !self.live(target.now) {
            return None;
        }
        let in_scope = self
            .path_prefix
            .as_deref()
            .is_none_or(|prefix| target.path.starts_with(prefix));
        if !in_scope {
            return None;
        }
        let n = self.counted.fetch_add(1, Ordering::Relaxed);
        let draws = Draws::new(self.seed, n);
        draws.hits(self.fraction).then_some(draws)
    }
}

/// An abort fault's statuses with their weights.
#[derive(Debug)]
struct Mix {
    statuses: Vec<(StatusCode, u32)>,
    total: u32,
}

impl Mix {
    fn new(statuses: &[farm_node_api::faults::StatusWeight]) -> Self {
        let statuses: Vec<(StatusCode, u32)> = statuses
            .iter()
            .map(|entry| (status_code(entry.status), entry.weight.max(1)))
            .collect();
        let total = statuses.iter().map(|(_, weight)| weight).sum();
        Self { statuses, total }
    }

    /// The status `u` (in `[0, 1)`) falls on, each taking its weight's share.
    fn pick(&self, u: f64) -> StatusCode {
        let mut point = (u * f64::from(self.total)) as u32;
        for (status, weight) in &self.statuses {
            if point < *weight {
                return *status;
            }
            point -= weight;
        }
        self.statuses
            .last()
            .map_or(StatusCode::SERVICE_UNAVAILABLE, |(status, _)| *status)
    }
}

/// A rate limit fault's bucket and its answer.
#[derive(Debug)]
struct RateLimit {
    limiter: Limiter,
    status: StatusCode,
    retry_after_seconds: u32,
}

/// A validated status (400 to 599) as a [`StatusCode`].
fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// The header faults of one request that its percent draw let through.
#[derive(Debug, Default)]
struct HeaderFaults {
    delay_ms: Option<u32>,
    abort: Option<StatusCode>,
    throughput: Option<u32>,
    percent: Option<f64>,
}

static DELAY: HeaderName = HeaderName::from_static(FAULT_DELAY_HEADER);
static ABORT: HeaderName = HeaderName::from_static(FAULT_ABORT_HEADER);
static THROUGHPUT: HeaderName = HeaderName::from_static(FAULT_THROUGHPUT_HEADER);
static PERCENT: HeaderName = HeaderName::from_static(FAULT_PERCENT_HEADER);

impl HeaderFaults {
    /// The header faults `headers` ask for, `None` if none; the error names a header whose
    /// value is out of bounds.
    fn parse(headers: &HeaderMap) -> Result<Option<Self>, String> {
        let integer = |name: &HeaderName, low: u32, high: u32| -> Result<Option<u32>, String> {
            let Some(value) = headers.get(name) else {
                return Ok(None);
            };
            let text = value.to_str().unwrap_or("");
            match text.parse::<u32>() {
                Ok(n) if (low..=high).contains(&n) && text.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(Some(n))
                }
                _ => Err(format!(
                    "{name} must be an integer from {low} to {high}, got {:?}",
                    shown(value.as_bytes())
                )),
            }
        };
        let faults = Self {
            delay_ms: integer(&DELAY, 0, MAX_FAULT_DELAY_MS)?,
            abort: integer(
                &ABORT,
                u32::from(MIN_FAULT_STATUS),
                u32::from(MAX_FAULT_STATUS),
            )?
            .and_then(|status| u16::try_from(status).ok())
            .map(status_code),
            throughput: integer(&THROUGHPUT, 1, MAX_THROUGHPUT_BYTES_PER_SECOND)?,
            percent: match headers.get(&PERCENT) {
                None => None,
                Some(value) => Some(percent(value.as_bytes()).ok_or_else(|| {
                    format!(
                        "{PERCENT} must be a number from 0 to 100, got {:?}",
                        shown(value.as_bytes())
                    )
                })?),
            },
        };
        let any =
            faults.delay_ms.is_some() || faults.abort.is_some() || faults.throughput.is_some();
        Ok(any.then_some(faults))
    }

    /// These faults if this request is among the share its percent asks for (one draw from
    /// the node's sequence of requests carrying header faults, seed 0).
    fn drawn(self, requests: &AtomicU64) -> Option<Self> {
        let fraction = self.percent.unwrap_or(100.0) / 100.0;
        let n = requests.fetch_add(1, Ordering::Relaxed);
        Draws::new(0, n).hits(fraction).then_some(self)
    }
}

/// A percent header's value: digits with at most one decimal point, 0 to 100.
fn percent(value: &[u8]) -> Option<f64> {
    let well_formed = !value.is_empty()
        && value.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        && value.iter().filter(|b| **b == b'.').count() <= 1;
    let number: f64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    (well_formed && (0.0..=100.0).contains(&number)).then_some(number)
}

/// At most 100 bytes of a header value, for an error message.
fn shown(value: &[u8]) -> String {
    String::from_utf8_lossy(&value[..value.len().min(100)]).into_owned()
}

#[cfg(test)]
mod tests {
    use farm_node_api::faults::{
        AbortFault, ConnectionFault, HealthFault, LatencyFault, RateLimitFault, StatusWeight,
    };

    use super::*;

    fn when(percent: f64, seed: u64) -> FaultWhen {
        FaultWhen {
            percent,
            seed,
            ..FaultWhen::default()
        }
    }

    fn get(path: &str) -> http::Request<()> {
        http::Request::get(path).body(()).unwrap()
    }

    fn abort(percent: f64, seed: u64) -> FaultProfile {
        FaultProfile {
            abort: Some(AbortFault {
                when: when(percent, seed),
                statuses: vec![
                    StatusWeight {
                        status: 500,
                        weight: 1,
                    },
                    StatusWeight {
                        status: 503,
                        weight: 3,
                    },
                ],
            }),
            ..FaultProfile::default()
        }
    }

    /// The plans of `count` requests for `path` in a row, through one connection's view.
    fn plans(faults: &Faults, path: &str, count: usize) -> Vec<Option<Plan>> {
        let mut view = View::default();
        (0..count)
            .map(|_| faults.plan(&mut view, &get(path)))
            .collect()
    }

    #[test]
    fn an_empty_profile_leaves_the_fast_path_alone() {
        let faults = Faults::new(false);
        assert!(faults.idle());
        faults.replace(&abort(50.0, 1));
        assert!(!faults.idle());
        assert_eq!(faults.active(), ["abort"]);
        faults.replace(&FaultProfile::default());
        assert!(faults.idle());
        assert!(faults.active().is_empty());
        assert!(!Faults::new(true).idle(), "headers are looked at");
    }

    #[test]
    fn the_same_seed_gives_the_same_decisions_and_a_new_profile_starts_over() {
        let first = Faults::new(false);
        let second = Faults::new(false);
        first.replace(&abort(30.0, 9));
        second.replace(&abort(30.0, 9));
        let a = plans(&first, "/", 2000);
        let b = plans(&second, "/", 2000);
        assert_eq!(a, b);
        let aborted = a.iter().filter(|plan| plan.is_some()).count();
        assert!((500..700).contains(&aborted), "{aborted} of 2000 at 30 %");
        // Statuses weighted 1:3.
        let of = |code: StatusCode| {
            a.iter()
                .filter(|plan| {
                    plan.as_ref()
                        .is_some_and(|p| p.stop == Some(Stop::Abort(code)))
                })
                .count()
        };
        let (five_hundred, five_oh_three) = (
            of(StatusCode::INTERNAL_SERVER_ERROR),
            of(StatusCode::SERVICE_UNAVAILABLE),
        );
        assert_eq!(five_hundred + five_oh_three, aborted);
        assert!(
            five_oh_three > 2 * five_hundred,
            "{five_hundred} / {five_oh_three}"
        );
        // The same profile again: the count starts over, and so does the sequence.
        first.replace(&abort(30.0, 9));
        assert_eq!(plans(&first, "/", 2000), a);
        first.replace(&abort(30.0, 10));
        assert_ne!(plans(&first, "/", 2000), a);
    }

    #[test]
    fn watched_routes_have_only_their_own_faults() {
        let faults = Faults::new(false);
        let mut profile = abort(100.0, 0);
        profile.health = Some(HealthFault {
            when: when(100.0, 0),
            status: 503,
        });
        faults.replace(&profile);
        let plan = |path: &str| faults.plan(&mut View::default(), &get(path));
        assert_eq!(
            plan("/health").unwrap().answer,
            Some(Answer::Unhealthy(StatusCode::SERVICE_UNAVAILABLE))
        );
        assert_eq!(plan("/metrics"), None);
        assert_eq!(plan("/ready"), None);
        assert!(matches!(plan("/").unwrap().stop, Some(Stop::Abort(_))));
        // Not the watched route itself.
        assert!(plan("/health/x").unwrap().stop.is_some());
    }

    #[test]
    fn a_path_prefix_scopes_a_fault_and_only_its_requests_count() {
        let faults = Faults::new(false);
        faults.replace(&FaultProfile {
            connection: Some(ConnectionFault {
                when: FaultWhen {
                    path_prefix: Some("/data".into()),
                    ..when(50.0, 3)
                },
                mode: ConnectionFaultMode::Reset,
            }),
            ..FaultProfile::default()
        });
        let mut view = View::default();
        let mut decisions = Vec::new();
        for i in 0..400 {
            // Requests out of scope in between change nothing.
            assert_eq!(faults.plan(&mut view, &get("/")), None);
            let plan = faults.plan(&mut view, &get(&format!("/data/{}", i % 3)));
            decisions.push(plan.is_some());
        }
        let expected: Vec<bool> = (0..400).map(|n| Draws::new(3, n).hits(0.5)).collect();
        assert_eq!(decisions, expected);
    }

    #[test]
    fn an_expired_profile_is_gone_and_the_fast_path_back() {
        let faults = Faults::new(false);
        let mut profile = abort(100.0, 0);
        profile.abort.as_mut().unwrap().when.remaining_ms = Some(0);
        profile.latency = Some(LatencyFault {
            when: FaultWhen {
                remaining_ms: Some(60_000),
                ..when(100.0, 0)
            },
            shape: LatencyShape::Fixed {
                delay_ms: 10,
                jitter_ms: 0,
            },
        });
        faults.replace(&profile);
        assert_eq!(faults.active(), ["latency"]);
        let plan = faults.plan(&mut View::default(), &get("/")).unwrap();
        assert_eq!(plan.stop, None, "the abort has expired");
        assert_eq!(plan.delay, Duration::from_millis(10));

        profile.latency = None;
        faults.replace(&profile);
        assert!(!faults.idle());
        assert_eq!(faults.plan(&mut View::default(), &get("/")), None);
        assert!(
            faults.idle(),
            "the first request after expiry restores the fast path"
        );
    }

    #[test]
    fn the_order_is_connection_rate_limit_abort() {
        let faults = Faults::new(false);
        let mut profile = abort(100.0, 0);
        profile.rate_limit = Some(RateLimitFault {
            when: when(100.0, 0),
            requests_per_second: 1,
            status: 429,
            retry_after_seconds: 2,
        });
        faults.replace(&profile);
        let mut view = View::default();
        // The bucket holds one request: the first goes on to be aborted.
        let first = faults.plan(&mut view, &get("/")).unwrap();
        assert!(matches!(first.stop, Some(Stop::Abort(_))), "{first:?}");
        let second = faults.plan(&mut view, &get("/")).unwrap();
        assert_eq!(
            second.stop,
            Some(Stop::Refuse {
                status: StatusCode::TOO_MANY_REQUESTS,
                retry_after_seconds: 2
            })
        );
        profile.connection = Some(ConnectionFault {
            when: when(100.0, 0),
            mode: ConnectionFaultMode::Close,
        });
        faults.replace(&profile);
        assert_eq!(
            faults.plan(&mut view, &get("/")).unwrap().stop,
            Some(Stop::Drop(ConnectionFaultMode::Close))
        );
    }

    #[test]
    fn header_faults_parse_or_name_the_header() {
        let faults = Faults::new(true);
        let with = |pairs: &[(&str, &str)]| {
            let mut request = get("/data/1");
            for (name, value) in pairs {
                request.headers_mut().insert(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            faults.plan(&mut View::default(), &request)
        };
        assert_eq!(with(&[]), None);
        let plan = with(&[
            (FAULT_DELAY_HEADER, "250"),
            (FAULT_THROUGHPUT_HEADER, "100"),
        ])
        .unwrap();
        assert_eq!(plan.delay, Duration::from_millis(250));
        assert_eq!(plan.throughput, Some(100));
        assert_eq!(
            with(&[(FAULT_ABORT_HEADER, "418")]).unwrap().stop,
            Some(Stop::Abort(StatusCode::IM_A_TEAPOT))
        );
        assert_eq!(
            with(&[(FAULT_ABORT_HEADER, "418"), (FAULT_PERCENT_HEADER, "0")]),
            None
        );
        assert_eq!(
            with(&[(FAULT_PERCENT_HEADER, "50")]),
            None,
            "nothing to apply"
        );
        for (name, value) in [
            (FAULT_DELAY_HEADER, "60001"),
            (FAULT_DELAY_HEADER, "-1"),
            (FAULT_DELAY_HEADER, "+5"),
            (FAULT_ABORT_HEADER, "200"),
            (FAULT_THROUGHPUT_HEADER, "0"),
            (FAULT_PERCENT_HEADER, "100.5"),
            (FAULT_PERCENT_HEADER, "1e2"),
            (FAULT_PERCENT_HEADER, "NaN"),
        ] {
            match with(&[(name, value)]).and_then(|plan| plan.stop) {
                Some(Stop::BadHeader(message)) => {
                    assert!(message.starts_with(name), "{message}");
                }
                other => panic!("{name}: {value} gave {other:?}"),
            }
        }
        assert!(
            Faults::new(false)
                .plan(&mut View::default(), &{
                    let mut request = get("/");
                    request
                        .headers_mut()
                        .insert(&ABORT, "nonsense".parse().unwrap());
                    request
                })
                .is_none(),
            "ignored when not allowed"
        );
    }

    #[test]
    fn header_percent_draws_from_one_sequence() {
        let faults = Faults::new(true);
        let mut request = get("/");
        request.headers_mut().insert(&ABORT, "500".parse().unwrap());
        request
            .headers_mut()
            .insert(&PERCENT, "25".parse().unwrap());
        let hits: Vec<bool> = (0..1000)
            .map(|_| faults.plan(&mut View::default(), &request).is_some())
            .collect();
        let expected: Vec<bool> = (0..1000).map(|n| Draws::new(0, n).hits(0.25)).collect();
        assert_eq!(hits, expected);
    }
}
