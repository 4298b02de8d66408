//! Simulated load, broadcast and scaling: a request each, and its outcomes.

use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::load_test::default_path;
use super::{HttpMethod, Outcome, finite, node_path, range, server_ids, uint};
use crate::error::ApiError;
use farm_proto::limits::{
    self, MAX_BROADCAST_BODY_CHARS, MAX_PATH_LEN, MAX_TARGETS, NODE_PATH_PATTERN,
};

fn default_load_seconds() -> u32 {
    farm_proto::limits::DEFAULT_LOAD_DURATION_SECONDS
}

/// `POST /api/simulate-load` body: make servers of this farm burn CPU and hold memory.
/// At least one of `cpu_percent` and `memory_mb` must be above 0.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = asks_for_something)]
pub struct SimulateLoadRequest {
    /// Target servers; empty or absent means every server of the farm.
    #[serde(default, deserialize_with = "uint::list")]
    #[schemars(length(max = MAX_TARGETS), inner(range(min = 1, max = u32::MAX)))]
    pub server_ids: Vec<u32>,
    /// CPU to burn, in percent of one core. Each server refuses more than 100 per core it
    /// has (its outcome says so).
    #[serde(default)]
    #[schemars(range(min = 0, max = limits::MAX_LOAD_CPU_PERCENT))]
    pub cpu_percent: f64,
    /// Memory to hold, in MiB.
    #[serde(default, deserialize_with = "uint::one")]
    #[schemars(range(min = 0, max = limits::MAX_LOAD_MEMORY_MB))]
    pub memory_mb: u32,
    /// How long to hold the load, in seconds.
    #[serde(default = "default_load_seconds", deserialize_with = "uint::one")]
    #[schemars(range(min = limits::MIN_LOAD_DURATION_SECONDS, max = limits::MAX_LOAD_DURATION_SECONDS))]
    pub duration_seconds: u32,
}

/// The schema of "at least one of cpu_percent and memory_mb above 0", which no field
/// attribute can say.
fn asks_for_something(schema: &mut schemars::Schema) {
    schema.insert(
        "anyOf".into(),
        serde_json::json!([
            {"required": ["cpu_percent"], "properties": {"cpu_percent": {"exclusiveMinimum": 0}}},
            {"required": ["memory_mb"], "properties": {"memory_mb": {"minimum": 1}}}
        ]),
    );
}

impl SimulateLoadRequest {
    /// Checks the bounds the schema states and builds the controller's request.
    pub fn into_proto(self) -> Result<pb::SimulateLoadRequest, ApiError> {
        server_ids("server_ids", &self.server_ids)?;
        range(
            "cpu_percent",
            self.cpu_percent,
            0.0,
            limits::MAX_LOAD_CPU_PERCENT,
        )?;
        range("memory_mb", self.memory_mb, 0, limits::MAX_LOAD_MEMORY_MB)?;
        range(
            "duration_seconds",
            self.duration_seconds,
            limits::MIN_LOAD_DURATION_SECONDS,
            limits::MAX_LOAD_DURATION_SECONDS,
        )?;
        if self.cpu_percent == 0.0 && self.memory_mb == 0 {
            return Err(ApiError::InvalidArgument(
                "the load asks for nothing: set cpu_percent or memory_mb above 0".into(),
            ));
        }
        Ok(pb::SimulateLoadRequest {
            server_ids: self.server_ids,
            load: Some(pb::LoadSpec {
                cpu_percent: self.cpu_percent,
                memory_mb: self.memory_mb,
                duration_seconds: self.duration_seconds,
            }),
        })
    }
}

/// One outcome per target server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Outcomes {
    /// The outcomes, in the order the servers were asked.
    pub outcomes: Vec<Outcome>,
}

fn default_broadcast_timeout_ms() -> u32 {
    farm_proto::limits::DEFAULT_BROADCAST_TIMEOUT_MS
}

