//! Serving connections: the accept loop, the per-connection HTTP/1 service, and graceful
//! shutdown.
//!
//! `axum::serve` would do, but `GET /health`, the hot path of every probe, is benchmarked
//! against nginx on one core, and the router (route matching, boxed bodies and futures, a
//! middleware for the counters) costs clearly more CPU per request than nginx. So
//! connections are served with hyper directly, by a service that counts each request and
//! answers `GET /health` itself; every other request goes on to the router. A `/health`
//! request then costs little more than a bare hyper "hello world", and on one core the
//! node keeps up with a one-worker nginx returning a fixed string.
//!
//! Two things hyper offers are left out on purpose, because they cost more per request
//! than the whole counting: a header read timeout (a timer armed for every request) and
//! polling the shutdown signal at every wake-up of a connection. Instead:
//!
//! - shutdown is checked with one atomic load per wake-up (the connection task's waker is
//!   registered with the token once);
//! - connections are bounded in number and in idle time by [`crate::connections`], with a
//!   counter per request and one sweeper for the whole node instead of a timer per request;
//! - once shutdown starts, every connection gets [`DRAIN_TIMEOUT`] to finish its request,
//!   so that a client that stalls mid-request cannot hold the node up.
//!
//! Shutdown: the token stops the accept loop; the state is closed (long sleeps end, the
//! load stops); every connection is told to finish its in-flight request and close (idle
//! keep-alive connections close at once); `serve` returns when they all have.
//!
//! Faults ([`crate::faults`]) are applied here, around the answer. When none can touch a
//! request (the usual case) the service pays one atomic load for them and answers as above;
//! otherwise it asks the engine for the request's plan and carries it out. A fault that drops
//! the connection makes the service fail: hyper then ends the connection without writing an
//! answer (a service error is not turned into a 500 on HTTP/1), and the socket, whose reset
//! switch the service may have set, closes or resets it.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use farm_node_api::faults::ConnectionFaultMode;
use http::header::RETRY_AFTER;
use http::{HeaderValue, Method};
use hyper::body::Incoming;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::AppState;
use crate::connections::{Admitted, Tracked};
use crate::faults::{Answer, Plan, ResetSwitch, Socket, Stop, Throttled, View};
use crate::routes::{
    self, ApiError, health_response, info_response, metrics_response, prometheus_response,
    ready_response, unhealthy_response, unready_response,
};
use crate::state::{Arrival, counted};

/// How long a connection may take to finish once shutdown starts.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after an accept error that is not about one connection (like running out of
/// file descriptors), rather than spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every connection task shares.
struct Node {
    state: AppState,
    router: TowerToHyperService<Router>,
    /// Whether this process exports traces: only then is a request's `traceparent` read.
    traced: bool,
}

/// Serves `state`'s app on `listener` until `shutdown` fires, then drains.
pub(crate) async fn serve(listener: TcpListener, state: AppState, shutdown: CancellationToken) {
    let node = Arc::new(Node {
        router: TowerToHyperService::new(routes::routes(state.clone())),
        state,
        traced: tracing::enabled!(target: farm_telemetry::target::NODE, tracing::Level::INFO),
    });
    let connections = TaskTracker::new();
    let sweeper = tokio::spawn(
        node.state
            .connections()
            .clone()
            .sweep(shutdown.child_token()),
    );
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                // At the bound, the connection is closed at once: the client hears "no"
                // instead of waiting in the backlog, and the refusal is counted.
                let Some(admitted) = node.state.connections().admit(&shutdown) else {
                    drop(stream);
                    continue;
                };
                connections.spawn(serve_connection(
                    stream,
                    Arc::clone(&node),
                    shutdown.clone(),
                    admitted,
                ));
            }
            Err(err) if is_per_connection(&err) => {}
            Err(err) => {
                tracing::warn!(%err, "accept failed; backing off");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    // End the long sleeps and the load before waiting for the requests.
    node.state.close();
    connections.close();
    connections.wait().await;
    let _ = sweeper.await;
}

/// Accept errors that concern only the connection being accepted.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

