//! The gateway: the farm's HTTP face on :8000.
//!
//! People who never touch gRPC drive the farm with curl, browsers need grpc-web, and
//! monitoring stacks scrape Prometheus. The gateway gives all three on one port and keeps
//! **no farm state of its own**: every REST route is a translation of one call of the
//! controller's `FarmService`, made over a lazily connected tonic [`Channel`]. (The server
//! list keeps its last JSON, but sends it again only when that request's call confirms the
//! farm is still at its version; see `coalesce`.) When the controller is down, requests fail
//! fast with a JSON 503 instead of hanging, and the next request after it comes back simply
//! reconnects.
//!
//! ```text
//! curl ──REST/JSON──▶ ┐
//! browser ─grpc-web─▶ ├─ gateway :8000 ──gRPC (one HTTP/2 channel)──▶ controller :50051
//! Prometheus ─GET /metrics─▶ ┘
//! ```
//!
//! # Layout
//! - [`serve`] / [`router`]: the entry points; `router(state)` is the whole app, routes and
//!   layers, so tests drive it with real HTTP on port 0 or in-process.
//! - [`config`]: the settings, validated before anything binds.
//! - [`controller`]: the lazily connected channel and the one helper that bounds every call
//!   with a deadline.
//! - [`rest`]: the REST table, one handler per route, each calling one RPC.
//! - `guard`: who may reach the farm: the `Host` it names, the origin of a change, the token.
//! - `edge`: the layer around every route that counts requests and makes errors JSON.
//! - `coalesce`: identical concurrent reads share one call, and the server list's JSON is
//!   encoded again only when the farm changed.
//! - [`model`]: the REST shapes (snake_case, ids as numbers, enums as lowercase strings),
//!   converted from the proto messages at the edge, and the input bounds they document.
//! - [`extract`]: JSON, path and query extractors whose rejections speak [`error`]'s shape.
//! - [`error`]: the one JSON error shape, the one gRPC→HTTP status mapping.
//! - [`docs`]: the OpenAPI 3.1 document generated from the code (aide + schemars) and the
//!   offline Swagger UI at `/docs` (its JavaScript is compiled into the binary).
//! - [`grpc_web`]: grpc-web for `farm.v1.FarmService`, proxied message by message.
//! - [`cors`]: CORS for browsers, configurable, skipped for requests without an `Origin`.
//! - [`dashboard`]: the built web dashboard at `/` for browsers (embedded at build time, or
//!   read from `FARM_DASHBOARD_DIR`).
//! - [`metrics`]: `GET /metrics` in the Prometheus text format, the gateway's own
//!   request counters and latency histogram, and `GET /api/prometheus/targets`, the nodes for
//!   Prometheus' HTTP service discovery.

mod coalesce;
pub mod config;
pub mod controller;
pub mod cors;
pub mod dashboard;
pub mod docs;
mod edge;
pub mod error;
pub mod extract;
pub mod grpc_web;
mod guard;
pub mod metrics;
pub mod model;
pub mod rest;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

pub use config::{Config, ConfigError, CorsOrigins};
pub use error::ApiError;

/// How long in-flight requests (a load test, a watch) get to finish after shutdown is
/// asked for, before their connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; nothing was started.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Serving failed (the listener broke).
    #[error("the gateway stopped serving: {0}")]
    Serve(#[from] std::io::Error),
}

/// What every handler shares: the controller channel, the settings, the request metrics
/// and the generated OpenAPI document. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    controller: controller::Controller,
    metrics: metrics::RequestMetrics,
    reads: coalesce::Coalescer,
    /// Whether this process exports the gateway's traces (decided when the gateway starts).
    traced: bool,
}

impl AppState {
    /// Validates `config` and prepares the (lazy) controller channel. Nothing connects
    /// until the first request. Needs a tokio runtime.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let controller = controller::Controller::new(&config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                controller,
                metrics: metrics::RequestMetrics::default(),
                reads: coalesce::Coalescer::default(),
                traced: tracing::enabled!(
                    target: farm_telemetry::target::GATEWAY,
                    tracing::Level::INFO
                ),
            }),
        })
    }

    /// The validated settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn controller(&self) -> &controller::Controller {
        &self.inner.controller
    }

    pub(crate) fn channel(&self) -> Channel {
        self.inner.controller.channel()
    }

    pub(crate) fn metrics(&self) -> &metrics::RequestMetrics {
        &self.inner.metrics
    }

    pub(crate) fn reads(&self) -> &coalesce::Coalescer {
        &self.inner.reads
    }

    /// Whether this process exports the gateway's traces.
    pub(crate) fn traced(&self) -> bool {
        self.inner.traced
    }
}

/// The whole gateway as one axum [`Router`]: REST routes, `/openapi.json`, `/docs`,
/// `/metrics`, grpc-web, and the layers around them (CORS, panics, the dashboard, body
/// limit, JSON errors, request metrics).
pub fn router(state: AppState) -> Router {
    let cors = cors::layer(&state.config().cors_origins);
    // `Router::layer` wraps every route and the fallback, after routing, so the edge sees
    // the matched route. The layers go on in one call, as one stack: each call would box
    // every route again, and every request would pay for each box. Ours (dashboard, CORS,
    // edge) call the service below them directly, so an API request clones nothing.
    rest::routes(state.clone()).layer(
        ServiceBuilder::new()
            .layer(cors)
            .layer(CatchPanicLayer::custom(|_panic| {
                tracing::error!("A gateway handler panicked.");
                ApiError::Internal.into_response()
            }))
            .layer(dashboard::layer(dashboard::Source::from_env()))
            .layer(DefaultBodyLimit::max(
                farm_proto::limits::MAX_REST_BODY_BYTES,
            ))
            // After the dashboard: its static files are public; what the farm knows and does
            // is behind the guard.
            .layer(guard::layer(state.clone()))
            .layer(edge::layer(state)),
    )
}

/// Serves the gateway on `listener` until `shutdown` is cancelled; in-flight requests then
/// get `SHUTDOWN_GRACE` (3 s) to finish. The configuration is validated before anything is
/// served.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let state = AppState::new(config)?;
    let (max_connections, idle_timeout) =
        (state.config().max_connections, state.config().idle_timeout);
    let service = hyper_util::service::TowerToHyperService::new(router(state));
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "Accept failed.");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if open.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= max_connections {
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(
                max_connections,
                "Refused a connection at the gateway's bound."
            );
            continue;
        }
        // Answers are written in one go; Nagle's algorithm would only hold their tails back.
        let _ = stream.set_nodelay(true);
        let (service, open, shutdown) = (service.clone(), open.clone(), shutdown.clone());
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                // Starts when the connection waits for a request's head: it bounds both a
                // head sent too slowly and an idle keep-alive connection.
                .header_read_timeout(idle_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    if tokio::time::timeout(SHUTDOWN_GRACE, connection).await.is_err() {
                        tracing::warn!("A gateway request still open {SHUTDOWN_GRACE:?} after shutdown; dropping it.");
                    }
                }
            }
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Pause after an accept error that is not about one connection.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
