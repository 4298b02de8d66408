//! The scenario as the runner reads it: plain types, every value checked and every default
//! filled in, each part with the line it came from so that later checks (the farm's servers)
//! can name it too.

use farm_proto::v1::FaultKind;
use std::time::Duration;

use crate::Problem;

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Its name: 1 to 64 bytes of letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// What it shows, at most 1024 bytes; empty when not given.
    pub description: String,
    /// Seeds every random choice of the run (shares of servers, fault decisions); `None`:
    /// the runner picks one and reports it.
    pub seed: Option<u64>,
    /// Where the load goes.
    pub target: Target,
    /// What must hold before and after the run.
    pub steady_state: Vec<Check>,
    /// The load.
    pub load: Load,
    /// What goes wrong, and when.
    pub faults: Vec<Fault>,
    /// What the run must meet to pass.
    pub slo: Vec<Assertion>,
    /// When to give up early.
    pub abort: Vec<AbortRule>,
}

/// Where the load goes and what it sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The servers that get requests; default `all`.
    pub servers: Servers,
    /// The path on each node, starting with `/`, at most `MAX_PATH_LEN` bytes; default `/`.
    pub path: String,
    /// `GET` (default), `POST`, `PUT`, `DELETE` or `HEAD`.
    pub method: String,
    /// Each request's timeout, 1 ms to `MAX_TIMEOUT_MS`; default 2 s.
    pub timeout: Duration,
}

/// Servers named in the file, and the line that names them.
#[derive(Debug, Clone, PartialEq)]
pub struct Servers {
    /// Which servers.
    pub selection: Selection,
    /// The line of the list (or of `all`); 0 when the file leaves it to the default.
    pub line: u32,
}

/// A choice of servers.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Every server of the farm.
    All,
    /// These ids, 1 to `MAX_SERVER_ID`, without duplicates, at most `MAX_SERVERS`, in the
    /// file's order.
    Ids(Vec<u32>),
}

/// The load of a run: a model and its phases, one after another.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Open (a rate) or closed (workers).
    pub model: Model,
    /// 1 to `MAX_CONCURRENCY`, default 64. Open model: the most requests in flight; closed
    /// model: the workers of a phase that gives none.
    pub concurrency: u32,
    /// 1 to `MAX_PHASES` phases, their names unique.
    pub phases: Vec<Phase>,
}

/// How the load is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Requests are sent on a schedule, whatever the answers (a rate per phase).
    Open,
    /// A number of workers each send a request when the last one is answered.
    Closed,
}

/// One phase of the load.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Unique, 1 to 64 bytes of letters, digits, `.`, `_` and `-`; never `all`.
    pub name: String,
    /// How long it lasts (key `for`), at least 100 ms; all phases together at most
    /// `MAX_DURATION_SECONDS`.
    pub duration: Duration,
    /// Open model: the rate at the phase's start, requests per second. 0 in the closed model.
    pub rate_from: f64,
    /// Open model: the rate at its end (the rate runs linearly between). 0 in the closed
    /// model.
    pub rate_to: f64,
    /// Closed model: its workers, 1 to `load.concurrency`. 0 in the open model.
    pub concurrency: u32,
    /// The line where the phase's mapping starts.
    pub line: u32,
}

/// One thing that goes wrong during the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Its id: given in the file, or `<kind>-<position from 1>`; unique.
    pub id: String,
    /// When it starts, from the load's start; before the load's end.
    pub at: Duration,
    /// How long it lasts (key `for`); `at + for` is at most the load's end. `None`: see
    /// [`FaultAction`].
    pub duration: Option<Duration>,
    /// Which servers it hits.
    pub servers: Servers,
    /// A seeded random share of those servers, in percent (more than 0 to 100).
    pub share: Option<f64>,
    /// What it does.
    pub action: FaultAction,
    /// The line where the fault's mapping starts.
    pub line: u32,
}

/// What a fault does to its servers.
// The profile is large next to the bare actions, but a file holds at most `MAX_FAULTS`
// faults, read once: boxing it would only make every reader of the profile unwrap a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// A live fault profile with exactly one kind set. Its `when.duration_seconds` and
    /// `when.seed` are left 0: the runner sets them. `percent` and `path_prefix` come from
    /// the file.
    Profile(farm_proto::v1::FaultProfile),
    /// SIGKILL of the server; with `for`, held down that long and then started; without, the
    /// farm's own restart brings it back.
    Kill,
    /// A graceful stop, started again after `for` (without `for`: when the load ends).
    Stop,
    /// A restart, at once (no `for`).
    Restart,
    /// Frozen (SIGSTOP / docker pause), resumed after `for` (without: when the load ends).
    Pause,
}

