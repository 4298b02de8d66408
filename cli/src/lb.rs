//! `farm lb config haproxy|nginx|caddy`: a standalone load-balancer config for the running
//! farm, so that a real balancer can be put in front of it and tested.
//!
//! The servers come from the controller's `ListServers` (each server's node address). Every
//! flag is checked, and the farm read, before anything is written: bad input leaves no file
//! and no directory behind. The balancer's own files (pid file, stats or admin socket, logs)
//! go to a run directory, `<out>.run` by default, so that the config runs as it is, by root
//! or by any user, side by side with other balancers.
//!
//! With `--watch` the command keeps running: it polls `ListServers` every second and, when
//! servers come or go, rewrites the file atomically and reloads the balancer. Polling rather
//! than the `Watch` stream: every poll stands alone, so a controller restart costs nothing
//! but a logged gap, and a second of delay is well inside a balancer's own health checks;
//! `known_version` keeps a poll of an unchanged farm empty.
//!
//! One module per balancer renders its config: [`haproxy`], [`nginx`], [`caddy`].

mod caddy;
mod haproxy;
mod nginx;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use farm_proto::v1::farm_service_client::FarmServiceClient;
use farm_proto::v1::{ListServersRequest, Server};
use tonic::transport::Channel;

use crate::report::connect;
use crate::roles::DEFAULT_CONTROLLER_URL;

/// Shortest `--check-interval-ms`: checking a 1,000-server farm every 100 ms is already 10,000
/// health checks a second.
pub(crate) const MIN_CHECK_INTERVAL_MS: u32 = 100;
/// Longest `--check-interval-ms`: past a minute a dead server stays in rotation too long for
/// a testbed.
pub(crate) const MAX_CHECK_INTERVAL_MS: u32 = 60_000;
/// Largest `--weight`: haproxy's largest (nginx has none), and a load test's through a front;
/// 0 is left out, stopping a server is what takes it out of rotation.
pub(crate) const MAX_WEIGHT: u32 = farm_proto::limits::MAX_BACKEND_WEIGHT;
/// Largest `--fall` and `--rise`.
pub(crate) const MAX_CHECK_COUNT: u32 = 10;
/// How long one health check may take at most; shorter when checks come more often.
const MAX_CHECK_TIMEOUT_MS: u32 = 2_000;
/// How long a reload may take before it counts as failed (and its process is killed).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `--watch` asks the controller for the servers.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long one poll may take; the next one comes after it anyway.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest path of a unix socket (`sun_path` holds 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;
/// How many server names a log line about a change lists before it only counts.
const NAMES_IN_A_LOG_LINE: usize = 10;

/// Timeouts every balancer shares, so that the three configs behave alike.
mod timeouts {
    /// Connecting to a node: nodes are on this machine and accept at once, a node that takes
    /// two seconds is as good as down.
    pub(super) const CONNECT_MS: u32 = 2_000;
    /// An idle client, and an idle kept-alive connection: the node's own idle timeout.
    pub(super) const CLIENT_S: u32 = 30;
    /// Waiting for a node's answer: above the node's slowest route (`/slow-endpoint`, up to
    /// 30 s), so that only a hang fault runs into it.
    pub(super) const SERVER_S: u32 = 60;
    /// Idle connections to the nodes are closed by the balancer after this, before the
    /// node's 30 s idle timeout, so that a balancer never sends a request on a connection the
    /// node is closing.
    pub(super) const UPSTREAM_IDLE_S: u32 = 20;
}

/// How many more servers a request whose connection failed is tried on: a node stopped or
/// killed between two health checks costs the client nothing. haproxy retries only a request
/// that did not reach a node; nginx and caddy also retry an idempotent one that did (and timed
/// out), so a GET can be served twice, a POST never.
const RETRIES: u32 = 2;

/// `farm lb`.
#[derive(Debug, Args)]
pub(crate) struct LbArgs {
    #[command(subcommand)]
    command: LbCommand,
}

#[derive(Debug, Subcommand)]
enum LbCommand {
    /// Write a standalone config for haproxy, nginx or caddy with every server of the farm
    /// (to stdout, or --out FILE); with --watch, keep it current and reload the balancer.
    Config(ConfigArgs),
}

/// Which balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    Haproxy,
    Nginx,
    Caddy,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Haproxy => "haproxy",
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
        }
    }
}

