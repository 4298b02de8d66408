//! Runtimes: where the farm's servers live. Each one starts servers, keeps them alive (its
//! restart policy), applies lifecycle actions, scales, and removes everything on shutdown.
//! `process` (local processes) is the default; the docker runtime sits behind the same trait.

pub mod docker;
pub mod process;

use std::time::Duration;

use farm_proto::v1::{NodeAction, ServerActionKind, command};

pub use docker::{DockerRuntime, DockerRuntimeConfig};
pub use process::{ProcessRuntime, ProcessRuntimeConfig};

use crate::agents;
use crate::registry::Registry;

/// Most servers a farm may have.
pub const MAX_SERVERS: u32 = 1000;

/// How long a server may take to carry out an action.
pub const ACTION_DEADLINE: Duration = Duration::from_secs(10);

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
    pub fn plan(current: &[u32], servers: u32) -> Result<Self, String> {
        if servers > MAX_SERVERS {
            return Err(format!(
                "servers must be at most {MAX_SERVERS}, got {servers}"
            ));
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
    async fn act(&self, id: u32, action: ServerActionKind) -> Result<String, String>;

    /// Adds or removes servers until there are `servers` (at most [`MAX_SERVERS`]).
    async fn scale(&self, servers: u32) -> Result<Scaled, String>;

    /// Stops and removes every server of this runtime; returns when they are gone.
    async fn shutdown(&self);
}

/// Applies a lifecycle action through the server's agent, which owns the node process:
/// the way for servers whose agent keeps running whatever happens to the node.
pub async fn act_through_agent(
    registry: &Registry,
    id: u32,
    action: ServerActionKind,
) -> Result<String, String> {
    let node_action = match action {
        ServerActionKind::Start => NodeAction::Start,
        ServerActionKind::Stop => NodeAction::Stop,
        ServerActionKind::Restart => NodeAction::Restart,
        ServerActionKind::Kill => NodeAction::Kill,
        ServerActionKind::Pause => NodeAction::Pause,
        ServerActionKind::Unpause => NodeAction::Unpause,
        ServerActionKind::Unspecified => return Err("no action given".into()),
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
        Ok(result) => Err(result.message),
        Err(e) => Err(e.to_string()),
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
                .contains("at most")
        );
    }
}
