//! Supervises the node app: one child process, kept running unless stopped on request.
//!
//! The supervisor is a single task that owns the child. Everything else talks to it through a
//! [`Supervisor`] handle: commands go in over a channel, the node's state comes out through a
//! `watch`, and events (exited, restarted, unhealthy, ...) go to the link for the controller.
//! One owner means no locks and no race between "the node exited" and "stop the node".

use std::time::{Duration, Instant};

use farm_node_api::client::NodeClient;
use farm_proto::v1::{AgentEvent, AgentEventKind, FaultProfile};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use farm_backoff::Backoff;

/// How to start the node app and where it answers.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Program and arguments.
    pub command: Vec<String>,
    /// host:port where the node listens, for the readiness and health probes.
    pub address: String,
}

/// The node app's state as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Started, not answering `/health` yet.
    Starting,
    /// Running and answering `/health`.
    Running,
    /// Stopped on request.
    Stopped,
    /// Exited on its own; a restart is scheduled.
    Crashed,
    /// Running, but `/health` fails.
    Unhealthy,
    /// Frozen on request (SIGSTOP).
    Paused,
}

/// A snapshot of the node app, published on every change.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// Its state.
    pub state: NodeState,
    /// Its process id while it runs.
    pub pid: Option<u32>,
    /// When the current process started.
    pub started_at: Option<Instant>,
    /// Restarts after exits the node did not ask for.
    pub restarts: u32,
}

/// A request for the node app: a lifecycle action, or its faults.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start it if stopped.
    Start,
    /// Stop it and keep it stopped.
    Stop,
    /// Stop it and start it again.
    Restart,
    /// Kill it with SIGKILL, as a crash: it is restarted like after any exit.
    Kill,
    /// Freeze it (SIGSTOP): it keeps its port and answers nothing.
    Pause,
    /// Thaw it (SIGCONT).
    Unpause,
    /// Hand it this fault profile, of this version, now and at every start.
    SetFaults(Box<FaultProfile>, u64),
}

type Reply = oneshot::Sender<Result<String, String>>;

/// A handle on the supervisor task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    requests: mpsc::Sender<(Action, Reply)>,
    status: watch::Receiver<NodeStatus>,
    finished: CancellationToken,
}

impl Supervisor {
    /// The node's current status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that wakes whenever the node's status changes.
    pub fn changes(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// Applies `action` and says what happened; an error when the supervisor is gone.
    pub async fn act(&self, action: Action) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((action, reply))
            .await
            .map_err(|_| "the supervisor has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the supervisor has stopped".to_string())?
    }

    /// Waits until the supervisor has stopped the node and ended.
    pub async fn stopped(&self) {
        self.finished.cancelled().await;
    }
}

/// How often a running node's `/health` is probed.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How often a starting node is probed until it answers: short, because a restarted node
/// must serve again within a second.
const READINESS_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the node may take to take a fault profile from its pipe. A paused node takes
/// none; its pipe holds a few profiles before a write would wait.
const FAULTS_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts the supervisor task, which starts the node at once.
pub fn spawn(
    spec: NodeSpec,
    events: mpsc::Sender<AgentEvent>,
    shutdown: CancellationToken,
) -> Supervisor {
    let (requests_tx, requests_rx) = mpsc::channel(8);
    let (status_tx, status_rx) = watch::channel(NodeStatus {
        state: NodeState::Starting,
        pid: None,
        started_at: None,
        restarts: 0,
    });
    let finished = CancellationToken::new();
    let task = Task {
        spec,
        events,
        status: status_tx,
        client: NodeClient::new(),
        child: None,
        stdin: None,
        faults: None,
        want_running: true,
        restart_at: Some(Instant::now()),
        backoff: Backoff::new(
            Duration::from_millis(50),
            Duration::from_secs(5),
            Duration::from_secs(10),
        ),
    };
    let done = finished.clone();
    tokio::spawn(async move {
        task.run(requests_rx, shutdown).await;
        done.cancel();
    });
    Supervisor {
        requests: requests_tx,
        status: status_rx,
        finished,
    }
}

struct Task {
    spec: NodeSpec,
    events: mpsc::Sender<AgentEvent>,
    status: watch::Sender<NodeStatus>,
    client: NodeClient,
    child: Option<Child>,
    /// The write end of the running node's fault channel (its standard input).
    stdin: Option<ChildStdin>,
    /// The latest fault profile and its version, handed to the node at every start.
    faults: Option<(FaultProfile, u64)>,
    /// Whether the node should run: false only after a stop request.
    want_running: bool,
    /// When to (re)start the node, while it is not running.
    restart_at: Option<Instant>,
    backoff: Backoff,
}

