//! A run's phases: stretches of time with their own rate (open model) or workers (closed
//! model), one after another, and the open model's schedule that follows from them.
//!
//! A run without phases in its spec has one or two: a linear ramp from zero (if it asked for
//! one) and the steady part. The open schedule is piecewise linear in the rate, so request
//! *n* falls due when the integral of the rate reaches *n*: within a phase whose rate runs
//! from *a* to *b* over *L* seconds, *x* seconds in, a·x + (b − a)·x²/(2L) requests are due.

use std::time::Duration;

use farm_proto::limits::{
    MAX_CONCURRENCY, MAX_DURATION_SECONDS, MAX_LOAD_PHASES as MAX_PHASES, MAX_PHASE_NAME_LEN,
    MAX_RATE_PER_SECOND, MIN_PHASE_MS,
};
use farm_proto::v1::LoadPhase;

use crate::error::{Error, Result};

/// One stretch of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// What results and assertions call it.
    pub name: String,
    /// When it starts, after the run's start.
    pub start: Duration,
    /// When it ends.
    pub end: Duration,
    /// Open model: the rate at its start and at its end, in requests per second.
    pub rate_from: f64,
    /// See `rate_from`.
    pub rate_to: f64,
    /// Closed model: the workers that send during it.
    pub concurrency: u32,
}

impl Phase {
    fn seconds(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }

    /// Open model: requests due within its first `x` seconds.
    fn due_within(&self, x: f64) -> f64 {
        let length = self.seconds();
        if length <= 0.0 {
            return 0.0;
        }
        let x = x.clamp(0.0, length);
        self.rate_from * x + (self.rate_to - self.rate_from) * x * x / (2.0 * length)
    }

    /// Open model: seconds into it when `m` of its requests are due (`m` at most its total).
    fn time_of(&self, m: f64) -> f64 {
        if m <= 0.0 {
            // Its first request, due at its start (also when its rate starts at zero).
            return 0.0;
        }
        let length = self.seconds();
        let slope = (self.rate_to - self.rate_from) / length;
        if slope.abs() < 1e-12 {
            return m / self.rate_from;
        }
        // Solves rate_from·x + slope·x²/2 = m in the form that stays accurate when the
        // slope is small: x = 2m / (a + sqrt(a² + 2·slope·m)).
        let root = (self.rate_from * self.rate_from + 2.0 * slope * m)
            .max(0.0)
            .sqrt();
        2.0 * m / (self.rate_from + root)
    }
}

/// How the phases were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Open model: every phase has a rate.
    Open,
    /// Closed model: phases have workers.
    Closed,
}