/// `POST /api/broadcast` body: one HTTP request sent to servers of this farm at once (a
/// path on each node, never a URL).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    /// Target servers; empty or absent means every server of the farm.
    #[serde(default, deserialize_with = "uint::list")]
    #[schemars(length(max = MAX_TARGETS), inner(range(min = 1, max = u32::MAX)))]
    pub server_ids: Vec<u32>,
    /// HTTP method.
    #[serde(default)]
    pub method: HttpMethod,
    /// Node path, query included (at most 256 bytes).
    #[serde(default = "default_path")]
    #[schemars(length(max = MAX_PATH_LEN), regex(pattern = NODE_PATH_PATTERN))]
    pub path: String,
    /// Request body, sent with `content-type: application/json` when not empty (at most
    /// 16384 characters, which is at most 64 KiB).
    #[serde(default)]
    #[schemars(length(max = MAX_BROADCAST_BODY_CHARS))]
    pub body: String,
    /// Deadline for every answer, in milliseconds.
    #[serde(
        default = "default_broadcast_timeout_ms",
        deserialize_with = "uint::one"
    )]
    #[schemars(range(min = 1, max = limits::MAX_BROADCAST_TIMEOUT_MS))]
    pub timeout_ms: u32,
}

impl BroadcastRequest {
    /// Checks the bounds the schema states and builds the controller's request.
    pub fn into_proto(self) -> Result<pb::BroadcastRequest, ApiError> {
        server_ids("server_ids", &self.server_ids)?;
        node_path("path", &self.path)?;
        let chars = self.body.chars().count();
        if chars > MAX_BROADCAST_BODY_CHARS {
            return Err(ApiError::InvalidArgument(format!(
                "body is {chars} characters; at most {MAX_BROADCAST_BODY_CHARS}"
            )));
        }
        range(
            "timeout_ms",
            self.timeout_ms,
            1,
            limits::MAX_BROADCAST_TIMEOUT_MS,
        )?;
        Ok(pb::BroadcastRequest {
            server_ids: self.server_ids,
            method: self.method.as_str().into(),
            path: self.path,
            body: self.body,
            timeout_ms: self.timeout_ms,
        })
    }
}

/// One server's answer to a broadcast.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BroadcastReply {
    /// The server.
    pub server_id: u32,
    /// Whether an HTTP answer came back in time.
    pub ok: bool,
    /// The HTTP status; 0 when there was no answer.
    pub status_code: u32,
    /// How long the answer took, in milliseconds.
    pub latency_ms: f64,
    /// The start of the answer's body (at most 4 KiB).
    pub body: String,
    /// Whether the body was cut to fit.
    pub body_truncated: bool,
    /// Why there was no answer, or null.
    pub error: Option<String>,
}

/// One reply per target server, ordered by id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BroadcastResult {
    /// The replies.
    pub replies: Vec<BroadcastReply>,
}

impl From<pb::BroadcastResponse> for BroadcastResult {
    fn from(r: pb::BroadcastResponse) -> Self {
        Self {
            replies: r
                .replies
                .into_iter()
                .map(|r| BroadcastReply {
                    server_id: r.server_id,
                    ok: r.ok,
                    status_code: r.status_code,
                    latency_ms: finite(r.latency_ms),
                    body: r.body,
                    body_truncated: r.body_truncated,
                    error: (!r.error.is_empty()).then_some(r.error),
                })
                .collect(),
        }
    }
}

/// `POST /api/scale` body.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// How many servers the farm should have. New servers take the next ids; scaling down
    /// removes the highest. At least 1 (the REST API keeps the farm usable; stop it with
    /// Ctrl-C), at most the gateway's `--max-servers` (this document states the one in
    /// force).
    #[serde(deserialize_with = "uint::one")]
    #[schemars(range(min = 1, max = limits::MAX_SERVERS))]
    pub servers: u32,
}

impl ScaleRequest {
    /// Checks the bounds the schema states (with `max`, the gateway's bound).
    pub fn into_proto(self, max: u32) -> Result<pb::ScaleFarmRequest, ApiError> {
        range("servers", self.servers, 1, max)?;
        Ok(pb::ScaleFarmRequest {
            servers: self.servers,
        })
    }
}

/// What scaling did.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScaleResult {
    /// Ids of the servers added.
    pub added: Vec<u32>,
    /// Ids of the servers removed.
    pub removed: Vec<u32>,
    /// How many servers the farm has now.
    pub servers: u32,
}

impl From<pb::ScaleFarmResponse> for ScaleResult {
    fn from(r: pb::ScaleFarmResponse) -> Self {
        Self {
            added: r.added,
            removed: r.removed,
            servers: r.servers,
        }
    }
}
