//! The gateway's latency benchmark: `GET /api/servers` through the gateway against
//! `ListServers` straight to the controller, with the same number of concurrent clients,
//! side by side in one run; optionally also the same JSON served as a static file by another
//! HTTP server (`--static-url`, nginx in `gateway/bench.sh`), as the floor this machine allows.
//!
//! Closed loop: each of `--clients` tasks sends its next request when the previous one is
//! answered, for `--seconds` per phase after a warm-up. HTTP goes over HTTP/1.1 keep-alive
//! connections (one per client, as browsers and load testers do); gRPC goes over one HTTP/2
//! channel, as the gateway itself talks to the controller. Latencies go into HDR histograms.
//!
//! ```text
//! cargo run --release -p farm-gateway --example bench -- \
//!     --gateway http://127.0.0.1:8000 --controller http://127.0.0.1:50051 \
//!     [--static-url http://127.0.0.1:8080/servers.json] [--clients 64] [--seconds 10]
//! ```
//!
//! `gateway/bench.sh` starts a 50-server farm and runs this against it.

use std::time::{Duration, Instant};

use farm_proto::v1::ListServersRequest;
use farm_proto::v1::farm_service_client::FarmServiceClient;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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

/// One client of a phase: its own connection (HTTP) or a handle on the shared channel (gRPC).
enum Client {
    Http(HttpGet),
    Grpc(FarmServiceClient<Channel>),
}

impl Client {
    /// One request; how many servers the answer listed, or None on an error.
    async fn call(&mut self) -> Option<usize> {
        match self {
            Client::Http(get) => get.call().await,
            Client::Grpc(client) => {
                let response = client
                    .list_servers(ListServersRequest::default())
                    .await
                    .ok()?;
                Some(response.into_inner().servers.len())
            }
        }
    }
}

/// A keep-alive HTTP/1.1 GET of one URL, as lean as wrk's: the request is encoded once, the
/// answer is read into a buffer the client keeps, framed by its `Content-Length`. The load
/// generator shares the machine with what it measures, so it must cost as little as it can:
/// a general-purpose client (hyper's) took a third more CPU per request and showed in the
/// latencies it measured.
struct HttpGet {
    address: String,
    request: Vec<u8>,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

/// Longest response head the client accepts.
const MAX_HEAD: usize = 16 * 1024;

impl HttpGet {
    fn new(url: &str) -> Self {
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (address, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        Self {
            address: address.to_string(),
            request: format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").into_bytes(),
            stream: None,
            buffer: Vec::with_capacity(64 * 1024),
        }
    }

    async fn call(&mut self) -> Option<usize> {
        let answer = self.exchange().await;
        if answer.is_none() {
            // A broken or closed connection is replaced by the next request.
            self.stream = None;
        }
        answer
    }

    async fn exchange(&mut self) -> Option<usize> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.address).await.ok()?;
            stream.set_nodelay(true).ok()?;
            self.stream = Some(stream);
            self.buffer.clear();
        }
        let stream = self.stream.as_mut()?;
        stream.write_all(&self.request).await.ok()?;
        let (head, length, closing) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buffer).ok()? {
                httparse::Status::Complete(head) => {
                    if response.code != Some(200) {
                        return None;
                    }
                    let header = |name: &str| {
                        let found = response
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name));
                        found.and_then(|h| std::str::from_utf8(h.value).ok())
                    };
                    let length: usize = header("content-length")?.trim().parse().ok()?;
                    // Servers retire a keep-alive connection now and then (nginx after 1000
                    // requests by default); the next request opens a new one.
                    let closing = header("connection")
                        .is_some_and(|v| v.trim().eq_ignore_ascii_case("close"));
                    break (head, length, closing);
                }
                httparse::Status::Partial if self.buffer.len() < MAX_HEAD => {
                    read_some(stream, &mut self.buffer).await?;
                }
                httparse::Status::Partial => return None,
            }
        };
        while self.buffer.len() < head + length {
            read_some(stream, &mut self.buffer).await?;
        }
        // Count the servers without a JSON parser: every server has one `"node_address"`.
        let servers =
            memchr::memmem::find_iter(&self.buffer[head..head + length], b"\"node_address\"")
                .count();
        self.buffer.drain(..head + length);
        if closing {
            self.stream = None;
        }
        Some(servers)
    }
}

/// Appends what the socket has to `buffer`; None when it closed or failed.
async fn read_some(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    if buffer.capacity() - buffer.len() < 16 * 1024 {
        buffer.reserve(64 * 1024);
    }
    match stream.read_buf(buffer).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(()),
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

/// Runs one closed-loop task per client that `new_client` makes, for `duration`.
async fn closed_loop(
    name: &'static str,
    clients: usize,
    duration: Duration,
    new_client: impl Fn() -> Client,
) -> Phase {
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let mut client = new_client();
        tasks.spawn(async move {
            let mut latency = histogram();
            let (mut errors, mut servers) = (0, 0);
            while Instant::now() < until {
                let sent = Instant::now();
                match client.call().await {
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
    let channel = tonic::transport::Endpoint::from_shared(args.controller.clone())
        .expect("a controller URL")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("the controller answers");
    let grpc = FarmServiceClient::new(channel);
    let rest_url = format!("{}/api/servers", args.gateway);

    let warmup = Duration::from_secs(args.warmup);
    let measure = Duration::from_secs(args.seconds);
    let mut phases = Vec::new();
    let grpc_client = || Client::Grpc(grpc.clone());
    closed_loop("warm-up gRPC", args.clients, warmup, grpc_client).await;
    let name = "gRPC ListServers (direct)";
    phases.push(closed_loop(name, args.clients, measure, grpc_client).await);
    let rest_client = || Client::Http(HttpGet::new(&rest_url));
    closed_loop("warm-up REST", args.clients, warmup, rest_client).await;
    let name = "REST GET /api/servers";
    phases.push(closed_loop(name, args.clients, measure, rest_client).await);
    if let Some(url) = &args.static_url {
        let static_client = || Client::Http(HttpGet::new(url));
        closed_loop("warm-up static", args.clients, warmup, static_client).await;
        let name = "the same JSON as a static file (reference)";
        phases.push(closed_loop(name, args.clients, measure, static_client).await);
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
