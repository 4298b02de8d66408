//! `GET /metrics`: the farm and the gateway in the Prometheus text format (version 0.0.4).
//!
//! The farm's part is read from the controller on every scrape (`ListServers` and
//! `GetMetrics`, at once): the gateway keeps no farm state, so a scrape is never stale.
//! Per-server series carry a `server` label with the server's id. The gateway's own part
//! (requests by route, method and status; latency by route) is kept here, in memory.
//!
//! A scrape answers 200 even when the controller is down: `farm_controller_up` is 0 then,
//! the farm series are absent, and the gateway's own series are still there, which is what
//! an alert on "controller down" wants to see.
//!
//! Label values are bounded: `route` is a route template (`/api/servers/{id}`), a
//! `farm.v1.FarmService` grpc-web method or `unmatched`; `method` is one of the methods the
//! API uses or `other`; `status` is a status code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, Response as ApiResponse};
use axum::extract::{MatchedPath, Request, State};
use axum::response::{IntoResponse, Response};
use farm_proto::v1 as pb;
use http::{Method, header};

use crate::AppState;
use crate::controller::within;
use crate::grpc_web::FARM_SERVICE_PREFIX;
use crate::model::ServerStatus;

/// Upper bounds of the latency histogram's buckets, in seconds: fine below 10 ms where the
/// REST calls live, coarse up to a minute for load tests and broadcasts.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0,
];

/// How long a scrape waits for the controller.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(5);

/// The methods of `farm.v1.FarmService`, the only grpc-web routes counted by name.
const GRPC_METHODS: [&str; 12] = [
    "ListServers",
    "GetServer",
    "ServerAction",
    "CheckHealth",
    "GetMetrics",
    "RunLoadTest",
    "GetLoadTest",
    "ListLoadTests",
    "ScaleFarm",
    "SimulateLoad",
    "Broadcast",
    "Watch",
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, &bound) in self.buckets.iter_mut().zip(&BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// One route's figures.
#[derive(Debug, Default)]
struct RouteTally {
    /// Requests by method and status.
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: Histogram,
}

/// By route template, so that counting a request to a known route allocates nothing.
#[derive(Debug, Default)]
struct Tally {
    routes: BTreeMap<String, RouteTally>,
}

/// The gateway's own request metrics.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    tally: Mutex<Tally>,
}

impl RequestMetrics {
    /// Counts one request to `route` answered with `status` after `elapsed`.
    pub fn record(&self, route: &str, method: &'static str, status: u16, elapsed: Duration) {
        let Ok(mut tally) = self.tally.lock() else {
            return;
        };
        let figures = match tally.routes.get_mut(route) {
            Some(figures) => figures,
            None => tally.routes.entry(route.to_owned()).or_default(),
        };
        *figures.requests.entry((method, status)).or_default() += 1;
        figures.latency.observe(elapsed.as_secs_f64());
    }

    fn write(&self, out: &mut String) {
        let Ok(tally) = self.tally.lock() else {
            return;
        };
        family(
            out,
            "farm_gateway_http_requests_total",
            "counter",
            "HTTP requests the gateway answered, by route template, method and status.",
        );
        for (route, figures) in &tally.routes {
            for ((method, status), count) in &figures.requests {
                let _ = writeln!(
                    out,
                    "farm_gateway_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {count}",
                    escape(route)
                );
            }
        }
        family(
            out,
            "farm_gateway_http_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its response headers, by route template.",
        );
        for (route, RouteTally { latency: h, .. }) in &tally.routes {
            let route = escape(route);
            for (bound, count) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "farm_gateway_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "farm_gateway_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "farm_gateway_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                float(h.sum)
            );
            let _ = writeln!(
                out,
                "farm_gateway_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
    }
}

/// The `method` label: one of the methods the API uses, or `other`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The `route` label of a request: its route template, its grpc-web method, or `unmatched`.
/// Taken before the request is handled; a template is shared with the router, not copied.
pub(crate) enum RouteLabel {
    Template(MatchedPath),
    GrpcWeb(String),
    Unmatched,
}

impl RouteLabel {
    pub(crate) fn of(request: &Request) -> Self {
        if let Some(path) = request.extensions().get::<MatchedPath>() {
            return Self::Template(path.clone());
        }
        let path = request.uri().path();
        match path.strip_prefix(FARM_SERVICE_PREFIX) {
            Some(method) if GRPC_METHODS.contains(&method) => Self::GrpcWeb(path.to_string()),
            _ => Self::Unmatched,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Template(path) => path.as_str(),
            Self::GrpcWeb(path) => path,
            Self::Unmatched => "unmatched",
        }
    }
}

/// A Prometheus text exposition.
#[derive(Debug)]
pub struct PrometheusText(pub String);

impl IntoResponse for PrometheusText {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            self.0,
        )
            .into_response()
    }
}

