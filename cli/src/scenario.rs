//! `farm scenario run|check|list|show|stop`: incidents as code. A scenario file (YAML,
//! `docs/scenarios.md`) holds load phases, faults at offsets, steady-state checks and SLO
//! assertions; the controller runs it against the farm and judges it.
//!
//! Exit codes of `run`: [`PASSED`] when every assertion and check held, [`SLO_FAILED`] when
//! one did not, [`NOT_RUN`] when the run was aborted or could not run (an invalid file, an
//! unreachable farm, a steady state that did not hold before the load). `check` exits
//! [`PASSED`] for a valid file and [`INVALID`] otherwise. Either exits 1 when the command
//! itself fails (`check --controller` cannot reach the farm, `--report` cannot be written).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use farm_proto::v1::{
    CheckScenarioRequest, GetScenarioRunRequest, ListScenarioRunsRequest, RunScenarioRequest,
    ScenarioReport, ScenarioState, StopScenarioRequest,
};
use serde_json::json;

use crate::report::connect;
use crate::roles::DEFAULT_CONTROLLER_URL;
use crate::signal::shutdown_signal;

/// Every assertion and steady-state check held (and, for `check`, the file is valid).
pub(crate) const PASSED: u8 = 0;
/// `check`: the file is not valid.
pub(crate) const INVALID: u8 = 2;
/// An SLO assertion, or a steady-state check after the load, failed.
pub(crate) const SLO_FAILED: u8 = 3;
/// The run was aborted, or could not run.
pub(crate) const NOT_RUN: u8 = 4;

/// `farm scenario`.
#[derive(Debug, Args)]
pub(crate) struct ScenarioArgs {
    #[command(subcommand)]
    command: ScenarioCommand,
}

#[derive(Debug, Subcommand)]
enum ScenarioCommand {
    /// Run a scenario file against the farm, with live progress; exits 0 when it passes, 3
    /// when an SLO fails, 4 when it was aborted or could not run.
    Run(RunArgs),
    /// Check a scenario file: offline, or with --controller also against the farm's servers;
    /// exits 0 when valid, 2 when not.
    Check(CheckArgs),
    /// List the farm's kept scenario runs with their verdicts.
    List(ControllerArgs),
    /// Show one scenario run's report.
    Show(ShowArgs),
    /// Abort a running scenario: its load stops and its faults are undone.
    Stop(ShowArgs),
}

#[derive(Debug, Args)]
struct ControllerArgs {
    /// The controller's gRPC URL.
    #[arg(long, env = "FARM_CONTROLLER", default_value = DEFAULT_CONTROLLER_URL)]
    controller: String,
    /// The farm's token, which a controller beyond loopback asks of a run.
    #[command(flatten)]
    data: crate::roles::FarmData,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The scenario file.
    file: PathBuf,
    /// The seed for the fault decisions, instead of the file's.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the final report as JSON (with its per-second timeline) instead of tables.
    #[arg(long)]
    json: bool,
    /// Also write the final report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    #[command(flatten)]
    controller: ControllerArgs,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The scenario file.
    file: PathBuf,
    /// Also check the servers it names against this controller's farm.
    #[arg(long, env = "FARM_CONTROLLER")]
    controller: Option<String>,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The run's id ("sc-1").
    run_id: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    controller: ControllerArgs,
}

pub(crate) async fn run(args: ScenarioArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ScenarioCommand::Run(args) => run_file(args).await,
        ScenarioCommand::Check(args) => check(args).await,
        ScenarioCommand::List(args) => list(args).await,
        ScenarioCommand::Show(args) => show(args, false).await,
        ScenarioCommand::Stop(args) => show(args, true).await,
    }
}

/// The file's text, bounded before it is read whole.
fn read_source(path: &PathBuf) -> anyhow::Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= farm_scenario::MAX_SOURCE_BYTES as u64,
        "{}: a scenario file may have at most {} bytes, this one has {size}",
        path.display(),
        farm_scenario::MAX_SOURCE_BYTES
    );
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

