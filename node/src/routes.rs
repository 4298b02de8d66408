//! The node's HTTP routes.
//!
//! Every answer is JSON except `/data/{size_kb}`. Every bad input gets a 4xx with an
//! [`ErrorReply`] body (`{"error": "..."}` naming the field or parameter) and changes
//! nothing; no input makes the node panic or answer 5xx, except `/error/{code}`, whose
//! job is to answer the code it is asked for. All bounds are in [`farm_proto::limits`].
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | 200 [`NodeInfo`] |
//! | `GET /health` | 200 `{"status":"healthy","server_id":N}` (a prebuilt body: the cheapest route) |
//! | `GET /ready` | 200 [`ReadyReply`] `{"ready":true,"server_id":N}` (prebuilt too): whether a load balancer should send the node traffic |
//! | `GET /metrics` | 200 [`NodeMetrics`] |
//! | `GET /metrics/prometheus` | 200, the same figures in the Prometheus text format (`text/plain; version=0.0.4`), with a latency histogram by status class (see `crate::prometheus`) |
//! | `GET /slow-endpoint?min_ms=&max_ms=` | sleeps uniformly in `min_ms..=max_ms` (default `1000..=5000`, each at most 30 000, `min_ms <= max_ms`), then 200 [`DelayReply`] |
//! | `GET /slow-endpoint?delay_ms=N` | sleeps exactly `N` ms (`0..=30000`; not combinable with `min_ms`/`max_ms`), then 200 [`DelayReply`] |
//! | `POST /simulate-load` | starts a load from a [`LoadRequest`] body, 202 [`LoadStatus`] |
//! | `DELETE /simulate-load` | stops the running load: 200 [`LoadStatus`] of what was stopped, or 404 if none runs |
//! | `GET /error/{code}` | answers `code` (`400..=599`) with `{"error":"simulated error","code":N}` |
//! | `GET /data/{size_kb}` | 200 with exactly `size_kb × 1024` zero bytes, `application/octet-stream` (`0..=10240`) |
//! | anything else | 404, or 405 (with `Allow`) for a known path with the wrong method |
//! | every answer above | carries `x-farm-server: N` |
//!
//! `POST /simulate-load` details: the body is JSON whatever its content type, and an empty
//! body means all defaults (`cpu_percent` 50, `memory_mb` 0, `duration_seconds` 10); an
//! unknown field is rejected rather than silently ignored. Only one load runs at a time:
//! a request while one runs is turned away with **409 Conflict** and
//! `{"error": "...", "active": LoadStatus}` describing the running load, which goes on
//! untouched (stop it with `DELETE` first to replace it). The 202 is sent once the CPU
//! threads run and the memory is resident; if the machine refuses the threads or the
//! memory the answer is 503 and nothing is left running. Malformed JSON is a 400, a
//! wrong type or unknown field a 422, a value out of bounds a 400.
//!
//! `/data` serves slices of one zeroed, never-written 10 MiB buffer allocated at start:
//! nothing is allocated per request, and the buffer costs no resident memory (see
//! [`AppState`]).
//!
//! Requests carrying [`PROBE_HEADER`](farm_node_api::PROBE_HEADER) are served normally but not
//! counted.
//!
//! Every answer, whatever its route or status (a 404, a 405, a fault's answer, `/health` and
//! `/metrics` too), carries [`SERVER_HEADER`](farm_node_api::SERVER_HEADER) `x-farm-server: N`,
//! the server's id, so that a load balancer's choices can be attributed; the value is built
//! once at start. Only a request that gets no answer (a fault dropped its connection) or that
//! hyper cannot parse (hyper answers 400 itself) goes without it.
//!
//! Faults change these answers, in the node [`crate::run`] serves (not in the bare [`app`]):
//! a health fault makes `GET /health` answer `{"status":"unhealthy","server_id":N}` with its
//! status, a readiness fault makes `GET /ready` answer 503 `{"ready":false,"server_id":N}`, and
//! the other faults (delays, `{"error":"fault: aborted","code":N}` answers, refusals with
//! `Retry-After`, hangs, dropped connections, slow bodies) touch every route but `/health`,
//! `/ready`, `/metrics` and `/metrics/prometheus`. See `crate::faults`.
//!
//! [`NodeInfo`]: farm_node_api::api::NodeInfo
//! [`NodeMetrics`]: farm_node_api::api::NodeMetrics
//! [`LoadStatus`]: farm_node_api::api::LoadStatus
//! [`DelayReply`]: farm_node_api::api::DelayReply
//! [`LoadRequest`]: farm_node_api::api::LoadRequest
//! [`ErrorReply`]: farm_node_api::api::ErrorReply
//! [`ReadyReply`]: farm_node_api::api::ReadyReply

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::AppState;
use crate::load::{self, StartError};
use crate::state::{Arrival, counted};
use farm_node_api::api::{
    DelayReply, ErrorReply, HealthReply, LoadRequest, LoadStatus, ReadyReply,
};
use farm_proto::limits;

