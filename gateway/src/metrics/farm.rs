//! The farm's series, read from the controller on every scrape: one per server (labelled with
//! its id) and the farm's totals.

use std::fmt::Write as _;

use farm_proto::v1 as pb;

use super::text::{escape, family, float, per_server};
use crate::model::ServerStatus;

pub(super) fn write_servers(out: &mut String, servers: &[pb::Server]) {
    family(
        out,
        "farm_server_info",
        "gauge",
        "One series per server, value 1, carrying its name, node address, runtime and agent version.",
    );
    for s in servers {
        let _ = writeln!(
            out,
            "farm_server_info{{server=\"{}\",name=\"{}\",node_address=\"{}\",runtime=\"{}\",agent_version=\"{}\"}} 1",
            s.id,
            escape(&s.name),
            escape(&s.node_address),
            escape(&s.runtime),
            escape(&s.agent_version)
        );
    }
    family(
        out,
        "farm_server_up",
        "gauge",
        "Whether the server's agent stream is open (1) or not (0).",
    );
    for s in servers {
        let _ = writeln!(
            out,
            "farm_server_up{{server=\"{}\"}} {}",
            s.id,
            u8::from(s.connected)
        );
    }
    family(
        out,
        "farm_server_status",
        "gauge",
        "The controller's verdict on each server: 1 for its current status, 0 for the others.",
    );
    for s in servers {
        let current = ServerStatus::from(s.status);
        for status in ServerStatus::ALL {
            let _ = writeln!(
                out,
                "farm_server_status{{server=\"{}\",status=\"{}\"}} {}",
                s.id,
                status.as_str(),
                u8::from(status == current)
            );
        }
    }
    per_server(
        out,
        servers,
        "farm_server_cpu_cores",
        "gauge",
        "CPU used by the server (node plus agent), in cores (1 = one core busy).",
        |_, m| m.cpu_percent / 100.0,
    );
    per_server(
        out,
        servers,
        "farm_server_memory_bytes",
        "gauge",
        "Memory the server costs the machine (proportional set size of node plus agent, or the container's use), in bytes.",
        |_, m| m.memory_bytes as f64,
    );
    per_server(
        out,
        servers,
        "farm_server_requests_total",
        "counter",
        "Requests the server's node has served since it started (probes excluded).",
        |_, m| m.requests_total as f64,
    );
    per_server(
        out,
        servers,
        "farm_server_errors_total",
        "counter",
        "Answers with status 500 or more the server's node has sent since it started.",
        |_, m| m.errors_total as f64,
    );
    per_server(
        out,
        servers,
        "farm_server_requests_per_second",
        "gauge",
        "Requests per second served, from the server's last two samples.",
        |s, _| s.requests_per_second,
    );
    per_server(
        out,
        servers,
        "farm_server_errors_per_second",
        "gauge",
        "Errors (status 500 or more) per second, from the server's last two samples.",
        |s, _| s.errors_per_second,
    );
    per_server(
        out,
        servers,
        "farm_server_in_flight_requests",
        "gauge",
        "Requests the server's node is serving right now.",
        |_, m| f64::from(m.in_flight),
    );
    per_server(
        out,
        servers,
        "farm_server_latency_p50_seconds",
        "gauge",
        "Median latency of the server's recent requests, in seconds.",
        |_, m| m.latency_p50_ms / 1000.0,
    );
    per_server(
        out,
        servers,
        "farm_server_latency_p99_seconds",
        "gauge",
        "99th percentile latency of the server's recent requests, in seconds.",
        |_, m| m.latency_p99_ms / 1000.0,
    );
    per_server(
        out,
        servers,
        "farm_server_node_restarts_total",
        "counter",
        "Times the agent restarted the server's node after it exited on its own.",
        |_, m| f64::from(m.node_restarts),
    );
    per_server(
        out,
        servers,
        "farm_server_last_sample_timestamp_seconds",
        "gauge",
        "When the server's latest sample was taken, in seconds since the Unix epoch.",
        |_, m| m.timestamp_ms as f64 / 1000.0,
    );
}

pub(super) fn write_farm(out: &mut String, m: &pb::FarmMetrics) {
    family(
        out,
        "farm_servers",
        "gauge",
        "Servers of the farm, by status.",
    );
    for (status, count) in [
        ("healthy", m.healthy),
        ("degraded", m.degraded),
        ("stopped", m.stopped),
        ("starting", m.starting),
        ("unreachable", m.unreachable),
    ] {
        let _ = writeln!(out, "farm_servers{{status=\"{status}\"}} {count}");
    }
    let scalars: [(&str, &str, &str, f64); 9] = [
        (
            "farm_cpu_cores",
            "gauge",
            "CPU used by all servers, in cores.",
            m.cpu_percent_total / 100.0,
        ),
        (
            "farm_memory_bytes",
            "gauge",
            "Memory all servers cost the machine (sum of their proportional set sizes), in bytes.",
            m.memory_bytes_total as f64,
        ),
        (
            "farm_requests_total",
            "counter",
            "Requests served by all servers since they started.",
            m.requests_total as f64,
        ),
        (
            "farm_errors_total",
            "counter",
            "Errors (status 500 or more) served by all servers since they started.",
            m.errors_total as f64,
        ),
        (
            "farm_requests_per_second",
            "gauge",
            "Requests per second across the farm.",
            m.requests_per_second,
        ),
        (
            "farm_errors_per_second",
            "gauge",
            "Errors per second across the farm.",
            m.errors_per_second,
        ),
        (
            "farm_latency_p99_max_seconds",
            "gauge",
            "Highest p99 latency among the servers, in seconds.",
            m.latency_p99_ms_max / 1000.0,
        ),
        (
            "farm_in_flight_requests",
            "gauge",
            "Requests in flight across the farm.",
            f64::from(m.in_flight),
        ),
        (
            "farm_agent_streams_refused_total",
            "counter",
            "Agent streams the controller refused: no or a wrong farm token, a server another live stream holds, an unexpected node address, or a full farm.",
            m.agent_streams_refused as f64,
        ),
    ];
    for (name, kind, help, value) in scalars {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", float(value));
    }
}