/// Validates `phases` from a spec whose concurrency is `concurrency`; the error names the
/// field. Returns the phases laid end to end and their model.
pub fn from_spec(phases: &[LoadPhase], concurrency: u32) -> Result<(Vec<Phase>, Shape)> {
    let invalid = |message: String| Err(Error::InvalidArgument(message));
    if phases.len() > MAX_PHASES {
        return invalid(format!(
            "spec.phases may hold at most {MAX_PHASES} phases, got {}",
            phases.len()
        ));
    }
    let open = phases.first().is_some_and(|p| p.rate.is_some());
    let mut laid = Vec::with_capacity(phases.len());
    let mut start = Duration::ZERO;
    for (i, phase) in phases.iter().enumerate() {
        let field = format!("spec.phases[{i}]");
        let LoadPhase {
            name,
            duration_ms,
            rate,
            rate_to,
            concurrency: workers,
        } = phase;
        if name.is_empty()
            || name.len() > MAX_PHASE_NAME_LEN
            || !name.bytes().all(|b| (0x21..0x7f).contains(&b))
        {
            return invalid(format!(
                "{field}.name must be 1 to {MAX_PHASE_NAME_LEN} visible ASCII characters, got {name:?}"
            ));
        }
        if phases[..i].iter().any(|p| p.name == *name) {
            return invalid(format!("{field}.name {name:?} names an earlier phase too"));
        }
        if *duration_ms < MIN_PHASE_MS {
            return invalid(format!(
                "{field}.duration_ms must be at least {MIN_PHASE_MS}, got {duration_ms}"
            ));
        }
        let (rate_from, rate_to, workers) = match (open, rate) {
            (true, Some(from)) => {
                let to = rate_to.unwrap_or(*from);
                for (key, value) in [("rate", *from), ("rate_to", to)] {
                    if !(value.is_finite() && (0.0..=MAX_RATE_PER_SECOND).contains(&value)) {
                        return invalid(format!(
                            "{field}.{key} must be 0 to {MAX_RATE_PER_SECOND}, got {value}"
                        ));
                    }
                }
                if *workers != 0 {
                    return invalid(format!(
                        "{field}.concurrency belongs to the closed model; this run's phases have rates (open model)"
                    ));
                }
                (*from, to, concurrency)
            }
            (true, None) => {
                return invalid(format!(
                    "{field}.rate is missing: the first phase has a rate (open model), so every phase needs one"
                ));
            }
            (false, Some(_)) => {
                return invalid(format!(
                    "{field}.rate: the first phase has none (closed model), so no phase may have one"
                ));
            }
            (false, None) => {
                if rate_to.is_some() {
                    return invalid(format!("{field}.rate_to needs {field}.rate"));
                }
                let workers = match *workers {
                    0 => concurrency,
                    w if w > concurrency.min(MAX_CONCURRENCY) => {
                        return invalid(format!(
                            "{field}.concurrency must be at most the spec's concurrency ({concurrency}), got {w}"
                        ));
                    }
                    w => w,
                };
                (0.0, 0.0, workers)
            }
        };
        let end = start + Duration::from_millis(u64::from(*duration_ms));
        if end > Duration::from_secs(u64::from(MAX_DURATION_SECONDS)) {
            return invalid(format!(
                "spec.phases last {} s together, more than {MAX_DURATION_SECONDS} s",
                end.as_secs_f64()
            ));
        }
        laid.push(Phase {
            name: name.clone(),
            start,
            end,
            rate_from,
            rate_to,
            concurrency: workers,
        });
        start = end;
    }
    Ok((laid, if open { Shape::Open } else { Shape::Closed }))
}

/// The phases of a run without phases in its spec: a ramp from zero over `ramp` (if any),
/// then steady at `rate` (open model; 0 in the closed model) until `duration`.
pub fn implied(rate: f64, ramp: Duration, duration: Duration, concurrency: u32) -> Vec<Phase> {
    let mut phases = Vec::with_capacity(2);
    if !ramp.is_zero() {
        phases.push(Phase {
            name: "ramp".into(),
            start: Duration::ZERO,
            end: ramp,
            rate_from: 0.0,
            rate_to: rate,
            concurrency,
        });
    }
    if duration > ramp || phases.is_empty() {
        phases.push(Phase {
            name: "steady".into(),
            start: ramp,
            end: duration.max(ramp),
            rate_from: rate,
            rate_to: rate,
            concurrency,
        });
    }
    phases
}

/// Open model: when each request falls due.
#[derive(Debug, Clone)]
pub struct Schedule {
    phases: Vec<Phase>,
    /// Requests due before each phase starts.
    due_before: Vec<f64>,
}

impl Schedule {
    /// The schedule of `phases`, laid end to end.
    pub fn new(phases: &[Phase]) -> Self {
        let mut due_before = Vec::with_capacity(phases.len());
        let mut due = 0.0;
        for phase in phases {
            due_before.push(due);
            due += phase.due_within(phase.seconds());
        }
        Self {
            phases: phases.to_vec(),
            due_before,
        }
    }

    /// When request `n` (from 0) is due, after the run's start; `None` when it falls after
    /// the last phase, or beyond what a `Duration` holds.
    pub fn due_at(&self, n: u64) -> Option<Duration> {
        let n = n as f64;
        // The phase in which the integral of the rate passes n.
        let i = self.due_before.partition_point(|&before| before <= n);
        let i = i.checked_sub(1)?;
        let phase = &self.phases[i];
        let m = n - self.due_before[i];
        if m >= phase.due_within(phase.seconds()) {
            // Only the last phase can leave n unreached: every earlier one ends where the
            // next begins.
            return None;
        }
        Duration::try_from_secs_f64(phase.start.as_secs_f64() + phase.time_of(m)).ok()
    }

