//! The agent's stream to the controller.
//!
//! One task runs the whole link: it opens the stream and says hello, sends a sample every
//! interval, forwards the supervisor's events and the commands' results, and hands incoming
//! commands to [`crate::commands`]. When the controller goes away it keeps sampling into a
//! bounded outbox and reconnects with backoff and jitter; on reconnect the outbox is sent
//! first, oldest first. When the outbox is full the oldest message is dropped: an agent that
//! cannot reach its controller for hours must not grow without limit.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use farm_proto::v1::agent_service_client::AgentServiceClient;
use farm_proto::v1::{
    AgentEvent, CommandResult, Hello, LinkRequest, LinkResponse, link_request, link_response,
};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{MissedTickBehavior, interval_at, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::transport::Endpoint;

use crate::sampler::Sampler;
use crate::supervisor::Supervisor;
use crate::{Config, commands};
use farm_backoff::Backoff;

/// Messages kept while the controller is unreachable: two minutes of samples at the default
/// 1 s interval plus room for events; the oldest are dropped past that.
pub const OUTBOX_CAPACITY: usize = 256;

/// How long connecting and waiting for the welcome may take before trying again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The link's state, owned by its one task.
pub(crate) struct Link {
    config: Config,
    /// Where the node is told to the controller.
    node_advertise: String,
    /// This agent's random id, the same in every hello it sends.
    instance: String,
    endpoint: Endpoint,
    supervisor: Supervisor,
    events: mpsc::Receiver<AgentEvent>,
    outbox: VecDeque<LinkRequest>,
    dropped: u64,
    sampler: Sampler,
}

/// Where the node answers: for the agent's own probes, and as told to the controller.
pub(crate) struct NodeAddresses {
    /// `host:port` the agent probes and scrapes.
    pub(crate) probe: String,
    /// `host:port` the controller reaches the node at.
    pub(crate) advertise: String,
}

/// An open stream: where to send, and what the controller sends.
struct Session {
    outbound: mpsc::Sender<LinkRequest>,
    inbound: Streaming<LinkResponse>,
}

impl Link {
    pub(crate) fn new(
        config: Config,
        node: NodeAddresses,
        endpoint: Endpoint,
        supervisor: Supervisor,
        events: mpsc::Receiver<AgentEvent>,
    ) -> Self {
        let container = if config.runtime == "docker" {
            let found = crate::cgroup::Cgroup::detect();
            if found.is_none() {
                tracing::warn!("No cgroup found; sampling the two processes instead.");
            }
            found
        } else {
            None
        };
        let sampler = Sampler::new(node.probe, container);
        Self {
            config,
            node_advertise: node.advertise,
            instance: instance_id(),
            endpoint,
            supervisor,
            events,
            outbox: VecDeque::with_capacity(OUTBOX_CAPACITY),
            dropped: 0,
            sampler,
        }
    }

    fn push(&mut self, kind: link_request::Kind) {
        if self.outbox.len() >= OUTBOX_CAPACITY {
            self.outbox.pop_front();
            self.dropped += 1;
        }
        self.outbox.push_back(LinkRequest { kind: Some(kind) });
    }

    /// Moves what the stream will take from the outbox; drops the session if it closed.
    fn flush(&mut self, session: &mut Option<Session>) {
        let Some(open) = session else { return };
        while let Some(message) = self.outbox.pop_front() {
            match open.outbound.try_send(message) {
                Ok(()) => {}
                Err(TrySendError::Full(message)) => {
                    self.outbox.push_front(message);
                    return;
                }
                Err(TrySendError::Closed(message)) => {
                    self.outbox.push_front(message);
                    *session = None;
                    return;
                }
            }
        }
    }

    /// Opens the stream, says hello and waits for the welcome; returns the sample interval.
    async fn connect(&self) -> Result<(Session, Duration), NotLinked> {
        let unreachable = |why: String| NotLinked {
            refused: false,
            why,
        };
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut client = AgentServiceClient::new(channel);
        let (outbound, requests) = mpsc::channel(64);
        let hello = Hello {
            server_id: self.config.server_id,
            name: self.config.name.clone(),
            node_address: self.node_advertise.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            runtime: self.config.runtime.clone(),
            instance: self.instance.clone(),
        };
        outbound
            .try_send(LinkRequest {
                kind: Some(link_request::Kind::Hello(hello)),
            })
            .map_err(|e| unreachable(e.to_string()))?;
        let mut request = tonic::Request::new(ReceiverStream::new(requests));
        if let Some(token) = &self.config.token {
            token.authorize(&mut request);
        }
        let mut inbound = client
            .link(request)
            .await
            .map_err(NotLinked::from)?
            .into_inner();
        match inbound.message().await {
            Ok(Some(LinkResponse {
                kind: Some(link_response::Kind::Welcome(welcome)),
            })) => {
                let interval = commands::sample_interval(welcome.sample_interval_ms)
                    .unwrap_or(self.config.sample_interval);
                Ok((Session { outbound, inbound }, interval))
            }
            Ok(_) => Err(unreachable("the controller did not welcome us".into())),
            Err(status) => Err(NotLinked::from(status)),
        }
    }
}

/// Why the agent has no stream to the controller.
#[derive(Debug)]
struct NotLinked {
    /// The controller answered and refused this agent (its token, its server id, its node
    /// address): the agent keeps trying, but someone has to change something.
    refused: bool,
    why: String,
}

impl From<tonic::Status> for NotLinked {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let refused = matches!(
            status.code(),
            Code::Unauthenticated
                | Code::PermissionDenied
                | Code::AlreadyExists
                | Code::FailedPrecondition
                | Code::InvalidArgument
        );
        Self {
            refused,
            why: status.message().to_string(),
        }
    }
}

