//! `farm fault set|clear|list`: servers that misbehave on command, from the command line.
//!
//! `set` merges: each kind given replaces that kind on every target, the others stay. The
//! `--percent`, `--path-prefix`, `--duration` and `--seed` of one call apply to every fault it
//! sets; give faults that need different ones in separate calls. Every value is checked by the
//! controller, which names the field it refuses.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use farm_proto::v1::{self as pb, FaultProfile, FaultWhen};

use crate::report::connect;
use crate::roles::{DEFAULT_CONTROLLER_URL, with_token};

/// `farm fault`.
#[derive(Debug, Args)]
pub(crate) struct FaultArgs {
    #[command(subcommand)]
    command: FaultCommand,
}

#[derive(Debug, Subcommand)]
enum FaultCommand {
    /// Set faults on servers: each kind given replaces that kind, the others stay.
    Set(SetArgs),
    /// Clear faults on servers: the kinds named with --kind, or every kind.
    Clear(ClearArgs),
    /// List the servers that have faults.
    List(ListArgs),
}

/// Where the controller is, and the farm's token for changes.
#[derive(Debug, Args)]
struct Controller {
    /// The controller's gRPC URL.
    #[arg(long, env = "FARM_CONTROLLER", default_value = DEFAULT_CONTROLLER_URL)]
    controller: String,
    /// The farm's token, which a controller beyond loopback asks of a change.
    #[command(flatten)]
    data: crate::roles::FarmData,
}

/// Which servers: exactly one of --servers, --status and --all, then maybe a share.
#[derive(Debug, Args)]
struct Targets {
    /// These servers, by id (comma-separated).
    #[arg(long, value_delimiter = ',', required_unless_present_any = ["status", "all"])]
    servers: Vec<u32>,
    /// Or the servers in this status now.
    #[arg(long, value_enum, conflicts_with_all = ["servers", "all"])]
    status: Option<StatusArg>,
    /// Or every server of the farm.
    #[arg(long, conflicts_with_all = ["servers", "status"])]
    all: bool,
    /// Only a random share of those servers, in percent (at least one server).
    #[arg(long, default_value_t = 0.0)]
    share: f64,
    /// Seeds the share's choice: the same seed over the same servers chooses the same ones.
    #[arg(long, default_value_t = 0)]
    share_seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Healthy,
    Degraded,
    Stopped,
    Starting,
    Unreachable,
}

impl Targets {
    fn to_proto(&self) -> pb::FaultTargets {
        let status = match self.status {
            None => pb::ServerStatus::Unspecified,
            Some(StatusArg::Healthy) => pb::ServerStatus::Healthy,
            Some(StatusArg::Degraded) => pb::ServerStatus::Degraded,
            Some(StatusArg::Stopped) => pb::ServerStatus::Stopped,
            Some(StatusArg::Starting) => pb::ServerStatus::Starting,
            Some(StatusArg::Unreachable) => pb::ServerStatus::Unreachable,
        };
        pb::FaultTargets {
            server_ids: self.servers.clone(),
            status: status as i32,
            all: self.all,
            share_percent: self.share,
            share_seed: self.share_seed,
        }
    }
}