/// How requests are spread over the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Balance {
    /// Each server in turn (weighted by --weight).
    RoundRobin,
    /// The server with the fewest requests in flight.
    LeastConn,
}

/// `farm lb config`.
#[derive(Debug, Args)]
struct ConfigArgs {
    /// Which balancer the config is for.
    #[arg(value_enum)]
    kind: Kind,
    /// The controller's gRPC URL.
    #[arg(long, env = "FARM_CONTROLLER", default_value = DEFAULT_CONTROLLER_URL)]
    controller: String,
    /// Where the balancer listens: an IP address and a port (1 to 65535).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: SocketAddr,
    /// How requests are spread over the servers.
    #[arg(long, value_enum, default_value_t = Balance::RoundRobin)]
    balance: Balance,
    /// A server's weight, ID=WEIGHT (1 to 256; 1 when not given); repeat for more servers.
    /// Not for caddy, whose Debian 12 version (2.6) has no weighted policy.
    #[arg(long = "weight", value_name = "ID=WEIGHT", value_parser = parse_weight)]
    weights: Vec<(u32, u32)>,
    /// How often the balancer checks each server's /health, in milliseconds (100 to 60000).
    /// nginx, which has no active checks, uses it to size its passive ones.
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_CHECK_INTERVAL_MS)..=i64::from(MAX_CHECK_INTERVAL_MS)))]
    check_interval_ms: u32,
    /// Failed checks (or, for nginx, failed requests) that take a server out (1 to 10).
    #[arg(long, default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CHECK_COUNT)))]
    fall: u32,
    /// Passed checks that bring a server back (1 to 10; haproxy only: nginx and caddy bring
    /// a server back after one).
    #[arg(long, default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CHECK_COUNT)))]
    rise: u32,
    /// Write the config to this file (atomically) instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The balancer's own files: pid file, stats or admin socket, logs. Created when
    /// missing; `<out>.run` by default, `./farm-lb-<kind>.run` without --out.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Keep running: rewrite the file and reload the balancer whenever servers come or go,
    /// until Ctrl-C or SIGTERM. Needs --out.
    #[arg(long, requires = "out")]
    watch: bool,
    /// With --watch, reload with this shell command instead of the balancer's own reload
    /// (haproxy: SIGUSR2 to the master in the pid file; nginx -s reload; caddy reload). It
    /// gets FARM_LB_CONFIG and FARM_LB_RUN_DIR in its environment and 30 s to finish.
    #[arg(long, requires = "watch")]
    reload_command: Option<String>,
}

/// An `IP:PORT` for --listen: balancers cannot report a port the kernel picked, so 0 is out.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let address: SocketAddr = text.parse().map_err(|_| {
        format!("{text:?} is not an IP address and port (127.0.0.1:8080, [::1]:8080, 0.0.0.0:80)")
    })?;
    if address.port() == 0 {
        return Err(format!(
            "{text:?}: the port must be 1 to 65535 (a balancer cannot tell which port the kernel picked)"
        ));
    }
    Ok(address)
}

/// `ID=WEIGHT` of `--weight`, for `farm lb config` and `farm load-test --front` alike.
pub(crate) fn parse_weight(text: &str) -> Result<(u32, u32), String> {
    let (id, weight) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not ID=WEIGHT (for example 3=5)"))?;
    let id: u32 = id
        .trim()
        .parse()
        .ok()
        .filter(|&id| id >= 1)
        .ok_or_else(|| format!("the server id in {text:?} must be a whole number from 1"))?;
    let weight: u32 = weight
        .trim()
        .parse()
        .ok()
        .filter(|w| (1..=MAX_WEIGHT).contains(w))
        .ok_or_else(|| {
            format!("the weight in {text:?} must be a whole number from 1 to {MAX_WEIGHT}")
        })?;
    Ok((id, weight))
}

/// Everything a config is made of besides the servers, checked.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) kind: Kind,
    pub(crate) controller: String,
    pub(crate) listen: SocketAddr,
    pub(crate) balance: Balance,
    pub(crate) weights: BTreeMap<u32, u32>,
    pub(crate) check_interval_ms: u32,
    pub(crate) fall: u32,
    pub(crate) rise: u32,
    /// Absolute.
    pub(crate) run_dir: PathBuf,
    /// Absolute; `None` for standard output.
    pub(crate) out: Option<PathBuf>,
}

