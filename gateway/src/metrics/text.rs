//! Writing the Prometheus text format: metric families, label escaping, numbers.

use std::fmt::Write as _;

use farm_proto::v1 as pb;

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, newline).
pub(super) fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A sample value: Prometheus spells the non-finite ones its own way.
pub(super) fn float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{x}")
    }
}

/// One family with one series per server that has a sample.
pub(super) fn per_server<F>(
    out: &mut String,
    servers: &[pb::Server],
    name: &str,
    kind: &str,
    help: &str,
    value: F,
) where
    F: Fn(&pb::Server, &pb::MetricsSample) -> f64,
{
    family(out, name, kind, help);
    for s in servers {
        if let Some(m) = &s.metrics {
            let _ = writeln!(out, "{name}{{server=\"{}\"}} {}", s.id, float(value(s, m)));
        }
    }
}