/// `farm fault set`.
#[derive(Debug, Args)]
struct SetArgs {
    #[command(flatten)]
    farm: Controller,
    #[command(flatten)]
    targets: Targets,
    /// Share of the requests in scope that each fault of this call hits, in percent.
    #[arg(long)]
    percent: Option<f64>,
    /// Only requests whose path starts with this (every route by default; /health, /ready
    /// and /metrics only get the health and readiness faults).
    #[arg(long, default_value = "")]
    path_prefix: String,
    /// The faults clear themselves after this many seconds (0: until cleared).
    #[arg(long, default_value_t = 0)]
    duration: u32,
    /// Seeds the faults' decisions: the same seed gives every server the same sequence.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Delay every request hit by this many milliseconds (with --jitter).
    #[arg(long)]
    latency: Option<u32>,
    /// Largest deviation from --latency, uniform either way, in milliseconds.
    #[arg(long, default_value_t = 0, requires = "latency")]
    jitter: u32,
    /// A latency shape instead of --latency: P50,P90,P99 in milliseconds.
    #[arg(long, value_delimiter = ',', num_args = 3, conflicts_with = "latency")]
    latency_percentiles: Vec<u32>,
    /// Answer with errors instead: STATUS[:WEIGHT],... (e.g. 503:20,500:5).
    #[arg(long, value_delimiter = ',', value_parser = status_weight)]
    abort: Vec<pb::StatusWeight>,
    /// Never answer, holding each request at most this many milliseconds.
    #[arg(long)]
    hang: Option<u32>,
    /// Send answers' bodies at no more than this many bytes per second.
    #[arg(long)]
    throughput: Option<u32>,
    /// Drop the connection instead of answering: close, or reset.
    #[arg(long, value_enum)]
    connection: Option<ConnectionArg>,
    /// Answer above this many requests per second with --rate-limit-status and Retry-After.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// The status of a request refused by --rate-limit (429 by default).
    #[arg(long, default_value_t = 429, requires = "rate_limit")]
    rate_limit_status: u32,
    /// The Retry-After of a request refused by --rate-limit, in seconds.
    #[arg(long, default_value_t = 1, requires = "rate_limit")]
    retry_after: u32,
    /// Make /health answer this status while the other routes keep serving.
    #[arg(long)]
    health: Option<u32>,
    /// Drain the servers: /ready answers 503.
    #[arg(long)]
    drain: bool,
    /// Cut the servers off from the farm's network (docker runtime only).
    #[arg(long)]
    partition: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ConnectionArg {
    Close,
    Reset,
}

/// `STATUS` or `STATUS:WEIGHT`.
fn status_weight(raw: &str) -> Result<pb::StatusWeight, String> {
    let (status, weight) = raw.split_once(':').unwrap_or((raw, "1"));
    let number = |text: &str, what: &str| {
        text.trim()
            .parse::<u32>()
            .map_err(|_| format!("{what} in {raw:?} must be a whole number"))
    };
    Ok(pb::StatusWeight {
        status: number(status, "the status")?,
        weight: number(weight, "the weight")?,
    })
}

impl SetArgs {
    fn profile(&self) -> FaultProfile {
        let when = || {
            Some(FaultWhen {
                percent: self.percent,
                path_prefix: self.path_prefix.clone(),
                duration_seconds: self.duration,
                seed: self.seed,
                expires_at_ms: 0,
            })
        };
        let latency = match (self.latency, self.latency_percentiles.as_slice()) {
            (Some(delay_ms), _) => Some(pb::LatencyFault {
                when: when(),
                delay_ms,
                jitter_ms: self.jitter,
                ..pb::LatencyFault::default()
            }),
            (None, &[p50_ms, p90_ms, p99_ms]) => Some(pb::LatencyFault {
                when: when(),
                p50_ms,
                p90_ms,
                p99_ms,
                ..pb::LatencyFault::default()
            }),
            _ => None,
        };
        FaultProfile {
            latency,
            abort: (!self.abort.is_empty()).then(|| pb::AbortFault {
                when: when(),
                statuses: self.abort.clone(),
            }),
            hang: self.hang.map(|max_ms| pb::HangFault {
                when: when(),
                max_ms,
            }),
            throughput: self.throughput.map(|bytes_per_second| pb::ThroughputFault {
                when: when(),
                bytes_per_second,
            }),
            connection: self.connection.map(|mode| pb::ConnectionFault {
                when: when(),
                mode: match mode {
                    ConnectionArg::Close => pb::ConnectionFaultMode::Close,
                    ConnectionArg::Reset => pb::ConnectionFaultMode::Reset,
                } as i32,
            }),
            rate_limit: self
                .rate_limit
                .map(|requests_per_second| pb::RateLimitFault {
                    when: when(),
                    requests_per_second,
                    status: self.rate_limit_status,
                    retry_after_seconds: self.retry_after,
                }),
            health: self.health.map(|status| pb::HealthFault {
                when: when(),
                status,
            }),
            readiness: self.drain.then(|| pb::ReadinessFault { when: when() }),
            partition: self.partition.then(|| pb::PartitionFault { when: when() }),
        }
    }
}

/// `farm fault clear`.
#[derive(Debug, Args)]
struct ClearArgs {
    #[command(flatten)]
    farm: Controller,
    #[command(flatten)]
    targets: Targets,
    /// Only these kinds (comma-separated); every kind by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    kind: Vec<KindArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    Latency,
    Abort,
    Hang,
    Throughput,
    Connection,
    RateLimit,
    Health,
    Readiness,
    Partition,
}

impl From<KindArg> for pb::FaultKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Latency => Self::Latency,
            KindArg::Abort => Self::Abort,
            KindArg::Hang => Self::Hang,
            KindArg::Throughput => Self::Throughput,
            KindArg::Connection => Self::Connection,
            KindArg::RateLimit => Self::RateLimit,
            KindArg::Health => Self::Health,
            KindArg::Readiness => Self::Readiness,
            KindArg::Partition => Self::Partition,
        }
    }
}

/// `farm fault list`.
#[derive(Debug, Args)]
struct ListArgs {
    /// The controller's gRPC URL.
    #[arg(long, env = "FARM_CONTROLLER", default_value = DEFAULT_CONTROLLER_URL)]
    controller: String,
}