impl Settings {
    /// The longest one health check may take: the interval, two seconds at most.
    pub(crate) fn check_timeout_ms(&self) -> u32 {
        self.check_interval_ms.min(MAX_CHECK_TIMEOUT_MS)
    }

    /// A server's weight, `None` when it has the default.
    pub(crate) fn weight(&self, id: u32) -> Option<u32> {
        self.weights.get(&id).copied()
    }

    /// A file or socket in the run directory.
    pub(crate) fn run_path(&self, name: &str) -> String {
        self.run_dir.join(name).display().to_string()
    }

    /// The comment every config starts with: where it came from, how to run and reload it.
    pub(crate) fn header(&self, servers: usize, run: &str, reload: &str) -> String {
        let file = self
            .out
            .as_ref()
            .map_or_else(|| "FILE".to_string(), |p| p.display().to_string());
        let kind = self.kind.name();
        let run = run.replace("FILE", &file);
        let reload = reload.replace("FILE", &file);
        format!(
            "# Generated by `farm lb config {kind}` for the farm at {controller} ({servers} \
             servers).\n\
             # `farm lb config {kind} --out FILE --watch` keeps it current: edits by hand are \
             overwritten.\n\
             # Run:    {run}\n\
             # Reload: {reload}\n\
             # The balancer's own files are in {run_dir}.\n",
            controller = self.controller,
            run_dir = self.run_dir.display(),
        )
    }
}

/// One server as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    pub(crate) id: u32,
    pub(crate) address: SocketAddr,
}

impl Backend {
    /// The farm's name for the server, which is also its name in haproxy's stats.
    pub(crate) fn name(&self) -> String {
        format!("server-{}", self.id)
    }
}

/// The servers a balancer can reach, in id order. A server whose node has no port yet (it is
/// starting and the kernel has not picked one) is left out until it has one; a node that
/// listens on every interface is reached over loopback.
fn backends(servers: &[Server]) -> Vec<Backend> {
    let mut backends: Vec<Backend> = servers
        .iter()
        .filter_map(|server| {
            let address = farm_proto::reachable_node_address(&server.node_address)?;
            Some(Backend {
                id: server.id,
                address,
            })
        })
        .collect();
    backends.sort_by_key(|b| b.id);
    backends
}

/// The config text for `backends`.
pub(crate) fn render(settings: &Settings, backends: &[Backend]) -> String {
    match settings.kind {
        Kind::Haproxy => haproxy::render(settings, backends),
        Kind::Nginx => nginx::render(settings, backends),
        Kind::Caddy => caddy::render(settings, backends),
    }
}

/// Refuses a path the configs could not hold as one plain word: each balancer's quoting
/// differs, and a path with spaces, quotes or braces would need all three.
fn check_path(flag: &str, path: &Path) -> anyhow::Result<()> {
    let text = path
        .to_str()
        .with_context(|| format!("{flag} {}: the path is not UTF-8", path.display()))?;
    if let Some(c) = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"'`\\;{}#$".contains(*c))
    {
        bail!(
            "{flag} {text}: the path holds {c:?}, which a balancer config cannot hold unquoted; \
             choose a path of letters, digits, '/', '.', '-' and '_'"
        );
    }
    Ok(())
}

