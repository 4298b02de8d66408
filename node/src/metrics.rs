//! The latency window behind the percentiles a node reports on `GET /metrics`.
//!
//! Latency percentiles are computed over the most recent [`LATENCY_WINDOW`] requests
//! rather than since start: the farm wants to see a node get slow *now*, and a fixed ring
//! buffer keeps both memory and the cost of recording a request constant.
//! Computing them copies and sorts the window, so `/metrics` reuses them for a moment (see
//! `AppState::metrics`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// How many of the most recent request latencies the percentiles cover.
pub(crate) const LATENCY_WINDOW: usize = 1024;

/// Latency percentiles in milliseconds, all 0 when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Percentiles {
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// A ring buffer of the last [`LATENCY_WINDOW`] latencies, in microseconds.
///
/// Lock-free: recording is one `fetch_add` and one store, the cheapest thing the hot
/// path can do. A snapshot taken while a request is being recorded may see that slot
/// old or new; for a statistic that is fine. `u32` microseconds reach 71 minutes, far
/// beyond any request a node serves (the slowest sleeps 30 s), and keep the window at
/// 4 KiB.
#[derive(Debug)]
pub(crate) struct LatencyWindow {
    micros: [AtomicU32; LATENCY_WINDOW],
    /// How many latencies were ever recorded; the next goes to `recorded % LATENCY_WINDOW`.
    recorded: AtomicU64,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        Self {
            micros: [const { AtomicU32::new(0) }; LATENCY_WINDOW],
            recorded: AtomicU64::new(0),
        }
    }
}

impl LatencyWindow {
    /// Records one latency, overwriting the oldest once the window is full.
    pub(crate) fn record(&self, latency: std::time::Duration) {
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        let slot = self.recorded.fetch_add(1, Ordering::Relaxed) % LATENCY_WINDOW as u64;
        self.micros[slot as usize].store(micros, Ordering::Relaxed);
    }

    /// A copy of the recorded latencies and how many of them are valid, for computing
    /// percentiles.
    pub(crate) fn snapshot(&self) -> ([u32; LATENCY_WINDOW], usize) {
        let recorded = self.recorded.load(Ordering::Relaxed);
        let len = recorded.min(LATENCY_WINDOW as u64) as usize;
        let mut micros = [0; LATENCY_WINDOW];
        for (copy, slot) in micros.iter_mut().zip(&self.micros).take(len) {
            *copy = slot.load(Ordering::Relaxed);
        }
        (micros, len)
    }
}

/// Nearest-rank percentiles of the first `len` entries of `micros` (sorted in place).
pub(crate) fn percentiles(micros: &mut [u32; LATENCY_WINDOW], len: usize) -> Percentiles {
    let values = &mut micros[..len];
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_unstable();
    let rank = |p: f64| {
        // Nearest rank: the smallest value with at least p of the values at or below it.
        let index = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
        f64::from(values[index]) / 1000.0
    };
    Percentiles {
        p50_ms: rank(0.50),
        p90_ms: rank(0.90),
        p99_ms: rank(0.99),
        max_ms: f64::from(values[values.len() - 1]) / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn percentiles_of(window: &LatencyWindow) -> Percentiles {
        let (mut micros, len) = window.snapshot();
        percentiles(&mut micros, len)
    }

    #[test]
    fn empty_window_reports_zeros() {
        assert_eq!(
            percentiles_of(&LatencyWindow::default()),
            Percentiles::default()
        );
    }

    #[test]
    fn nearest_rank_over_one_to_hundred() {
        let window = LatencyWindow::default();
        // Record out of order: percentiles must not depend on arrival order.
        for ms in (1..=100u64).rev() {
            window.record(Duration::from_millis(ms));
        }
        let p = percentiles_of(&window);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p90_ms, 90.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
    }

    #[test]
    fn window_forgets_the_oldest() {
        let window = LatencyWindow::default();
        window.record(Duration::from_secs(10));
        for _ in 0..LATENCY_WINDOW {
            window.record(Duration::from_millis(1));
        }
        let p = percentiles_of(&window);
        assert_eq!(p.max_ms, 1.0, "the 10 s latency fell out of the window");
        assert_eq!(window.snapshot().1, LATENCY_WINDOW);
    }

    #[test]
    fn huge_latency_saturates() {
        let window = LatencyWindow::default();
        window.record(Duration::from_secs(u64::MAX / 4));
        assert_eq!(percentiles_of(&window).max_ms, f64::from(u32::MAX) / 1000.0);
    }
}
