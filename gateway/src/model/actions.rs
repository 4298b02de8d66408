//! Lifecycle actions on servers, and their outcomes.

use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A lifecycle action on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start its node app.
    Start,
    /// Stop its node app; it stays stopped until started.
    Stop,
    /// Stop its node app and start it again.
    Restart,
    /// Kill it abruptly (SIGKILL); it comes back as after a crash. For chaos.
    Kill,
    /// Freeze it: it stays up but answers nothing until unpaused. For chaos.
    Pause,
    /// Thaw a paused server.
    Unpause,
}

impl From<Action> for pb::ServerActionKind {
    fn from(a: Action) -> Self {
        match a {
            Action::Start => Self::Start,
            Action::Stop => Self::Stop,
            Action::Restart => Self::Restart,
            Action::Kill => Self::Kill,
            Action::Pause => Self::Pause,
            Action::Unpause => Self::Unpause,
        }
    }
}

/// `POST /api/servers/{id}/action` body.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// What to do.
    pub action: Action,
}

/// What one server answered to a command.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// The server.
    pub server_id: u32,
    /// Whether the command succeeded there.
    pub ok: bool,
    /// What happened, or why it failed.
    pub message: String,
}

impl From<pb::CommandOutcome> for Outcome {
    fn from(o: pb::CommandOutcome) -> Self {
        Self {
            server_id: o.server_id,
            ok: o.ok,
            message: o.message,
        }
    }
}

/// The outcome of an action on one server. A refused action (`ok: false`, e.g. pausing a
/// stopped server) is still a 200: the request was valid, the server said no.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ActionResult {
    /// The server.
    pub server_id: u32,
    /// The action asked for.
    pub action: Action,
    /// Whether it succeeded.
    pub ok: bool,
    /// What happened, or why it failed.
    pub message: String,
}