/// Builds the node's complete router over `state`: every route, the counting of every
/// request that is not a probe, and the server's name on every answer.
///
/// [`crate::run`] serves the same routes, but counts requests and answers `GET /health`
/// in its own connection service, in front of the router, to spare the benchmarked route
/// the router's work; both count requests with the same function.
pub fn app(state: AppState) -> Router {
    routes(state.clone()).layer(middleware::from_fn_with_state(state, count))
}

/// The routes alone, without counting.
pub(crate) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/metrics/prometheus", get(prometheus))
        .route("/slow-endpoint", get(slow))
        .route(
            "/simulate-load",
            axum::routing::post(start_load).delete(stop_load),
        )
        .route("/error/{code}", get(simulated_error))
        .route("/data/{size_kb}", get(data))
        // Must come after the routes: it is applied to the routes that exist.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits::MAX_NODE_REQUEST_BODY_BYTES))
        .with_state(state)
}

/// Counts a request and names the server on its answer, as [`crate::run`]'s connection
/// service does.
async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let arrival = Arrival::of(&request);
    let mut response = counted(&state, arrival, next.run(request)).await;
    state.sign(&mut response);
    response
}

async fn root(State(state): State<AppState>) -> Response {
    info_response(&state)
}

async fn health(State(state): State<AppState>) -> Response {
    health_response(&state)
}

