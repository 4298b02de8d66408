//! The numbers behind a fault's decisions: a counter-based generator, the delay a latency
//! fault picks, and the rate limiter.
//!
//! A fault must decide the same way on every node given the same seed, without a lock on the
//! request path. A stateful generator would need one (or would give each thread its own
//! sequence). Instead each fault counts the requests in its scope, and the `n`-th request's
//! draws are pure functions of `(seed, n, k)`: one `fetch_add` per request, and the same
//! sequence of decisions everywhere for requests in the same order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// splitmix64's increment: 2⁶⁴ divided by the golden ratio.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// How many draws each request has in its fault's sequence: draw 0 decides whether the fault
/// hits it, the others choose what the fault does (a delay, a status).
const DRAWS_PER_REQUEST: u64 = 4;

/// The `k`-th draw (`k < 4`) of the `n`-th request in the sequence seeded by `seed`.
///
/// It is output number `4n + k + 1` of splitmix64 started from `seed`: splitmix64's state
/// after `i` steps is `seed + i × GOLDEN`, so any output can be computed on its own, and its
/// finaliser makes neighbouring states independent-looking (it passes BigCrush).
pub(crate) fn draw(seed: u64, n: u64, k: u64) -> u64 {
    debug_assert!(k < DRAWS_PER_REQUEST);
    let step = n
        .wrapping_mul(DRAWS_PER_REQUEST)
        .wrapping_add(k)
        .wrapping_add(1);
    let mut z = seed.wrapping_add(step.wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `bits` as a uniform number in `[0, 1)`, from its top 53 bits (an `f64`'s precision).
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// One request's place in a fault's sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draws {
    seed: u64,
    n: u64,
}

impl Draws {
    pub(crate) fn new(seed: u64, n: u64) -> Self {
        Self { seed, n }
    }

    /// Draw `k` as a uniform number in `[0, 1)`.
    pub(crate) fn unit(self, k: u64) -> f64 {
        unit(draw(self.seed, self.n, k))
    }

    /// Whether a fault that hits `fraction` of its requests hits this one (draw 0).
    pub(crate) fn hits(self, fraction: f64) -> bool {
        fraction >= 1.0 || self.unit(0) < fraction
    }
}

/// A fixed delay with jitter: `delay_ms` moved by up to `jitter_ms` either way, uniformly
/// (`u` in `[0, 1)`), never below 0. In milliseconds.
pub(crate) fn jittered(delay_ms: u32, jitter_ms: u32, u: f64) -> f64 {
    (f64::from(delay_ms) + f64::from(jitter_ms) * (2.0 * u - 1.0)).max(0.0)
}

/// The quantile function of a delay distribution given by three percentiles: linear through
/// (0, p50/2), (0.5, p50), (0.9, p90), (0.99, p99), and p99 above. `u` in `[0, 1)`; in
/// milliseconds.
///
/// Feeding it uniform draws gives delays whose 50th, 90th and 99th percentiles are the ones
/// asked for, with a tail that stops at p99 rather than inventing a maximum nobody asked for.
pub(crate) fn quantile(p50_ms: u32, p90_ms: u32, p99_ms: u32, u: f64) -> f64 {
    let (p50, p90, p99) = (f64::from(p50_ms), f64::from(p90_ms), f64::from(p99_ms));
    let points = [(0.0, p50 / 2.0), (0.5, p50), (0.9, p90), (0.99, p99)];
    for pair in points.windows(2) {
        let ((u0, v0), (u1, v1)) = (pair[0], pair[1]);
        if u < u1 {
            return v0 + (v1 - v0) * (u.max(u0) - u0) / (u1 - u0);
        }
    }
    p99
}

/// A token bucket, lock-free: refilled at `per_second` requests a second, holding at most
/// `max(1, per_second / 20)`.
///
/// The burst is 50 ms worth of requests rather than a second's: a full second's burst would
/// let a 5-second measurement see 20 % more than the rate, while 50 ms still absorbs the
/// bunching of requests that arrive together.
///
/// It is kept as the generic cell rate algorithm: one atomic holds the "theoretical arrival
/// time" of the next request, which is the bucket's state in one number (the bucket is full
/// when it lies in the past, empty when it lies `burst` intervals ahead), so admitting a
/// request is one compare-and-swap.
#[derive(Debug)]
pub(crate) struct Limiter {
    epoch: Instant,
    /// Nanoseconds between two requests at the rate.
    interval_ns: u64,
    /// How far ahead of now the theoretical arrival time may run: `burst - 1` intervals.
    tolerance_ns: u64,
    /// The theoretical arrival time, in nanoseconds since `epoch`.
    next_ns: AtomicU64,
}

impl Limiter {
    /// A full bucket at `epoch` for `per_second` (at least 1) requests a second.
    pub(crate) fn new(per_second: u32, epoch: Instant) -> Self {
        let per_second = u64::from(per_second.max(1));
        let interval_ns = (1_000_000_000 / per_second).max(1);
        let burst = (per_second / 20).max(1);
        Self {
            epoch,
            interval_ns,
            tolerance_ns: (burst - 1) * interval_ns,
            next_ns: AtomicU64::new(0),
        }
    }

    /// Takes a token at `now`, or says there is none.
    pub(crate) fn admit(&self, now: Instant) -> bool {
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let mut next = self.next_ns.load(Ordering::Relaxed);
        loop {
            let start = next.max(now_ns);
            if start - now_ns > self.tolerance_ns {
                return false;
            }
            match self.next_ns.compare_exchange_weak(
                next,
                start.saturating_add(self.interval_ns),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => next = seen,
            }
        }
    }

    /// How many requests the bucket lets through at once when full.
    #[cfg(test)]
    pub(crate) fn burst(&self) -> u64 {
        self.tolerance_ns / self.interval_ns + 1
    }
}

/// Milliseconds as a duration, fractions included (to the microsecond), never negative.
pub(crate) fn millis(ms: f64) -> Duration {
    Duration::from_micros((ms.max(0.0) * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 as usually written: a state advanced by one step per output.
    fn splitmix64(seed: u64) -> impl Iterator<Item = u64> {
        let mut state = seed;
        std::iter::from_fn(move || {
            state = state.wrapping_add(GOLDEN);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            Some(z ^ (z >> 31))
        })
    }

    #[test]
    fn draws_are_splitmix64_outputs_by_index() {
        // The reference implementation's first outputs for seeds 0 and 1234567.
        assert_eq!(draw(0, 0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(draw(1_234_567, 0, 0), 6_457_827_717_110_365_317);
        assert_eq!(draw(1_234_567, 0, 1), 3_203_168_211_198_807_973);
        for seed in [0, 7, u64::MAX] {
            let sequence: Vec<u64> = splitmix64(seed).take(40).collect();
            for n in 0..10 {
                for k in 0..DRAWS_PER_REQUEST {
                    assert_eq!(draw(seed, n, k), sequence[(n * 4 + k) as usize]);
                }
            }
        }
    }

    #[test]
    fn the_same_seed_decides_the_same_and_another_seed_differently() {
        let decisions = |seed: u64| -> Vec<bool> {
            (0..1000)
                .map(|n| Draws::new(seed, n).hits(0.3))
                .collect::<Vec<_>>()
        };
        assert_eq!(decisions(42), decisions(42));
        assert_ne!(decisions(42), decisions(43));
        let hits = decisions(42).iter().filter(|hit| **hit).count();
        assert!((250..350).contains(&hits), "{hits} of 1000 at 30 %");
        assert!((0..100).all(|n| Draws::new(1, n).hits(1.0)));
        assert!((0..100).all(|n| !Draws::new(1, n).hits(0.0)));
    }

    #[test]
    fn units_stay_below_one() {
        assert_eq!(unit(0), 0.0);
        assert!(unit(u64::MAX) < 1.0);
        let mean = (0..10_000).map(|n| Draws::new(5, n).unit(1)).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn quantile_runs_through_the_percentiles() {
        let q = |u: f64| quantile(100, 300, 1000, u);
        let points = [
            (0.0, 50.0),
            (0.25, 75.0),
            (0.5, 100.0),
            (0.7, 200.0),
            (0.9, 300.0),
            (0.945, 650.0),
            (0.99, 1000.0),
            (0.999_999, 1000.0),
        ];
        for (u, expected) in points {
            assert!((q(u) - expected).abs() < 1e-9, "q({u}) = {}", q(u));
        }
        // Monotone, so the draws' percentiles are the function's.
        let values: Vec<f64> = (0..1000).map(|i| q(f64::from(i) / 1000.0)).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
        // Equal percentiles: a constant above the median.
        assert_eq!(quantile(0, 0, 0, 0.3), 0.0);
        assert_eq!(quantile(200, 200, 200, 0.95), 200.0);
    }

    #[test]
    fn jitter_spreads_both_ways_and_never_below_zero() {
        assert_eq!(jittered(200, 50, 0.0), 150.0);
        assert_eq!(jittered(200, 50, 0.5), 200.0);
        assert!(jittered(200, 50, 0.999_999) < 250.0);
        assert_eq!(jittered(10, 50, 0.0), 0.0);
        assert_eq!(millis(1.5), Duration::from_micros(1500));
        assert_eq!(millis(-3.0), Duration::ZERO);
    }

    #[test]
    fn the_limiter_lets_its_rate_and_a_small_burst_through() {
        let epoch = Instant::now();
        let limiter = Limiter::new(1000, epoch);
        assert_eq!(limiter.burst(), 50);
        // Offered 2,000 a second for 5 s.
        let admitted = (0..10_000u64)
            .filter(|i| limiter.admit(epoch + Duration::from_micros(i * 500)))
            .count();
        assert!((5000..=5051).contains(&admitted), "{admitted}");

        let slow = Limiter::new(1, epoch);
        assert_eq!(slow.burst(), 1);
        assert!(slow.admit(epoch));
        assert!(!slow.admit(epoch + Duration::from_millis(999)));
        assert!(slow.admit(epoch + Duration::from_millis(1000)));

        // A full bucket after a quiet spell, no more.
        let limiter = Limiter::new(100, epoch);
        let later = epoch + Duration::from_secs(10);
        let burst = (0..20).filter(|_| limiter.admit(later)).count();
        assert_eq!(burst, 5);
    }
}
