//! Broadcast: one HTTP request to many servers of this farm at once, every answer collected
//! under one deadline, each body cut to a bounded slice.

use std::time::Duration;

use farm_node_api::client::NodeClient;
use farm_proto::v1::{BroadcastReply, BroadcastRequest, BroadcastResponse};
use http::Method;
use tokio::task::JoinSet;

use farm_proto::limits::{
    MAX_BROADCAST_BODY_BYTES, MAX_BROADCAST_REPLY_BYTES, MAX_BROADCAST_TIMEOUT_MS,
};

use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::targets::{self, Target};

/// A validated broadcast.
#[derive(Debug, Clone)]
pub struct Plan {
    targets: Vec<Target>,
    method: Method,
    path: String,
    body: Option<String>,
    timeout: Duration,
}

impl Plan {
    /// Validates `request` against the farm; the error names the field.
    pub fn new(request: &BroadcastRequest, registry: &Registry) -> Result<Self> {
        let BroadcastRequest {
            server_ids,
            method,
            path,
            body,
            timeout_ms,
        } = request;
        if body.len() > MAX_BROADCAST_BODY_BYTES {
            return Err(Error::InvalidArgument(format!(
                "body is {} bytes; at most {MAX_BROADCAST_BODY_BYTES}",
                body.len()
            )));
        }
        Ok(Self {
            targets: targets::resolve(registry, server_ids, "server_ids")?,
            method: targets::method(method, "method")?,
            path: targets::path(path, "path")?,
            body: (!body.is_empty()).then(|| body.clone()),
            timeout: targets::millis(
                *timeout_ms,
                farm_proto::limits::DEFAULT_BROADCAST_TIMEOUT_MS,
                MAX_BROADCAST_TIMEOUT_MS,
                "timeout_ms",
            )?,
        })
    }
}

/// Sends the broadcast and returns every server's reply, in id order.
pub async fn run(plan: Plan, client: &NodeClient) -> BroadcastResponse {
    let mut requests = JoinSet::new();
    for target in plan.targets {
        let client = client.clone();
        let (method, path, body, timeout) = (
            plan.method.clone(),
            plan.path.clone(),
            plan.body.clone(),
            plan.timeout,
        );
        requests.spawn(async move {
            let started = std::time::Instant::now();
            let reply = client
                .request(
                    method,
                    &target.address,
                    &path,
                    body.map(Into::into),
                    timeout,
                    MAX_BROADCAST_REPLY_BYTES,
                )
                .await;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            match reply {
                Ok(reply) => BroadcastReply {
                    server_id: target.id,
                    ok: true,
                    status_code: u32::from(reply.status),
                    latency_ms,
                    body: String::from_utf8_lossy(&reply.body).into_owned(),
                    body_truncated: reply.truncated,
                    error: String::new(),
                },
                Err(e) => BroadcastReply {
                    server_id: target.id,
                    ok: false,
                    latency_ms,
                    error: e.to_string(),
                    ..BroadcastReply::default()
                },
            }
        });
    }
    let mut replies = Vec::with_capacity(requests.len());
    while let Some(joined) = requests.join_next().await {
        if let Ok(reply) = joined {
            replies.push(reply);
        }
    }
    replies.sort_by_key(|r| r.server_id);
    BroadcastResponse { replies }
}
