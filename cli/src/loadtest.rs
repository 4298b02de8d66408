//! `farm load-test`: a load test run by the controller's engine. Targets are servers of
//! this farm, or a front (a load balancer) in front of it, whose answers are attributed to
//! the servers that gave them; the run streams progress (a live bar on a terminal) and ends
//! with a table, or with JSON for machines. Ctrl-C cancels the run on the controller.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use farm_proto::v1::{
    BackendWeight, FailoverAction, FailoverDrill, FrontResult, LatencySummary, ListServersRequest,
    LoadTestResult, LoadTestSpec, RunLoadTestRequest, RunLoadTestResponse,
};
use serde_json::json;

use crate::report::connect;
use crate::roles::DEFAULT_CONTROLLER_URL;
use crate::signal::shutdown_signal;

/// `farm load-test`.
#[derive(Debug, Args)]
pub(crate) struct LoadTestArgs {
    /// The controller's gRPC URL.
    #[arg(long, env = "FARM_CONTROLLER", default_value = DEFAULT_CONTROLLER_URL)]
    controller: String,
    /// The farm's token, which a controller beyond loopback asks of a load test.
    #[command(flatten)]
    data: crate::roles::FarmData,
    /// Target the first N servers of the farm (all when neither this nor --server-ids is given).
    #[arg(long, conflicts_with = "server_ids")]
    servers: Option<u32>,
    /// Target these servers, by id (comma-separated).
    #[arg(long, value_delimiter = ',')]
    server_ids: Vec<u32>,
    /// Requests per target server; the run sends servers × requests in all (0: run for
    /// --duration instead).
    #[arg(long, default_value_t = 0)]
    requests: u64,
    /// Longest run, in seconds (1 to 3600; default 60 without --requests).
    #[arg(long, default_value_t = 0)]
    duration: u32,
    /// Concurrent requests (closed model: workers; open model: most in flight), 1 to 1000.
    #[arg(long, short = 'c', default_value_t = 10)]
    concurrency: u32,
    /// Open model: requests per second, sent on schedule whatever the answers do; latency is
    /// then measured from each request's due time (no coordinated omission).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to ramp the rate or the workers up from zero.
    #[arg(long, default_value_t = 0)]
    ramp: u32,
    /// Node path to request.
    #[arg(long, default_value = "/")]
    path: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Per-request timeout in milliseconds (0: 10000).
    #[arg(long, default_value_t = 0)]
    timeout_ms: u32,
    /// Send every request to this front (a load balancer in front of the farm, on loopback
    /// or the farm's network), e.g. http://127.0.0.1:8080, and report how it spread them
    /// over the servers. --requests then counts the run's total.
    #[arg(long, conflicts_with_all = ["servers", "server_ids"])]
    front: Option<String>,
    /// With --front: server ID should get weight W (1 to 256), e.g. --weight 3=2; repeat it.
    /// Without it, every server should get an equal share.
    #[arg(long = "weight", value_name = "ID=W", requires = "front", value_parser = parse_weight)]
    weights: Vec<BackendWeight>,
    /// With --front: a failover drill, ACTION:ID, where ACTION is kill, stop, pause or health
    /// (its /health fails while it serves), e.g. --failover kill:3.
    #[arg(long, value_name = "ACTION:ID", requires_all = ["front", "failover_at", "failover_for"], value_parser = parse_drill)]
    failover: Option<FailoverDrill>,
    /// When the drill takes its server down, in seconds after the start (e.g. 5 or 2.5).
    #[arg(long, value_name = "SECONDS", requires = "failover")]
    failover_at: Option<f64>,
    /// How long the drill keeps it down before the farm brings it back, in seconds.
    #[arg(long, value_name = "SECONDS", requires = "failover")]
    failover_for: Option<f64>,
    /// Print the final result as JSON instead of a progress bar and tables.
    #[arg(long)]
    json: bool,
}

/// `ID=W` of `--weight`.
fn parse_weight(raw: &str) -> Result<BackendWeight, String> {
    let (server_id, weight) = crate::lb::parse_weight(raw)?;
    Ok(BackendWeight { server_id, weight })
}