impl FaultAction {
    /// Its kind as a file names it: `latency`, `abort`, `hang`, `throughput`, `close`,
    /// `reset`, `rate_limit`, `health`, `readiness`, `partition`, `kill`, `stop`, `restart`,
    /// `pause`.
    pub fn kind(&self) -> &'static str {
        self.profile_kind().map_or(
            match self {
                Self::Kill => "kill",
                Self::Stop => "stop",
                Self::Restart => "restart",
                _ => "pause",
            },
            |kind| match (kind, self) {
                (FaultKind::Connection, Self::Profile(p))
                    if p.connection.as_ref().is_some_and(|c| {
                        c.mode == farm_proto::v1::ConnectionFaultMode::Reset as i32
                    }) =>
                {
                    "reset"
                }
                (FaultKind::Connection, _) => "close",
                (FaultKind::Latency, _) => "latency",
                (FaultKind::Abort, _) => "abort",
                (FaultKind::Hang, _) => "hang",
                (FaultKind::Throughput, _) => "throughput",
                (FaultKind::RateLimit, _) => "rate_limit",
                (FaultKind::Health, _) => "health",
                (FaultKind::Readiness, _) => "readiness",
                (FaultKind::Partition | FaultKind::Unspecified, _) => "partition",
            },
        )
    }

    /// The kind of fault profile it sets, which a server holds one of at a time (`close` and
    /// `reset` are one kind); `None` for the lifecycle actions.
    pub fn profile_kind(&self) -> Option<FaultKind> {
        let Self::Profile(p) = self else {
            return None;
        };
        Some(if p.latency.is_some() {
            FaultKind::Latency
        } else if p.abort.is_some() {
            FaultKind::Abort
        } else if p.hang.is_some() {
            FaultKind::Hang
        } else if p.throughput.is_some() {
            FaultKind::Throughput
        } else if p.connection.is_some() {
            FaultKind::Connection
        } else if p.rate_limit.is_some() {
            FaultKind::RateLimit
        } else if p.health.is_some() {
            FaultKind::Health
        } else if p.readiness.is_some() {
            FaultKind::Readiness
        } else {
            FaultKind::Partition
        })
    }
}

/// One SLO of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    /// The assertion in one normalised line, e.g. "latency.p99 < 300ms during hold",
    /// "recover from kill5: error_rate < 1% within 10s for 5s".
    pub text: String,
    /// What is judged.
    pub kind: AssertionKind,
    /// The line where the assertion's mapping starts.
    pub line: u32,
}

/// The two shapes of an SLO.
#[derive(Debug, Clone, PartialEq)]
pub enum AssertionKind {
    /// A figure over a phase (or the whole load: `during: all`, the default).
    Window {
        /// The figure.
        metric: Metric,
        /// What it must meet.
        bound: Bound,
        /// Over which part of the load.
        during: During,
    },
    /// After fault `fault` ends (its end; an instant fault: its instant), `metric` must meet
    /// `bound` within `within`, and keep meeting it for `stable_for` (whole seconds, judged on
    /// the per-second timeline).
    Recovery {
        /// The id of a fault of the file.
        fault: String,
        /// The figure.
        metric: Metric,
        /// What it must meet.
        bound: Bound,
        /// How long after the fault's end the recovery may start: whole seconds, 1 s to 300 s.
        within: Duration,
        /// How long it must hold once it does: whole seconds, 1 s to 300 s.
        stable_for: Duration,
    },
}

/// A figure of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Failed requests (no answer, or status 500 or more) over all requests, 0 to 1.
    ErrorRate,
    /// Requests answered per second.
    Throughput,
    /// A latency figure, in milliseconds.
    Latency(Percentile),
}

/// Which latency figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    /// The median.
    P50,
    /// The 90th percentile.
    P90,
    /// The 99th percentile.
    P99,
    /// The 99.9th percentile.
    P999,
    /// The largest.
    Max,
    /// The mean.
    Mean,
}

/// `lt: X` or `gt: X`, in the metric's unit: error_rate a ratio 0..=1 (written "1%" or 0.01),
/// latency milliseconds (written "300ms", "1.5s" or a number of ms), throughput requests per
/// second (a number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// Below or above.
    pub op: Op,
    /// The limit, in the metric's unit.
    pub value: f64,
}

/// Which side of the limit is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Strictly below.
    Lt,
    /// Strictly above.
    Gt,
}

impl Bound {
    /// Whether `observed` meets it. A figure that is not a number (no requests to take a
    /// percentile of) meets no bound.
    pub fn holds(&self, observed: f64) -> bool {
        match self.op {
            Op::Lt => observed < self.value,
            Op::Gt => observed > self.value,
        }
    }
}

/// Which part of the load a window assertion covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum During {
    /// The whole load.
    All,
    /// The phase of this name.
    Phase(String),
}

