//! The controller's verdict on a server, as a pure function of what it has observed.
//!
//! Kept free of I/O and clocks so that every rule is unit-tested on plain values.

use std::time::Duration;

use farm_proto::v1 as pb;

/// A server's status, in display order; each variant says when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Fresh samples, node running and answering `/health`, not overloaded.
    Healthy,
    /// Fresh samples and node running, but overloaded, erroring or failing its health probe.
    Degraded,
    /// The node app was stopped on request.
    Stopped,
    /// Not reporting a running node yet: just started, or restarting after an exit.
    Starting,
    /// The agent's stream is gone or silent.
    Unreachable,
}

impl Status {
    /// Every status, in display order.
    pub const ALL: [Status; 5] = [
        Status::Healthy,
        Status::Degraded,
        Status::Stopped,
        Status::Starting,
        Status::Unreachable,
    ];

    /// The lowercase name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Stopped => "stopped",
            Status::Starting => "starting",
            Status::Unreachable => "unreachable",
        }
    }
}

impl From<Status> for pb::ServerStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Healthy => pb::ServerStatus::Healthy,
            Status::Degraded => pb::ServerStatus::Degraded,
            Status::Stopped => pb::ServerStatus::Stopped,
            Status::Starting => pb::ServerStatus::Starting,
            Status::Unreachable => pb::ServerStatus::Unreachable,
        }
    }
}

impl TryFrom<pb::ServerStatus> for Status {
    type Error = ();

    fn try_from(status: pb::ServerStatus) -> Result<Self, ()> {
        Ok(match status {
            pb::ServerStatus::Healthy => Status::Healthy,
            pb::ServerStatus::Degraded => Status::Degraded,
            pb::ServerStatus::Stopped => Status::Stopped,
            pb::ServerStatus::Starting => Status::Starting,
            pb::ServerStatus::Unreachable => Status::Unreachable,
            pb::ServerStatus::Unspecified => return Err(()),
        })
    }
}

/// What the runtime (the container engine) says of a server, when it says anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeState {
    /// Running.
    Running,
    /// Frozen on request.
    Paused,
    /// Stopped on request.
    Stopped,
    /// Exited without being asked to, with this exit code; the runtime restarts it.
    Exited(i64),
}

/// CPU use, as a share of what the server may use, from which a server counts as overloaded.
pub const OVERLOAD_CPU_SHARE: f64 = 0.9;
/// Share of requests answered with 5xx from which a server counts as erroring.
pub const ERROR_RATE_DEGRADED: f64 = 0.1;

/// What the controller knows of a server at one moment.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// What the runtime last said of the server, if it reports states.
    pub runtime_state: Option<RuntimeState>,
    /// Whether the agent's stream is open.
    pub connected: bool,
    /// Whether the agent has ever connected since the controller started.
    pub ever_connected: bool,
    /// Age of the latest sample; `None` before the first.
    pub sample_age: Option<Duration>,
    /// How old a sample may be before the server counts as silent.
    pub stale_after: Duration,
    /// The node state of the latest sample.
    pub node_state: Option<pb::NodeState>,
    /// CPU of the latest sample, in percent of one core.
    pub cpu_percent: f64,
    /// The server's CPU limit in cores; 0 means no limit (one core is taken as capacity).
    pub cpu_limit_cores: f64,
    /// Requests per second from the last two samples.
    pub requests_per_second: f64,
    /// 5xx answers per second from the last two samples.
    pub errors_per_second: f64,
    /// Connections the node refused at its bound between the last two samples.
    pub connections_refused: u64,
    /// Connections the node holds, in the latest sample.
    pub connections_open: u32,
    /// Whether a partition fault has cut the server off from the farm's network.
    pub partitioned: bool,
    /// What the runtime says of a server that does not run: the engine's reason why its task
    /// waits or was refused (a swarm with no node that fits, an image a node lacks).
    pub runtime_note: Option<String>,
}

