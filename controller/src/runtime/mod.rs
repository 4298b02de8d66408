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