impl ConfigArgs {
    /// Checks every flag that needs no farm; resolves paths to absolute ones.
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut weights = BTreeMap::new();
        for &(id, weight) in &self.weights {
            if weights.insert(id, weight).is_some() {
                bail!("--weight: server {id} is given a weight twice");
            }
        }
        if self.kind == Kind::Caddy && !weights.is_empty() {
            bail!(
                "--weight: caddy 2.6 (Debian 12's) has no weighted policy \
                 (weighted_round_robin came with caddy 2.7); leave the weights out for caddy"
            );
        }
        let out = match &self.out {
            Some(path) => {
                let path = std::path::absolute(path)
                    .with_context(|| format!("--out {}", path.display()))?;
                check_path("--out", &path)?;
                let parent = path.parent().unwrap_or(Path::new("/"));
                if !parent.is_dir() {
                    bail!(
                        "--out {}: the directory {} does not exist",
                        path.display(),
                        parent.display()
                    );
                }
                if path.is_dir() {
                    bail!("--out {}: that is a directory", path.display());
                }
                Some(path)
            }
            None => None,
        };
        let (run_dir, flag) = match (&self.run_dir, &out) {
            (Some(dir), _) => (
                std::path::absolute(dir).with_context(|| format!("--run-dir {}", dir.display()))?,
                "--run-dir",
            ),
            (None, Some(out)) => {
                let mut name = out.file_name().unwrap_or_default().to_os_string();
                name.push(".run");
                (
                    out.with_file_name(name),
                    "--out (the run directory beside it)",
                )
            }
            (None, None) => (
                std::path::absolute(format!("farm-lb-{}.run", self.kind.name()))
                    .context("the current directory")?,
                "--run-dir (by default in the current directory)",
            ),
        };
        check_path(flag, &run_dir)?;
        if run_dir.exists() && !run_dir.is_dir() {
            bail!("{flag} {}: not a directory", run_dir.display());
        }
        let socket = match self.kind {
            Kind::Haproxy => Some(haproxy::STATS_SOCKET),
            Kind::Caddy => Some(caddy::ADMIN_SOCKET),
            Kind::Nginx => None,
        };
        if let Some(socket) = socket
            && run_dir.join(socket).as_os_str().len() > MAX_SOCKET_PATH
        {
            bail!(
                "{flag} {}: too long for the unix socket {socket} the balancer keeps there \
                 (at most {MAX_SOCKET_PATH} bytes in all); choose a shorter one",
                run_dir.display()
            );
        }
        Ok(Settings {
            kind: self.kind,
            controller: self.controller.clone(),
            listen: self.listen,
            balance: self.balance,
            weights,
            check_interval_ms: self.check_interval_ms,
            fall: self.fall,
            rise: self.rise,
            run_dir,
            out,
        })
    }
}

/// Every --weight must name a server of the farm.
fn check_weights(settings: &Settings, servers: &[Server]) -> anyhow::Result<()> {
    for &id in settings.weights.keys() {
        if !servers.iter().any(|s| s.id == id) {
            let ids = id_ranges(servers.iter().map(|s| s.id));
            bail!(
                "--weight {id}={}: the farm has no server {id} (its servers: {})",
                settings.weights[&id],
                if ids.is_empty() { "none".into() } else { ids }
            );
        }
    }
    Ok(())
}

/// `1-10, 12, 14-15`.
fn id_ranges(ids: impl Iterator<Item = u32>) -> String {
    let mut ids: Vec<u32> = ids.collect();
    ids.sort_unstable();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for id in ids {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == id => *end = id,
            _ => ranges.push((id, id)),
        }
    }
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The servers, or `None` when the farm is still at `known_version`; with the farm's version.
async fn list(
    client: &mut FarmServiceClient<Channel>,
    known_version: u64,
) -> anyhow::Result<Option<(Vec<Server>, u64)>> {
    let mut request = tonic::Request::new(ListServersRequest {
        status: 0,
        known_version,
    });
    request.set_timeout(POLL_TIMEOUT);
    let answer = client
        .list_servers(request)
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "the controller refused to list the servers: {}",
                s.message()
            )
        })?
        .into_inner();
    Ok((!answer.unchanged).then_some((answer.servers, answer.version)))
}

/// Writes `text` to `path` so that a reader sees the old file or the new one, never a part:
/// a temporary file beside it, synced, then renamed over it.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

pub(crate) async fn run(args: LbArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LbCommand::Config(args) => config(args).await,
    }
}

async fn config(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let mut client = connect(&settings.controller).await?;
    let (servers, version) = list(&mut client, 0)
        .await?
        .context("the controller answered `unchanged` to a first list")?;
    check_weights(&settings, &servers)?;
    let backends = backends(&servers);
    for server in &servers {
        if !backends.iter().any(|b| b.id == server.id) {
            tracing::info!(
                "server-{} has no node address yet ({:?}): left out until it has one",
                server.id,
                server.node_address
            );
        }
    }
    let text = render(&settings, &backends);
    std::fs::create_dir_all(&settings.run_dir).with_context(|| {
        format!(
            "cannot create the run directory {}",
            settings.run_dir.display()
        )
    })?;
    let Some(out) = settings.out.clone() else {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    };
    // A balancer may already run on an older version of the file: --watch reloads it at once
    // when the file changes now, not only at the farm's next change.
    let stale = std::fs::read_to_string(&out).is_ok_and(|before| before != text);
    write_atomic(&out, &text)?;
    tracing::info!(
        "wrote {} for {}: {} servers; its own files go to {}",
        out.display(),
        settings.kind.name(),
        backends.len(),
        settings.run_dir.display()
    );
    if !args.watch {
        return Ok(ExitCode::SUCCESS);
    }
    let reload = match args.reload_command {
        Some(command) => Reload::Shell(command),
        None => Reload::default_for(&settings),
    };
    if stale {
        reload_and_log(&settings, &reload).await;
    }
    watch(&settings, &out, &reload, client, backends, version).await
}