/// The `/health` answer: a prebuilt body, shared, not serialised per request.
pub(crate) fn health_response(state: &AppState) -> Response {
    let mut response = Response::new(Body::from(state.health_body()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `GET /health` under a health fault: `{"status":"unhealthy"}` with the fault's status.
pub(crate) fn unhealthy_response(state: &AppState, status: StatusCode) -> Response {
    let mut response = json_response(&HealthReply {
        status: "unhealthy".into(),
        server_id: state.server_id(),
    });
    *response.status_mut() = status;
    response
}

async fn ready(State(state): State<AppState>) -> Response {
    ready_response(&state)
}

/// The `/ready` answer of a node that takes traffic: a prebuilt body, like `/health`'s.
pub(crate) fn ready_response(state: &AppState) -> Response {
    let mut response = Response::new(Body::from(state.ready_body()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `GET /ready` under a readiness fault: 503 `{"ready":false}`.
pub(crate) fn unready_response(state: &AppState) -> Response {
    let mut response = json_response(&ReadyReply {
        ready: false,
        server_id: state.server_id(),
    });
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

async fn metrics(State(state): State<AppState>) -> Response {
    metrics_response(&state)
}

async fn prometheus(State(state): State<AppState>) -> Response {
    prometheus_response(&state)
}

/// The `GET /metrics/prometheus` answer.
pub(crate) fn prometheus_response(state: &AppState) -> Response {
    let mut response = Response::new(Body::from(state.prometheus()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::prometheus::CONTENT_TYPE),
    );
    response
}

/// The `GET /` answer.
pub(crate) fn info_response(state: &AppState) -> Response {
    json_response(&state.info())
}

/// The `GET /metrics` answer.
pub(crate) fn metrics_response(state: &AppState) -> Response {
    json_response(&state.metrics())
}

/// `value` as a JSON answer, serialised straight into its body.
fn json_response(value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The query of `/slow-endpoint`. Unknown parameters are rejected: a misspelt `delay_ms`
/// would otherwise silently become a random 1–5 s sleep.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlowQuery {
    min_ms: Option<u64>,
    max_ms: Option<u64>,
    delay_ms: Option<u64>,
}

const DEFAULT_MIN_DELAY_MS: u64 = 1000;
const DEFAULT_MAX_DELAY_MS: u64 = 5000;

/// The delay range a `/slow-endpoint` query asks for, `(low, high)` inclusive.
fn delay_range(query: &SlowQuery) -> Result<(u64, u64), String> {
    let bounded = |name: &str, value: u64| {
        if value > limits::MAX_DELAY_MS {
            Err(format!(
                "{name} must be between 0 and {}, got {value}",
                limits::MAX_DELAY_MS
            ))
        } else {
            Ok(value)
        }
    };
    if let Some(delay) = query.delay_ms {
        if query.min_ms.is_some() || query.max_ms.is_some() {
            return Err("delay_ms cannot be combined with min_ms or max_ms".into());
        }
        let delay = bounded("delay_ms", delay)?;
        return Ok((delay, delay));
    }
    let min = bounded("min_ms", query.min_ms.unwrap_or(DEFAULT_MIN_DELAY_MS))?;
    let max = bounded("max_ms", query.max_ms.unwrap_or(DEFAULT_MAX_DELAY_MS))?;
    if min > max {
        return Err(format!("min_ms ({min}) must not exceed max_ms ({max})"));
    }
    Ok((min, max))
}

async fn slow(
    State(state): State<AppState>,
    query: Result<Query<SlowQuery>, QueryRejection>,
) -> Result<Json<DelayReply>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::Rejected(r.status(), r.body_text()))?;
    let (low, high) = delay_range(&query).map_err(ApiError::BadRequest)?;
    let delay_ms = state.random_between(low, high);
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(delay_ms)) => Ok(Json(DelayReply { delay_ms })),
        () = state.closing().cancelled() => Err(ApiError::ShuttingDown),
    }
}

async fn start_load(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<LoadStatus>), ApiError> {
    let body = body.map_err(|r| ApiError::Rejected(r.status(), r.body_text()))?;
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let request = if first.is_none() {
        LoadRequest::default()
    } else if first != Some(&b'{') {
        // serde would also read a struct from an array (`[50, 0, 10]`, by position):
        // only an object says which field is which.
        return Err(ApiError::BadRequest(
            "body must be a JSON object with optional fields cpu_percent, memory_mb and \
             duration_seconds"
                .into(),
        ));
    } else {
        Json::<LoadRequest>::from_bytes(&body)
            .map_err(|r: JsonRejection| ApiError::Rejected(r.status(), r.body_text()))?
            .0
    };
    load::validate(&request, state.cores()).map_err(ApiError::BadRequest)?;
    match state.loads().start(request).await {
        Ok(status) => Ok((StatusCode::ACCEPTED, Json(status))),
        Err(StartError::Busy(active)) => Err(ApiError::LoadConflict(active)),
        Err(StartError::Resources(message)) => Err(ApiError::Unavailable(message)),
    }
}

async fn stop_load(State(state): State<AppState>) -> Result<Json<LoadStatus>, ApiError> {
    state.loads().stop().map(Json).ok_or(ApiError::NoLoad)
}

/// Parses a path parameter made of decimal digits only (no sign, no spaces), within
/// `low..=high`; the error names `name`.
fn path_number(
    raw: Result<Path<String>, PathRejection>,
    name: &str,
    low: u64,
    high: u64,
) -> Result<u64, ApiError> {
    let Path(raw) = raw.map_err(|r| ApiError::Rejected(r.status(), r.body_text()))?;
    let expected = || format!("{name} must be an integer between {low} and {high}");
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(expected()));
    }
    match raw.parse::<u64>() {
        Ok(value) if (low..=high).contains(&value) => Ok(value),
        Ok(value) => Err(ApiError::BadRequest(format!("{}, got {value}", expected()))),
        // Only overflow is left: far out of range.
        Err(_) => Err(ApiError::BadRequest(expected())),
    }
}

async fn simulated_error(code: Result<Path<String>, PathRejection>) -> ApiError {
    match path_number(code, "code", 400, 599) {
        Ok(code) => u16::try_from(code)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .map_or_else(
                || ApiError::BadRequest("code must be an integer between 400 and 599".into()),
                ApiError::Simulated,
            ),
        Err(err) => err,
    }
}

async fn data(
    State(state): State<AppState>,
    size_kb: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let size_kb = path_number(size_kb, "size_kb", 0, u64::from(limits::MAX_DATA_KB))?;
    let zeros = state.zeros();
    // In bounds by the check above; `min` only spares the slice a panic path.
    let bytes = (size_kb as usize * 1024).min(zeros.len());
    let mut response = Response::new(Body::from(zeros.slice(..bytes)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", clip(uri.path())))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "method {method} is not allowed on {}",
        clip(uri.path())
    ))
}

/// Echoes at most 100 characters of client input back in an error.
fn clip(text: &str) -> &str {
    text.char_indices()
        .nth(100)
        .map_or(text, |(end, _)| &text[..end])
}

/// Every answer that is not a success, rendered as an [`ErrorReply`].
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 400: a parameter or field is malformed or out of bounds; the message names it.
    BadRequest(String),
    /// An axum extractor's rejection, keeping its status (400, 413, 415, 422) and its
    /// message (which names the field), inside our JSON shape rather than as plain text.
    Rejected(StatusCode, String),
    /// 404: no such route.
    NotFound(String),
    /// 405: the route exists with other methods.
    MethodNotAllowed(String),
    /// 409: a load is already running; it is reported as `active`.
    LoadConflict(LoadStatus),
    /// 404 on `DELETE /simulate-load`: no load runs.
    NoLoad,
    /// The status `/error/{code}` was asked for.
    Simulated(StatusCode),
    /// 503: the machine refused the resources of a load.
    Unavailable(String),
    /// 503: the node is shutting down.
    ShuttingDown,
    /// A fault's answer, with its status: `fault: aborted`, `fault: rate limited`.
    Fault(StatusCode, &'static str),
    /// 400: a header fault's value is out of bounds; the message names the header.
    BadFaultHeader(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, code, active) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, message, None, None),
            Self::Rejected(status, message) => (status, message, None, None),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, message, None, None),
            Self::MethodNotAllowed(message) => {
                (StatusCode::METHOD_NOT_ALLOWED, message, None, None)
            }
            Self::LoadConflict(active) => (
                StatusCode::CONFLICT,
                "a simulated load is already running; DELETE /simulate-load to stop it first"
                    .into(),
                None,
                Some(active),
            ),
            Self::NoLoad => (
                StatusCode::NOT_FOUND,
                "no simulated load is running".into(),
                None,
                None,
            ),
            Self::Simulated(status) => (
                status,
                "simulated error".into(),
                Some(status.as_u16()),
                None,
            ),
            Self::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, message, None, None),
            Self::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the node is shutting down".into(),
                None,
                None,
            ),
            Self::Fault(status, what) => (status, what.into(), Some(status.as_u16()), None),
            Self::BadFaultHeader(message) => (StatusCode::BAD_REQUEST, message, None, None),
        };
        let body = ErrorReply {
            error,
            code,
            active,
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(min: Option<u64>, max: Option<u64>, delay: Option<u64>) -> Result<(u64, u64), String> {
        delay_range(&SlowQuery {
            min_ms: min,
            max_ms: max,
            delay_ms: delay,
        })
    }

    #[test]
    fn delay_defaults_and_bounds() {
        assert_eq!(range(None, None, None), Ok((1000, 5000)));
        assert_eq!(range(Some(10), Some(20), None), Ok((10, 20)));
        assert_eq!(range(Some(0), Some(30_000), None), Ok((0, 30_000)));
        assert_eq!(range(None, None, Some(0)), Ok((0, 0)));
        assert_eq!(range(None, None, Some(30_000)), Ok((30_000, 30_000)));
        assert_eq!(range(Some(2000), None, None), Ok((2000, 5000)));

        let err = |r: Result<(u64, u64), String>| r.unwrap_err();
        assert!(err(range(None, None, Some(30_001))).starts_with("delay_ms"));
        assert!(err(range(Some(30_001), Some(30_001), None)).starts_with("min_ms"));
        assert!(err(range(None, Some(30_001), None)).starts_with("max_ms"));
        assert!(err(range(Some(20), Some(10), None)).starts_with("min_ms (20)"));
        assert!(err(range(Some(6000), None, None)).contains("max_ms (5000)"));
        assert!(err(range(Some(1), None, Some(5))).contains("cannot be combined"));
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        assert_eq!(clip("/short"), "/short");
        let long = "é".repeat(300);
        assert_eq!(clip(&long).chars().count(), 100);
    }
}