/// Runs the link until `shutdown`.
pub(crate) async fn run(mut link: Link, shutdown: CancellationToken) {
    // Up to 10 s between tries, drawn at random: a thousand agents that lost the controller
    // together come back spread over seconds, not all at once.
    let mut backoff = Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(10),
        Duration::from_secs(30),
    );
    let (results_tx, mut results_rx) = mpsc::channel::<CommandResult>(64);
    let mut session: Option<Session> = None;
    let mut reconnect_at = Instant::now();
    let mut sample_interval = link.config.sample_interval;
    let mut ticker = interval_at(tokio::time::Instant::now(), sample_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut node_changes = link.supervisor.changes();
    // The last refusal said as a warning: each new reason is said once, not at every retry.
    let mut refusal_said: Option<String> = None;

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sleep_until(reconnect_at.into()), if session.is_none() => {
                match tokio::time::timeout(CONNECT_TIMEOUT, link.connect()).await {
                    Ok(Ok((open, interval))) => {
                        tracing::info!(controller = %link.config.controller_url, buffered = link.outbox.len(), dropped = link.dropped, "Connected to the controller.");
                        session = Some(open);
                        backoff.reset();
                        refusal_said = None;
                        if interval != sample_interval {
                            sample_interval = interval;
                            ticker = interval_at(tokio::time::Instant::now(), sample_interval);
                        }
                    }
                    Ok(Err(NotLinked { refused: true, why })) => {
                        if refusal_said.as_ref() != Some(&why) {
                            tracing::warn!(%why, "The controller refused this agent; trying again.");
                            refusal_said = Some(why);
                        }
                        reconnect_at = Instant::now() + backoff.next_delay();
                    }
                    Ok(Err(NotLinked { refused: false, why })) => {
                        tracing::debug!(%why, "Controller not reachable.");
                        reconnect_at = Instant::now() + backoff.next_delay();
                    }
                    Err(_) => {
                        tracing::debug!("Connecting to the controller timed out.");
                        reconnect_at = Instant::now() + backoff.next_delay();
                    }
                }
            }
            _ = ticker.tick() => {
                let sample = link.sampler.sample(&link.supervisor.status()).await;
                link.push(link_request::Kind::Sample(sample));
            }
            // A change of the node's state is sampled at once rather than at the next tick,
            // so the controller sees a stop, a crash or a recovery within milliseconds.
            Ok(()) = node_changes.changed() => {
                let status = node_changes.borrow_and_update().clone();
                let sample = link.sampler.sample(&status).await;
                link.push(link_request::Kind::Sample(sample));
            }
            Some(event) = link.events.recv() => link.push(link_request::Kind::Event(event)),
            Some(result) = results_rx.recv() => link.push(link_request::Kind::Result(result)),
            message = next_message(&mut session) => match message {
                Some(LinkResponse { kind: Some(link_response::Kind::Command(command)) }) => {
                    if let Some(interval) = commands::handle(command, &link.supervisor, &link.sampler, &results_tx) {
                        sample_interval = interval;
                        ticker = interval_at(tokio::time::Instant::now() + interval, interval);
                        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    }
                }
                Some(_) => tracing::debug!("Ignored a message the agent does not know."),
                None => {
                    tracing::warn!("Lost the controller; reconnecting.");
                    session = None;
                    reconnect_at = Instant::now() + backoff.next_delay();
                }
            },
        }
        link.flush(&mut session);
        if session.is_none() && reconnect_at <= Instant::now() {
            // The flush found the stream closed: try again after a pause, not in a busy loop.
            reconnect_at = reconnect_at.max(Instant::now() + Duration::from_millis(50));
        }
    }
}

/// The controller's next message; `None` when the stream ended or broke.
async fn next_message(session: &mut Option<Session>) -> Option<LinkResponse> {
    match session {
        Some(open) => open.inbound.message().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// A random id for this agent process: 64 bits from the standard library's randomly keyed
/// hasher, enough to tell one agent's reconnect from another agent's claim.
fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}
