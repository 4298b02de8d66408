//! The controller: the farm's brain, a gRPC server on :50051.
//!
//! Agents hold one bidirectional stream each ([`agents`]); what they report lands in the
//! [`registry`], where every server's status is derived from what was observed ([`status`]).
//! The public `FarmService` ([`api`]) reads the registry, aggregates it ([`aggregate`]),
//! probes the nodes ([`health`]), sends commands down the agent streams, runs load tests
//! ([`loadtest`]) and broadcasts ([`broadcast`]). Runtimes ([`runtime`]) start the servers.
//! gRPC server reflection and `grpc.health.v1` are served next to it, so `grpcurl` works
//! with no proto files.
//!
//! # Layout
//! - [`serve`]: binds nothing itself; serves every service on a listener until cancelled.
//! - [`registry`], [`status`], [`aggregate`]: the farm's state and the pure rules over it.
//! - [`agents`], [`api`]: the two gRPC services.
//! - [`health`], [`loadtest`], [`broadcast`], [`targets`]: what the API does with nodes.
//! - [`faults`]: the servers' fault profiles, kept here and handed to agents and runtimes.
//! - [`runtime`]: where servers live (local processes by default).
//! - [`scenario`]: scenario files run against the farm: load, faults, verdicts.
//! - `recorder`: the farm written into its history ([`farm_history`]) once a second.

pub mod agents;
pub mod aggregate;
pub mod api;
pub mod broadcast;
pub mod error;
pub mod faults;
pub mod health;
pub mod loadtest;
mod recorder;
pub mod registry;
pub mod runtime;
pub mod scenario;
pub mod status;
pub mod targets;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use farm_proto::v1::agent_service_server::AgentServiceServer;
use farm_proto::v1::farm_service_server::FarmServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};

/// Who may do what through the controller.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The farm's token: every agent stream must carry it; without one, any agent may link.
    pub token: Option<farm_proto::auth::Token>,
    /// Whether the calls that change the farm ([`farm_proto::auth::CHANGING_CALLS`]) need the
    /// token too: whenever the controller listens beyond loopback. Reads stay open.
    pub guard_changes: bool,
    /// TLS on the gRPC port (from `farm_proto::tls::server_config`); plaintext without.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}
pub use registry::Registry;
pub use runtime::Runtime;

/// How often statuses are re-evaluated against the clock.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Largest message the controller accepts or sends (a watch snapshot of a large farm).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// A connection the controller holds, counted while it is open.
struct Counted {
    stream: tokio::net::TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// Accepts connections on every listener into one stream: the docker runtime needs the
/// controller on loopback for people and on the farm network's gateway for containers.
/// At most `max_connections` are open at once; a connection past it is closed at once, so
/// that a flood cannot take the file descriptors and memory the farm's agents need.
fn accept_all(
    listeners: Vec<TcpListener>,
    max_connections: usize,
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Counted>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let open = Arc::new(AtomicUsize::new(0));
    for listener in listeners {
        let (tx, shutdown, open) = (tx.clone(), shutdown.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "Accept failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if open.fetch_add(1, Ordering::Relaxed) >= max_connections {
                    open.fetch_sub(1, Ordering::Relaxed);
                    tracing::debug!(
                        max_connections,
                        "Refused a connection at the controller's bound."
                    );
                    continue;
                }
                // gRPC messages are small and latency matters more than batching.
                let _ = stream.set_nodelay(true);
                let connection = Counted {
                    stream,
                    open: open.clone(),
                };
                if tx.send(Ok(connection)).await.is_err() {
                    return;
                }
            }
        });
    }
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Joins server `id`, whose partition ended, to the farm's network again, in a task of its own.
fn heal(runtime: &Option<Arc<dyn Runtime>>, id: u32) {
    let Some(runtime) = runtime.clone() else {
        return;
    };
    tokio::spawn(async move {
        if let Err(error) = runtime.partition(id, false).await {
            tracing::warn!(server_id = id, %error, "Could not end a partition that expired.");
        }
    });
}

/// The span of one `FarmService` call, joined to the caller's trace when its metadata carries
/// one; no span for agent streams, health checks and reflection (`Span::none`), and none at
/// all while tracing is off (the target is then disabled).
fn call_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    if !path.starts_with("/farm.v1.FarmService/") {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: farm_telemetry::target::CONTROLLER,
        "FarmService call",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = "farm.v1.FarmService",
        rpc.method = %path.rsplit('/').next().unwrap_or_default(),
    );
    if !span.is_disabled() {
        farm_telemetry::set_parent(&span, farm_telemetry::extract(request.headers()));
    }
    span
}

/// Serves the agent and farm services, reflection and health on `listeners` until
/// `shutdown` is cancelled; every stream ends then. Without a `runtime` (a controller run
/// alone) lifecycle actions go straight to the agents and the farm cannot be scaled. `access`
/// says which callers must carry the farm's token.
pub async fn serve(
    listeners: Vec<TcpListener>,
    registry: Registry,
    runtime: Option<Arc<dyn Runtime>>,
    access: Access,
    history: Option<farm_history::History>,
    shutdown: CancellationToken,
) -> std::result::Result<(), tonic::transport::Error> {
    let recorder = history.clone().map(|history| {
        crate::recorder::write(&history, "the controller's start", |h| {
            h.add_events(&[farm_history::NewEvent {
                at_ms: farm_proto::now_ms(),
                server_id: 0,
                kind: "controller_started".into(),
                detail: String::new(),
            }])
        });
        tokio::spawn(recorder::run(registry.clone(), history, shutdown.clone()))
    });
    let sweeper = {
        let (registry, runtime, shutdown) = (registry.clone(), runtime.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        agents::retune(&registry);
                        for id in registry.expire_faults(faults::now_ms()) {
                            heal(&runtime, id);
                        }
                        for id in registry.sweep() {
                            tracing::info!(
                                server_id = id,
                                "Dropped a server no runtime owns: its agent left {} s ago.",
                                registry::UNOWNED_GRACE.as_secs()
                            );
                        }
                    }
                }
            }
        })
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<FarmServiceServer<api::Farm>>()
        .await;
    health_reporter
        .set_serving::<AgentServiceServer<agents::Agents>>()
        .await;
    // grpcurl and many other tools still ask the v1alpha reflection service; serve both.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(farm_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the embedded descriptors are valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the embedded descriptors are valid");

    let load_tests = match &history {
        Some(history) => match loadtest::LoadTests::with_history(history.clone()) {
            Ok(load_tests) => load_tests,
            Err(error) => {
                tracing::warn!(%error, "Load-test ids start again at 1: the history could not say its last.");
                loadtest::LoadTests::default()
            }
        },
        None => loadtest::LoadTests::default(),
    };
    let farm = api::Farm::new(
        registry.clone(),
        runtime,
        load_tests,
        history,
        access.clone(),
        shutdown.clone(),
    );
    // Every agent's stream, plus as many clients as a gateway may hold.
    let max_connections =
        registry.max_servers() as usize + farm_proto::limits::DEFAULT_MAX_CONNECTIONS;
    let agents = agents::Agents::new(registry, access.token, shutdown.clone());
    let incoming = accept_all(listeners, max_connections, shutdown.clone());
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = access.tls.clone() {
        server = server.tls_config(tls)?;
    }
    let result = server
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .trace_fn(call_span)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            FarmServiceServer::new(farm)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(AgentServiceServer::new(agents))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    sweeper.abort();
    if let Some(recorder) = recorder {
        recorder.abort();
    }
    result
}