pub(crate) async fn run(args: FaultArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        FaultCommand::Set(args) => {
            let token = args.farm.data.agent_token()?;
            let request = pb::SetFaultsRequest {
                targets: Some(args.targets.to_proto()),
                faults: Some(args.profile()),
            };
            let response = connect(&args.farm.controller)
                .await?
                .set_faults(with_token(request, token.as_ref()))
                .await
                .map_err(|s| anyhow::anyhow!("the controller refused: {}", s.message()))?
                .into_inner();
            Ok(print_change(&response.outcomes, &response.servers))
        }
        FaultCommand::Clear(args) => {
            let token = args.farm.data.agent_token()?;
            let request = pb::ClearFaultsRequest {
                targets: Some(args.targets.to_proto()),
                kinds: args
                    .kind
                    .iter()
                    .map(|&k| pb::FaultKind::from(k) as i32)
                    .collect(),
            };
            let response = connect(&args.farm.controller)
                .await?
                .clear_faults(with_token(request, token.as_ref()))
                .await
                .map_err(|s| anyhow::anyhow!("the controller refused: {}", s.message()))?
                .into_inner();
            Ok(print_change(&response.outcomes, &response.servers))
        }
        FaultCommand::List(args) => {
            let servers = connect(&args.controller)
                .await?
                .list_faults(pb::ListFaultsRequest {})
                .await
                .context("the controller refused to list faults")?
                .into_inner()
                .servers;
            println!("{:>5}  FAULTS", "ID");
            for server in &servers {
                println!(
                    "{:>5}  {}",
                    server.server_id,
                    describe(&server.faults.clone().unwrap_or_default())
                );
            }
            println!("{} servers have faults", servers.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line per target: whether the change took, and the faults it has now. Fails when any
/// server did not take it.
fn print_change(outcomes: &[pb::CommandOutcome], servers: &[pb::ServerFaults]) -> ExitCode {
    println!(
        "{:>5}  {:<4} {:<45} FAULTS NOW",
        "ID", "OK", "WHAT HAPPENED"
    );
    for outcome in outcomes {
        let faults = servers
            .iter()
            .find(|s| s.server_id == outcome.server_id)
            .map(|s| describe(&s.faults.clone().unwrap_or_default()))
            .unwrap_or_default();
        println!(
            "{:>5}  {:<4} {:<45} {}",
            outcome.server_id,
            if outcome.ok { "yes" } else { "NO" },
            outcome.message,
            faults
        );
    }
    if outcomes.iter().all(|o| o.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The kinds of fault a profile holds, comma-separated (`latency,abort`); empty for none.
pub(crate) fn kinds(profile: &FaultProfile) -> String {
    profile.kinds().join(",")
}

/// A profile in a few words: `latency 200±50ms 100%; abort 503:20,500:5 30%`.
pub(crate) fn describe(profile: &FaultProfile) -> String {
    let scope = |when: &Option<FaultWhen>| {
        let when = when.clone().unwrap_or_default();
        let mut text = format!(" {}%", when.percent.unwrap_or(100.0));
        if !when.path_prefix.is_empty() {
            text.push_str(&format!(" on {}", when.path_prefix));
        }
        if when.expires_at_ms != 0 {
            let left = when
                .expires_at_ms
                .saturating_sub(farm_proto::now_ms())
                .div_ceil(1000);
            text.push_str(&format!(" for {left}s more"));
        }
        text
    };
    let mut parts = Vec::new();
    if let Some(f) = &profile.latency {
        let shape = if f.p50_ms != 0 || f.p90_ms != 0 || f.p99_ms != 0 {
            format!("p50 {}ms p90 {}ms p99 {}ms", f.p50_ms, f.p90_ms, f.p99_ms)
        } else {
            format!("{}±{}ms", f.delay_ms, f.jitter_ms)
        };
        parts.push(format!("latency {shape}{}", scope(&f.when)));
    }
    if let Some(f) = &profile.abort {
        let mix: Vec<String> = f
            .statuses
            .iter()
            .map(|s| format!("{}:{}", s.status, s.weight))
            .collect();
        let mix = if mix.is_empty() {
            "503".to_string()
        } else {
            mix.join(",")
        };
        parts.push(format!("abort {mix}{}", scope(&f.when)));
    }
    if let Some(f) = &profile.hang {
        parts.push(format!("hang ≤{}ms{}", f.max_ms, scope(&f.when)));
    }
    if let Some(f) = &profile.throughput {
        parts.push(format!(
            "throughput {}B/s{}",
            f.bytes_per_second,
            scope(&f.when)
        ));
    }
    if let Some(f) = &profile.connection {
        let mode = if f.mode == pb::ConnectionFaultMode::Close as i32 {
            "close"
        } else {
            "reset"
        };
        parts.push(format!("connection {mode}{}", scope(&f.when)));
    }
    if let Some(f) = &profile.rate_limit {
        parts.push(format!(
            "rate limit {}/s → {}{}",
            f.requests_per_second,
            f.status,
            scope(&f.when)
        ));
    }
    if let Some(f) = &profile.health {
        parts.push(format!("health {}{}", f.status, scope(&f.when)));
    }
    if let Some(f) = &profile.readiness {
        parts.push(format!("drained{}", scope(&f.when)));
    }
    if let Some(f) = &profile.partition {
        parts.push(format!("partitioned{}", scope(&f.when)));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("; ")
    }
}
