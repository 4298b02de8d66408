//! The gateway's own series: requests by route, method and status, and latency by route,
//! kept in memory. Label values are bounded: `route` is a route template, a
//! `farm.v1.FarmService` grpc-web method or `unmatched`; `method` is one of the methods the API
//! uses or `other`; `status` is a status code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use http::Method;

use super::text::{escape, family, float};
use crate::grpc_web::FARM_SERVICE_PREFIX;

/// Upper bounds of the latency histogram's buckets, in seconds: fine below 10 ms where the
/// REST calls live, coarse up to a minute for load tests and broadcasts.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0,
];

/// The methods of `farm.v1.FarmService`, the only grpc-web routes counted by name (a test
/// holds the list to the proto's).
const GRPC_METHODS: [&str; 27] = [
    "ListServers",
    "GetServer",
    "ServerAction",
    "CheckHealth",
    "GetMetrics",
    "RunLoadTest",
    "StartLoadTest",
    "StopLoadTest",
    "GetLoadTest",
    "ListLoadTests",
    "ScaleFarm",
    "SimulateLoad",
    "Broadcast",
    "Watch",
    "SetFaults",
    "ClearFaults",
    "ListFaults",
    "RunScenario",
    "StartScenario",
    "GetScenarioRun",
    "ListScenarioRuns",
    "StopScenario",
    "CheckScenario",
    "ListRuns",
    "GetRun",
    "ListEvents",
    "GetMetricHistory",
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
pub(crate) struct RequestMetrics {
    tally: Mutex<Tally>,
}

impl RequestMetrics {
    /// Counts one request to `route` answered with `status` after `elapsed`.
    pub(crate) fn record(&self, route: &str, method: &'static str, status: u16, elapsed: Duration) {
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

    pub(super) fn write(&self, out: &mut String) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_the_service_is_counted_by_name() {
        let proto = include_str!("../../../proto/proto/farm/v1/farm.proto");
        let mut declared: Vec<&str> = proto
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc ")?.split('(').next())
            .collect();
        let mut counted = GRPC_METHODS.to_vec();
        declared.sort_unstable();
        counted.sort_unstable();
        assert_eq!(counted, declared);
    }
}
