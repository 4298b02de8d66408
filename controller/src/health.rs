//! The farm's health check: every node's `/health` probed at once, combined with the
//! registry's verdict from sample freshness. It answers the `CheckHealth` RPC, which
//! `farm health` calls.

use std::time::{Duration, Instant};

use farm_node_api::client::NodeClient;
use farm_proto::v1::{self as pb, CheckHealthResponse, ServerHealth};
use tokio::task::JoinSet;

use crate::registry::Registry;
use crate::status::Status;

/// Probes every server now, each with `timeout`, and returns the health of all, in id order.
pub async fn check(
    registry: &Registry,
    client: &NodeClient,
    timeout: Duration,
) -> CheckHealthResponse {
    let started = Instant::now();
    let now = Instant::now();
    let servers: Vec<_> = registry.read(|entries| {
        entries
            .map(|e| {
                let age = e.last_seen.map(|at| now.saturating_duration_since(at));
                (
                    e.id,
                    e.name.clone(),
                    e.node_address.clone(),
                    e.status,
                    e.status_reason.clone(),
                    age,
                )
            })
            .collect()
    });

    let mut probes = JoinSet::new();
    for (index, (_, _, address, _, _, _)) in servers.iter().enumerate() {
        let client = client.clone();
        let address = address.clone();
        probes.spawn(async move {
            let result = client.health(&address, timeout).await;
            (index, result)
        });
    }
    let mut results = vec![None; servers.len()];
    while let Some(Ok((index, result))) = probes.join_next().await {
        results[index] = Some(result);
    }

    let mut healthy = 0;
    let total = u32::try_from(servers.len()).unwrap_or(u32::MAX);
    let servers = servers
        .into_iter()
        .zip(results)
        .map(|((server_id, name, _, status, reason, age), probe)| {
            let (probe_ok, latency, probe_error) = match probe {
                Some(Ok(latency)) => (true, latency, String::new()),
                Some(Err(e)) => (false, Duration::ZERO, e.to_string()),
                None => (false, Duration::ZERO, "probe task failed".into()),
            };
            let (status, reason) = combine(status, reason, probe_ok, &probe_error);
            if status == Status::Healthy {
                healthy += 1;
            }
            ServerHealth {
                server_id,
                name,
                status: pb::ServerStatus::from(status).into(),
                reason,
                probe_ok,
                probe_latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                sample_age_ms: age.map_or(0, |a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
            }
        })
        .collect();
    CheckHealthResponse {
        servers,
        healthy,
        total,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

/// The registry's verdict corrected by a probe made just now: a node that should serve but
/// does not answer is degraded, whatever its last sample said.
fn combine(status: Status, reason: String, probe_ok: bool, probe_error: &str) -> (Status, String) {
    match status {
        Status::Healthy | Status::Degraded if !probe_ok => (
            Status::Degraded,
            format!("health probe failed: {probe_error}"),
        ),
        _ => (status, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_probe_degrades_a_healthy_server_only() {
        assert_eq!(
            combine(Status::Healthy, "ok".into(), false, "connect").0,
            Status::Degraded
        );
        assert_eq!(
            combine(Status::Healthy, "ok".into(), true, "").0,
            Status::Healthy
        );
        assert_eq!(
            combine(Status::Stopped, "stopped".into(), false, "connect").0,
            Status::Stopped
        );
        assert_eq!(
            combine(Status::Unreachable, "gone".into(), false, "connect").0,
            Status::Unreachable
        );
    }
}