/// `ACTION:ID` of `--failover`; its times come from `--failover-at` and `--failover-for`.
fn parse_drill(raw: &str) -> Result<FailoverDrill, String> {
    let (action, id) = raw
        .split_once(':')
        .ok_or_else(|| format!("expected ACTION:ID, e.g. kill:3, got {raw:?}"))?;
    let action = match action {
        "kill" => FailoverAction::Kill,
        "stop" => FailoverAction::Stop,
        "pause" => FailoverAction::Pause,
        "health" => FailoverAction::Health,
        other => return Err(format!("{other:?} is not kill, stop, pause or health")),
    };
    Ok(FailoverDrill {
        server_id: id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} is not a server id"))?,
        action: action as i32,
        at_ms: 0,
        down_ms: 0,
    })
}

/// The drill with its times from `--failover-at` and `--failover-for`, checked here so that
/// the error names the flags: a time down, and a return within `--duration` when it is given.
fn drill_times(drill: FailoverDrill, args: &LoadTestArgs) -> anyhow::Result<FailoverDrill> {
    let at_ms = seconds_to_ms(args.failover_at.unwrap_or(0.0), "--failover-at")?;
    let down_ms = seconds_to_ms(args.failover_for.unwrap_or(0.0), "--failover-for")?;
    anyhow::ensure!(down_ms > 0, "--failover-for must be more than 0 seconds");
    if args.duration > 0 {
        anyhow::ensure!(
            u64::from(at_ms) + u64::from(down_ms) < u64::from(args.duration) * 1000,
            "--failover-at + --failover-for must end before --duration ({} s), so that the server's return is measured",
            args.duration
        );
    }
    Ok(FailoverDrill {
        at_ms,
        down_ms,
        ..drill
    })
}

/// Seconds given on the command line, as whole milliseconds; `flag` names them in errors.
fn seconds_to_ms(seconds: f64, flag: &str) -> anyhow::Result<u32> {
    let ms = seconds * 1000.0;
    anyhow::ensure!(
        ms.is_finite() && (0.0..=f64::from(u32::MAX)).contains(&ms),
        "{flag} must be a number of seconds from 0, got {seconds}"
    );
    Ok(ms.round() as u32)
}

pub(crate) async fn run(args: LoadTestArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.controller).await?;
    anyhow::ensure!(
        args.servers.is_none_or(|n| n >= 1),
        "--servers must be at least 1"
    );
    // The farm's servers, listed once, when the targets are its first N or all of it.
    let listed = if args.front.is_none() && (args.servers.is_some() || args.server_ids.is_empty()) {
        client
            .list_servers(ListServersRequest::default())
            .await
            .map_err(|s| anyhow::anyhow!("the controller refused: {}", s.message()))?
            .into_inner()
            .servers
    } else {
        Vec::new()
    };
    let server_ids: Vec<u32> = match args.servers {
        Some(n) => {
            anyhow::ensure!(
                (n as usize) <= listed.len(),
                "--servers {n}: the farm has {} servers",
                listed.len()
            );
            listed.iter().take(n as usize).map(|s| s.id).collect()
        }
        None => args.server_ids.clone(),
    };
    // `--requests` counts per target server (or for the one front); the engine takes the
    // run's total.
    let targets = if args.front.is_some() {
        1
    } else if server_ids.is_empty() {
        listed.len()
    } else {
        server_ids.len()
    } as u64;
    let spec = LoadTestSpec {
        server_ids,
        path: args.path.clone(),
        method: args.method.clone(),
        concurrency: args.concurrency,
        total_requests: args.requests.saturating_mul(targets),
        duration_seconds: args.duration,
        timeout_ms: args.timeout_ms,
        rate_per_second: args.rate.unwrap_or(0.0),
        ramp_up_seconds: args.ramp,
        front_url: args.front.clone().unwrap_or_default(),
        weights: args.weights.clone(),
        failover: match args.failover {
            Some(drill) => Some(drill_times(drill, &args)?),
            None => None,
        },
        phases: Vec::new(),
    };
    let mut stream = client
        .run_load_test(crate::roles::with_token(
            RunLoadTestRequest { spec: Some(spec) },
            args.data.agent_token()?.as_ref(),
        ))
        .await
        .map_err(|s| anyhow::anyhow!("the controller refused the load test: {}", s.message()))?
        .into_inner();

    let bar = Progress::new(!args.json);
    let last = loop {
        let message = tokio::select! {
            _ = shutdown_signal() => {
                bar.finish();
                eprintln!("farm: load test cancelled");
                return Ok(ExitCode::from(130));
            }
            message = stream.message() => message,
        };
        let message = match message {
            Ok(Some(m)) => m,
            Err(status) => anyhow::bail!("the load test failed: {}", status.message()),
            Ok(None) => anyhow::bail!("the controller ended the load test without a result"),
        };
        if message.done {
            break message;
        }
        bar.show(&message);
    };
    bar.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&last))?);
    } else {
        print_tables(&last);
    }
    let failed = last.result.as_ref().is_some_and(|r| r.failures > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The live progress line, on standard error so that output can be piped.
struct Progress {
    enabled: bool,
    terminal: bool,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, message: &RunLoadTestResponse) {
        if !self.enabled {
            return;
        }
        let Some(r) = &message.result else { return };
        // The controller reports the spec with its defaults applied.
        let (total, duration) = r
            .spec
            .as_ref()
            .map_or((0, 0), |s| (s.total_requests, s.duration_seconds));
        let done = if total > 0 {
            r.requests as f64 / total as f64
        } else if duration > 0 {
            r.elapsed_seconds / f64::from(duration)
        } else {
            0.0
        }
        .clamp(0.0, 1.0);
        let width = 30;
        let filled = (done * f64::from(width)).round() as usize;
        let bar = format!(
            "{}{}",
            "#".repeat(filled),
            "-".repeat(width as usize - filled)
        );
        let p99 = r.latency.map_or(0.0, |l| l.p99_ms);
        let line = format!(
            "[{bar}] {:>3.0}%  {} requests  {:.0} req/s  p99 {:.2} ms  {} failed  {:.1} s",
            done * 100.0,
            r.requests,
            r.requests_per_second,
            p99,
            r.failures,
            r.elapsed_seconds
        );
        write_progress(self.terminal, &line);
    }

    fn finish(&self) {
        if self.enabled && self.terminal {
            eprintln!();
        }
    }
}

