//! `GET /api/prometheus/targets`: the farm's nodes for Prometheus' HTTP service discovery
//! (`http_sd_configs`).
//!
//! Each node serves its own figures on `/metrics/prometheus`; this route tells Prometheus
//! where the nodes are, one target group per server, so that a Prometheus pointed at the
//! gateway follows the farm as it scales without a config change:
//!
//! ```json
//! [{"targets":["127.0.0.1:8007"],
//!   "labels":{"server":"7","name":"server-7","runtime":"process","__metrics_path__":"/metrics/prometheus"}}]
//! ```
//!
//! The answer is the whole list every time (`[]` for an empty farm), as HTTP discovery wants.
//! It is read from the controller's `ListServers` on every request, through the same
//! single-flight read as `GET /api/servers` (encoded again only when the farm changed). When
//! the controller cannot answer, the route answers the usual JSON 503, and Prometheus keeps
//! the targets it had.
//!
//! The shape is Prometheus', not one of the farm's REST shapes (labels are strings, the id
//! too), which is why it lives here with the rest of the Prometheus surface and not in
//! [`crate::model`].

use axum::extract::State;
use farm_proto::v1 as pb;
use schemars::JsonSchema;
use serde::Serialize;

use crate::AppState;
use crate::coalesce::{SharedJson, Versioned};
use crate::controller::within;
use crate::error::ApiError;
use crate::extract::IfNoneMatch;

/// The path Prometheus scrapes on each node, the node's Prometheus text exposition.
pub const NODE_METRICS_PATH: &str = "/metrics/prometheus";

/// The key of this route's reads in the shared [`crate::coalesce::Coalescer`]; the server
/// list's keys are status names, which never look like this.
const READ_KEY: &str = "prometheus-targets";

/// One server as a target group of Prometheus' HTTP service discovery.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TargetGroup {
    /// The node's `host:port`, as Prometheus should reach it: one entry.
    pub targets: Vec<String>,
    /// The labels Prometheus puts on every series scraped from the node.
    pub labels: TargetLabels,
}

/// A target group's labels.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TargetLabels {
    /// The server's id, in decimal (Prometheus labels are strings).
    pub server: String,
    /// The server's name, `server-N`.
    pub name: String,
    /// The runtime that runs the server, `process` or `docker`; empty for a server started
    /// by hand, which Prometheus takes as no label.
    pub runtime: String,
    /// The path Prometheus scrapes: always `/metrics/prometheus`.
    #[serde(rename = "__metrics_path__")]
    pub metrics_path: String,
}

/// The target groups of `servers`, in id order. A server whose node has no port yet (it is
/// starting and the kernel has not picked one) is left out until it has one. A node that
/// listens on every interface is given as loopback: the nodes run where the gateway does (or
/// publish their ports there), and loopback is where a Prometheus beside them reaches them.
/// Stopped and unreachable servers stay in: their scrapes failing is what `up` shows.
pub(crate) fn target_groups(servers: &[pb::Server]) -> Vec<TargetGroup> {
    let mut groups: Vec<(u32, TargetGroup)> = servers
        .iter()
        .filter_map(|server| {
            let address = farm_proto::reachable_node_address(&server.node_address)?.to_string();
            Some((
                server.id,
                TargetGroup {
                    targets: vec![address],
                    labels: TargetLabels {
                        server: server.id.to_string(),
                        name: server.name.clone(),
                        runtime: server.runtime.clone(),
                        metrics_path: NODE_METRICS_PATH.into(),
                    },
                },
            ))
        })
        .collect();
    groups.sort_by_key(|(id, _)| *id);
    groups.into_iter().map(|(_, group)| group).collect()
}

/// `GET /api/prometheus/targets`.
pub(crate) async fn targets(
    State(state): State<AppState>,
    if_none_match: IfNoneMatch,
) -> Result<SharedJson<Vec<TargetGroup>>, ApiError> {
    let state = &state;
    let read = |known_version| async move {
        let mut client = state.controller().client();
        let response = within(
            state.config().request_timeout,
            client.list_servers(pb::ListServersRequest {
                status: pb::ServerStatus::Unspecified as i32,
                known_version,
            }),
        )
        .await?
        .into_inner();
        if response.unchanged {
            return Ok(Versioned::Unchanged);
        }
        Ok(Versioned::Changed {
            version: response.version,
            value: target_groups(&response.servers),
        })
    };
    let answer = state.reads().json(READ_KEY, read).await?;
    Ok(SharedJson::new(answer, &if_none_match))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: u32, node_address: &str, runtime: &str) -> pb::Server {
        pb::Server {
            id,
            name: format!("server-{id}"),
            node_address: node_address.into(),
            runtime: runtime.into(),
            ..Default::default()
        }
    }

    #[test]
    fn one_group_per_reachable_server_in_id_order() {
        let groups = target_groups(&[
            server(10, "127.0.0.1:8010", "process"),
            server(7, "127.0.0.1:8007", "process"),
            server(3, "127.0.0.1:0", "process"),
            server(4, "0.0.0.0:8004", "docker"),
            server(5, "[::]:8005", ""),
            server(6, "not an address", "process"),
        ]);
        let json = serde_json::to_value(&groups).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"targets": ["127.0.0.1:8004"], "labels": {"server": "4", "name": "server-4", "runtime": "docker", "__metrics_path__": "/metrics/prometheus"}},
                {"targets": ["[::1]:8005"], "labels": {"server": "5", "name": "server-5", "runtime": "", "__metrics_path__": "/metrics/prometheus"}},
                {"targets": ["127.0.0.1:8007"], "labels": {"server": "7", "name": "server-7", "runtime": "process", "__metrics_path__": "/metrics/prometheus"}},
                {"targets": ["127.0.0.1:8010"], "labels": {"server": "10", "name": "server-10", "runtime": "process", "__metrics_path__": "/metrics/prometheus"}},
            ])
        );
    }

    #[test]
    fn an_empty_farm_is_an_empty_list() {
        assert_eq!(serde_json::to_string(&target_groups(&[])).unwrap(), "[]");
    }
}