/// Reloads the balancer; a failure is logged, never fatal: the file is written, and the
/// balancer reads it when it starts or at the next reload.
async fn reload_and_log(settings: &Settings, reload: &Reload) {
    match reload.run(settings).await {
        Ok(what) => tracing::info!("reloaded {}: {what}", settings.kind.name()),
        Err(error) => tracing::warn!(
            "reloading {} failed: {error:#}; the file is written and the watch goes on",
            settings.kind.name()
        ),
    }
}

/// How the balancer is told to read its config again.
#[derive(Debug)]
enum Reload {
    /// haproxy in master-worker mode: SIGUSR2 to the master, whose pid is in this file.
    SignalMaster { pid_file: PathBuf },
    /// A program with arguments (`nginx -s reload -c FILE`, `caddy reload ...`).
    Program { program: String, args: Vec<String> },
    /// The user's --reload-command, run by `sh -c`.
    Shell(String),
}

impl Reload {
    fn default_for(settings: &Settings) -> Reload {
        let out = settings
            .out
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match settings.kind {
            Kind::Haproxy => Reload::SignalMaster {
                pid_file: settings.run_dir.join(haproxy::PID_FILE),
            },
            Kind::Nginx => Reload::Program {
                program: "nginx".into(),
                args: vec!["-s".into(), "reload".into(), "-c".into(), out],
            },
            Kind::Caddy => Reload::Program {
                program: "caddy".into(),
                args: vec![
                    "reload".into(),
                    "--config".into(),
                    out,
                    "--adapter".into(),
                    "caddyfile".into(),
                ],
            },
        }
    }

    /// Reloads; says what it did.
    async fn run(&self, settings: &Settings) -> anyhow::Result<String> {
        let mut command = match self {
            Reload::SignalMaster { pid_file } => return signal_master(pid_file),
            Reload::Program { program, args } => {
                let mut command = tokio::process::Command::new(program);
                command.args(args);
                command
            }
            Reload::Shell(line) => {
                let mut command = tokio::process::Command::new("sh");
                command.arg("-c").arg(line);
                command
            }
        };
        let out = settings.out.as_deref().unwrap_or(Path::new(""));
        command
            .env("FARM_LB_CONFIG", out)
            .env("FARM_LB_RUN_DIR", &settings.run_dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let what = self.describe();
        let output = tokio::time::timeout(RELOAD_TIMEOUT, command.output())
            .await
            .map_err(|_| anyhow::anyhow!("{what} did not finish within {RELOAD_TIMEOUT:?}"))?
            .with_context(|| format!("cannot run {what}"))?;
        if !output.status.success() {
            bail!(
                "{what} failed ({}): {}",
                output.status,
                last_words(&output.stderr, &output.stdout)
            );
        }
        Ok(what)
    }

    fn describe(&self) -> String {
        match self {
            Reload::SignalMaster { pid_file } => {
                format!("SIGUSR2 to the master in {}", pid_file.display())
            }
            Reload::Program { program, args } => format!("`{program} {}`", args.join(" ")),
            Reload::Shell(line) => format!("`{line}`"),
        }
    }
}

/// The end of what a failed command said (stderr, else stdout), at most 1,000 characters.
fn last_words(stderr: &[u8], stdout: &[u8]) -> String {
    let said = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        stderr
    } else {
        stdout
    };
    let text = String::from_utf8_lossy(said);
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(999)
        .map_or(0, |(index, _)| index);
    text[start..].replace('\n', " | ")
}