async fn run_file(args: RunArgs) -> anyhow::Result<ExitCode> {
    let source = match read_source(&args.file) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("farm: {error:#}");
            return Ok(ExitCode::from(NOT_RUN));
        }
    };
    if let Err(problems) = farm_scenario::parse(&source) {
        print_problems(&args.file, problems.iter().map(ToString::to_string));
        return Ok(ExitCode::from(NOT_RUN));
    }
    let started = async {
        let mut client = connect(&args.controller.controller).await?;
        let request = crate::roles::with_token(
            RunScenarioRequest {
                source,
                seed: args.seed,
            },
            args.controller.data.agent_token()?.as_ref(),
        );
        let stream = client
            .run_scenario(request)
            .await
            .map_err(|s| anyhow::anyhow!("the controller refused the scenario: {}", s.message()))?
            .into_inner();
        anyhow::Ok(stream)
    };
    let mut stream = match started.await {
        Ok(stream) => stream,
        Err(error) => {
            eprintln!("farm: {error:#}");
            return Ok(ExitCode::from(NOT_RUN));
        }
    };
    let mut live = Live::new(!args.json);
    let last = loop {
        let message = tokio::select! {
            _ = shutdown_signal() => {
                eprintln!("farm: scenario aborted");
                return Ok(ExitCode::from(NOT_RUN));
            }
            message = stream.message() => message,
        };
        let report = match message {
            Ok(Some(progress)) => {
                let report = progress.report.unwrap_or_default();
                if progress.done {
                    break report;
                }
                report
            }
            Err(status) => {
                eprintln!("farm: the scenario failed: {}", status.message());
                return Ok(ExitCode::from(NOT_RUN));
            }
            Ok(None) => {
                eprintln!("farm: the controller ended the scenario without a report");
                return Ok(ExitCode::from(NOT_RUN));
            }
        };
        live.show(&report);
    };
    live.show(&last);
    let json = to_json(&last);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_report(&last);
    }
    Ok(ExitCode::from(exit_code(&last)))
}

/// The exit code a final report calls for.
fn exit_code(report: &ScenarioReport) -> u8 {
    match ScenarioState::try_from(report.state).unwrap_or(ScenarioState::Unspecified) {
        ScenarioState::Passed => PASSED,
        ScenarioState::Failed => SLO_FAILED,
        _ => NOT_RUN,
    }
}

fn print_problems(file: &std::path::Path, problems: impl Iterator<Item = String>) {
    let mut err = std::io::stderr().lock();
    for problem in problems {
        let _ = writeln!(err, "{}: {problem}", file.display());
    }
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let source = match read_source(&args.file) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("farm: {error:#}");
            return Ok(ExitCode::from(INVALID));
        }
    };
    if let Err(problems) = farm_scenario::parse(&source) {
        print_problems(&args.file, problems.iter().map(ToString::to_string));
        return Ok(ExitCode::from(INVALID));
    }
    if let Some(url) = &args.controller {
        let mut client = connect(url).await?;
        let checked = client
            .check_scenario(CheckScenarioRequest { source })
            .await
            .map_err(|s| anyhow::anyhow!("the controller refused the check: {}", s.message()))?
            .into_inner();
        if !checked.valid {
            print_problems(
                &args.file,
                checked.problems.iter().map(|p| {
                    farm_scenario::Problem {
                        line: p.line,
                        field: p.field.clone(),
                        message: p.message.clone(),
                    }
                    .to_string()
                }),
            );
            return Ok(ExitCode::from(INVALID));
        }
    }
    println!("{}: valid", args.file.display());
    Ok(ExitCode::from(PASSED))
}

