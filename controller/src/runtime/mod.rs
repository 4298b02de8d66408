//! Runtimes: where the farm's servers live. Each one starts servers, keeps them alive (its
//! restart policy), applies lifecycle actions, scales, and removes everything on shutdown.
//! `process` (local processes) is the default; the docker runtime sits behind the same trait.

pub mod docker;
pub mod process;
pub mod swarm;

use std::time::Duration;

use farm_proto::limits::MAX_SERVERS;
use farm_proto::v1::{NodeAction, ServerActionKind, command};

pub use docker::{DockerError, DockerRuntime, DockerRuntimeConfig};
pub use process::{ProcessRuntime, ProcessRuntimeConfig};
pub use swarm::{SwarmError, SwarmRuntime, SwarmRuntimeConfig};

use crate::agents;
use crate::registry::Registry;

/// How long a server may take to carry out an action.
pub const ACTION_DEADLINE: Duration = Duration::from_secs(10);

/// Why a runtime could not do what it was asked. Every variant leaves the farm as it was,
/// except where an action was half carried out on the engine, which the message then says.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request is outside what the farm allows (a bound, a missing action).
    #[error("{0}")]
    InvalidArgument(String),
    /// The server is not one of this runtime's.
    #[error("server {0} is not part of this farm")]
    UnknownServer(u32),
    /// A server's node has no usable port (out of range, or taken by another program).
    #[error("{0}")]
    Port(String),
    /// The server's agent refused the action, or gave no answer in time.
    #[error("{0}")]
    Agent(String),
    /// The Docker engine refused or failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The swarm's manager refused or failed.
    #[error(transparent)]
    Swarm(#[from] SwarmError),
}

impl From<RuntimeError> for tonic::Status {
    fn from(error: RuntimeError) -> Self {
        let message = error.to_string();
        match error {
            RuntimeError::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            RuntimeError::UnknownServer(_) => tonic::Status::not_found(message),
            RuntimeError::Port(_) | RuntimeError::Docker(DockerError::Adopted) => {
                tonic::Status::failed_precondition(message)
            }
            RuntimeError::Agent(_) | RuntimeError::Docker(_) | RuntimeError::Swarm(_) => {
                tonic::Status::unavailable(message)
            }
        }
    }
}

/// How a server's agent is started: `farm agent` and these arguments. The one place the agent's
/// command line is built, for every runtime: a local process, a container, a compose service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCommand {
    /// The server's id.
    pub id: u32,
    /// The controller's gRPC URL, as the agent reaches it.
    pub controller_url: String,
    /// Where the node listens (`host:port`; port 0 lets the node pick one and report it).
    pub node_listen: String,
    /// How the controller reaches the node, when that is not the listen address.
    pub node_advertise: Option<String>,
    /// The runtime that starts the agent, told to the controller.
    pub runtime: &'static str,
    /// Whether the agent ends when its parent dies (a local process, whose parent is the farm).
    pub exit_with_parent: bool,
    /// Whether the node takes per-request faults from request headers.
    pub allow_fault_headers: bool,
}

impl AgentCommand {
    /// The arguments after the program: `agent --id N ...`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "agent".to_string(),
            "--id".into(),
            self.id.to_string(),
            "--controller".into(),
            self.controller_url.clone(),
            "--node-listen".into(),
            self.node_listen.clone(),
        ];
        if let Some(advertise) = &self.node_advertise {
            args.extend(["--node-advertise".into(), advertise.clone()]);
        }
        args.extend(["--runtime".into(), self.runtime.into()]);
        if self.exit_with_parent {
            args.push("--exit-with-parent".into());
        }
        if self.allow_fault_headers {
            args.push("--allow-fault-headers".into());
        }
        args
    }
}

/// The environment of a server's agent in a container or a swarm task, as `NAME=value`: the
/// farm's token, then the trace exporter's settings.
pub fn container_env(
    token: Option<&farm_proto::auth::Token>,
    trace_env: &[(String, String)],
) -> Vec<String> {
    token
        .map(|token| format!("{}={}", farm_proto::auth::TOKEN_ENV, token.as_str()))
        .into_iter()
        .chain(trace_env.iter().map(|(k, v)| format!("{k}={v}")))
        .collect()
}