impl OperationOutput for PrometheusText {
    type Inner = String;

    fn operation_response(ctx: &mut GenContext, _operation: &mut Operation) -> Option<ApiResponse> {
        Some(ApiResponse {
            description: "The Prometheus text format, version 0.0.4.".into(),
            content: [(
                "text/plain".to_string(),
                MediaType {
                    schema: Some(aide::openapi::SchemaObject {
                        json_schema: ctx.schema.subschema_for::<String>(),
                        example: None,
                        external_docs: None,
                    }),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        })
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<u16>, ApiResponse)> {
        Self::operation_response(ctx, operation)
            .map(|r| vec![(Some(200), r)])
            .unwrap_or_default()
    }
}

/// `GET /metrics`.
pub async fn exposition(State(state): State<AppState>) -> PrometheusText {
    let (mut servers_client, mut metrics_client) =
        (state.controller().client(), state.controller().client());
    let (servers, farm) = tokio::join!(
        within(
            SCRAPE_DEADLINE,
            servers_client.list_servers(pb::ListServersRequest::default())
        ),
        within(
            SCRAPE_DEADLINE,
            metrics_client.get_metrics(pb::GetMetricsRequest {})
        ),
    );
    let mut out = String::with_capacity(64 * 1024);
    let up = match (servers, farm) {
        (Ok(servers), Ok(farm)) => {
            write_servers(&mut out, &servers.into_inner().servers);
            write_farm(&mut out, &farm.into_inner().metrics.unwrap_or_default());
            1
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "Scrape without the farm: controller unavailable.");
            0
        }
    };
    family(
        &mut out,
        "farm_controller_up",
        "gauge",
        "Whether the gateway could read the farm from the controller for this scrape.",
    );
    let _ = writeln!(out, "farm_controller_up {up}");
    state.metrics().write(&mut out);
    PrometheusText(out)
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A sample value: Prometheus spells the non-finite ones its own way.
fn float(x: f64) -> String {
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
fn per_server<F>(
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

fn write_servers(out: &mut String, servers: &[pb::Server]) {
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

fn write_farm(out: &mut String, m: &pb::FarmMetrics) {
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
    let scalars: [(&str, &str, &str, f64); 8] = [
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
    ];
    for (name, kind, help, value) in scalars {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", float(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = RequestMetrics::default();
        metrics.record("/api/servers", "GET", 200, Duration::from_micros(300));
        metrics.record("/api/servers", "GET", 200, Duration::from_millis(3));
        metrics.record("/api/servers", "GET", 503, Duration::from_secs(100));
        let mut out = String::new();
        metrics.write(&mut out);
        assert!(out.contains(
            "farm_gateway_http_requests_total{route=\"/api/servers\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(out.contains("le=\"0.0005\"} 1"), "{out}");
        assert!(out.contains("le=\"0.005\"} 2"), "{out}");
        assert!(out.contains("le=\"60\"} 2"), "{out}");
        assert!(out.contains("le=\"+Inf\"} 3"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