impl Task {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<(Action, Reply)>,
        shutdown: CancellationToken,
    ) {
        let mut next_probe = Instant::now();
        loop {
            let state = self.status.borrow().state;
            let probe_every = if state == NodeState::Starting {
                READINESS_PROBE_INTERVAL
            } else {
                HEALTH_PROBE_INTERVAL
            };
            let far_future = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.kill().await;
                    self.set_state(NodeState::Stopped);
                    return;
                }
                Some((action, reply)) = requests.recv() => {
                    let _ = reply.send(self.apply(action).await);
                }
                exit = wait(&mut self.child) => {
                    self.child = None;
                    self.stdin = None;
                    self.on_exit(exit).await;
                }
                _ = sleep_until(self.restart_at.unwrap_or(far_future).into()), if self.restart_at.is_some() => {
                    self.restart_at = None;
                    // A failed start has already scheduled the next try.
                    let _ = self.start().await;
                    next_probe = Instant::now();
                }
                _ = sleep_until(next_probe.into()), if self.child.is_some() && state != NodeState::Paused => {
                    next_probe = Instant::now() + probe_every;
                    self.probe().await;
                }
            }
        }
    }

    async fn apply(&mut self, action: Action) -> Result<String, String> {
        match action {
            Action::SetFaults(profile, version) => {
                if self
                    .faults
                    .as_ref()
                    .is_some_and(|(_, applied)| *applied > version)
                {
                    return Ok(format!(
                        "faults version {version} is older than the one applied; kept that"
                    ));
                }
                self.faults = Some((*profile, version));
                if self.stdin.is_none() {
                    return Ok("faults kept; the node gets them when it starts".into());
                }
                self.hand_faults().await
            }
            Action::Start => {
                self.want_running = true;
                if self.child.is_some() {
                    return Ok("node already running".into());
                }
                self.backoff.reset();
                self.start().await?;
                self.emit(
                    AgentEventKind::NodeStarted,
                    "node started on request".into(),
                )
                .await;
                Ok("node started".into())
            }
            Action::Stop => {
                self.want_running = false;
                self.restart_at = None;
                if self.child.is_none() {
                    self.set_state(NodeState::Stopped);
                    return Ok("node already stopped".into());
                }
                self.kill().await;
                self.set_state(NodeState::Stopped);
                self.emit(
                    AgentEventKind::NodeStopped,
                    "node stopped on request".into(),
                )
                .await;
                Ok("node stopped".into())
            }
            Action::Kill => {
                let Some(child) = self.child.as_mut() else {
                    return Err("node is not running".into());
                };
                // Not waited for here: the exit is seen, reported and restarted like any crash.
                child
                    .start_kill()
                    .map_err(|e| format!("cannot kill the node: {e}"))?;
                Ok("node killed; it restarts like after a crash".into())
            }
            Action::Pause | Action::Unpause => {
                let pause = action == Action::Pause;
                let pid = self
                    .child
                    .as_ref()
                    .and_then(Child::id)
                    .ok_or_else(|| "node is not running".to_string())?;
                let signal = if pause {
                    Signal::SIGSTOP
                } else {
                    Signal::SIGCONT
                };
                kill(Pid::from_raw(pid as i32), signal)
                    .map_err(|e| format!("cannot signal the node: {e}"))?;
                if pause {
                    self.set_state(NodeState::Paused);
                    Ok("node paused".into())
                } else {
                    self.set_state(NodeState::Running);
                    Ok("node unpaused".into())
                }
            }
            Action::Restart => {
                self.want_running = true;
                self.kill().await;
                self.backoff.reset();
                self.start().await?;
                self.emit(
                    AgentEventKind::NodeStarted,
                    "node restarted on request".into(),
                )
                .await;
                Ok("node restarted".into())
            }
        }
    }

    /// Spawns the node process; on failure schedules another try.
    async fn start(&mut self) -> Result<(), String> {
        let (program, args) = self
            .spec
            .command
            .split_first()
            .expect("validated: the node command is not empty");
        let trace_env = farm_telemetry::child_env(None);
        let mut command = Command::new(program);
        if !trace_env.is_empty() {
            // The node exports its traces where this agent does, under its own name.
            for name in farm_telemetry::CHILD_ENV_REMOVED {
                command.env_remove(name);
            }
            command.envs(trace_env);
        }
        let spawned = command
            .args(args)
            // The node's fault channel: only its agent can write to it.
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(mut child) => {
                let pid = child.id();
                self.stdin = child.stdin.take();
                self.child = Some(child);
                self.status.send_modify(|s| {
                    s.state = NodeState::Starting;
                    s.pid = pid;
                    s.started_at = Some(Instant::now());
                });
                if self.faults.is_some()
                    && let Err(error) = self.hand_faults().await
                {
                    tracing::warn!(%error, "Could not hand the restarted node its faults.");
                }
                Ok(())
            }
            Err(e) => {
                let message = format!("cannot start the node ({program}): {e}");
                tracing::warn!(%message, "Node start failed.");
                self.set_state(NodeState::Crashed);
                self.restart_at = Some(Instant::now() + self.backoff.next_delay());
                self.emit(AgentEventKind::NodeExited, message.clone()).await;
                Err(message)
            }
        }
    }

    async fn on_exit(&mut self, exit: std::io::Result<std::process::ExitStatus>) {
        let how = match exit {
            Ok(status) => format!("node exited ({status})"),
            Err(e) => format!("node vanished: {e}"),
        };
        tracing::warn!(%how, "Node exited on its own.");
        self.status.send_modify(|s| {
            s.state = NodeState::Crashed;
            s.pid = None;
            s.restarts += 1;
        });
        self.emit(AgentEventKind::NodeExited, how).await;
        if self.want_running {
            self.restart_at = Some(Instant::now() + self.backoff.next_delay());
        }
    }

    async fn probe(&mut self) {
        let ok = self
            .client
            .health(&self.spec.address, PROBE_TIMEOUT)
            .await
            .is_ok();
        let state = self.status.borrow().state;
        match (state, ok) {
            (NodeState::Starting, true) => {
                let restarted = self.status.borrow().restarts > 0;
                self.set_state(NodeState::Running);
                if restarted {
                    self.emit(AgentEventKind::NodeRestarted, "node serving again".into())
                        .await;
                }
            }
            (NodeState::Running, false) => {
                self.set_state(NodeState::Unhealthy);
                self.emit(AgentEventKind::NodeUnhealthy, "node /health failed".into())
                    .await;
            }
            (NodeState::Unhealthy, true) => {
                self.set_state(NodeState::Running);
                self.emit(
                    AgentEventKind::NodeHealthy,
                    "node /health answers again".into(),
                )
                .await;
            }
            _ => {}
        }
    }

    /// Writes the latest fault profile to the node's fault channel, as one JSON line with
    /// the time each fault has left.
    async fn hand_faults(&mut self) -> Result<String, String> {
        let Some((profile, _)) = &self.faults else {
            return Ok("no faults to hand over".into());
        };
        let profile = farm_node_api::faults::from_proto(profile, crate::sampler::now_ms())?;
        let mut line = serde_json::to_vec(&profile).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let stdin = self
            .stdin
            .as_mut()
            .ok_or("the node is not running; it gets the faults when it starts")?;
        match tokio::time::timeout(FAULTS_WRITE_TIMEOUT, stdin.write_all(&line)).await {
            Ok(Ok(())) if profile.is_empty() => Ok("faults cleared on the node".into()),
            Ok(Ok(())) => Ok("faults handed to the node".into()),
            Ok(Err(e)) => Err(format!("cannot hand the node its faults: {e}")),
            Err(_) => Err(format!(
                "the node took no faults within {FAULTS_WRITE_TIMEOUT:?} (is it paused?); it gets them at its next start"
            )),
        }
    }

    async fn kill(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.status.send_modify(|s| s.pid = None);
    }

    fn set_state(&self, state: NodeState) {
        self.status.send_if_modified(|s| {
            let changed = s.state != state;
            s.state = state;
            changed
        });
    }

    async fn emit(&self, kind: AgentEventKind, message: String) {
        let event = AgentEvent {
            timestamp_ms: crate::sampler::now_ms(),
            kind: kind.into(),
            message,
        };
        // The link drains this channel even while the controller is away (into its bounded
        // outbox), so a send only waits when the link itself has stopped.
        let _ = self.events.send(event).await;
    }
}

async fn wait(child: &mut Option<Child>) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(child) => child.wait().await,
        None => std::future::pending().await,
    }
}