/// haproxy's reload in master-worker mode: SIGUSR2 to the master, which starts new workers
/// on the new config and lets the old ones finish; its pid stays the same.
fn signal_master(pid_file: &Path) -> anyhow::Result<String> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let text = std::fs::read_to_string(pid_file).with_context(|| {
        format!(
            "cannot read haproxy's pid file {} (is haproxy running with this config?)",
            pid_file.display()
        )
    })?;
    let pid: i32 = text
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .filter(|&pid| pid > 1)
        .with_context(|| format!("{} holds no pid: {text:?}", pid_file.display()))?;
    // A pid file outlives its process, and the pid may since belong to another program, which
    // SIGUSR2 would end: only a haproxy is signalled.
    let program = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|line| {
            let first = line.split(|&b| b == 0).next()?.to_vec();
            Some(String::from_utf8_lossy(&first).into_owned())
        })
        .unwrap_or_default();
    if !Path::new(&program)
        .file_name()
        .is_some_and(|name| name.to_string_lossy().contains("haproxy"))
    {
        bail!(
            "process {pid} (from {}) is not haproxy ({program:?}): is haproxy running with this config?",
            pid_file.display()
        );
    }
    kill(Pid::from_raw(pid), Signal::SIGUSR2)
        .with_context(|| format!("cannot signal haproxy's master (pid {pid})"))?;
    Ok(format!("SIGUSR2 to haproxy's master, pid {pid}"))
}

/// `added server-11, server-12; removed server-3`.
fn describe_change(before: &[Backend], after: &[Backend]) -> String {
    let names = |list: Vec<&Backend>| {
        let mut text = list
            .iter()
            .take(NAMES_IN_A_LOG_LINE)
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ");
        if list.len() > NAMES_IN_A_LOG_LINE {
            text.push_str(&format!(" and {} more", list.len() - NAMES_IN_A_LOG_LINE));
        }
        text
    };
    let added: Vec<&Backend> = after
        .iter()
        .filter(|a| !before.iter().any(|b| b.id == a.id))
        .collect();
    let removed: Vec<&Backend> = before
        .iter()
        .filter(|b| !after.iter().any(|a| a.id == b.id))
        .collect();
    let moved: Vec<&Backend> = after
        .iter()
        .filter(|a| {
            before
                .iter()
                .any(|b| b.id == a.id && b.address != a.address)
        })
        .collect();
    let mut parts = Vec::new();
    for (what, list) in [("added", added), ("removed", removed), ("moved", moved)] {
        if !list.is_empty() {
            parts.push(format!("{what} {}", names(list)));
        }
    }
    parts.join("; ")
}

