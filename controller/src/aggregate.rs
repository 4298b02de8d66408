//! Farm-wide metrics from every server's latest sample: a pure fold over registry entries.

use farm_proto::v1::FarmMetrics;

use crate::registry::ServerEntry;
use crate::status::Status;

/// Folds `entries` into the farm's aggregate, stamped `timestamp_ms`.
pub fn farm_metrics<'a>(
    entries: impl Iterator<Item = &'a ServerEntry>,
    timestamp_ms: u64,
) -> FarmMetrics {
    let mut m = FarmMetrics {
        timestamp_ms,
        ..FarmMetrics::default()
    };
    let mut reporting = 0u32;
    let mut p50_sum = 0.0;
    for entry in entries {
        m.servers_total += 1;
        match entry.status {
            Status::Healthy => m.healthy += 1,
            Status::Degraded => m.degraded += 1,
            Status::Stopped => m.stopped += 1,
            Status::Starting => m.starting += 1,
            Status::Unreachable => m.unreachable += 1,
        }
        // A silent server's last numbers are history, not the farm's present.
        if entry.status == Status::Unreachable {
            continue;
        }
        let Some(sample) = entry.latest() else {
            continue;
        };
        reporting += 1;
        m.cpu_percent_total += sample.cpu_percent;
        m.memory_bytes_total = m.memory_bytes_total.saturating_add(sample.memory_bytes);
        // Agents' numbers are checked on arrival, but a sum of valid numbers can still
        // overflow: every integer sum saturates.
        m.requests_total = m.requests_total.saturating_add(sample.requests_total);
        m.errors_total = m.errors_total.saturating_add(sample.errors_total);
        m.in_flight = m.in_flight.saturating_add(sample.in_flight);
        m.requests_per_second += entry.requests_per_second;
        m.errors_per_second += entry.errors_per_second;
        m.latency_p99_ms_max = m.latency_p99_ms_max.max(sample.latency_p99_ms);
        p50_sum += sample.latency_p50_ms;
    }
    if reporting > 0 {
        m.cpu_percent_mean = m.cpu_percent_total / f64::from(reporting);
        m.latency_p50_ms_mean = p50_sum / f64::from(reporting);
    }
    m
}
