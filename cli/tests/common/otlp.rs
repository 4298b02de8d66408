//! An OTLP trace collector for the tests: OTLP's `TraceService` (from the opentelemetry-proto
//! crate) served by the test, keeping every span it is sent. No collector is installable here;
//! this is the gRPC service a collector serves.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// A span as the collector received it, with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: String,
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
}

/// The collector: keeps every span it is sent.
#[derive(Debug, Clone, Default)]
pub struct Collector {
    pub spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    kept.push(Received {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves on `bind` (`127.0.0.1:0`, or `0.0.0.0:0` for containers to reach it) on a port
    /// the kernel picks; returns the collector and its URL on loopback.
    pub async fn start(bind: &str) -> (Collector, String) {
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let address = listener.local_addr().unwrap();
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        (collector, format!("http://127.0.0.1:{}", address.port()))
    }

    pub fn spans_of(&self, trace_id: &[u8]) -> Vec<Received> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

/// A sampled `traceparent` naming `trace_id` and the caller's `span_id`.
pub fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8]) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!("00-{}-{}-01", hex(trace_id), hex(span_id))
}

/// `POST /api/simulate-load` on server `id` (a light, one-second load) through the gateway at
/// `gateway_url`, as part of the caller's trace `trace_id` (its span `span_id`); checks the 200.
pub async fn traced_simulate_load(
    gateway_url: &str,
    id: u32,
    trace_id: &[u8; 16],
    span_id: &[u8; 8],
) {
    let body = format!(
        r#"{{"server_ids": [{id}], "cpu_percent": 5, "memory_mb": 0, "duration_seconds": 1}}"#
    );
    let reply = super::http(
        "POST",
        &format!("{gateway_url}/api/simulate-load"),
        &[
            ("content-type", "application/json"),
            ("traceparent", &traceparent(trace_id, span_id)),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}
