//! `farm status` and `farm health`: tables (or JSON) from a running controller.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use farm_proto::v1::farm_service_client::FarmServiceClient;
use farm_proto::v1::{CheckHealthRequest, ListServersRequest, ServerStatus};
use tonic::transport::Channel;

use crate::roles::DEFAULT_CONTROLLER_URL;

/// `farm status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The controller's gRPC URL.
    #[arg(long, env = "FARM_CONTROLLER", default_value = DEFAULT_CONTROLLER_URL)]
    controller: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `farm health`.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// The controller's gRPC URL.
    #[arg(long, env = "FARM_CONTROLLER", default_value = DEFAULT_CONTROLLER_URL)]
    controller: String,
    /// How long each server's /health probe may take, in milliseconds (1 to 10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=i64::from(farm_proto::limits::MAX_HEALTH_TIMEOUT_MS)))]
    timeout_ms: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A client of the controller at `url`, trusting the CA that [`farm_proto::tls::CA_ENV`] names
/// for an `https://` URL.
pub(crate) async fn connect(url: &str) -> anyhow::Result<FarmServiceClient<Channel>> {
    // Read only when used: a stale variable does not break a plaintext client.
    let ca = if url.starts_with("https://") {
        farm_proto::tls::ca_from_env().map_err(anyhow::Error::msg)?
    } else {
        None
    };
    connect_trusting(url, ca.as_deref()).await
}

/// A client of the controller at `url`, trusting the CA certificates `ca` (PEM) for an
/// `https://` URL.
pub(crate) async fn connect_trusting(
    url: &str,
    ca: Option<&[u8]>,
) -> anyhow::Result<FarmServiceClient<Channel>> {
    let channel = farm_proto::tls::endpoint(url, ca)
        .map_err(anyhow::Error::msg)?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("cannot reach the controller at {url} (is `farm up` running?)"))?;
    Ok(FarmServiceClient::new(channel))
}

fn status_name(raw: i32) -> &'static str {
    match ServerStatus::try_from(raw).unwrap_or(ServerStatus::Unspecified) {
        ServerStatus::Healthy => "healthy",
        ServerStatus::Degraded => "degraded",
        ServerStatus::Stopped => "stopped",
        ServerStatus::Starting => "starting",
        ServerStatus::Unreachable => "unreachable",
        ServerStatus::Unspecified => "unknown",
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let servers = connect(&args.controller)
        .await?
        .list_servers(ListServersRequest::default())
        .await
        .map_err(|s| anyhow::anyhow!("the controller refused: {}", s.message()))?
        .into_inner()
        .servers;
    if args.json {
        let rows: Vec<_> = servers
            .iter()
            .map(|s| {
                let m = s.metrics.unwrap_or_default();
                serde_json::json!({
                    "id": s.id, "name": s.name, "status": status_name(s.status),
                    "reason": s.status_reason, "node_address": s.node_address,
                    "cpu_percent": m.cpu_percent, "memory_bytes": m.memory_bytes,
                    "requests_per_second": s.requests_per_second, "requests_total": m.requests_total,
                    "faults": s.faults.as_ref().map(crate::fault::describe),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>5}  {:<12} {:<12} {:>6} {:>9} {:>8} {:>10}  {:<21} {:<16} REASON",
        "ID", "NAME", "STATUS", "CPU%", "MEM MiB", "REQ/s", "REQUESTS", "NODE", "FAULTS"
    );
    for s in &servers {
        let m = s.metrics.unwrap_or_default();
        let faults = s
            .faults
            .as_ref()
            .map(crate::fault::kinds)
            .unwrap_or_default();
        println!(
            "{:>5}  {:<12} {:<12} {:>6.1} {:>9.1} {:>8.1} {:>10}  {:<21} {:<16} {}",
            s.id,
            s.name,
            status_name(s.status),
            m.cpu_percent,
            mib(m.memory_bytes),
            s.requests_per_second,
            m.requests_total,
            s.node_address,
            if faults.is_empty() { "-" } else { &faults },
            s.status_reason
        );
    }
    let healthy = servers
        .iter()
        .filter(|s| s.status == ServerStatus::Healthy as i32)
        .count();
    println!("{healthy}/{} servers healthy", servers.len());
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let report = connect(&args.controller)
        .await?
        .check_health(CheckHealthRequest {
            timeout_ms: args.timeout_ms,
        })
        .await
        .map_err(|s| anyhow::anyhow!("the controller refused: {}", s.message()))?
        .into_inner();
    let all_healthy = report.total > 0 && report.healthy == report.total;
    if args.json {
        let rows: Vec<_> = report
            .servers
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.server_id, "name": s.name, "status": status_name(s.status),
                    "reason": s.reason, "probe_ok": s.probe_ok,
                    "probe_latency_ms": s.probe_latency_us as f64 / 1000.0,
                    "sample_age_ms": s.sample_age_ms,
                })
            })
            .collect();
        let out = serde_json::json!({
            "healthy": report.healthy, "total": report.total,
            "duration_ms": report.duration_us as f64 / 1000.0, "servers": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:>5}  {:<12} {:<12} {:>9} {:>12}  REASON",
            "ID", "NAME", "STATUS", "PROBE ms", "SAMPLE AGE"
        );
        for s in &report.servers {
            let probe = if s.probe_ok {
                format!("{:.2}", s.probe_latency_us as f64 / 1000.0)
            } else {
                "failed".into()
            };
            println!(
                "{:>5}  {:<12} {:<12} {:>9} {:>10}ms  {}",
                s.server_id,
                s.name,
                status_name(s.status),
                probe,
                s.sample_age_ms,
                s.reason
            );
        }
        println!(
            "{}/{} servers healthy; the check took {:.2} ms in the controller",
            report.healthy,
            report.total,
            report.duration_us as f64 / 1000.0
        );
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
