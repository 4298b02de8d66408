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

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use http::Method;
use hyper::body::Incoming;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::AppState;
use crate::connections::{Admitted, Tracked};
use crate::routes::{self, health_response, info_response, metrics_response};
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
}

/// Serves `state`'s app on `listener` until `shutdown` fires, then drains.
pub(crate) async fn serve(listener: TcpListener, state: AppState, shutdown: CancellationToken) {
    let node = Arc::new(Node {
        router: TowerToHyperService::new(routes::routes(state.clone())),
        state,
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
    let service = service_fn(move |request: http::Request<Incoming>| {
        let node = Arc::clone(&node);
        // In flight from here until the response's body has been written.
        activity.begin();
        let activity = Arc::clone(&activity);
        let arrival = Arrival::of(&request);
        // The probes' and scrapers' routes need nothing from their request: drop it now
        // (see `Arrival`), and keep the future small. Other requests are boxed for the same
        // reason.
        let request = match Direct::of(&request) {
            Some(direct) => Err(direct),
            None => Ok(Box::new(request)),
        };
        async move {
            let response = node.answer(arrival, request).await;
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, activity)))
        }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
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

/// The routes answered without the router: `GET /health` (every probe), `GET /metrics`
/// (every agent's scrape) and `GET /`. Their answers need nothing from the request, and the
/// router's matching, boxing and extraction would cost more than the answer itself.
#[derive(Debug, Clone, Copy)]
enum Direct {
    Health,
    Metrics,
    Info,
}

impl Direct {
    fn of<B>(request: &http::Request<B>) -> Option<Self> {
        if request.method() != Method::GET {
            return None;
        }
        match request.uri().path() {
            "/health" => Some(Self::Health),
            "/metrics" => Some(Self::Metrics),
            "/" => Some(Self::Info),
            _ => None,
        }
    }
}

impl Node {
    /// Answers one request: a [`Direct`] route here, anything else by the router.
    async fn answer(
        &self,
        arrival: Option<Arrival>,
        request: Result<Box<http::Request<Incoming>>, Direct>,
    ) -> Response {
        counted(&self.state, arrival, async {
            let request = match request {
                Ok(request) => request,
                Err(Direct::Health) => return health_response(&self.state),
                Err(Direct::Metrics) => return metrics_response(&self.state),
                Err(Direct::Info) => return info_response(&self.state),
            };
            match Box::pin(self.router.call(*request)).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
        .await
    }
}
