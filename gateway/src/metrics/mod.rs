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
//!
//! # Layout
//! - this module: the `GET /metrics` handler and its response type.
//! - [`discovery`]: `GET /api/prometheus/targets`, the farm's nodes for Prometheus' HTTP
//!   service discovery, each scraped on its own `/metrics/prometheus`.
//! - [`requests`]: the gateway's own request metrics.
//! - `farm` (private): the farm's series, from `ListServers` and `GetMetrics`.
//! - `text` (private): the text format's building blocks.

pub mod discovery;
mod farm;
mod requests;
mod text;

pub(crate) use requests::{RequestMetrics, RouteLabel, method_label};

use std::fmt::Write as _;
use std::time::Duration;

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, Response as ApiResponse};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use farm_proto::v1 as pb;
use http::header;

use crate::AppState;
use crate::controller::within;
use farm::{write_farm, write_servers};
use text::family;

/// How long a scrape waits for the controller.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(5);

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

#[cfg(test)]
mod tests {
    use super::text::escape;
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
