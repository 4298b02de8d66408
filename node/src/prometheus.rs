//! The node's metrics in the Prometheus text format (version 0.0.4), served on
//! `GET /metrics/prometheus` beside the JSON of `GET /metrics`, which stays as it is.
//!
//! A Prometheus pointed at the farm finds every node through the gateway's HTTP service
//! discovery and scrapes it directly, so each node exposes its own figures: what a server
//! looks like from the inside while a load balancer or a fault works on it. The series carry
//! no label naming the server: Prometheus adds the target's labels (`server`, `name`,
//! `runtime`, from discovery) and `instance`/`job` itself, and a target that set them too would
//! only clash.
//!
//! Everything but the latency histogram is read at scrape time from the counters the node
//! keeps anyway. The histogram ([`Histogram`]) is the one thing the request path pays for:
//! two relaxed atomic adds per counted request into fixed arrays, no lock and no allocation.
//! The node runs on one thread, so the adds never contend and sharding them would buy nothing.
//!
//! Like `/metrics`, the route is never touched by a fault (it is one of the watched routes),
//! and requests carrying the probe header are left out of every figure.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use farm_node_api::api::LoadStatus;
use http::StatusCode;

use crate::faults::KINDS;

/// The `Content-Type` of the exposition.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The upper bounds of the latency buckets, in microseconds: 1 ms to 10 s in 1-2.5-5 steps,
/// which spans a `/health` answer on a quiet node up to the slowest `/slow-endpoint` sleeps
/// and fault delays that still answer. Fixed, so that every node's buckets line up and a
/// `histogram_quantile` over `sum by (le)` of the whole farm is meaningful.
const BOUNDS_MICROS: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// [`BOUNDS_MICROS`] as the `le` labels spell them, in seconds.
const BOUNDS_LE: [&str; 13] = [
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10",
];

/// The status classes answers are counted by, as the `class` label spells them.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Latencies above this are counted as this much: 71 minutes, as in the percentile window, far
/// beyond anything a node answers (its longest sleep is 30 s).
const MAX_MICROS: u64 = u32::MAX as u64;

/// Answer latencies by status class, in fixed buckets ([`BOUNDS_MICROS`]), since start.
#[derive(Debug)]
pub(crate) struct Histogram {
    /// `counts[class][i]`: answers of that class whose latency falls in bucket `i`, above
    /// bound `i - 1` and at most bound `i`; the last slot is above the last bound. Not
    /// cumulative: recording touches one slot, the scrape adds them up.
    counts: [[AtomicU64; BOUNDS_MICROS.len() + 1]; CLASSES.len()],
    /// The latencies of each class added up, in microseconds.
    sum_micros: [AtomicU64; CLASSES.len()],
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [const { [const { AtomicU64::new(0) }; BOUNDS_MICROS.len() + 1] };
                CLASSES.len()],
            sum_micros: [const { AtomicU64::new(0) }; CLASSES.len()],
        }
    }
}

impl Histogram {
    /// Counts one answer with `status` that took `latency`.
    #[inline]
    pub(crate) fn record(&self, status: StatusCode, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .min(MAX_MICROS);
        let class = class_of(status);
        let bucket = BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.counts[class][bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros[class].fetch_add(micros, Ordering::Relaxed);
    }
}

/// The index in [`CLASSES`] of `status`'s class. `http` allows statuses up to 999; the node
/// never answers above 599, and anything there would count as a 5xx.
fn class_of(status: StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, CLASSES.len()) - 1
}

/// What the exposition reports besides the histogram, read once per scrape.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) requests_total: u64,
    pub(crate) errors_total: u64,
    pub(crate) in_flight: u32,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) connections_open: usize,
    pub(crate) connections_refused: u64,
    pub(crate) uptime: Duration,
    /// CPU over the last second, in percent of one core.
    pub(crate) cpu_percent: f64,
    pub(crate) cpu_seconds: f64,
    pub(crate) rss_bytes: u64,
    pub(crate) disk_read_bytes: u64,
    pub(crate) disk_write_bytes: u64,
    pub(crate) load: Option<LoadStatus>,
    /// The kinds of fault in force, named as in [`KINDS`].
    pub(crate) faults_active: Vec<String>,
}