/// Follows the farm until Ctrl-C or SIGTERM: on every change of the servers, a new file and
/// a reload. A failed poll, write or reload is logged and the watch goes on.
async fn watch(
    settings: &Settings,
    out: &Path,
    reload: &Reload,
    mut client: FarmServiceClient<Channel>,
    mut current: Vec<Backend>,
    mut version: u64,
) -> anyhow::Result<ExitCode> {
    let shutdown = crate::signal::shutdown_token();
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        "watching the farm at {} every {POLL_INTERVAL:?}; reloads with {}",
        settings.controller,
        reload.describe()
    );
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let listed = tokio::select! {
            () = shutdown.cancelled() => break,
            listed = list(&mut client, version) => listed,
        };
        let servers = match listed {
            Ok(Some((servers, new_version))) => {
                version = new_version;
                servers
            }
            Ok(None) => continue,
            Err(error) => {
                // Logged once per outage, not once a second.
                if !failing {
                    tracing::warn!("{error:#}; asking again every {POLL_INTERVAL:?}");
                }
                failing = true;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!("the controller answers again");
        }
        let next = backends(&servers);
        if next == current {
            continue;
        }
        if let Err(error) = write_atomic(out, &render(settings, &next)) {
            // The next poll must bring the whole list again, even if the farm is unchanged.
            version = 0;
            tracing::warn!("{error:#}; trying again in {POLL_INTERVAL:?}");
            continue;
        }
        tracing::info!(
            "{}: {} servers ({})",
            out.display(),
            next.len(),
            describe_change(&current, &next)
        );
        current = next;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = reload_and_log(settings, reload) => {}
        }
    }
    tracing::info!("stopped watching");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Settings as the defaults make them, for `kind`, with a run directory of `/run/lb`.
    pub(crate) fn settings(kind: Kind) -> Settings {
        Settings {
            kind,
            controller: "http://127.0.0.1:50051".into(),
            listen: "127.0.0.1:8080".parse().unwrap(),
            balance: Balance::RoundRobin,
            weights: BTreeMap::new(),
            check_interval_ms: 1000,
            fall: 3,
            rise: 2,
            run_dir: PathBuf::from("/run/lb"),
            out: Some(PathBuf::from("/etc/lb/farm.cfg")),
        }
    }

    pub(crate) fn two_backends() -> Vec<Backend> {
        vec![
            Backend {
                id: 1,
                address: "127.0.0.1:8001".parse().unwrap(),
            },
            Backend {
                id: 2,
                address: "[::1]:8002".parse().unwrap(),
            },
        ]
    }

    fn server(id: u32, node_address: &str) -> Server {
        Server {
            id,
            node_address: node_address.into(),
            ..Server::default()
        }
    }

    #[test]
    fn listen_needs_an_ip_and_a_port_other_than_zero() {
        assert_eq!(
            parse_listen("[::1]:8080").unwrap(),
            "[::1]:8080".parse().unwrap()
        );
        assert!(
            parse_listen("127.0.0.1:0")
                .unwrap_err()
                .contains("1 to 65535")
        );
        assert!(
            parse_listen("localhost:80")
                .unwrap_err()
                .contains("IP address")
        );
        assert!(parse_listen("127.0.0.1").is_err());
    }

    #[test]
    fn weights_are_id_equals_weight_within_bounds() {
        assert_eq!(parse_weight("3=5").unwrap(), (3, 5));
        assert_eq!(parse_weight("7=256").unwrap(), (7, 256));
        assert!(parse_weight("3").unwrap_err().contains("ID=WEIGHT"));
        assert!(parse_weight("0=1").unwrap_err().contains("server id"));
        assert!(parse_weight("3=0").unwrap_err().contains("1 to 256"));
        assert!(parse_weight("3=257").unwrap_err().contains("1 to 256"));
        assert!(parse_weight("x=2").unwrap_err().contains("server id"));
    }

    #[test]
    fn servers_without_a_port_are_left_out_and_wildcards_become_loopback() {
        let servers = [
            server(3, "0.0.0.0:8003"),
            server(1, "127.0.0.1:8001"),
            server(2, "127.0.0.1:0"),
            server(4, ""),
            server(5, "[::]:8005"),
        ];
        let got = backends(&servers);
        let listed: Vec<(u32, String)> =
            got.iter().map(|b| (b.id, b.address.to_string())).collect();
        assert_eq!(
            listed,
            [
                (1, "127.0.0.1:8001".to_string()),
                (3, "127.0.0.1:8003".to_string()),
                (5, "[::1]:8005".to_string()),
            ]
        );
    }

    #[test]
    fn weights_must_name_servers_of_the_farm() {
        let mut settings = settings(Kind::Haproxy);
        settings.weights.insert(12, 3);
        let servers: Vec<Server> = (1..=10).chain([14]).map(|id| server(id, "")).collect();
        let error = check_weights(&settings, &servers).unwrap_err().to_string();
        assert!(error.contains("--weight 12=3"), "{error}");
        assert!(error.contains("1-10, 14"), "{error}");
        settings.weights = BTreeMap::from([(14, 3)]);
        check_weights(&settings, &servers).unwrap();
    }

    #[test]
    fn a_path_a_config_cannot_hold_is_refused_with_its_flag() {
        let error = check_path("--run-dir", Path::new("/tmp/my dir"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("--run-dir /tmp/my dir"), "{error}");
        check_path("--out", Path::new("/tmp/lb-1/haproxy.cfg")).unwrap();
    }

    #[test]
    fn a_change_names_the_servers_added_removed_and_moved() {
        let before = two_backends();
        let mut after = vec![before[1].clone()];
        after[0].address = "[::1]:9002".parse().unwrap();
        after.push(Backend {
            id: 11,
            address: "127.0.0.1:8011".parse().unwrap(),
        });
        assert_eq!(
            describe_change(&before, &after),
            "added server-11; removed server-1; moved server-2"
        );
    }

    #[test]
    fn the_end_of_a_long_complaint_is_kept() {
        let long = "x".repeat(5000) + "the reason";
        let words = last_words(long.as_bytes(), b"");
        assert_eq!(words.chars().count(), 1000);
        assert!(words.ends_with("the reason"));
        assert_eq!(last_words(b"  \n", b"on stdout\n"), "on stdout");
    }

    #[test]
    fn ids_are_shown_as_ranges() {
        assert_eq!(id_ranges([5, 1, 2, 3, 7, 8].into_iter()), "1-3, 5, 7-8");
        assert_eq!(id_ranges(std::iter::empty()), "");
    }
}
