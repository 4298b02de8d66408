//! `farm-backoff`: exponential backoff with jitter, for every retry loop of the farm:
//! agent reconnects, node restarts, agent restarts by the process runtime.
//!
//! Jitter matters here: when the controller restarts, fifty or a thousand agents lose their
//! stream at the same instant, and without jitter they would all knock again in lockstep.

use std::time::{Duration, Instant};

use rand::Rng;

/// The delays of a retry loop: `initial`, then doubling up to `max`, each drawn at random
/// from the upper half of the current step so that retries spread out but never all
/// collapse to zero. After `reset_after` of quiet the sequence starts over.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    current: Duration,
    last_failure: Option<Instant>,
}

impl Backoff {
    /// A backoff from `initial` to `max`, which starts over after `reset_after` without failure.
    pub fn new(initial: Duration, max: Duration, reset_after: Duration) -> Self {
        Self {
            initial,
            max,
            reset_after,
            current: initial,
            last_failure: None,
        }
    }

    /// The delay before the next attempt, after a failure now.
    pub fn next_delay(&mut self) -> Duration {
        let now = Instant::now();
        if self
            .last_failure
            .is_some_and(|at| now.duration_since(at) > self.reset_after)
        {
            self.current = self.initial;
        }
        self.last_failure = Some(now);
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// Forgets past failures: the next delay is the initial one again.
    pub fn reset(&mut self) {
        self.current = self.initial;
        self.last_failure = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_jittered_bounds_and_cap() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(800),
            Duration::from_secs(60),
        );
        let expected_steps = [100u64, 200, 400, 800, 800, 800];
        for step in expected_steps {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(step / 2) && d <= Duration::from_millis(step),
                "delay {d:?} outside [{}, {}] ms",
                step / 2,
                step
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