/// The whole exposition: every family with its `HELP` and `TYPE`, as `promtool check metrics`
/// wants them.
pub(crate) fn render(s: &Snapshot, histogram: &Histogram) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let faulted = |kind: &str| s.faults_active.iter().any(|active| active == kind);

    gauge(
        &mut out,
        "farm_node_up",
        "Whether the node serves: 1 in every answer it gives (a node that is down gives none).",
        1.0,
    );
    gauge(
        &mut out,
        "farm_node_healthy",
        "Whether GET /health answers healthy: 0 while a health fault is in force, whatever its \
         share of requests.",
        f64::from(u8::from(!faulted("health"))),
    );
    gauge(
        &mut out,
        "farm_node_ready",
        "Whether GET /ready answers ready: 0 while a readiness fault is in force.",
        f64::from(u8::from(!faulted("readiness"))),
    );
    family(
        &mut out,
        "farm_node_fault_active",
        "gauge",
        "Whether a fault of this kind is in force on the node (1) or not (0).",
    );
    for kind in KINDS {
        let _ = writeln!(
            out,
            "farm_node_fault_active{{kind=\"{kind}\"}} {}",
            u8::from(faulted(kind))
        );
    }

    counter(
        &mut out,
        "farm_node_requests_total",
        "Requests received, counted on arrival (probes excluded).",
        s.requests_total as f64,
    );
    counter(
        &mut out,
        "farm_node_errors_total",
        "Requests answered with a 5xx status (probes excluded).",
        s.errors_total as f64,
    );
    gauge(
        &mut out,
        "farm_node_requests_in_flight",
        "Requests received and not yet answered (probes excluded).",
        f64::from(s.in_flight),
    );
    write_histogram(&mut out, histogram);
    counter(
        &mut out,
        "farm_node_http_received_bytes_total",
        "Request body bytes received, from the requests' declared lengths (probes excluded).",
        s.rx_bytes as f64,
    );
    counter(
        &mut out,
        "farm_node_http_sent_bytes_total",
        "Response body bytes sent, from the answers' declared lengths (probes excluded).",
        s.tx_bytes as f64,
    );
    gauge(
        &mut out,
        "farm_node_connections_open",
        "Client connections open now.",
        s.connections_open as f64,
    );
    counter(
        &mut out,
        "farm_node_connections_refused_total",
        "Connections closed at once because the node held its maximum.",
        s.connections_refused as f64,
    );

    gauge(
        &mut out,
        "farm_node_cpu_ratio",
        "CPU used by the node process over the last second, in cores (1 is one core busy).",
        s.cpu_percent / 100.0,
    );
    counter(
        &mut out,
        "farm_node_cpu_seconds_total",
        "CPU time used by the node process, user and system, read once a second.",
        s.cpu_seconds,
    );
    gauge(
        &mut out,
        "farm_node_memory_resident_bytes",
        "Resident memory of the node process, read once a second.",
        s.rss_bytes as f64,
    );
    counter(
        &mut out,
        "farm_node_disk_read_bytes_total",
        "Bytes the node process read from storage, read once a second.",
        s.disk_read_bytes as f64,
    );
    counter(
        &mut out,
        "farm_node_disk_written_bytes_total",
        "Bytes the node process wrote to storage, read once a second.",
        s.disk_write_bytes as f64,
    );
    gauge(
        &mut out,
        "farm_node_simulated_load_cpu_ratio",
        "CPU the simulated load burns, in cores; 0 when none runs.",
        s.load.map_or(0.0, |load| load.cpu_percent / 100.0),
    );
    gauge(
        &mut out,
        "farm_node_simulated_load_memory_bytes",
        "Memory the simulated load holds resident; 0 when none runs.",
        s.load
            .map_or(0.0, |load| f64::from(load.memory_mb) * 1024.0 * 1024.0),
    );
    gauge(
        &mut out,
        "farm_node_uptime_seconds",
        "Time since the node started.",
        s.uptime.as_secs_f64(),
    );
    family(
        &mut out,
        "farm_node_info",
        "gauge",
        "The node's version, as a label; always 1.",
    );
    let _ = writeln!(
        out,
        "farm_node_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// `farm_node_request_duration_seconds`: one histogram per status class, cumulative buckets
/// up to `+Inf`, then `_sum` and `_count` (the `+Inf` bucket, so the two always agree).
fn write_histogram(out: &mut String, histogram: &Histogram) {
    const NAME: &str = "farm_node_request_duration_seconds";
    family(
        out,
        NAME,
        "histogram",
        "Time from a request's arrival until its answer's head was ready, by status class \
         (probes, and requests that got no answer, excluded).",
    );
    for (class, label) in CLASSES.iter().enumerate() {
        let mut cumulative = 0u64;
        for (slot, count) in histogram.counts[class].iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = BOUNDS_LE.get(slot).copied().unwrap_or("+Inf");
            let _ = writeln!(
                out,
                "{NAME}_bucket{{class=\"{label}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = histogram.sum_micros[class].load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{NAME}_sum{{class=\"{label}\"}} {}", float(sum));
        let _ = writeln!(out, "{NAME}_count{{class=\"{label}\"}} {cumulative}");
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {}", float(value));
}

fn counter(out: &mut String, name: &str, help: &str, value: f64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", float(value));
}

/// A sample value; Prometheus spells the non-finite ones its own way.
fn float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn bounds_and_labels_agree() {
        for (micros, le) in BOUNDS_MICROS.iter().zip(BOUNDS_LE) {
            let seconds: f64 = le.parse().unwrap();
            assert_eq!((seconds * 1e6).round() as u64, *micros, "{le}");
        }
        assert!(BOUNDS_MICROS.is_sorted());
    }

    #[test]
    fn a_latency_falls_in_the_first_bucket_at_or_above_it() {
        let histogram = Histogram::default();
        histogram.record(StatusCode::OK, Duration::from_micros(1_000)); // le 0.001
        histogram.record(StatusCode::OK, Duration::from_micros(1_001)); // le 0.0025
        histogram.record(StatusCode::OK, Duration::from_secs(11)); // only +Inf
        histogram.record(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO);
        histogram.record(StatusCode::NOT_FOUND, Duration::from_secs(100_000)); // capped
        let text = render(&Snapshot::default(), &histogram);
        let ok = lines_with(
            &text,
            "farm_node_request_duration_seconds_bucket{class=\"2xx\"",
        );
        assert_eq!(ok.len(), BOUNDS_MICROS.len() + 1);
        assert_eq!(
            ok[0],
            "farm_node_request_duration_seconds_bucket{class=\"2xx\",le=\"0.001\"} 1"
        );
        assert_eq!(
            ok[1],
            "farm_node_request_duration_seconds_bucket{class=\"2xx\",le=\"0.0025\"} 2"
        );
        assert_eq!(
            ok[12],
            "farm_node_request_duration_seconds_bucket{class=\"2xx\",le=\"10\"} 2"
        );
        assert_eq!(
            ok[13],
            "farm_node_request_duration_seconds_bucket{class=\"2xx\",le=\"+Inf\"} 3"
        );
        assert!(text.contains("farm_node_request_duration_seconds_sum{class=\"2xx\"} 11.002001\n"));
        assert!(text.contains("farm_node_request_duration_seconds_count{class=\"2xx\"} 3\n"));
        assert!(
            text.contains(
                "farm_node_request_duration_seconds_bucket{class=\"5xx\",le=\"0.001\"} 1\n"
            )
        );
        assert!(
            text.contains("farm_node_request_duration_seconds_sum{class=\"4xx\"} 4294.967295\n")
        );
        assert!(text.contains("farm_node_request_duration_seconds_count{class=\"1xx\"} 0\n"));
    }

    #[test]
    fn faults_show_in_health_readiness_and_kinds() {
        let snapshot = Snapshot {
            faults_active: vec!["latency".into(), "health".into()],
            ..Snapshot::default()
        };
        let text = render(&snapshot, &Histogram::default());
        assert!(text.contains("\nfarm_node_healthy 0\n"), "{text}");
        assert!(text.contains("\nfarm_node_ready 1\n"), "{text}");
        assert!(text.contains("farm_node_fault_active{kind=\"latency\"} 1\n"));
        assert!(text.contains("farm_node_fault_active{kind=\"health\"} 1\n"));
        assert!(text.contains("farm_node_fault_active{kind=\"abort\"} 0\n"));
        assert_eq!(
            lines_with(&text, "farm_node_fault_active{").len(),
            KINDS.len()
        );
    }

    #[test]
    fn every_family_has_help_and_type() {
        let text = render(&Snapshot::default(), &Histogram::default());
        let types = lines_with(&text, "# TYPE ");
        let helps = lines_with(&text, "# HELP ");
        assert_eq!(types.len(), helps.len());
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| text.contains(&format!("# TYPE {base} histogram")))
                .unwrap_or(name);
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "no TYPE for {line}"
            );
        }
    }
}
