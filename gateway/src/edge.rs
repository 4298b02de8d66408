//! The layer around every route and the fallback, after routing: it counts and times each
//! request by its route ([`metrics::RequestMetrics`]), makes every 4xx and 5xx a JSON error
//! ([`json_errors`]), and, while the gateway exports traces, runs each request in a span
//! joined to the caller's `traceparent` (the span the calls to the controller carry on).
//!
//! It is a plain tower layer rather than an axum `from_fn` middleware: it calls the service
//! below it directly and wraps that call's future, where `from_fn` clones the whole stack
//! below and boxes a future for every request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, Uri, header};
use tower::{Layer, Service};

use crate::AppState;
use crate::error::ApiError;
use crate::metrics;

/// Puts [`Edge`] around a service, recording into `state`'s metrics.
pub(crate) fn layer<S>(state: AppState) -> impl Layer<S, Service = Edge<S>> + Clone {
    tower::layer::layer_fn(move |inner| Edge {
        inner,
        state: state.clone(),
    })
}

/// The service of [`layer`].
#[derive(Debug, Clone)]
pub(crate) struct Edge<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = metrics::RouteLabel::of(&request);
        let span = (self.state.traced() && worth_a_trace(&request, route.as_str()))
            .then(|| request_span(&request, route.as_str()));
        let _entered = span.as_ref().map(tracing::Span::enter);
        let seen = Seen {
            route,
            // Kept for the message of an error; both clones share their bytes with the request.
            method: request.method().clone(),
            uri: request.uri().clone(),
            started: Instant::now(),
            state: self.state.clone(),
            span: span.clone(),
        };
        EdgeFuture {
            call: self.inner.call(request),
            seen,
        }
    }
}

/// What the edge noted of a request before passing it on.
struct Seen {
    route: metrics::RouteLabel,
    method: Method,
    uri: Uri,
    started: Instant,
    state: AppState,
    /// The request's span, when the gateway exports traces.
    span: Option<tracing::Span>,
}

/// Whether a request gets a span: always when its caller traces it; otherwise not for the
/// scrapes that come every few seconds (`/metrics`, Prometheus' service discovery), which would
/// crowd real traces out of the export queue.
fn worth_a_trace(request: &Request, route: &str) -> bool {
    request.headers().contains_key("traceparent")
        || !matches!(route, "/metrics" | "/api/prometheus/targets")
}

/// A request's span, its parent the caller's trace context if the request carries one.
fn request_span(request: &Request, route: &str) -> tracing::Span {
    let span = tracing::info_span!(
        target: farm_telemetry::target::GATEWAY,
        "request",
        otel.name = %format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    farm_telemetry::set_parent(&span, farm_telemetry::extract(request.headers()));
    span
}

pin_project_lite::pin_project! {
    /// The answer of [`Edge`]: the inner call's, made JSON if it is an error, and counted.
    pub(crate) struct EdgeFuture<F> {
        #[pin]
        call: F,
        seen: Seen,
    }
}

impl<F, E> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = {
            let _entered = this.seen.span.as_ref().map(tracing::Span::enter);
            ready!(this.call.poll(cx))?
        };
        let seen = this.seen;
        let response = json_errors(&seen.method, &seen.uri, response);
        if let Some(span) = &seen.span {
            span.record("http.response.status_code", response.status().as_u16());
        }
        seen.state.metrics().record(
            seen.route.as_str(),
            metrics::method_label(&seen.method),
            response.status().as_u16(),
            seen.started.elapsed(),
        );
        Poll::Ready(Ok(response))
    }
}

/// The safety net that makes every 4xx and 5xx a JSON error, whoever produced it (axum's
/// own 405 for a known route with another method, a grpc-web request that is not a POST).
/// Responses that already are JSON, or gRPC, pass untouched; headers such as `Allow` are
/// kept.
fn json_errors(method: &Method, uri: &Uri, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/json") || content_type.starts_with("application/grpc")
    {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            format!(
                "{method} is not allowed on {} (the Allow header lists what is)",
                uri.path()
            )
        }
        StatusCode::NOT_FOUND => format!("no route {method} {}; see /docs for the API", uri.path()),
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    let replacement = ApiError::from_http(status, message).into_response();
    let (new_parts, body) = replacement.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &new_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, body)
}
