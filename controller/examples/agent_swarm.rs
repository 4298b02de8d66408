//! A swarm of pretend agents: opens N `AgentService.Link` streams to a controller (1,000 by
//! default) and sends one plausible, varying metrics sample per stream every interval, so
//! the controller, the gateway and the dashboard can be measured with a big farm without
//! running a thousand node processes. Each stream says hello as server `first-id + i` with
//! node address `127.0.0.1:<node-base-port + id>` (nothing listens there: the swarm only
//! feeds metrics), then streams samples; commands are answered "not supported".
//!
//! ```text
//! cargo run --release -p farm-controller --example agent_swarm -- \
//!     --controller http://127.0.0.1:50051 --servers 1000 --duration-secs 600
//! ```
//!
//! Flags: `--controller URL` (default `http://127.0.0.1:50051`), `--servers N` (1 to
//! 10000, default 1000), `--first-id N` (default 1), `--interval-ms N` (100 to 60000,
//! default 1000), `--duration-secs N` (1 to 86400, default 600), `--node-base-port N`
//! (default 8000). It stops after the duration or on Ctrl-C, and prints a line every 10 s
//! while it runs (streams linked, samples sent, stream failures). The farm's token comes from
//! `FARM_TOKEN` (the controller refuses streams without it): `FARM_TOKEN=$(cat
//! ~/.local/share/farm/token)` for a farm started on this machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use farm_proto::v1::agent_service_client::AgentServiceClient;
use farm_proto::v1::link_request::Kind;
use farm_proto::v1::link_response;
use farm_proto::v1::{CommandResult, Hello, LinkRequest, MetricsSample, NodeState};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Streams per HTTP/2 connection: well under the usual concurrent-stream limits.
const STREAMS_PER_CONNECTION: u32 = 100;

#[derive(Debug, Clone)]
struct Options {
    controller: String,
    servers: u32,
    first_id: u32,
    interval: Duration,
    duration: Duration,
    node_base_port: u32,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        controller: "http://127.0.0.1:50051".into(),
        servers: 1000,
        first_id: 1,
        interval: Duration::from_secs(1),
        duration: Duration::from_secs(600),
        node_base_port: 8000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |raw: String, name: &str, range: std::ops::RangeInclusive<u64>| {
            raw.parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or(format!("{name} must be a number in {range:?}"))
        };
        match flag.as_str() {
            "--controller" => options.controller = value("--controller")?,
            "--servers" => {
                options.servers = number(value(&flag)?, &flag, 1..=10_000)? as u32;
            }
            "--first-id" => {
                options.first_id = number(value(&flag)?, &flag, 1..=1_000_000)? as u32;
            }
            "--interval-ms" => {
                options.interval =
                    Duration::from_millis(number(value(&flag)?, &flag, 100..=60_000)?);
            }
            "--duration-secs" => {
                options.duration = Duration::from_secs(number(value(&flag)?, &flag, 1..=86_400)?);
            }
            "--node-base-port" => {
                options.node_base_port = number(value(&flag)?, &flag, 1..=65_535)? as u32;
            }
            "-h" | "--help" => {
                return Err(
                    "usage: agent_swarm [--controller URL] [--servers N] [--first-id N] \
                            [--interval-ms N] [--duration-secs N] [--node-base-port N]"
                        .into(),
                );
            }
            other => return Err(format!("unknown flag {other}; see --help")),
        }
    }
    Ok(options)
}

