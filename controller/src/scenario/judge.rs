//! Verdicts and abort conditions, judged from a run's figures: pure functions over the load
//! test's result (whole run, per phase, per second) and the faults' records.
//!
//! - A window assertion takes the figure over its phase, or the whole load (`during: all`).
//! - A recovery assertion starts counting at the fault's end (an instant fault: its
//!   instant), looks at whole seconds from the first that starts at or after it, and passes
//!   when the metric meets its bound for `stable_for` seconds in a row, starting within
//!   `within`. A second in which no request ended meets no bound: nothing was served.
//! - An abort rule holds when its bound holds in each of its last `window` closed seconds.

use farm_proto::v1::{
    LatencySummary, LoadSecond, LoadTestResult, ScenarioFaultRecord, ScenarioVerdict,
};
use farm_scenario::{
    AbortRule, Assertion, AssertionKind, Bound, During, Metric, Op, Percentile, Scenario,
};

/// One verdict per assertion of `scenario`, from `load` (the figures so far, or final) and
/// the faults' records. `last` says whether the run has ended: before, a verdict that may
/// still change is marked so.
pub(super) fn verdicts(
    scenario: &Scenario,
    load: &LoadTestResult,
    faults: &[ScenarioFaultRecord],
    last: bool,
) -> Vec<ScenarioVerdict> {
    scenario
        .slo
        .iter()
        .map(|assertion| judge(assertion, load, faults, last))
        .collect()
}

fn judge(
    assertion: &Assertion,
    load: &LoadTestResult,
    faults: &[ScenarioFaultRecord],
    last: bool,
) -> ScenarioVerdict {
    let verdict = |passed: bool, observed: f64, threshold: f64, detail: String, final_: bool| {
        ScenarioVerdict {
            assertion: assertion.text.clone(),
            passed,
            observed,
            threshold,
            detail,
            line: assertion.line,
            r#final: final_,
        }
    };
    match &assertion.kind {
        AssertionKind::Window {
            metric,
            bound,
            during,
        } => {
            let (figures, ended) = match during {
                During::All => (Some(Figures::of_run(load)), last),
                During::Phase(name) => {
                    let phase = load.phases.iter().find(|p| p.name == *name);
                    // Requests that end in a phase reach the figures up to a request's
                    // timeout (and a second) after it.
                    let settle_ms = load.spec.as_ref().map_or(0, |s| s.timeout_ms) + 1000;
                    let ended = last
                        || phase.is_some_and(|p| {
                            load.elapsed_seconds * 1000.0
                                >= f64::from(p.end_ms) + f64::from(settle_ms)
                        });
                    (phase.map(Figures::of_phase), ended)
                }
            };
            let scope = match during {
                During::All => "the load".to_string(),
                During::Phase(name) => format!("phase {name}"),
            };
            match figures.filter(|f| f.requests > 0) {
                None => verdict(
                    false,
                    0.0,
                    bound.value,
                    format!("no request ended during {scope}"),
                    ended,
                ),
                Some(figures) => {
                    let observed = figures.value(*metric);
                    let passed = bound.holds(observed);
                    verdict(
                        passed,
                        observed,
                        bound.value,
                        describe(*metric, *bound, observed),
                        ended,
                    )
                }
            }
        }
        AssertionKind::Recovery {
            fault,
            metric,
            bound,
            within,
            stable_for,
        } => {
            let within_s = within.as_secs_f64();
            let Some(record) = faults.iter().find(|f| f.id == *fault) else {
                return verdict(
                    false,
                    -1.0,
                    within_s,
                    format!("fault {fault} is not in the run"),
                    true,
                );
            };
            if !record.error.is_empty() {
                return verdict(
                    false,
                    -1.0,
                    within_s,
                    format!("fault {fault} did not go as planned: {}", record.error),
                    last,
                );
            }
            let end_ms = if record.for_ms == 0 {
                record.applied_ms
            } else {
                record.ended_ms
            };
            if record.applied_ms == 0 || end_ms == 0 {
                return verdict(
                    false,
                    -1.0,
                    within_s,
                    format!("fault {fault} has not ended yet"),
                    last,
                );
            }
            let closed: Vec<&LoadSecond> =
                load.timeline.iter().filter(|s| !s.provisional).collect();
            match recovery(&closed, *metric, *bound, end_ms, *within, *stable_for) {
                Recovery::After(seconds) => {
                    let passed = seconds <= within_s + 1e-9;
                    let detail = if passed {
                        format!(
                            "{} met {} {:.1} s after {fault} ended and held for {} s",
                            metric_name(*metric),
                            bound_text(*metric, *bound),
                            seconds,
                            stable_for.as_secs()
                        )
                    } else {
                        format!(
                            "{} met {} only {:.1} s after {fault} ended, against within {} s: {:.1} s late",
                            metric_name(*metric),
                            bound_text(*metric, *bound),
                            seconds,
                            within_s,
                            seconds - within_s
                        )
                    };
                    verdict(passed, seconds, within_s, detail, true)
                }
                Recovery::Never { seen_to_s } => verdict(
                    false,
                    -1.0,
                    within_s,
                    format!(
                        "{} did not meet {} for {} s in a row within {} s of {fault}'s end (seen up to {:.0} s after it)",
                        metric_name(*metric),
                        bound_text(*metric, *bound),
                        stable_for.as_secs(),
                        within_s,
                        seen_to_s
                    ),
                    true,
                ),
                Recovery::Waiting if last => verdict(
                    false,
                    -1.0,
                    within_s,
                    format!(
                        "the load ended before {} could be seen meeting {} for {} s in a row after {fault}'s end",
                        metric_name(*metric),
                        bound_text(*metric, *bound),
                        stable_for.as_secs()
                    ),
                    true,
                ),
                Recovery::Waiting => verdict(
                    false,
                    -1.0,
                    within_s,
                    format!("waiting for the seconds after {fault}'s end"),
                    false,
                ),
            }
        }
    }
}

