//! The gateway's latency benchmark: `GET /api/servers` through the gateway against
//! `ListServers` straight to the controller, with the same number of concurrent clients,
//! side by side in one run; optionally also the same JSON served as a static file by another
//! HTTP server (`--static-url`, nginx in `gateway/bench.sh`), as the floor this machine allows.
//!
//! Closed loop: each of `--clients` tasks sends its next request when the previous one is
//! answered. HTTP goes over HTTP/1.1 keep-alive connections (one per client, as browsers and
//! load testers do) with the load-test engine's client; gRPC goes over one HTTP/2 channel,
//! as the gateway itself talks to the controller. Latencies go into HDR histograms. Every
//! answer's status is checked; one answer per path is read in full to report how many
//! servers it lists.
//!
//! The paths take turns for `--rounds` rounds of `--seconds` each, after a warm-up of each.
//! On a shared VM the machine's speed moves from minute to minute (the hypervisor's steal),
//! and one long phase per path would compare them in different minutes. Each round reports
//! the steal and idle time during each phase; the summary gives the median round and every
//! round's samples pooled, and judges the targets on the median round.
//!
//! ```text
//! cargo run --release -p farm-controller --example gateway_bench -- \
//!     --gateway http://127.0.0.1:8000 --controller http://127.0.0.1:50051 \
//!     [--static-url http://127.0.0.1:8080/servers.json] [--clients 64] [--rounds 5] \
//!     [--seconds 5] [--warmup 2]
//! ```
//!
//! `gateway/bench.sh` starts a 50-server farm and runs this against it.

use std::time::{Duration, Instant};

use farm_controller::loadtest::http1::{Connection, EncodedRequest};
use farm_node_api::client::NodeClient;
use farm_proto::v1::ListServersRequest;
use farm_proto::v1::farm_service_client::FarmServiceClient;
use hdrhistogram::Histogram;
use tonic::transport::Channel;

struct Args {
    gateway: String,
    controller: String,
    static_url: Option<String>,
    clients: usize,
    rounds: usize,
    seconds: u64,
    warmup: u64,
}