/// Stop the run early when `metric` breaks `bound` (usually `gt`) in each of `window`
/// consecutive whole seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct AbortRule {
    /// The rule in one normalised line, e.g. "error_rate > 50% for 5s".
    pub text: String,
    /// The figure, judged per second.
    pub metric: Metric,
    /// The bound whose breaking counts (the rule fires when `bound.holds` is true for every
    /// second of the window).
    pub bound: Bound,
    /// How many consecutive seconds: whole seconds, 1 s to 300 s, default 5 s.
    pub window: Duration,
    /// The line where the rule's mapping starts.
    pub line: u32,
}

/// A steady-state check of the farm, before and/or after the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The check in one normalised line: "all_healthy within 10s", "min_healthy 9 within 20s".
    pub text: String,
    /// What must hold.
    pub kind: CheckKind,
    /// Before the load, after it, or both (the default).
    pub when: When,
    /// How long it may take to hold: 0 s to 300 s, default 10 s.
    pub within: Duration,
    /// The line where the check's mapping starts.
    pub line: u32,
}

/// What a steady-state check asks of the farm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// Every server healthy.
    AllHealthy,
    /// At least this many servers healthy (1 to `MAX_SERVERS`).
    MinHealthy(u32),
}

/// When a steady-state check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Before the load starts.
    Before,
    /// After the load ends and the faults are cleared.
    After,
    /// Both.
    Both,
}

impl Scenario {
    /// Problems with the servers it names, given the ids of the farm's servers (and whether the
    /// farm runs Docker: a partition needs it). Used by the controller and by
    /// `farm scenario check --controller`. Each problem names the line and field of the list
    /// that names the server ("target.servers", "faults[2].servers").
    pub fn check_servers(&self, farm: &[u32], docker: bool) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut known: Vec<u32> = farm.to_vec();
        known.sort_unstable();
        known.dedup();
        let shown = ranges(&known);
        let mut check = |servers: &Servers, field: String| match &servers.selection {
            Selection::All if known.is_empty() => problems.push(Problem {
                line: servers.line,
                field,
                message: "the farm has no servers".into(),
            }),
            Selection::All => {}
            Selection::Ids(ids) => {
                let missing: Vec<u32> = ids
                    .iter()
                    .copied()
                    .filter(|id| known.binary_search(id).is_err())
                    .collect();
                let message = match missing.as_slice() {
                    [] => return,
                    [one] => format!("server {one} is not in the farm (its servers: {shown})"),
                    many => format!(
                        "servers {} are not in the farm (its servers: {shown})",
                        ranges(many)
                    ),
                };
                problems.push(Problem {
                    line: servers.line,
                    field,
                    message,
                });
            }
        };
        check(&self.target.servers, "target.servers".into());
        for (i, fault) in self.faults.iter().enumerate() {
            check(&fault.servers, format!("faults[{i}].servers"));
        }
        for (i, fault) in self.faults.iter().enumerate() {
            let partition = matches!(&fault.action,
                FaultAction::Profile(p) if p.partition.is_some());
            if partition && !docker {
                problems.push(Problem {
                    line: fault.line,
                    field: format!("faults[{i}].kind"),
                    message: "a partition needs the docker runtime (`farm up --runtime docker`): \
                              a local process cannot be cut off from the network"
                        .into(),
                });
            }
        }
        for (i, check) in self.steady_state.iter().enumerate() {
            if let CheckKind::MinHealthy(count) = check.kind
                && count as usize > known.len()
            {
                problems.push(Problem {
                    line: check.line,
                    field: format!("steady_state[{i}].count"),
                    message: format!(
                        "asks for {count} healthy servers; the farm has {}",
                        known.len()
                    ),
                });
            }
        }
        problems.sort_by_key(|p| p.line);
        problems
    }

    /// The load's total length (sum of the phases).
    pub fn load_duration(&self) -> Duration {
        self.load.phases.iter().map(|p| p.duration).sum()
    }
}

/// Sorted ids as runs: "1-3, 5, 7-9"; a long list is cut after a dozen runs.
fn ranges(ids: &[u32]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for id in sorted {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == id || *end == id => *end = id,
            _ => runs.push((id, id)),
        }
    }
    const SHOWN: usize = 12;
    let mut parts: Vec<String> = runs
        .iter()
        .take(SHOWN)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if runs.len() > SHOWN {
        parts.push("…".into());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_short() {
        assert_eq!(ranges(&[1, 2, 3]), "1-3");
        assert_eq!(ranges(&[5, 1, 2, 9]), "1-2, 5, 9");
        assert_eq!(ranges(&[]), "none");
        let many: Vec<u32> = (0..40).map(|i| i * 2).collect();
        assert!(ranges(&many).ends_with('…'));
    }

    #[test]
    fn bounds_are_strict() {
        let lt = Bound {
            op: Op::Lt,
            value: 1.0,
        };
        assert!(lt.holds(0.5) && !lt.holds(1.0) && !lt.holds(f64::NAN));
        let gt = Bound {
            op: Op::Gt,
            value: 1.0,
        };
        assert!(gt.holds(1.5) && !gt.holds(1.0) && !gt.holds(f64::NAN));
    }
}