async fn list(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.controller).await?;
    let runs = client
        .list_scenario_runs(ListScenarioRunsRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("the controller refused: {}", s.message()))?
        .into_inner()
        .runs;
    println!(
        "{:<8} {:<28} {:<8} {:>8} {:>6}  REASON",
        "RUN", "NAME", "STATE", "VERDICTS", "FAILED"
    );
    for run in &runs {
        let failed = run.verdicts.iter().filter(|v| !v.passed).count();
        println!(
            "{:<8} {:<28} {:<8} {:>8} {:>6}  {}",
            run.run_id,
            run.name,
            state_name(run.state),
            run.verdicts.len(),
            failed,
            run.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(args: ShowArgs, stop: bool) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.controller.controller).await?;
    let report = if stop {
        client
            .stop_scenario(crate::roles::with_token(
                StopScenarioRequest {
                    run_id: args.run_id.clone(),
                },
                args.controller.data.agent_token()?.as_ref(),
            ))
            .await
            .map_err(|s| anyhow::anyhow!("the controller refused: {}", s.message()))?
            .into_inner()
            .report
    } else {
        client
            .get_scenario_run(GetScenarioRunRequest {
                run_id: args.run_id.clone(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("the controller refused: {}", s.message()))?
            .into_inner()
            .report
    }
    .unwrap_or_default();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&report))?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn state_name(raw: i32) -> &'static str {
    ScenarioState::try_from(raw)
        .unwrap_or(ScenarioState::Unspecified)
        .name()
}

/// Live progress on standard error: one line a second, and a line for each step (a check,
/// a fault applied or ended) as it happens.
struct Live {
    enabled: bool,
    terminal: bool,
    /// Steps already told.
    told: std::collections::HashSet<String>,
}

impl Live {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            told: std::collections::HashSet::new(),
        }
    }

    fn tell(&mut self, step: String) {
        if self.told.insert(step.clone()) {
            let mut err = std::io::stderr().lock();
            if self.terminal {
                let _ = write!(err, "\r\x1b[K");
            }
            let _ = writeln!(err, "{step}");
        }
    }

    fn show(&mut self, report: &ScenarioReport) {
        if !self.enabled {
            return;
        }
        for check in &report.checks {
            let mark = if check.passed { "held" } else { "FAILED" };
            self.tell(format!(
                "  steady state {}: {} {mark} ({})",
                check.when, check.check, check.detail
            ));
        }
        for fault in &report.faults {
            if fault.applied_ms > 0 {
                self.tell(format!(
                    "  {:>6.1} s  fault {} ({}) on servers {:?}",
                    f64::from(fault.applied_ms) / 1000.0,
                    fault.id,
                    fault.kind,
                    fault.server_ids
                ));
            }
            if fault.ended_ms > 0 && fault.for_ms > 0 {
                self.tell(format!(
                    "  {:>6.1} s  fault {} ended",
                    f64::from(fault.ended_ms) / 1000.0,
                    fault.id
                ));
            }
            if !fault.error.is_empty() {
                self.tell(format!("  fault {}: {}", fault.id, fault.error));
            }
        }
        let Some(load) = &report.load else { return };
        let total = report.phases.last().map_or(0, |p| p.end_ms);
        let now_ms = load.elapsed_seconds * 1000.0;
        let phase = report
            .phases
            .iter()
            .find(|p| now_ms < f64::from(p.end_ms))
            .map_or("", |p| p.name.as_str());
        // The latest second whose figures are complete: requests still in flight may end in
        // the later ones.
        let line = match load.timeline.iter().rev().find(|s| !s.provisional) {
            Some(s) => format!(
                "[{:>5.1}/{:.1} s] {phase:<12} second {:>3}: {:>6} req/s  errors {:>5.1} %  p99 {:>8.2} ms",
                load.elapsed_seconds,
                f64::from(total) / 1000.0,
                s.second,
                s.requests,
                s.failures as f64 * 100.0 / s.requests.max(1) as f64,
                s.p99_ms
            ),
            None => format!(
                "[{:>5.1}/{:.1} s] {phase:<12}",
                load.elapsed_seconds,
                f64::from(total) / 1000.0
            ),
        };
        crate::loadtest::write_progress(self.terminal, &line);
    }
}

