//! `farm runs list|show|compare` and `farm events [--follow]`: what the farm remembers, from
//! the controller's history, which outlives its restarts.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use farm_proto::v1::{
    GetRunRequest, ListEventsRequest, ListRunsRequest, RunKind, RunSummary, get_run_response,
};

use crate::report::connect;
use crate::roles::DEFAULT_CONTROLLER_URL;
use crate::signal::shutdown_signal;

/// `farm runs`.
#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// The farm's past and running load tests and scenario runs, newest first.
    List(ListArgs),
    /// One run, whole.
    Show(ShowArgs),
    /// Two runs side by side: latency percentiles, throughput, errors.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
struct Controller {
    /// The controller's gRPC URL.
    #[arg(long, env = "FARM_CONTROLLER", default_value = DEFAULT_CONTROLLER_URL)]
    controller: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    LoadTest,
    Scenario,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Runs per page (1 to 100).
    #[arg(long, default_value_t = 20)]
    page_size: u32,
    /// The page after this token (printed below a page that has more).
    #[arg(long, default_value = "")]
    page: String,
    /// Only runs of this kind.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    #[command(flatten)]
    controller: Controller,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The run's id ("lt-3", "sc-1").
    run_id: String,
    /// Print it as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    controller: Controller,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The first run's id: the baseline.
    first: String,
    /// The second run's id: compared with the first.
    second: String,
    #[command(flatten)]
    controller: Controller,
}

/// `farm events`.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// How many of the newest events to print first (1 to 1000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only this server's events (0: the farm's own).
    #[arg(long)]
    server: Option<u32>,
    /// Keep printing events as they happen, until Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    controller: Controller,
}

fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the controller refused: {}", status.message())
}

pub(crate) async fn runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RunsCommand::List(args) => list(args).await,
        RunsCommand::Show(args) => show(args).await,
        RunsCommand::Compare(args) => compare(args).await,
    }
}

fn when(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    // UTC, to the second: the history's times are wall-clock milliseconds.
    let seconds = ms / 1000;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.controller.controller).await?;
    let page = client
        .list_runs(ListRunsRequest {
            page_size: args.page_size,
            page_token: args.page.clone(),
            kind: match args.kind {
                None => RunKind::Unspecified,
                Some(Kind::LoadTest) => RunKind::LoadTest,
                Some(Kind::Scenario) => RunKind::Scenario,
            } as i32,
        })
        .await
        .map_err(refused)?
        .into_inner();
    println!(
        "{:<8} {:<11} {:<20} {:<19} {:>9} {:>7} {:>9} {:>9}  NAME",
        "RUN", "STATE", "KIND", "STARTED (UTC)", "REQUESTS", "FAILED", "REQ/S", "P99 MS"
    );
    for run in &page.runs {
        let kind = match RunKind::try_from(run.kind).unwrap_or(RunKind::Unspecified) {
            RunKind::Scenario => format!("scenario {}/{}", run.verdicts_passed, run.verdicts_total),
            _ => "load test".to_string(),
        };
        println!(
            "{:<8} {:<11} {:<20} {:<19} {:>9} {:>7} {:>9.1} {:>9.2}  {}",
            run.run_id,
            run.state,
            kind,
            when(run.started_at_ms),
            run.requests,
            run.failures,
            run.requests_per_second,
            run.latency.map_or(0.0, |l| l.p99_ms),
            run.name
        );
    }
    println!("{} of {} runs", page.runs.len(), page.total);
    if !page.next_page_token.is_empty() {
        println!("older: farm runs list --page {}", page.next_page_token);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.controller.controller).await?;
    let run = client
        .get_run(GetRunRequest {
            run_id: args.run_id.clone(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    match (run.run, args.json) {
        (Some(get_run_response::Run::LoadTest(run)), true) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::loadtest::to_json(&run))?
            );
        }
        (Some(get_run_response::Run::LoadTest(run)), false) => {
            println!("load test {}: {}", run.run_id, run.state());
            crate::loadtest::print_tables(&run);
        }
        (Some(get_run_response::Run::Scenario(report)), true) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::scenario::to_json(&report))?
            );
        }
        (Some(get_run_response::Run::Scenario(report)), false) => {
            crate::scenario::print_report(&report);
        }
        (None, _) => anyhow::bail!(
            "run {} is in the history but its report is not",
            args.run_id
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.controller.controller).await?;
    let mut fetch = async |run_id: &str| -> anyhow::Result<RunSummary> {
        client
            .get_run(GetRunRequest {
                run_id: run_id.to_string(),
            })
            .await
            .map_err(refused)?
            .into_inner()
            .summary
            .ok_or_else(|| anyhow::anyhow!("run {run_id} has no summary"))
    };
    let a = fetch(&args.first).await?;
    let b = fetch(&args.second).await?;
    print!("{}", comparison(&a, &b));
    Ok(ExitCode::SUCCESS)
}