async fn serve_connection(
    stream: TcpStream,
    node: Arc<Node>,
    shutdown: CancellationToken,
    admitted: Admitted,
) {
    // Answers are one small write each: do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let activity = admitted.activity.clone();
    let reset = ResetSwitch::default();
    let socket = Socket::new(stream, reset.clone());
    // This connection's reference to the fault profile; the service is called for one
    // request at a time, so the borrow never overlaps.
    let view = RefCell::new(View::default());
    let service = service_fn(move |request: http::Request<Incoming>| {
        let node = Arc::clone(&node);
        // In flight from here until the response's body has been written.
        activity.begin();
        let activity = Arc::clone(&activity);
        let arrival = Arrival::of(&request);
        let span = if node.traced {
            request_span(&request)
        } else {
            None
        };
        let faults = node.state.faults();
        let plan = if faults.idle() {
            None
        } else {
            faults
                .plan(&mut view.borrow_mut(), &request)
                .map(|plan| Box::new((plan, reset.clone())))
        };
        // The probes' and scrapers' routes need nothing from their request: drop it now
        // (see `Arrival`), and keep the future small. Other requests are boxed for the same
        // reason.
        let request = match Direct::of(&request) {
            Some(direct) => Err(direct),
            None => Ok(Box::new(request)),
        };
        async move {
            let mut response = match plan {
                None => node.answer(arrival, request).await,
                Some(faulted) => {
                    let (plan, reset) = *faulted;
                    Box::pin(node.answer_faulted(plan, &reset, arrival, request)).await?
                }
            };
            // Here, where every answer passes, none can be missed: routes, 404s and 405s,
            // fault answers alike.
            node.state.sign(&mut response);
            if let Some(span) = span {
                span.record("http.response.status_code", response.status().as_u16());
            }
            Ok::<_, Dropped>(response.map(|body| Tracked::new(body, activity)))
        }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(socket), service);
    let mut connection = std::pin::pin!(connection);

    // Cancelled by shutdown, or by the sweeper when the connection has sat idle too long.
    let mut shutting_down = std::pin::pin!(admitted.close.cancelled());
    let mut registered = false;
    let finished = std::future::poll_fn(|cx| {
        if connection.as_mut().poll(cx).is_ready() {
            // Connection errors are the client's business (it went away, sent garbage):
            // the node has nothing to do about them.
            return Poll::Ready(true);
        }
        // The first poll registers this task's waker with the token; a task's waker does
        // not change, so afterwards a flag check is enough.
        let cancelled = if registered {
            admitted.close.is_cancelled()
        } else {
            registered = true;
            shutting_down.as_mut().poll(cx).is_ready()
        };
        if cancelled {
            Poll::Ready(false)
        } else {
            Poll::Pending
        }
    })
    .await;
    if finished || !shutdown.is_cancelled() {
        // Done, or cut by the sweeper: an idle connection has nothing in flight to finish.
        return;
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection).await;
}

/// The route template of `path`, for span names: a few fixed names, whatever the client
/// sends.
fn route_of(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        "/metrics/prometheus" => "/metrics/prometheus",
        "/slow-endpoint" => "/slow-endpoint",
        "/simulate-load" => "/simulate-load",
        p if p.starts_with("/error/") => "/error/{code}",
        p if p.starts_with("/data/") => "/data/{size_kb}",
        _ => "unmatched",
    }
}

