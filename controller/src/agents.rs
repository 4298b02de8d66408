//! The controller's side of the agent streams: `AgentService`, and commands sent down a
//! stream with their results matched by id under a deadline.
//!
//! Each stream is served by one task that reads the agent's messages and updates the
//! registry. The registry keeps an [`AgentLink`] per connected server: the sender half of the
//! stream plus the table of commands waiting for a result.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use farm_proto::auth::Token;
use farm_proto::limits::{MAX_HELLO_FIELD_LEN, MAX_SERVER_ID};
use farm_proto::v1::agent_service_server::AgentService;
use farm_proto::v1::{
    Command, CommandResult, Hello, LinkRequest, LinkResponse, Welcome, command, link_request,
    link_response,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::registry::{Refusal, Registration, Registry};

/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<CommandResult>>>>;

/// The controller's handle on one open agent stream.
#[derive(Debug, Clone)]
pub struct AgentLink {
    /// Number of this stream; a newer stream for the same server has a higher one.
    pub session: u64,
    outbound: mpsc::Sender<Result<LinkResponse, Status>>,
    pending: Pending,
}

/// Numbers streams and commands; shared by every stream of one controller.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Why a command got no result.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The server has no open stream.
    #[error("the agent is not connected")]
    NotConnected,
    /// The stream closed before the result came.
    #[error("the agent disconnected before answering")]
    Disconnected,
    /// No result within the deadline.
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
}

impl AgentLink {
    /// A link whose messages go to the returned receiver, for the registry's unit tests.
    #[cfg(test)]
    pub(crate) fn detached() -> (Self, mpsc::Receiver<Result<LinkResponse, Status>>) {
        let (outbound, receiver) = mpsc::channel(4);
        let link = Self {
            session: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            outbound,
            pending: Pending::default(),
        };
        (link, receiver)
    }

    /// Ends the stream with `reason`: its agent sees the stream fail and connects again.
    pub fn close(&self, reason: &str) {
        let _ = self
            .outbound
            .try_send(Err(Status::aborted(reason.to_string())));
    }

    /// Sends `action` and waits up to `deadline` for its result, in a span of its own whose
    /// context the command carries to the agent.
    pub async fn command(
        &self,
        action: command::Action,
        deadline: Duration,
    ) -> Result<CommandResult, CommandError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            target: farm_telemetry::target::CONTROLLER,
            "agent command",
            otel.name = %format!("command {}", action.name()),
            otel.kind = "client",
            farm.command.id = id,
        );
        self.send_command(id, action, deadline)
            .instrument(span)
            .await
    }

    async fn send_command(
        &self,
        id: u64,
        action: command::Action,
        deadline: Duration,
    ) -> Result<CommandResult, CommandError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let message = LinkResponse {
            kind: Some(link_response::Kind::Command(Command {
                id,
                action: Some(action),
                trace_context: farm_telemetry::context_map(),
            })),
        };
        let outcome = tokio::time::timeout(deadline, async {
            self.outbound
                .send(Ok(message))
                .await
                .map_err(|_| CommandError::Disconnected)?;
            rx.await.map_err(|_| CommandError::Disconnected)
        })
        .await
        .unwrap_or(Err(CommandError::Timeout(deadline)));
        lock(&self.pending).remove(&id);
        outcome
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `action` to server `id` and waits for the result; the shape every fan-out uses.
pub async fn command(
    registry: &Registry,
    id: u32,
    action: command::Action,
    deadline: Duration,
) -> Result<CommandResult, CommandError> {
    let link = registry.link(id).ok_or(CommandError::NotConnected)?;
    link.command(action, deadline).await
}

/// Milliseconds of a sample interval, as the protocol carries them.
fn millis(interval: Duration) -> u32 {
    u32::try_from(interval.as_millis()).unwrap_or(u32::MAX)
}

/// How long an agent may take to take a new sample interval.
const RETUNE_DEADLINE: Duration = Duration::from_secs(10);

/// Tells every connected agent whose pace no longer fits the farm's size its new sample
/// interval (see [`crate::registry::cadence`]); each is told in a task of its own.
pub fn retune(registry: &Registry) {
    for (id, link, interval) in registry.retune() {
        let registry = registry.clone();
        tokio::spawn(async move {
            let action = command::Action::SetSampleIntervalMs(millis(interval));
            match link.command(action, RETUNE_DEADLINE).await {
                Ok(result) if result.ok => registry.retuned(id, link.session, interval),
                Ok(result) => {
                    tracing::warn!(server_id = id, message = %result.message, "An agent refused a sample interval.");
                }
                // Its stream is gone; the next hello tells it the pace again.
                Err(_) => {}
            }
        });
    }
}

/// Hellos handled at once. Past it, a new stream is refused at once (RESOURCE_EXHAUSTED),
/// and its agent comes back after its backoff: a thousand agents reconnecting together are
/// admitted in waves, and the controller's own API keeps answering.
pub const ADMITTING: usize = 64;

/// `AgentService`: accepts agent streams.
#[derive(Debug, Clone)]
pub struct Agents {
    registry: Registry,
    token: Option<Token>,
    admitting: Arc<tokio::sync::Semaphore>,
    shutdown: CancellationToken,
}

impl Agents {
    /// Serves agent streams into `registry` until `shutdown`. With a `token`, a stream that
    /// does not carry it as its bearer token is refused before its hello is read.
    pub fn new(registry: Registry, token: Option<Token>, shutdown: CancellationToken) -> Self {
        Self {
            registry,
            token,
            admitting: Arc::new(tokio::sync::Semaphore::new(ADMITTING)),
            shutdown,
        }
    }
}

