//! The gateway's latency benchmark: `GET /api/servers` through the gateway against
//! `ListServers` straight to the controller, with the same number of concurrent clients,
//! side by side in one run.
//!
//! Closed loop: each of `--clients` tasks sends its next request when the previous one is
//! answered, for `--seconds` per phase after a warm-up. REST goes over HTTP/1.1 keep-alive
//! connections (one per client, as browsers and load testers do); gRPC goes over one HTTP/2
//! channel, as the gateway itself talks to the controller. Latencies go into HDR histograms.
//!
//! ```text
//! cargo run --release -p farm-gateway --example bench -- \
//!     --gateway http://127.0.0.1:8000 --controller http://127.0.0.1:50051 [--clients 64] [--seconds 10]
//! ```
//!
//! `gateway/bench.sh` starts a 50-server farm and runs this against it.

use std::time::{Duration, Instant};

use farm_proto::v1::ListServersRequest;
use farm_proto::v1::farm_service_client::FarmServiceClient;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

struct Args {
    gateway: String,
    controller: String,
    clients: usize,
    seconds: u64,
    warmup: u64,
}

fn args() -> Args {
    let mut args = Args {
        gateway: "http://127.0.0.1:8000".into(),
        controller: "http://127.0.0.1:50051".into(),
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
            "--clients" => args.clients = value.parse().expect("--clients is a number"),
            "--seconds" => args.seconds = value.parse().expect("--seconds is a number"),
            "--warmup" => args.warmup = value.parse().expect("--warmup is a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
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

/// Runs `clients` closed-loop tasks of `call` for `duration`; `call` returns how many
/// servers the answer listed, or None on an error.
async fn closed_loop<F, Fut>(
    name: &'static str,
    clients: usize,
    duration: Duration,
    call: F,
) -> Phase
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<usize>> + Send,
{
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let call = call.clone();
        tasks.spawn(async move {
            let mut latency = histogram();
            let (mut errors, mut servers) = (0, 0);
            while Instant::now() < until {
                let sent = Instant::now();
                match call().await {
                    Some(n) => {
                        servers = n;
                        let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        latency.saturating_record(us.max(1));
                    }
                    None => errors += 1,
                }
            }
            (latency, errors, servers)
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
        let (latency, errors, servers) = done.expect("a client task");
        phase.latency.add(&latency).expect("same bounds");
        phase.errors += errors;
        phase.servers = phase.servers.max(servers);
    }
    phase.elapsed = started.elapsed();
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
    let http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.clients)
        .build_http::<Empty<Bytes>>();
    let url: http::Uri = format!("{}/api/servers", args.gateway)
        .parse()
        .expect("a gateway URL");
    let rest = move || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let response = http.get(url).await.ok()?;
            if response.status() != 200 {
                return None;
            }
            let body = response.into_body().collect().await.ok()?.to_bytes();
            // Count the servers without a JSON parser: every server has one `"node_address"`.
            // A SIMD substring search: the client must not cost more than what it measures.
            Some(memchr::memmem::find_iter(&body, b"\"node_address\"").count())
        }
    };
    let channel = tonic::transport::Endpoint::from_shared(args.controller.clone())
        .expect("a controller URL")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("the controller answers");
    let client = FarmServiceClient::new(channel);
    let grpc = move || {
        let mut client = client.clone();
        async move {
            let response = client
                .list_servers(ListServersRequest::default())
                .await
                .ok()?;
            Some(response.into_inner().servers.len())
        }
    };

    let warmup = Duration::from_secs(args.warmup);
    let measure = Duration::from_secs(args.seconds);
    closed_loop("warm-up gRPC", args.clients, warmup, grpc.clone()).await;
    let direct = closed_loop("gRPC ListServers (direct)", args.clients, measure, grpc).await;
    closed_loop("warm-up REST", args.clients, warmup, rest.clone()).await;
    let gateway = closed_loop("REST GET /api/servers", args.clients, measure, rest).await;

    println!(
        "{} concurrent clients, closed loop, {} s per phase after {} s of warm-up",
        args.clients, args.seconds, args.warmup
    );
    println!();
    println!(
        "| path | servers listed | requests | errors | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for phase in [&direct, &gateway] {
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