/// Two runs side by side, with the second's difference from the first.
fn comparison(a: &RunSummary, b: &RunSummary) -> String {
    let la = a.latency.unwrap_or_default();
    let lb = b.latency.unwrap_or_default();
    let duration = |r: &RunSummary| {
        r.ended_at_ms
            .checked_sub(r.started_at_ms)
            .filter(|_| r.ended_at_ms > 0)
            .map_or(0.0, |ms| ms as f64 / 1000.0)
    };
    let error_rate = |r: &RunSummary| r.failures as f64 * 100.0 / r.requests.max(1) as f64;
    let rows: [(&str, f64, f64); 11] = [
        ("requests", a.requests as f64, b.requests as f64),
        ("failures", a.failures as f64, b.failures as f64),
        ("error rate %", error_rate(a), error_rate(b)),
        ("requests/s", a.requests_per_second, b.requests_per_second),
        ("p50 ms", la.p50_ms, lb.p50_ms),
        ("p90 ms", la.p90_ms, lb.p90_ms),
        ("p99 ms", la.p99_ms, lb.p99_ms),
        ("p99.9 ms", la.p999_ms, lb.p999_ms),
        ("max ms", la.max_ms, lb.max_ms),
        ("mean ms", la.mean_ms, lb.mean_ms),
        ("duration s", duration(a), duration(b)),
    ];
    let mut out = format!(
        "{:<14} {:>14} {:>14} {:>10}\n",
        "", a.run_id, b.run_id, "change"
    );
    out += &format!("{:<14} {:>14} {:>14}\n", "state", a.state, b.state);
    for (name, x, y) in rows {
        let change = if x == 0.0 {
            if y == 0.0 {
                "=".to_string()
            } else {
                "new".to_string()
            }
        } else {
            format!("{:+.1} %", (y - x) / x * 100.0)
        };
        out += &format!("{name:<14} {x:>14.2} {y:>14.2} {change:>10}\n");
    }
    out
}

pub(crate) async fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=1000).contains(&args.limit),
        "--limit must be 1 to 1000, got {}",
        args.limit
    );
    let mut client = connect(&args.controller.controller).await?;
    let print = |events: &[farm_proto::v1::FarmEvent]| {
        for e in events {
            let server = if e.server_id == 0 {
                "farm".to_string()
            } else {
                format!("server {}", e.server_id)
            };
            println!(
                "{}  {:<10} {:<18} {}",
                when(e.at_ms),
                server,
                e.kind,
                e.detail
            );
        }
    };
    let first = client
        .list_events(ListEventsRequest {
            limit: args.limit,
            server_id: args.server,
            newest: true,
            ..ListEventsRequest::default()
        })
        .await
        .map_err(refused)?
        .into_inner();
    print(&first.events);
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut after = first.last_seq;
    loop {
        tokio::select! {
            _ = shutdown_signal() => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let next = client
            .list_events(ListEventsRequest {
                after_seq: after,
                limit: 1000,
                server_id: args.server,
                newest: false,
            })
            .await
            .map_err(refused)?
            .into_inner();
        if let Some(last) = next.events.last() {
            after = last.seq;
        } else {
            after = after.max(next.last_seq);
        }
        print(&next.events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_in_utc() {
        assert_eq!(when(0), "-");
        assert_eq!(when(1_000), "1970-01-01 00:00:01");
        assert_eq!(when(1_796_169_600_000), "2026-12-02 00:00:00");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn a_comparison_says_how_the_second_run_differs() {
        let run = |id: &str, p99: f64, rps: f64| RunSummary {
            run_id: id.into(),
            state: "finished".into(),
            requests: 100,
            requests_per_second: rps,
            latency: Some(farm_proto::v1::LatencySummary {
                p99_ms: p99,
                ..Default::default()
            }),
            ..Default::default()
        };
        let table = comparison(&run("lt-1", 2.0, 100.0), &run("lt-2", 3.0, 50.0));
        let line = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_string()
        };
        assert!(line("p99 ms").ends_with("+50.0 %"), "{table}");
        assert!(line("requests/s").ends_with("-50.0 %"), "{table}");
        assert!(line("failures").ends_with("="), "{table}");
    }
}