#[derive(Default)]
struct Counters {
    linked: AtomicU64,
    samples: AtomicU64,
    failures: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse()?;
    let counters = Arc::new(Counters::default());
    let connections = options.servers.div_ceil(STREAMS_PER_CONNECTION);
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(
            Endpoint::from_shared(options.controller.clone())?
                .connect_timeout(Duration::from_secs(5))
                .connect_lazy(),
        );
    }
    let deadline = Instant::now() + options.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..options.servers {
        let channel = channels[(i / STREAMS_PER_CONNECTION) as usize].clone();
        let id = options.first_id + i;
        let (options, counters) = (options.clone(), Arc::clone(&counters));
        tasks.spawn(async move {
            // Keep going until the deadline: a stream that breaks is opened again.
            while Instant::now() < deadline {
                if let Err(error) = agent(channel.clone(), id, &options, &counters, deadline).await
                {
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                    if id == options.first_id {
                        eprintln!("agent_swarm: server {id}: {error}; retrying");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }
    eprintln!(
        "agent_swarm: {} servers (ids {}..={}) → {} over {connections} connections, a sample every {:?}, for {:?}",
        options.servers,
        options.first_id,
        options.first_id + options.servers - 1,
        options.controller,
        options.interval,
        options.duration
    );
    let started = Instant::now();
    let mut report = tokio::time::interval(Duration::from_secs(10));
    report.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = report.tick() => {
                eprintln!(
                    "agent_swarm: {:>5.0} s  streams linked {}  samples sent {}  stream failures {}",
                    started.elapsed().as_secs_f64(),
                    counters.linked.load(Ordering::Relaxed),
                    counters.samples.load(Ordering::Relaxed),
                    counters.failures.load(Ordering::Relaxed),
                );
            }
            done = tasks.join_next() => if done.is_none() { break },
        }
    }
    tasks.abort_all();
    println!(
        "agent_swarm: done after {:.0} s: {} samples sent, {} stream failures",
        started.elapsed().as_secs_f64(),
        counters.samples.load(Ordering::Relaxed),
        counters.failures.load(Ordering::Relaxed)
    );
    Ok(())
}

/// One pretend agent: hello, then a sample every interval until `deadline`.
async fn agent(
    channel: Channel,
    id: u32,
    options: &Options,
    counters: &Counters,
    deadline: Instant,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (tx, rx) = mpsc::channel(16);
    tx.send(LinkRequest {
        kind: Some(Kind::Hello(Hello {
            server_id: id,
            name: format!("server-{id}"),
            node_address: format!("127.0.0.1:{}", options.node_base_port + id),
            version: "swarm".into(),
            runtime: String::new(),
            instance: format!("swarm-{id}"),
        })),
    })
    .await?;
    let mut client = AgentServiceClient::new(channel);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Ok(token) = std::env::var(farm_proto::auth::TOKEN_ENV) {
        farm_proto::auth::Token::new(&token)?.authorize(&mut request);
    }
    let mut inbound = client.link(request).await?.into_inner();
    counters.linked.fetch_add(1, Ordering::Relaxed);
    let mut server = Simulated::new(id);
    let mut tick = tokio::time::interval(options.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => break Ok(()),
            _ = tick.tick() => {
                let sample = server.next(options.interval);
                if tx.send(LinkRequest { kind: Some(Kind::Sample(sample)) }).await.is_err() {
                    break Err("the stream closed".into());
                }
                counters.samples.fetch_add(1, Ordering::Relaxed);
            }
            message = inbound.message() => match message {
                Ok(Some(message)) => {
                    if let Some(link_response::Kind::Command(command)) = message.kind {
                        let answer = CommandResult {
                            id: command.id,
                            ok: false,
                            message: "a swarm agent has no node to act on".into(),
                        };
                        let _ = tx.send(LinkRequest { kind: Some(Kind::Result(answer)) }).await;
                    }
                }
                Ok(None) => break Err("the controller ended the stream".into()),
                Err(status) => break Err(status.into()),
            },
        }
    };
    counters.linked.fetch_sub(1, Ordering::Relaxed);
    result
}

/// A server's pretend life: a base CPU and memory of its own, traffic that rises and falls,
/// and now and then a CPU spike (the controller then calls it degraded).
struct Simulated {
    rng: SmallRng,
    started: Instant,
    cpu_base: f64,
    memory_base: f64,
    rate_base: f64,
    phase: f64,
    requests: u64,
    errors: u64,
    spike_left: u32,
}

impl Simulated {
    fn new(id: u32) -> Self {
        let mut rng = SmallRng::seed_from_u64(u64::from(id));
        Self {
            cpu_base: rng.random_range(2.0..35.0),
            memory_base: rng.random_range(24.0..160.0) * 1024.0 * 1024.0,
            rate_base: rng.random_range(0.0..60.0),
            phase: rng.random_range(0.0..std::f64::consts::TAU),
            rng,
            started: Instant::now(),
            requests: 0,
            errors: 0,
            spike_left: 0,
        }
    }

    fn next(&mut self, interval: Duration) -> MetricsSample {
        let t = self.started.elapsed().as_secs_f64();
        if self.spike_left == 0 && self.rng.random_bool(0.004) {
            self.spike_left = self.rng.random_range(5..30);
        }
        let wave = (t / 40.0 + self.phase).sin();
        let mut cpu = self.cpu_base * (1.0 + 0.4 * wave) + self.rng.random_range(-2.0..2.0);
        if self.spike_left > 0 {
            self.spike_left -= 1;
            cpu = self.rng.random_range(92.0..99.0);
        }
        let rate = (self.rate_base * (1.0 + 0.6 * wave)).max(0.0);
        let served = (rate * interval.as_secs_f64()).round() as u64;
        self.requests += served;
        self.errors += (0..served).filter(|_| self.rng.random_bool(0.01)).count() as u64;
        let memory = self.memory_base * (1.0 + 0.1 * wave) + self.rng.random_range(0.0..4e6);
        let p50 = self.rng.random_range(0.4..3.0) * (1.0 + cpu / 100.0);
        MetricsSample {
            timestamp_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            node_state: NodeState::Running as i32,
            cpu_percent: cpu.clamp(0.0, 100.0),
            memory_bytes: memory as u64,
            node_cpu_percent: (cpu * 0.9).clamp(0.0, 100.0),
            node_memory_bytes: (memory * 0.8) as u64,
            requests_total: self.requests,
            errors_total: self.errors,
            in_flight: self.rng.random_range(0..4),
            latency_p50_ms: p50,
            latency_p99_ms: p50 * self.rng.random_range(3.0..12.0),
            node_uptime_seconds: t,
            pids: 2,
            simulating_load: self.spike_left > 0,
            ..MetricsSample::default()
        }
    }
}