/// How a recovery came out.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Recovery {
    /// Recovered this many seconds after the fault's end.
    After(f64),
    /// Cannot recover within the bound any more.
    Never { seen_to_s: f64 },
    /// Not decided by the closed seconds so far.
    Waiting,
}

fn recovery(
    seconds: &[&LoadSecond],
    metric: Metric,
    bound: Bound,
    end_ms: u32,
    within: std::time::Duration,
    stable_for: std::time::Duration,
) -> Recovery {
    let first = end_ms.div_ceil(1000);
    let stable = u32::try_from(stable_for.as_secs())
        .unwrap_or(u32::MAX)
        .max(1);
    let within_ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
    // The last second a recovery may start in and still be on time.
    let last_start = u32::try_from((u64::from(end_ms) + within_ms) / 1000).unwrap_or(u32::MAX);
    // The closed seconds run from 0 without a gap: second n is at index n.
    let meets = |second: u32| {
        seconds
            .get(second as usize)
            .is_some_and(|s| meets_in(s, metric, bound))
    };

    let seen = seconds.iter().map(|s| s.second + 1).max().unwrap_or(0);
    let mut start = first;
    while start <= last_start.max(first) {
        if start + stable > seen {
            return Recovery::Waiting;
        }
        match (start..start + stable).find(|&s| !meets(s)) {
            None => {
                return Recovery::After(
                    (f64::from(start) * 1000.0 - f64::from(end_ms)).max(0.0) / 1000.0,
                );
            }
            Some(broken) => start = broken + 1,
        }
    }
    Recovery::Never {
        seen_to_s: (f64::from(seen) * 1000.0 - f64::from(end_ms)).max(0.0) / 1000.0,
    }
}

/// The abort rule of `scenario` that holds over the closed seconds of `load`, if any.
pub(super) fn abort_rule<'a>(
    scenario: &'a Scenario,
    load: &LoadTestResult,
) -> Option<&'a AbortRule> {
    let closed: Vec<&LoadSecond> = load.timeline.iter().filter(|s| !s.provisional).collect();
    scenario.abort.iter().find(|rule| {
        let window = usize::try_from(rule.window.as_secs())
            .unwrap_or(usize::MAX)
            .max(1);
        closed.len() >= window
            && closed[closed.len() - window..]
                .iter()
                .all(|s| meets_in(s, rule.metric, rule.bound))
    })
}

/// Whether one second meets `bound`. A second in which no request ended has no error rate
/// and no latency, so it meets no bound of theirs; its throughput is zero.
fn meets_in(second: &LoadSecond, metric: Metric, bound: Bound) -> bool {
    let measured = second.requests > 0 || metric == Metric::Throughput;
    measured && bound.holds(second_value(second, metric))
}

/// A window's figures.
struct Figures {
    requests: u64,
    failures: u64,
    requests_per_second: f64,
    latency: LatencySummary,
}

impl Figures {
    fn of_run(load: &LoadTestResult) -> Self {
        Self {
            requests: load.requests,
            failures: load.failures,
            requests_per_second: load.requests_per_second,
            latency: load.latency.unwrap_or_default(),
        }
    }

    fn of_phase(phase: &farm_proto::v1::PhaseResult) -> Self {
        Self {
            requests: phase.requests,
            failures: phase.failures,
            requests_per_second: phase.requests_per_second,
            latency: phase.latency.unwrap_or_default(),
        }
    }

    fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::ErrorRate => self.failures as f64 / self.requests as f64,
            Metric::Throughput => self.requests_per_second,
            Metric::Latency(p) => percentile(&self.latency, p),
        }
    }
}

fn percentile(latency: &LatencySummary, p: Percentile) -> f64 {
    match p {
        Percentile::P50 => latency.p50_ms,
        Percentile::P90 => latency.p90_ms,
        Percentile::P99 => latency.p99_ms,
        Percentile::P999 => latency.p999_ms,
        Percentile::Max => latency.max_ms,
        Percentile::Mean => latency.mean_ms,
    }
}

/// A metric over one second. A second has its median, p90, p99 and largest latency; p99.9
/// falls back to the largest, the mean to the median.
fn second_value(second: &LoadSecond, metric: Metric) -> f64 {
    match metric {
        Metric::ErrorRate => second.failures as f64 / second.requests.max(1) as f64,
        Metric::Throughput => second.requests as f64,
        Metric::Latency(Percentile::P50 | Percentile::Mean) => second.p50_ms,
        Metric::Latency(Percentile::P90) => second.p90_ms,
        Metric::Latency(Percentile::P99) => second.p99_ms,
        Metric::Latency(Percentile::P999 | Percentile::Max) => second.max_ms,
    }
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::ErrorRate => "error rate",
        Metric::Throughput => "throughput",
        Metric::Latency(Percentile::P50) => "p50",
        Metric::Latency(Percentile::P90) => "p90",
        Metric::Latency(Percentile::P99) => "p99",
        Metric::Latency(Percentile::P999) => "p99.9",
        Metric::Latency(Percentile::Max) => "max latency",
        Metric::Latency(Percentile::Mean) => "mean latency",
    }
}

fn amount(metric: Metric, value: f64) -> String {
    match metric {
        Metric::ErrorRate => format!("{:.2} %", value * 100.0),
        Metric::Throughput => format!("{value:.1} req/s"),
        Metric::Latency(_) => format!("{value:.1} ms"),
    }
}

fn bound_text(metric: Metric, bound: Bound) -> String {
    let op = match bound.op {
        Op::Lt => "<",
        Op::Gt => ">",
    };
    format!("{op} {}", amount(metric, bound.value))
}

/// "p99 412.0 ms against < 300.0 ms: 112.0 ms over".
fn describe(metric: Metric, bound: Bound, observed: f64) -> String {
    let gap = (observed - bound.value).abs();
    let how = match (bound.holds(observed), bound.op) {
        (true, _) => format!("{} within", amount(metric, gap)),
        (false, Op::Lt) => format!("{} over", amount(metric, gap)),
        (false, Op::Gt) => format!("{} short", amount(metric, gap)),
    };
    format!(
        "{} {} against {}: {how}",
        metric_name(metric),
        amount(metric, observed),
        bound_text(metric, bound)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn second(second: u32, requests: u64, failures: u64) -> LoadSecond {
        LoadSecond {
            second,
            requests,
            failures,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: 3.0,
            max_ms: 4.0,
            provisional: false,
        }
    }

    fn below_one_percent() -> Bound {
        Bound {
            op: Op::Lt,
            value: 0.01,
        }
    }

    #[test]
    fn recovery_counts_whole_seconds_from_the_faults_end() {
        // The fault ends at 5.4 s; seconds 6 and 7 still fail, 8, 9, 10 are clean.
        let timeline: Vec<LoadSecond> = (0..12)
            .map(|s| second(s, 100, if (6..8).contains(&s) { 20 } else { 0 }))
            .collect();
        let closed: Vec<&LoadSecond> = timeline.iter().collect();
        let result = recovery(
            &closed,
            Metric::ErrorRate,
            below_one_percent(),
            5400,
            Duration::from_secs(5),
            Duration::from_secs(3),
        );
        // Recovered at the start of second 8: 2.6 s after the end.
        assert_eq!(result, Recovery::After(2.6));
        let late = recovery(
            &closed,
            Metric::ErrorRate,
            below_one_percent(),
            5400,
            Duration::from_secs(2),
            Duration::from_secs(3),
        );
        assert!(matches!(late, Recovery::Never { .. }), "{late:?}");
    }

    #[test]
    fn recovery_waits_for_the_seconds_it_needs_and_an_empty_second_is_not_recovered() {
        let timeline = [second(0, 10, 0), second(1, 0, 0), second(2, 10, 0)];
        let closed: Vec<&LoadSecond> = timeline.iter().collect();
        let result = recovery(
            &closed,
            Metric::ErrorRate,
            below_one_percent(),
            500,
            Duration::from_secs(10),
            Duration::from_secs(2),
        );
        // Second 1 served nothing, so recovery could start at 2 but needs second 3 too.
        assert_eq!(result, Recovery::Waiting);
    }
}