fn args() -> Args {
    let mut args = Args {
        gateway: "http://127.0.0.1:8000".into(),
        controller: "http://127.0.0.1:50051".into(),
        static_url: None,
        clients: 64,
        rounds: 5,
        seconds: 5,
        warmup: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--gateway" => args.gateway = value,
            "--controller" => args.controller = value,
            "--static-url" => args.static_url = Some(value),
            "--clients" => args.clients = value.parse().expect("--clients is a number"),
            "--rounds" => {
                args.rounds = value.parse().expect("--rounds is a number");
                assert!(args.rounds > 0, "--rounds is at least 1");
            }
            "--seconds" => args.seconds = value.parse().expect("--seconds is a number"),
            "--warmup" => args.warmup = value.parse().expect("--warmup is a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// What a phase loads: the controller's gRPC API, or one URL over HTTP/1.1.
enum Target {
    Grpc(FarmServiceClient<Channel>),
    Http {
        address: String,
        path: String,
        request: EncodedRequest,
    },
}

impl Target {
    fn http(url: &str) -> Self {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (address, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        Target::Http {
            request: EncodedRequest::new(&http::Method::GET, path, address),
            address: address.to_string(),
            path: path.to_string(),
        }
    }

    fn client(&self) -> Client {
        match self {
            Target::Grpc(client) => Client::Grpc(client.clone()),
            Target::Http {
                address, request, ..
            } => Client::Http {
                address: address.clone(),
                request: request.clone(),
                connection: None,
            },
        }
    }

    /// How many servers one answer lists, read in full once: the phase's own requests
    /// check the status only, as a load generator does.
    async fn servers_listed(&self) -> usize {
        match self {
            Target::Grpc(client) => client
                .clone()
                .list_servers(ListServersRequest::default())
                .await
                .map_or(0, |r| r.into_inner().servers.len()),
            Target::Http { address, path, .. } => {
                let reply = NodeClient::new()
                    .request(
                        http::Method::GET,
                        address,
                        path,
                        None,
                        Duration::from_secs(5),
                        16 * 1024 * 1024,
                    )
                    .await;
                // Every server in the JSON has one `"node_address"`.
                reply.map_or(0, |r| {
                    memchr::memmem::find_iter(&r.body, b"\"node_address\"").count()
                })
            }
        }
    }
}

/// One client of a phase: a handle on the shared gRPC channel, or an HTTP/1.1 keep-alive
/// connection of its own from the load-test engine ([`farm_controller::loadtest::http1`]),
/// which is as lean as wrk: the load generator shares the machine with what it measures.
enum Client {
    Grpc(FarmServiceClient<Channel>),
    Http {
        address: String,
        request: EncodedRequest,
        connection: Option<Box<Connection>>,
    },
}

impl Client {
    /// One request; whether it was answered (200, for HTTP).
    async fn call(&mut self) -> bool {
        match self {
            Client::Grpc(client) => client
                .list_servers(ListServersRequest::default())
                .await
                .is_ok(),
            Client::Http {
                address,
                request,
                connection,
            } => {
                let open = match connection.take() {
                    Some(open) => open,
                    None => match Connection::open(address).await {
                        Ok(open) => open,
                        Err(_) => return false,
                    },
                };
                // A connection that cannot carry the next request is not given back; the
                // next call opens a new one.
                let (outcome, reusable) = open.exchange(request).await;
                *connection = reusable;
                outcome.is_ok_and(|answer| answer.status == 200)
            }
        }
    }
}

/// What one phase measured.
struct Phase {
    latency: Histogram<u64>,
    errors: u64,
    elapsed: Duration,
    host: Option<HostCpu>,
}

impl Phase {
    fn requests_per_second(&self) -> f64 {
        self.latency.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn ms_at(&self, quantile: f64) -> f64 {
        ms(self.latency.value_at_quantile(quantile))
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// How the machine's CPU time went while a phase ran, from `/proc/stat`: the share the
/// hypervisor gave to others (steal) and the share nobody used (idle). On a shared VM the
/// steal moves from minute to minute and every latency with it, so each phase reports it.
#[derive(Clone, Copy)]
struct HostCpu {
    steal: f64,
    idle: f64,
}

/// The machine's CPU counters (`cpu` line of `/proc/stat`), or `None` off Linux.
fn cpu_counters() -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    line.split_whitespace().map(|v| v.parse().ok()).collect()
}

impl HostCpu {
    /// Between two readings of [`cpu_counters`]: user nice system idle iowait irq softirq
    /// steal, in that order.
    fn between(before: &[u64], after: &[u64]) -> Option<Self> {
        let delta: Vec<f64> = (0..8)
            .map(|i| Some(after.get(i)?.saturating_sub(*before.get(i)?) as f64))
            .collect::<Option<_>>()?;
        let total: f64 = delta.iter().sum();
        (total > 0.0).then(|| Self {
            steal: 100.0 * delta[7] / total,
            idle: 100.0 * (delta[3] + delta[4]) / total,
        })
    }
}

/// Runs one closed-loop task per client of `target`, `clients` of them, for `duration`.
async fn closed_loop(clients: usize, duration: Duration, target: &Target) -> Phase {
    let counters = cpu_counters();
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let mut client = target.client();
        tasks.spawn(async move {
            let mut latency = histogram();
            let mut errors = 0;
            while Instant::now() < until {
                let sent = Instant::now();
                if client.call().await {
                    let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latency.saturating_record(us.max(1));
                } else {
                    errors += 1;
                }
            }
            (latency, errors)
        });
    }
    let (mut all, mut all_errors) = (histogram(), 0);
    while let Some(done) = tasks.join_next().await {
        let (latency, errors) = done.expect("a client task");
        all.add(&latency).expect("same bounds");
        all_errors += errors;
    }
    Phase {
        latency: all,
        errors: all_errors,
        elapsed: started.elapsed(),
        host: counters
            .zip(cpu_counters())
            .and_then(|(before, after)| HostCpu::between(&before, &after)),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

fn main() {
    let args = args();
    // One thread for the load generator: it shares the machine with what it measures.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(args));
}

/// A path under test, and its phases, one per round.
struct Path {
    name: &'static str,
    target: Target,
    servers: usize,
    phases: Vec<Phase>,
}

impl Path {
    fn new(name: &'static str, target: Target) -> Self {
        Self {
            name,
            target,
            servers: 0,
            phases: Vec::new(),
        }
    }

    fn median_of(&self, figure: impl Fn(&Phase) -> f64) -> f64 {
        median(self.phases.iter().map(figure).collect())
    }

    /// Every round's samples together.
    fn pooled(&self) -> Histogram<u64> {
        let mut all = histogram();
        for phase in &self.phases {
            all.add(&phase.latency).expect("same bounds");
        }
        all
    }
}

async fn run(args: Args) {
    let channel = tonic::transport::Endpoint::from_shared(args.controller.clone())
        .expect("a controller URL")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("the controller answers");
    let mut paths = vec![
        Path::new(
            "gRPC ListServers (direct)",
            Target::Grpc(FarmServiceClient::new(channel)),
        ),
        Path::new(
            "REST GET /api/servers",
            Target::http(&format!("{}/api/servers", args.gateway)),
        ),
    ];
    if let Some(url) = &args.static_url {
        paths.push(Path::new(
            "the same JSON as a static file (reference)",
            Target::http(url),
        ));
    }

    let warmup = Duration::from_secs(args.warmup);
    let measure = Duration::from_secs(args.seconds);
    for path in &mut paths {
        closed_loop(args.clients, warmup, &path.target).await;
        path.servers = path.target.servers_listed().await;
    }
    // The paths take turns, round after round, so that each round compares them on the
    // machine as it was in that minute.
    for _ in 0..args.rounds {
        for path in &mut paths {
            let phase = closed_loop(args.clients, measure, &path.target).await;
            path.phases.push(phase);
        }
    }

    println!(
        "{} concurrent clients, closed loop; {} rounds, the paths in turn, {} s each per round \
         after {} s of warm-up",
        args.clients, args.rounds, args.seconds, args.warmup
    );
    println!();
    println!("Each round (host steal and idle: the machine's CPU time during the phase):");
    println!();
    println!(
        "| round | path | requests | errors | req/s | p50 ms | p99 ms | host steal | host idle |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for round in 0..args.rounds {
        for path in &paths {
            let phase = &path.phases[round];
            let (steal, idle) = phase.host.map_or_else(
                || ("n/a".to_string(), "n/a".to_string()),
                |h| (format!("{:.0} %", h.steal), format!("{:.0} %", h.idle)),
            );
            println!(
                "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {steal} | {idle} |",
                round + 1,
                path.name,
                phase.latency.len(),
                phase.errors,
                phase.requests_per_second(),
                phase.ms_at(0.5),
                phase.ms_at(0.99),
            );
        }
    }
    println!();
    println!(
        "Over the rounds (the median round's figures; pooled: every round's samples together):"
    );
    println!();
    println!(
        "| path | servers listed | errors | median req/s | median p50 ms | median p99 ms | pooled p99 ms | pooled p99.9 ms | pooled max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let pooled: Vec<Histogram<u64>> = paths.iter().map(Path::pooled).collect();
    for (path, pooled) in paths.iter().zip(&pooled) {
        println!(
            "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            path.name,
            path.servers,
            path.phases.iter().map(|p| p.errors).sum::<u64>(),
            path.median_of(Phase::requests_per_second),
            path.median_of(|p| p.ms_at(0.5)),
            path.median_of(|p| p.ms_at(0.99)),
            ms(pooled.value_at_quantile(0.99)),
            ms(pooled.value_at_quantile(0.999)),
            ms(pooled.max()),
        );
    }
    let (direct, gateway) = (&paths[0], &paths[1]);
    let p99 = gateway.median_of(|p| p.ms_at(0.99));
    let pooled_p99 = ms(pooled[1].value_at_quantile(0.99));
    let rounds_met = gateway
        .phases
        .iter()
        .filter(|p| p.ms_at(0.99) <= 5.0)
        .count();
    let added = gateway.median_of(|p| p.ms_at(0.5)) - direct.median_of(|p| p.ms_at(0.5));
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!();
    println!(
        "REST p99, median round: {p99:.3} ms (target <= 5 ms: {}); pooled {pooled_p99:.3} ms \
         ({}); {rounds_met} of {} rounds within 5 ms",
        verdict(p99 <= 5.0),
        verdict(pooled_p99 <= 5.0),
        args.rounds,
    );
    println!(
        "gateway adds at p50, median rounds: {added:.3} ms (target <= 1 ms: {})",
        verdict(added <= 1.0)
    );
}
