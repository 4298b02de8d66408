//! The gateway's latency benchmark: `GET /api/servers` through the gateway against
//! `ListServers` straight to the controller, with the same number of concurrent clients,
//! side by side in one run; optionally also the same JSON served as a static file by another
//! HTTP server (`--static-url`, nginx in `gateway/bench.sh`), as the floor this machine allows.
//!
//! Closed loop: each of `--clients` tasks sends its next request when the previous one is
//! answered, for `--seconds` per phase after a warm-up. HTTP goes over HTTP/1.1 keep-alive
//! connections (one per client, as browsers and load testers do) with the load-test engine's
//! client; gRPC goes over one HTTP/2 channel, as the gateway itself talks to the controller.
//! Latencies go into HDR histograms. Each phase checks every answer's status, and reads one
//! answer in full afterwards to report how many servers it lists.
//!
//! ```text
//! cargo run --release -p farm-gateway --example bench -- \
//!     --gateway http://127.0.0.1:8000 --controller http://127.0.0.1:50051 \
//!     [--static-url http://127.0.0.1:8080/servers.json] [--clients 64] [--seconds 10]
//! ```
//!
//! `gateway/bench.sh` starts a 50-server farm and runs this against it.

use std::time::{Duration, Instant};

use farm_controller::loadtest::http1::{Connection, EncodedRequest};
use farm_node::client::NodeClient;
use farm_proto::v1::ListServersRequest;
use farm_proto::v1::farm_service_client::FarmServiceClient;
use hdrhistogram::Histogram;
use tonic::transport::Channel;

struct Args {
    gateway: String,
    controller: String,
    static_url: Option<String>,
    clients: usize,
    seconds: u64,
    warmup: u64,
}

fn args() -> Args {
    let mut args = Args {
        gateway: "http://127.0.0.1:8000".into(),
        controller: "http://127.0.0.1:50051".into(),
        static_url: None,
        clients: 64,
        seconds: 10,
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
                outcome == Ok(200)
            }
        }
    }
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    latency: Histogram<u64>,
    errors: u64,
    elapsed: Duration,
    servers: usize,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Runs one closed-loop task per client of `target`, `clients` of them, for `duration`.
async fn closed_loop(
    name: &'static str,
    clients: usize,
    duration: Duration,
    target: &Target,
) -> Phase {
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
    let mut phase = Phase {
        name,
        latency: histogram(),
        errors: 0,
        elapsed: Duration::ZERO,
        servers: 0,
    };
    while let Some(done) = tasks.join_next().await {
        let (latency, errors) = done.expect("a client task");
        phase.latency.add(&latency).expect("same bounds");
        phase.errors += errors;
    }
    phase.elapsed = started.elapsed();
    phase.servers = target.servers_listed().await;
    phase
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
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

async fn run(args: Args) {
    let channel = tonic::transport::Endpoint::from_shared(args.controller.clone())
        .expect("a controller URL")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("the controller answers");
    let grpc = Target::Grpc(FarmServiceClient::new(channel));
    let rest = Target::http(&format!("{}/api/servers", args.gateway));

    let warmup = Duration::from_secs(args.warmup);
    let measure = Duration::from_secs(args.seconds);
    let mut phases = Vec::new();
    closed_loop("warm-up gRPC", args.clients, warmup, &grpc).await;
    let name = "gRPC ListServers (direct)";
    phases.push(closed_loop(name, args.clients, measure, &grpc).await);
    closed_loop("warm-up REST", args.clients, warmup, &rest).await;
    let name = "REST GET /api/servers";
    phases.push(closed_loop(name, args.clients, measure, &rest).await);
    if let Some(url) = &args.static_url {
        let reference = Target::http(url);
        closed_loop("warm-up static", args.clients, warmup, &reference).await;
        let name = "the same JSON as a static file (reference)";
        phases.push(closed_loop(name, args.clients, measure, &reference).await);
    }

    println!(
        "{} concurrent clients, closed loop, {} s per phase after {} s of warm-up",
        args.clients, args.seconds, args.warmup
    );
    println!();
    println!(
        "| path | servers listed | requests | errors | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for phase in &phases {
        let h = &phase.latency;
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            phase.name,
            phase.servers,
            h.len(),
            phase.errors,
            h.len() as f64 / phase.elapsed.as_secs_f64(),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
        );
    }
    let (direct, gateway) = (&phases[0], &phases[1]);
    let p99 = ms(gateway.latency.value_at_quantile(0.99));
    let added =
        ms(gateway.latency.value_at_quantile(0.5)) - ms(direct.latency.value_at_quantile(0.5));
    println!();
    println!(
        "REST p99: {p99:.3} ms (target <= 5 ms: {})",
        if p99 <= 5.0 { "met" } else { "MISSED" }
    );
    println!(
        "gateway adds at p50: {added:.3} ms (target <= 1 ms: {})",
        if added <= 1.0 { "met" } else { "MISSED" }
    );
}