pub(crate) fn print_report(report: &ScenarioReport) {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    println!(
        "scenario {} ({}), seed {}: {}{}",
        report.name,
        report.run_id,
        report.seed,
        state_name(report.state).to_uppercase(),
        if report.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.reason)
        }
    );
    if let Some(load) = &report.load {
        println!(
            "load: {} requests, {} failed, {:.1} req/s, p99 {:.2} ms over {:.1} s",
            load.requests,
            load.failures,
            load.requests_per_second,
            load.latency.map_or(0.0, |l| l.p99_ms),
            load.elapsed_seconds
        );
        for phase in &load.phases {
            println!(
                "  phase {:<12} {:>7} requests {:>6} failed {:>8.1} req/s  p99 {:>8.2} ms",
                phase.name,
                phase.requests,
                phase.failures,
                phase.requests_per_second,
                phase.latency.map_or(0.0, |l| l.p99_ms)
            );
        }
    }
    for fault in &report.faults {
        println!(
            "fault {:<12} {:<10} servers {:?}  applied {:.1} s  ended {:.1} s{}",
            fault.id,
            fault.kind,
            fault.server_ids,
            f64::from(fault.applied_ms) / 1000.0,
            f64::from(fault.ended_ms) / 1000.0,
            if fault.error.is_empty() {
                String::new()
            } else {
                format!("  ({})", fault.error)
            }
        );
    }
    for check in &report.checks {
        println!(
            "{} steady state {}: {} ({})",
            if check.passed { "PASS" } else { "FAIL" },
            check.when,
            check.check,
            check.detail
        );
    }
    for verdict in &report.verdicts {
        println!(
            "{} {} ({})",
            if verdict.passed { "PASS" } else { "FAIL" },
            verdict.assertion,
            verdict.detail
        );
    }
}

pub(crate) fn to_json(report: &ScenarioReport) -> serde_json::Value {
    let load = report.load.clone().unwrap_or_default();
    let latency = crate::loadtest::latency_json;
    json!({
        "run_id": report.run_id,
        "name": report.name,
        "seed": report.seed,
        "state": state_name(report.state),
        "reason": report.reason,
        "aborted_by": report.aborted_by,
        "started_at_ms": report.started_at_ms,
        "ended_at_ms": report.ended_at_ms,
        "load_started_at_ms": report.load_started_at_ms,
        "phases": report.phases.iter().map(|p| json!({
            "name": p.name, "start_ms": p.start_ms, "end_ms": p.end_ms,
            "rate_from": p.rate_from, "rate_to": p.rate_to, "concurrency": p.concurrency,
        })).collect::<Vec<_>>(),
        "faults": report.faults.iter().map(|f| json!({
            "id": f.id, "kind": f.kind, "server_ids": f.server_ids, "at_ms": f.at_ms,
            "for_ms": f.for_ms, "applied_ms": f.applied_ms, "ended_ms": f.ended_ms, "error": f.error,
        })).collect::<Vec<_>>(),
        "checks": report.checks.iter().map(|c| json!({
            "when": c.when, "check": c.check, "passed": c.passed, "detail": c.detail, "line": c.line,
        })).collect::<Vec<_>>(),
        "verdicts": report.verdicts.iter().map(|v| json!({
            "assertion": v.assertion, "passed": v.passed, "observed": v.observed,
            "threshold": v.threshold, "detail": v.detail, "line": v.line, "final": v.r#final,
        })).collect::<Vec<_>>(),
        "load": {
            "requests": load.requests,
            "failures": load.failures,
            "elapsed_seconds": load.elapsed_seconds,
            "requests_per_second": load.requests_per_second,
            "latency": latency(&load.latency),
            "phases": load.phases.iter().map(|p| json!({
                "name": p.name, "start_ms": p.start_ms, "end_ms": p.end_ms,
                "requests": p.requests, "failures": p.failures,
                "requests_per_second": p.requests_per_second, "latency": latency(&p.latency),
            })).collect::<Vec<_>>(),
            "timeline": load.timeline.iter().map(|s| json!({
                "second": s.second, "requests": s.requests, "failures": s.failures,
                "p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "p99_ms": s.p99_ms, "max_ms": s.max_ms,
            })).collect::<Vec<_>>(),
        },
    })
}