/// `reason`, and what the runtime says of the server when it says something.
fn with_note(reason: &str, o: &Observation) -> String {
    match &o.runtime_note {
        Some(note) => format!("{reason}; the engine says: {note}"),
        None => reason.to_string(),
    }
}

/// The status a server has given `o`, and why, in a few words.
pub fn evaluate(o: &Observation) -> (Status, String) {
    match o.runtime_state {
        Some(RuntimeState::Stopped) => return (Status::Stopped, "stopped on request".into()),
        Some(RuntimeState::Exited(code)) => {
            let exited = format!("exited with code {code}; restarting");
            return (Status::Stopped, with_note(&exited, o));
        }
        Some(RuntimeState::Paused) => return (Status::Unreachable, "paused on request".into()),
        Some(RuntimeState::Running) if !o.connected && !o.partitioned => {
            return (
                Status::Starting,
                with_note("running; waiting for the agent", o),
            );
        }
        Some(RuntimeState::Running) | None => {}
    }
    if o.partitioned {
        return (
            Status::Unreachable,
            "cut off from the farm's network by a partition fault".into(),
        );
    }
    if !o.connected {
        return if o.ever_connected {
            (Status::Unreachable, with_note("agent disconnected", o))
        } else {
            (Status::Starting, with_note("waiting for the agent", o))
        };
    }
    let Some(age) = o.sample_age else {
        return (Status::Starting, "waiting for the first sample".into());
    };
    if age > o.stale_after {
        return (
            Status::Unreachable,
            format!("no sample for {:.1} s", age.as_secs_f64()),
        );
    }
    match o.node_state.unwrap_or(pb::NodeState::Unspecified) {
        pb::NodeState::Stopped => (Status::Stopped, "node stopped on request".into()),
        pb::NodeState::Paused => (Status::Unreachable, "node paused on request".into()),
        pb::NodeState::Crashed => (Status::Starting, "node exited; restarting".into()),
        pb::NodeState::Starting | pb::NodeState::Unspecified => {
            (Status::Starting, "node starting".into())
        }
        pb::NodeState::Unhealthy => (Status::Degraded, "node /health failing".into()),
        pb::NodeState::Running => {
            let capacity = if o.cpu_limit_cores > 0.0 {
                o.cpu_limit_cores * 100.0
            } else {
                100.0
            };
            if o.cpu_percent >= capacity * OVERLOAD_CPU_SHARE {
                return (
                    Status::Degraded,
                    format!(
                        "CPU at {:.0}% of its capacity",
                        o.cpu_percent / capacity * 100.0
                    ),
                );
            }
            if o.requests_per_second > 0.0
                && o.errors_per_second / o.requests_per_second >= ERROR_RATE_DEGRADED
            {
                return (
                    Status::Degraded,
                    format!(
                        "{:.0}% of requests fail",
                        o.errors_per_second / o.requests_per_second * 100.0
                    ),
                );
            }
            if o.connections_refused > 0 {
                return (
                    Status::Degraded,
                    format!(
                        "refusing connections: {} refused, {} open at its bound",
                        o.connections_refused, o.connections_open
                    ),
                );
            }
            (Status::Healthy, "ok".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_refuses_connections_is_degraded() {
        let refusing = Observation {
            connections_refused: 12,
            connections_open: 64,
            ..running()
        };
        let (status, reason) = evaluate(&refusing);
        assert_eq!(status, Status::Degraded);
        assert!(reason.contains("refusing connections"), "{reason}");
        assert_eq!(evaluate(&running()).0, Status::Healthy);
    }

    fn running() -> Observation {
        Observation {
            connected: true,
            ever_connected: true,
            sample_age: Some(Duration::from_millis(200)),
            stale_after: Duration::from_secs(3),
            node_state: Some(pb::NodeState::Running),
            cpu_percent: 5.0,
            ..Observation::default()
        }
    }

    #[test]
    fn a_fresh_running_server_is_healthy() {
        assert_eq!(evaluate(&running()).0, Status::Healthy);
    }

    #[test]
    fn never_connected_is_starting_and_lost_is_unreachable() {
        let mut o = running();
        o.connected = false;
        o.ever_connected = false;
        assert_eq!(evaluate(&o).0, Status::Starting);
        o.ever_connected = true;
        assert_eq!(evaluate(&o).0, Status::Unreachable);
    }

    #[test]
    fn the_runtime_says_why_a_server_does_not_run() {
        let waiting = Observation {
            runtime_note: Some("no suitable node".into()),
            ..Observation::default()
        };
        assert_eq!(
            evaluate(&waiting),
            (
                Status::Starting,
                "waiting for the agent; the engine says: no suitable node".into()
            )
        );
        let refused = Observation {
            runtime_state: Some(RuntimeState::Exited(-1)),
            runtime_note: Some("No such image".into()),
            ..Observation::default()
        };
        assert_eq!(
            evaluate(&refused),
            (
                Status::Stopped,
                "exited with code -1; restarting; the engine says: No such image".into()
            )
        );
    }

    #[test]
    fn a_stale_sample_is_unreachable() {
        let mut o = running();
        o.sample_age = Some(Duration::from_secs(4));
        let (status, reason) = evaluate(&o);
        assert_eq!(status, Status::Unreachable);
        assert!(reason.contains("4.0 s"), "{reason}");
    }

    #[test]
    fn node_states_map_to_statuses() {
        let mut o = running();
        for (state, status) in [
            (pb::NodeState::Stopped, Status::Stopped),
            (pb::NodeState::Crashed, Status::Starting),
            (pb::NodeState::Starting, Status::Starting),
            (pb::NodeState::Unhealthy, Status::Degraded),
            (pb::NodeState::Paused, Status::Unreachable),
        ] {
            o.node_state = Some(state);
            assert_eq!(evaluate(&o).0, status, "{state:?}");
        }
    }

    #[test]
    fn overload_is_relative_to_the_cpu_limit() {
        let mut o = running();
        o.cpu_percent = 95.0;
        assert_eq!(evaluate(&o).0, Status::Degraded);
        o.cpu_limit_cores = 2.0;
        assert_eq!(evaluate(&o).0, Status::Healthy);
        o.cpu_limit_cores = 0.5;
        o.cpu_percent = 46.0;
        assert_eq!(evaluate(&o).0, Status::Degraded);
    }

    #[test]
    fn the_runtime_state_comes_first() {
        let mut o = running();
        o.runtime_state = Some(RuntimeState::Exited(137));
        let (status, reason) = evaluate(&o);
        assert_eq!(status, Status::Stopped);
        assert!(reason.contains("137"), "{reason}");
        o.runtime_state = Some(RuntimeState::Paused);
        assert_eq!(evaluate(&o).0, Status::Unreachable);
        o.runtime_state = Some(RuntimeState::Running);
        assert_eq!(evaluate(&o).0, Status::Healthy);
        o.connected = false;
        assert_eq!(evaluate(&o).0, Status::Starting);
    }

    #[test]
    fn a_partitioned_server_is_unreachable_and_says_why() {
        let mut o = running();
        o.partitioned = true;
        for (runtime_state, connected) in [(None, true), (Some(RuntimeState::Running), false)] {
            o.runtime_state = runtime_state;
            o.connected = connected;
            let (status, reason) = evaluate(&o);
            assert_eq!(status, Status::Unreachable);
            assert!(reason.contains("partition"), "{reason}");
        }
        o.runtime_state = Some(RuntimeState::Stopped);
        assert_eq!(evaluate(&o).0, Status::Stopped, "a stop says more");
    }

    #[test]
    fn a_high_error_rate_is_degraded() {
        let mut o = running();
        o.requests_per_second = 100.0;
        o.errors_per_second = 5.0;
        assert_eq!(evaluate(&o).0, Status::Healthy);
        o.errors_per_second = 20.0;
        assert_eq!(evaluate(&o).0, Status::Degraded);
    }
}