/// The span of a request that carries a sampled `traceparent`, joined to the caller's trace;
/// `None` for every other request, which costs one header lookup. The span is not entered:
/// the node makes no spans below it, and it ends when the answer is ready.
fn request_span<B>(request: &http::Request<B>) -> Option<tracing::Span> {
    let traceparent = request.headers().get("traceparent")?;
    if !farm_telemetry::is_sampled(traceparent.as_bytes()) {
        return None;
    }
    let span = tracing::info_span!(
        target: farm_telemetry::target::NODE,
        "request",
        otel.name = %format!("{} {}", request.method(), route_of(request.uri().path())),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    farm_telemetry::set_parent(&span, farm_telemetry::extract(request.headers()));
    Some(span)
}

/// The routes answered without the router: `GET /health` (every probe), `GET /ready` (a load
/// balancer's check), `GET /metrics` (every agent's scrape), `GET /metrics/prometheus` (every
/// Prometheus scrape) and `GET /`. Their answers need nothing from the request, and the
/// router's matching, boxing and extraction would cost more than the answer itself.
#[derive(Debug, Clone, Copy)]
enum Direct {
    Health,
    Ready,
    Metrics,
    Prometheus,
    Info,
}

impl Direct {
    fn of<B>(request: &http::Request<B>) -> Option<Self> {
        if request.method() != Method::GET {
            return None;
        }
        match request.uri().path() {
            "/health" => Some(Self::Health),
            "/ready" => Some(Self::Ready),
            "/metrics" => Some(Self::Metrics),
            "/metrics/prometheus" => Some(Self::Prometheus),
            "/" => Some(Self::Info),
            _ => None,
        }
    }
}

/// Why a request got no answer: a fault dropped its connection (closed or reset) or held it
/// until its bound. Returned by the service, it makes hyper end the connection unanswered.
#[derive(Debug, thiserror::Error)]
#[error("the connection was dropped by a fault")]
struct Dropped;

impl Node {
    /// Answers one request: a [`Direct`] route here, anything else by the router.
    async fn answer(
        &self,
        arrival: Option<Arrival>,
        request: Result<Box<http::Request<Incoming>>, Direct>,
    ) -> Response {
        counted(&self.state, arrival, self.serve(request)).await
    }

    /// Serves a request, uncounted.
    async fn serve(&self, request: Result<Box<http::Request<Incoming>>, Direct>) -> Response {
        let request = match request {
            Ok(request) => request,
            Err(Direct::Health) => return health_response(&self.state),
            Err(Direct::Ready) => return ready_response(&self.state),
            Err(Direct::Metrics) => return metrics_response(&self.state),
            Err(Direct::Prometheus) => return prometheus_response(&self.state),
            Err(Direct::Info) => return info_response(&self.state),
        };
        match Box::pin(self.router.call(*request)).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Answers one request as its fault plan says, counting it like any other: a request that
    /// gets no answer (dropped, held until its bound, or left by its client) leaves flight
    /// without a latency.
    async fn answer_faulted(
        &self,
        plan: Plan,
        reset: &ResetSwitch,
        arrival: Option<Arrival>,
        request: Result<Box<http::Request<Incoming>>, Direct>,
    ) -> Result<Response, Dropped> {
        let guard = arrival.map(|arrival| self.state.begin_request(arrival));
        let outcome = self.carry_out(plan, reset, request).await;
        if let (Some(guard), Ok(response)) = (guard, &outcome) {
            guard.finish(response);
        }
        outcome
    }

    /// Connection → rate limit → abort → hang (the plan's `stop`, at most one), then latency,
    /// then the answer (the route's, or a watched route's faulted one), then throughput.
    async fn carry_out(
        &self,
        plan: Plan,
        reset: &ResetSwitch,
        request: Result<Box<http::Request<Incoming>>, Direct>,
    ) -> Result<Response, Dropped> {
        let closing = self.state.closing();
        match plan.stop {
            None => {}
            Some(Stop::BadHeader(message)) => {
                return Ok(ApiError::BadFaultHeader(message).into_response());
            }
            Some(Stop::Drop(mode)) => {
                if mode == ConnectionFaultMode::Reset {
                    reset.arm();
                }
                return Err(Dropped);
            }
            Some(Stop::Refuse {
                status,
                retry_after_seconds,
            }) => {
                let mut response = ApiError::Fault(status, "fault: rate limited").into_response();
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_seconds));
                return Ok(response);
            }
            Some(Stop::Abort(status)) => {
                return Ok(ApiError::Fault(status, "fault: aborted").into_response());
            }
            Some(Stop::Hang(longest)) => {
                // hyper keeps reading the connection while the answer is pending and fails it
                // when the client closes its side, which drops this future: a hang ends when
                // the client leaves. Otherwise the bound or shutdown ends it, unanswered.
                tokio::select! {
                    () = tokio::time::sleep(longest) => {}
                    () = closing.cancelled() => {}
                }
                return Err(Dropped);
            }
        }
        if !plan.delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(plan.delay) => {}
                () = closing.cancelled() => return Ok(ApiError::ShuttingDown.into_response()),
            }
        }
        let response = match plan.answer {
            Some(Answer::Unhealthy(status)) => unhealthy_response(&self.state, status),
            Some(Answer::Unready) => unready_response(&self.state),
            None => self.serve(request).await,
        };
        Ok(match plan.throughput {
            Some(rate) => response.map(|body| Body::new(Throttled::new(body, rate))),
            None => response,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, traceparent: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri(path);
        if let Some(value) = traceparent {
            builder = builder.header("traceparent", value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn only_a_sampled_traceparent_makes_a_span() {
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(request_span(&request("/", None)).is_none());
        assert!(request_span(&request("/", Some(unsampled))).is_none());
        assert!(request_span(&request("/", Some("junk"))).is_none());
        assert!(request_span(&request("/", Some(sampled))).is_some());
    }

    #[test]
    fn span_names_come_from_a_fixed_set_of_routes() {
        assert_eq!(route_of("/data/123"), "/data/{size_kb}");
        assert_eq!(route_of("/error/503"), "/error/{code}");
        assert_eq!(route_of("/health"), "/health");
        assert_eq!(route_of("/anything/the/client/wants"), "unmatched");
    }
}