    /// How many requests are due within `elapsed` of the run's start.
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let t = elapsed.as_secs_f64();
        let due: f64 = self
            .phases
            .iter()
            .zip(&self.due_before)
            .take_while(|(p, _)| p.start.as_secs_f64() <= t)
            .last()
            .map_or(0.0, |(p, before)| {
                before + p.due_within(t - p.start.as_secs_f64())
            });
        due.floor() as u64
    }

    /// The highest rate it reaches.
    pub fn peak(&self) -> f64 {
        self.phases
            .iter()
            .map(|p| p.rate_from.max(p.rate_to))
            .fold(0.0, f64::max)
    }
}

/// Closed model: whether a worker may send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// It may.
    Now,
    /// Not before this moment after the run's start.
    From(Duration),
    /// Not again in this run.
    Never,
}

/// Closed model: the turn of worker `index` of `workers` at `elapsed` into a run with
/// `phases`, where a ramp of `ramp` starts the workers one after another.
pub fn closed_turn(
    phases: &[Phase],
    ramp: Duration,
    index: usize,
    workers: usize,
    elapsed: Duration,
) -> Turn {
    let start = ramp.mul_f64(index as f64 / workers.max(1) as f64);
    let at = elapsed.max(start);
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    match phases
        .iter()
        .find(|p| p.end > at && index < p.concurrency)
        .map(|p| p.start.max(at))
    {
        Some(from) if from <= elapsed => Turn::Now,
        Some(from) => Turn::From(from),
        None => Turn::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, start_s: f64, end_s: f64, from: f64, to: f64, workers: u32) -> Phase {
        Phase {
            name: name.into(),
            start: Duration::from_secs_f64(start_s),
            end: Duration::from_secs_f64(end_s),
            rate_from: from,
            rate_to: to,
            concurrency: workers,
        }
    }

    fn ms(d: Option<Duration>) -> f64 {
        d.unwrap().as_secs_f64() * 1000.0
    }

    #[test]
    fn requests_fall_due_on_a_steady_schedule_after_the_ramp() {
        let steady = Schedule::new(&implied(100.0, Duration::ZERO, Duration::from_secs(10), 1));
        assert_eq!(ms(steady.due_at(0)), 0.0);
        assert!((ms(steady.due_at(50)) - 500.0).abs() < 1e-9);
        // A 2 s ramp to 100/s makes 100 requests due in its course, the 100th at 2 s.
        let ramped = Schedule::new(&implied(
            100.0,
            Duration::from_secs(2),
            Duration::from_secs(10),
            1,
        ));
        assert!((ms(ramped.due_at(100)) - 2000.0).abs() < 1e-6);
        assert!((ms(ramped.due_at(25)) - 1000.0).abs() < 1e-6);
        assert!((ms(ramped.due_at(150)) - 2500.0).abs() < 1e-6);
        assert_eq!(ramped.due_by(Duration::from_secs(2)), 100);
        assert_eq!(ramped.due_by(Duration::from_secs(3)), 200);
        // The first request of a ramp from zero is due at once.
        assert_eq!(ms(ramped.due_at(0)), 0.0);
    }

    #[test]
    fn phases_ramp_between_rates_and_nothing_is_due_after_the_last() {
        let schedule = Schedule::new(&[
            phase("warmup", 0.0, 2.0, 50.0, 50.0, 1),
            phase("ramp", 2.0, 4.0, 50.0, 150.0, 1),
            phase("hold", 4.0, 5.0, 150.0, 150.0, 1),
        ]);
        // 100 in the warmup, 200 in the ramp (mean 100/s over 2 s), 150 in the hold.
        assert_eq!(schedule.due_by(Duration::from_secs(2)), 100);
        assert_eq!(schedule.due_by(Duration::from_secs(4)), 300);
        assert_eq!(schedule.due_by(Duration::from_secs(5)), 450);
        assert!((ms(schedule.due_at(300)) - 4000.0).abs() < 1e-6);
        // Halfway through the ramp: 50·1 + 100·1/4 = 75 requests.
        assert!((ms(schedule.due_at(175)) - 3000.0).abs() < 1e-6);
        assert_eq!(schedule.due_at(450), None);
        assert_eq!(schedule.peak(), 150.0);
    }

    #[test]
    fn a_phase_at_rate_zero_makes_nothing_due_and_the_next_picks_up() {
        let schedule = Schedule::new(&[
            phase("a", 0.0, 1.0, 10.0, 10.0, 1),
            phase("pause", 1.0, 3.0, 0.0, 0.0, 1),
            phase("b", 3.0, 4.0, 10.0, 10.0, 1),
        ]);
        assert!((ms(schedule.due_at(10)) - 3000.0).abs() < 1e-6);
        assert_eq!(schedule.due_by(Duration::from_secs(2)), 10);
    }

    #[test]
    fn a_vanishing_rate_is_never_due_and_does_not_panic() {
        let schedule = Schedule::new(&implied(1e-300, Duration::ZERO, Duration::from_secs(1), 1));
        assert_eq!(schedule.due_at(5), None);
        assert_eq!(schedule.due_at(u64::MAX), None);
    }

    #[test]
    fn closed_workers_follow_each_phase_concurrency() {
        let phases = [
            phase("two", 0.0, 1.0, 0.0, 0.0, 2),
            phase("four", 1.0, 2.0, 0.0, 0.0, 4),
        ];
        let turn = |index, at_s: f64| {
            closed_turn(
                &phases,
                Duration::ZERO,
                index,
                4,
                Duration::from_secs_f64(at_s),
            )
        };
        assert_eq!(turn(1, 0.5), Turn::Now);
        assert_eq!(turn(3, 0.5), Turn::From(Duration::from_secs(1)));
        assert_eq!(turn(3, 1.5), Turn::Now);
        assert_eq!(turn(0, 2.0), Turn::Never);
        // A ramp starts worker i at ramp·i/workers.
        let steady = implied(0.0, Duration::from_secs(2), Duration::from_secs(4), 4);
        assert_eq!(
            closed_turn(&steady, Duration::from_secs(2), 2, 4, Duration::ZERO),
            Turn::From(Duration::from_secs(1))
        );
    }

    #[test]
    fn bad_phases_are_refused_by_field() {
        let open = |name: &str, ms: u32, rate: f64| LoadPhase {
            name: name.into(),
            duration_ms: ms,
            rate: Some(rate),
            ..LoadPhase::default()
        };
        let error = |phases: &[LoadPhase]| from_spec(phases, 10).unwrap_err().to_string();
        assert!(error(&[open("a", 50, 1.0)]).contains("spec.phases[0].duration_ms"));
        assert!(error(&[open("a", 1000, 1.0), open("a", 1000, 1.0)]).contains("phases[1].name"));
        assert!(error(&[open("a", 1000, -1.0)]).contains("phases[0].rate"));
        let closed = LoadPhase {
            name: "c".into(),
            duration_ms: 1000,
            concurrency: 11,
            ..LoadPhase::default()
        };
        assert!(error(std::slice::from_ref(&closed)).contains("phases[0].concurrency"));
        assert!(error(&[open("a", 1000, 1.0), closed]).contains("phases[1].rate is missing"));
        assert!(error(&[open("a", 3_600_001, 1.0)]).contains("together"));
        let (laid, shape) = from_spec(&[open("a", 1000, 5.0), open("b", 500, 6.0)], 10).unwrap();
        assert_eq!(shape, Shape::Open);
        assert_eq!(laid[1].start, Duration::from_secs(1));
        assert_eq!(laid[1].end, Duration::from_millis(1500));
    }
}