/// Checks a hello before anything is registered.
fn validate(hello: Hello) -> Result<Registration, Status> {
    let Hello {
        server_id,
        name,
        node_address,
        version,
        runtime,
        instance,
    } = hello;
    if server_id == 0 || server_id > MAX_SERVER_ID {
        return Err(Status::invalid_argument(format!(
            "hello.server_id must be 1 to {MAX_SERVER_ID}, got {server_id}"
        )));
    }
    for (field, value) in [
        ("name", &name),
        ("node_address", &node_address),
        ("version", &version),
        ("runtime", &runtime),
        ("instance", &instance),
    ] {
        if value.len() > MAX_HELLO_FIELD_LEN {
            return Err(Status::invalid_argument(format!(
                "hello.{field} is longer than {MAX_HELLO_FIELD_LEN} bytes"
            )));
        }
    }
    let port_ok = node_address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(Status::invalid_argument(format!(
            "hello.node_address must be host:port, got {node_address:?}"
        )));
    }
    Ok(Registration {
        id: server_id,
        name: if name.is_empty() {
            format!("server-{server_id}")
        } else {
            name
        },
        node_address,
        agent_version: version,
        runtime,
        instance,
    })
}

type LinkStream = Pin<Box<dyn Stream<Item = Result<LinkResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for Agents {
    type LinkStream = LinkStream;

    async fn link(
        &self,
        request: Request<Streaming<LinkRequest>>,
    ) -> Result<Response<LinkStream>, Status> {
        if let Some(token) = &self.token {
            let given = request
                .metadata()
                .get(farm_proto::auth::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if !token.admits(given) {
                self.registry.count_refused_agent();
                return Err(Status::unauthenticated(
                    "the farm's token is missing or wrong: give the agent the farm's token (FARM_TOKEN)",
                ));
            }
        }
        let Ok(_admitting) = self.admitting.clone().try_acquire_owned() else {
            return Err(Status::resource_exhausted(
                "the controller is admitting many agents at once; try again shortly",
            ));
        };
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello within 5 s"))??;
        let hello = match first {
            Some(LinkRequest {
                kind: Some(link_request::Kind::Hello(hello)),
            }) => hello,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a stream must be a hello",
                ));
            }
        };
        let registration = validate(hello)?;
        let id = registration.id;

        let (outbound, responses) = mpsc::channel(32);
        let sample_interval = self.registry.sample_interval();
        outbound
            .send(Ok(LinkResponse {
                kind: Some(link_response::Kind::Welcome(Welcome {
                    sample_interval_ms: millis(sample_interval),
                })),
            }))
            .await
            .map_err(|_| Status::unavailable("stream closed"))?;
        let pending: Pending = Arc::default();
        let link = AgentLink {
            session: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            outbound: outbound.clone(),
            pending: pending.clone(),
        };
        let session = match self.registry.connect(registration, link, sample_interval) {
            Ok(session) => session,
            Err(refusal) => {
                self.registry.count_refused_agent();
                tracing::warn!(server_id = id, %refusal, "Refused an agent stream.");
                let status = match refusal {
                    Refusal::Held(_) => Status::already_exists(refusal.to_string()),
                    Refusal::UnexpectedAddress { .. } => {
                        Status::permission_denied(refusal.to_string())
                    }
                    Refusal::Full(..) => Status::resource_exhausted(refusal.to_string()),
                };
                return Err(status);
            }
        };
        tracing::debug!(server_id = id, session, "Agent connected.");
        if let Some(handoff) = self.registry.faults_handoff(id) {
            // An agent that connects (a new one, or one whose node restarted with it) gets
            // its server's faults back; the runtime already applied any partition.
            tokio::spawn(async move {
                if let Err(error) = crate::faults::hand_over(handoff, None).await {
                    tracing::warn!(server_id = id, %error, "Could not hand an agent its faults.");
                }
            });
        }

        let registry = self.registry.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = outbound.closed() => break,
                    message = inbound.message() => message,
                };
                match message {
                    Ok(Some(LinkRequest { kind: Some(kind) })) => match kind {
                        link_request::Kind::Sample(sample) => {
                            registry.record_sample(id, session, sample);
                        }
                        link_request::Kind::Event(event) => {
                            registry.record_event(id, session, event);
                        }
                        link_request::Kind::Result(result) => {
                            if let Some(waiter) = lock(&pending).remove(&result.id) {
                                let _ = waiter.send(result);
                            }
                        }
                        link_request::Kind::Hello(_) => {
                            tracing::warn!(server_id = id, "Ignored a second hello on one stream.");
                        }
                    },
                    Ok(Some(LinkRequest { kind: None })) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            registry.disconnect(id, session);
            tracing::debug!(server_id = id, session, "Agent disconnected.");
        });

        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            server_id: 3,
            name: String::new(),
            node_address: "127.0.0.1:8003".into(),
            version: "0.1.0".into(),
            runtime: "process".into(),
            instance: "a1".into(),
        }
    }

    #[test]
    fn a_valid_hello_gets_a_default_name() {
        let r = validate(hello()).unwrap();
        assert_eq!(r.name, "server-3");
    }

    #[test]
    fn bad_hellos_are_refused_with_the_field_named() {
        let mut h = hello();
        h.server_id = 0;
        assert!(validate(h).unwrap_err().message().contains("server_id"));
        let mut h = hello();
        h.node_address = "nowhere".into();
        assert!(validate(h).unwrap_err().message().contains("node_address"));
        let mut h = hello();
        h.name = "x".repeat(300);
        assert!(validate(h).unwrap_err().message().contains("name"));
    }
}