/// Writes a progress line to standard error: over the last one on a terminal, else below it.
pub(crate) fn write_progress(terminal: bool, line: &str) {
    let mut err = std::io::stderr().lock();
    if terminal {
        let _ = write!(err, "\r{line}\x1b[K");
    } else {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}

pub(crate) fn latency_json(l: &Option<LatencySummary>) -> serde_json::Value {
    l.map_or(serde_json::Value::Null, |l| {
        json!({"p50_ms": l.p50_ms, "p90_ms": l.p90_ms, "p99_ms": l.p99_ms, "p999_ms": l.p999_ms, "max_ms": l.max_ms, "mean_ms": l.mean_ms})
    })
}

pub(crate) fn to_json(run: &RunLoadTestResponse) -> serde_json::Value {
    let r = run.result.clone().unwrap_or_default();
    json!({
        "run_id": run.run_id,
        "stopped_reason": run.stopped_reason,
        "requests": r.requests,
        "successes": r.successes,
        "failures": r.failures,
        "elapsed_seconds": r.elapsed_seconds,
        "requests_per_second": r.requests_per_second,
        "target_rate": r.target_rate,
        "dropped": r.dropped,
        "latency": latency_json(&r.latency),
        "latency_uncorrected": latency_json(&r.latency_uncorrected),
        "status_codes": r.status_codes.iter().map(|s| json!({"code": s.code, "count": s.count})).collect::<Vec<_>>(),
        "errors": r.errors.iter().map(|e| json!({"kind": e.kind, "count": e.count})).collect::<Vec<_>>(),
        "per_server": r.per_server.iter().map(|s| json!({
            "server_id": s.server_id, "requests": s.requests, "failures": s.failures,
            "latency": latency_json(&s.latency),
        })).collect::<Vec<_>>(),
        "front": r.front.as_ref().map(front_json),
    })
}

fn front_json(f: &FrontResult) -> serde_json::Value {
    json!({
        "url": f.url,
        "unattributed": f.unattributed,
        "max_min_ratio": f.max_min_ratio,
        "max_deviation": f.max_deviation,
        "backends": f.backends.iter().map(|b| json!({
            "server_id": b.server_id, "requests": b.requests, "failures": b.failures,
            "share": b.share, "expected_share": b.expected_share,
            "latency": latency_json(&b.latency),
        })).collect::<Vec<_>>(),
        "timeline": f.timeline.iter().map(|s| json!({
            "second": s.second, "requests": s.requests, "failures": s.failures,
            "unattributed": s.unattributed,
            "backends": s.backends.iter().map(|b| json!({"server_id": b.server_id, "requests": b.requests})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "timeline_truncated": f.timeline_truncated,
        "failover": f.failover.as_ref().map(|d| json!({
            "server_id": d.drill.map(|d| d.server_id),
            "action": d.drill.and_then(|d| FailoverAction::try_from(d.action).ok()).map(|a| a.as_str_name()),
            "action_at_ms": d.action_at_ms, "back_at_ms": d.back_at_ms, "error": d.error,
            "first_error_ms": d.first_error_ms, "failed_requests": d.failed_requests,
            "failover_ms": d.failover_ms, "detection_ms": d.detection_ms,
            "readmission_ms": d.readmission_ms,
        })),
    })
}

/// The table of a run through a front: shares, fairness and the drill's times.
fn print_front(f: &FrontResult) {
    println!("  front        {}", f.url);
    println!(
        "  fairness     max/min {:.3}   largest deviation {:.1} %   unattributed {}",
        f.max_min_ratio,
        f.max_deviation * 100.0,
        f.unattributed
    );
    println!(
        "  {:>6} {:>10} {:>9} {:>8} {:>9} {:>9} {:>9}",
        "server", "requests", "failed", "share %", "expected", "p50 ms", "p99 ms"
    );
    for b in &f.backends {
        let l = b.latency.unwrap_or_default();
        println!(
            "  {:>6} {:>10} {:>9} {:>8.2} {:>9.2} {:>9.2} {:>9.2}",
            b.server_id,
            b.requests,
            b.failures,
            b.share * 100.0,
            b.expected_share * 100.0,
            l.p50_ms,
            l.p99_ms
        );
    }
    if let Some(d) = &f.failover {
        let time =
            |t: Option<f64>| t.map_or_else(|| "not seen".to_string(), |t| format!("{t:.0} ms"));
        println!(
            "  failover     taken down at {}, back at {}{}",
            time(d.action_at_ms),
            time(d.back_at_ms),
            if d.error.is_empty() {
                String::new()
            } else {
                format!(" ({})", d.error)
            }
        );
        println!(
            "               first error {}   failed {}   errors stopped (failover) {}",
            time(d.first_error_ms),
            d.failed_requests,
            time(d.failover_ms)
        );
        println!(
            "               last request sent to it (detection) {}   first sent after its return (re-admission) {}",
            time(d.detection_ms),
            time(d.readmission_ms)
        );
    }
}

pub(crate) fn print_tables(run: &RunLoadTestResponse) {
    let r: LoadTestResult = run.result.clone().unwrap_or_default();
    println!(
        "load test {}{}",
        run.run_id,
        if run.stopped_reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", run.stopped_reason)
        }
    );
    println!(
        "  requests     {:>10}   ok {}   failed {}",
        r.requests, r.successes, r.failures
    );
    println!("  duration     {:>10.2} s", r.elapsed_seconds);
    println!("  throughput   {:>10.1} req/s", r.requests_per_second);
    if r.target_rate > 0.0 {
        println!(
            "  target rate  {:>10.1} req/s   dropped {}",
            r.target_rate, r.dropped
        );
    }
    let row = |name: &str, l: &Option<LatencySummary>| {
        if let Some(l) = l {
            println!(
                "  {name:<12} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
            );
        }
    };
    println!(
        "  latency ms   {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "p50", "p90", "p99", "p99.9", "max", "mean"
    );
    row(
        if r.target_rate > 0.0 {
            "corrected"
        } else {
            "measured"
        },
        &r.latency,
    );
    if r.target_rate > 0.0 {
        row("uncorrected", &r.latency_uncorrected);
    }
    let codes: Vec<String> = r
        .status_codes
        .iter()
        .map(|s| format!("{}: {}", s.code, s.count))
        .collect();
    println!(
        "  status codes {}",
        if codes.is_empty() {
            "none".into()
        } else {
            codes.join(", ")
        }
    );
    if !r.errors.is_empty() {
        let errors: Vec<String> = r
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.kind, e.count))
            .collect();
        println!("  errors       {}", errors.join(", "));
    }
    if let Some(front) = &r.front {
        print_front(front);
        return;
    }
    println!(
        "  {:>6} {:>10} {:>9} {:>9} {:>9}",
        "server", "requests", "failed", "p50 ms", "p99 ms"
    );
    for s in &r.per_server {
        let l = s.latency.unwrap_or_default();
        println!(
            "  {:>6} {:>10} {:>9} {:>9.2} {:>9.2}",
            s.server_id, s.requests, s.failures, l.p50_ms, l.p99_ms
        );
    }
}