/// The name of server `id`.
pub fn server_name(id: u32) -> String {
    format!("server-{id}")
}

/// What scaling did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scaled {
    /// Ids added.
    pub added: Vec<u32>,
    /// Ids removed.
    pub removed: Vec<u32>,
}

impl Scaled {
    /// What scaling a farm whose servers are `current` (ascending ids) to `servers` must do:
    /// new servers take the ids after the highest; scaling down removes the highest ids.
    /// Refuses more than [`MAX_SERVERS`]. A pure decision, shared by every runtime.
    pub fn plan(current: &[u32], servers: u32) -> Result<Self, RuntimeError> {
        if servers > MAX_SERVERS {
            return Err(RuntimeError::InvalidArgument(format!(
                "servers must be at most {MAX_SERVERS}, got {servers}"
            )));
        }
        let count = u32::try_from(current.len()).unwrap_or(u32::MAX);
        if servers > count {
            let next = current.last().copied().unwrap_or(0) + 1;
            return Ok(Scaled {
                added: (next..next + (servers - count)).collect(),
                removed: Vec::new(),
            });
        }
        Ok(Scaled {
            added: Vec::new(),
            removed: current[servers as usize..].to_vec(),
        })
    }
}

/// Where servers live. Implementations own their servers' whole lifecycle.
#[tonic::async_trait]
pub trait Runtime: Send + Sync + std::fmt::Debug {
    /// Short name: "process", "docker".
    fn name(&self) -> &'static str;

    /// Applies `action` to server `id`; says what happened or why it failed.
    async fn act(&self, id: u32, action: ServerActionKind) -> Result<String, RuntimeError>;

    /// Adds or removes servers until there are `servers` (at most [`MAX_SERVERS`]).
    async fn scale(&self, servers: u32) -> Result<Scaled, RuntimeError>;

    /// Stops and removes every server of this runtime; returns when they are gone.
    async fn shutdown(&self);

    /// The networks besides loopback that count as the farm's own: a load test may aim at a
    /// front (a load balancer) inside them.
    async fn networks(&self) -> Vec<crate::loadtest::front::Network> {
        Vec::new()
    }

    /// Whether this runtime can cut a server off from the farm's network.
    fn can_partition(&self) -> bool {
        false
    }

    /// Cuts server `id` off from the farm's network (`cut`), or joins it to it again.
    async fn partition(&self, id: u32, cut: bool) -> Result<String, RuntimeError> {
        let _ = (id, cut);
        Err(RuntimeError::InvalidArgument(format!(
            "the {} runtime cannot cut a server off from the network",
            self.name()
        )))
    }
}

/// Applies a lifecycle action through the server's agent, which owns the node process:
/// the way for servers whose agent keeps running whatever happens to the node.
pub async fn act_through_agent(
    registry: &Registry,
    id: u32,
    action: ServerActionKind,
) -> Result<String, RuntimeError> {
    let node_action = match action {
        ServerActionKind::Start => NodeAction::Start,
        ServerActionKind::Stop => NodeAction::Stop,
        ServerActionKind::Restart => NodeAction::Restart,
        ServerActionKind::Kill => NodeAction::Kill,
        ServerActionKind::Pause => NodeAction::Pause,
        ServerActionKind::Unpause => NodeAction::Unpause,
        ServerActionKind::Unspecified => {
            return Err(RuntimeError::InvalidArgument("no action given".into()));
        }
    };
    match agents::command(
        registry,
        id,
        command::Action::NodeAction(node_action.into()),
        ACTION_DEADLINE,
    )
    .await
    {
        Ok(result) if result.ok => Ok(result.message),
        Ok(result) => Err(RuntimeError::Agent(result.message)),
        Err(e) => Err(RuntimeError::Agent(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_adds_after_the_highest_id_and_removes_the_highest() {
        assert_eq!(Scaled::plan(&[1, 2, 5], 5).unwrap().added, [6, 7]);
        assert_eq!(Scaled::plan(&[], 2).unwrap().added, [1, 2]);
        assert_eq!(Scaled::plan(&[1, 2, 5], 1).unwrap().removed, [2, 5]);
        assert_eq!(Scaled::plan(&[1, 2], 2).unwrap(), Scaled::default());
        assert!(
            Scaled::plan(&[], MAX_SERVERS + 1)
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
    }
}
