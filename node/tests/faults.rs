//! The fault engine over real HTTP: each fault's effect measured against a real node whose
//! fault channel the test writes to (the same reader as `--fault-channel stdin`), header
//! faults, and the stdin channel of the real `farm node` process.
//!
//! Every load loop is bounded in count and in time, and every bound on a measurement is wide
//! enough for a busy 2-core machine.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{REQUEST_TIMEOUT, TestNode, json, raw, wait_for};
use farm_node::connections::ConnectionLimits;
use farm_node_api::api::{
    FAULT_ABORT_HEADER, FAULT_DELAY_HEADER, FAULT_PERCENT_HEADER, FAULT_THROUGHPUT_HEADER,
};
use farm_node_api::client::{ClientError, NodeClient};
use farm_node_api::faults::{
    AbortFault, ConnectionFault, ConnectionFaultMode, FaultProfile, FaultWhen, HangFault,
    HealthFault, LatencyFault, LatencyShape, RateLimitFault, ReadinessFault, StatusWeight,
    ThroughputFault,
};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn every(seed: u64) -> FaultWhen {
    FaultWhen {
        seed,
        ..FaultWhen::default()
    }
}

fn abort(percent: f64, seed: u64) -> FaultProfile {
    FaultProfile {
        abort: Some(AbortFault {
            when: FaultWhen {
                percent,
                seed,
                ..FaultWhen::default()
            },
            statuses: vec![
                StatusWeight {
                    status: 500,
                    weight: 1,
                },
                StatusWeight {
                    status: 503,
                    weight: 2,
                },
            ],
        }),
        ..FaultProfile::default()
    }
}

async fn faulty(server_id: u32) -> TestNode {
    TestNode::start_faulty(server_id, ConnectionLimits::default(), false).await
}

/// The nearest-rank percentile `p` of `values` (sorted here).
fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort_unstable();
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_delay_with_jitter_gives_its_median() {
    let mut node = faulty(1).await;
    node.set_faults(&FaultProfile {
        latency: Some(LatencyFault {
            when: every(1),
            shape: LatencyShape::Fixed {
                delay_ms: 200,
                jitter_ms: 50,
            },
        }),
        ..FaultProfile::default()
    })
    .await;
    // 100 requests, 10 at a time.
    let mut workers = Vec::new();
    for _ in 0..10 {
        let (client, addr) = (node.client.clone(), node.addr.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..10 {
                let reply = client
                    .request(Method::GET, &addr, "/", None, REQUEST_TIMEOUT, 4096)
                    .await
                    .unwrap();
                assert_eq!(reply.status, 200);
                latencies.push(reply.latency);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let p50 = percentile(&mut latencies, 0.5);
    assert!(
        (Duration::from_millis(190)..=Duration::from_millis(260)).contains(&p50),
        "p50 {p50:?}"
    );
    assert!(latencies[0] >= Duration::from_millis(150), "{latencies:?}");
    // The watched routes are not delayed.
    let health = node.get("/health").await;
    assert!(health.latency < Duration::from_millis(150), "{health:?}");
    node.stop().await.unwrap();
}

/// Sends `count` requests one after the other; their statuses in order.
async fn statuses(node: &TestNode, count: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(count);
    for _ in 0..count {
        statuses.push(node.get("/").await.status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_hits_its_share_and_the_same_seed_repeats_on_another_node() {
    let (mut first, mut second) = (faulty(1).await, faulty(2).await);
    first.set_faults(&abort(30.0, 42)).await;
    second.set_faults(&abort(30.0, 42)).await;
    let (a, b) = tokio::join!(statuses(&first, 5000), statuses(&second, 5000));
    assert_eq!(a, b, "the same seed, the same sequence");
    let errors = a.iter().filter(|status| **status >= 500).count();
    assert!((1350..=1650).contains(&errors), "{errors} of 5000 aborted");
    assert!(a.iter().all(|status| [200, 500, 503].contains(status)));
    let fives = a.iter().filter(|status| **status == 503).count();
    assert!(
        fives > errors / 2,
        "503 weighs twice 500: {fives} of {errors}"
    );

    // Counted as requests and as errors, like any answer.
    let m = first.metrics().await;
    assert_eq!(m.requests_total, 5000, "{m:?}");
    assert_eq!(m.errors_total, errors as u64, "{m:?}");

    // The answer's shape.
    first.set_faults(&abort(100.0, 0)).await;
    let reply = first.get("/data/1").await;
    assert!([500, 503].contains(&reply.status));
    assert_eq!(
        json(&reply),
        serde_json::json!({"error": "fault: aborted", "code": reply.status})
    );
    // Another seed, another sequence.
    second.set_faults(&abort(30.0, 43)).await;
    assert_ne!(statuses(&second, 200).await, a[..200]);
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

fn hang(max_ms: u32) -> FaultProfile {
    FaultProfile {
        hang: Some(HangFault {
            when: every(0),
            max_ms,
        }),
        ..FaultProfile::default()
    }
}

/// Sends a request on a new connection and reads until the node closes it: the bytes read
/// and how long it took (bounded at 10 s).
async fn send_and_read_all(addr: &str, path: &str) -> (std::io::Result<Vec<u8>>, Duration) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let start = Instant::now();
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the node neither answered nor closed within 10 s");
    (read.map(|_| bytes), start.elapsed())
}

#[tokio::test]
async fn a_hang_times_the_client_out_and_its_bound_closes_the_connection() {
    // A short idle timeout: a hung request is in flight, and must not be cut as idle.
    let limits = ConnectionLimits {
        idle_timeout: Duration::from_millis(300),
        ..ConnectionLimits::default()
    };
    let mut node = TestNode::start_faulty(1, limits, false).await;
    node.set_faults(&hang(1500)).await;
    let timeout = Duration::from_millis(300);
    let outcome = node
        .client
        .request(Method::GET, &node.addr, "/", None, timeout, 4096)
        .await;
    assert_eq!(outcome, Err(ClientError::Timeout(timeout)));

    let (read, took) = send_and_read_all(&node.addr, "/").await;
    assert_eq!(read.unwrap(), b"", "closed without an answer");
    assert!(took >= Duration::from_millis(1400), "closed after {took:?}");
    assert_eq!(node.get("/health").await.status, 200);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_hang_ends_when_the_client_leaves_or_the_node_stops() {
    let mut node = faulty(1).await;
    node.set_faults(&hang(60_000)).await;
    let in_flight = |n: u32| {
        let node = &node;
        move || async move { (node.metrics().await.in_flight == n).then_some(()) }
    };
    let mut stream = TcpStream::connect(&node.addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    wait_for("the hung request", Duration::from_secs(5), in_flight(1)).await;
    drop(stream);
    wait_for("the hang to end", Duration::from_secs(5), in_flight(0)).await;

    let mut stream = TcpStream::connect(&node.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    wait_for("the hung request", Duration::from_secs(5), in_flight(1)).await;
    let start = Instant::now();
    node.stop().await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?} {rest:?}");
}

fn connection(mode: ConnectionFaultMode) -> FaultProfile {
    FaultProfile {
        connection: Some(ConnectionFault {
            when: every(0),
            mode,
        }),
        ..FaultProfile::default()
    }
}

#[tokio::test]
async fn a_reset_resets_and_a_close_closes_without_an_answer() {
    let mut node = faulty(1).await;
    node.set_faults(&connection(ConnectionFaultMode::Reset))
        .await;
    let (read, _) = send_and_read_all(&node.addr, "/").await;
    let err = read.expect_err("a reset, not an orderly close");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let client_error = NodeClient::new()
        .request(Method::GET, &node.addr, "/", None, REQUEST_TIMEOUT, 4096)
        .await
        .unwrap_err();
    assert_eq!(client_error.kind(), "io", "{client_error}");
    assert!(
        client_error.to_string().to_lowercase().contains("reset"),
        "{client_error}"
    );

    node.set_faults(&connection(ConnectionFaultMode::Close))
        .await;
    let (read, _) = send_and_read_all(&node.addr, "/data/1").await;
    assert_eq!(read.unwrap(), b"", "end of file without an answer");
    let client_error = NodeClient::new()
        .request(Method::GET, &node.addr, "/", None, REQUEST_TIMEOUT, 4096)
        .await
        .unwrap_err();
    assert_eq!(client_error.kind(), "io", "{client_error}");

    // The watched routes still answer.
    assert_eq!(node.get("/health").await.status, 200);
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_lets_its_rate_through() {
    let mut node = faulty(1).await;
    node.set_faults(&FaultProfile {
        rate_limit: Some(RateLimitFault {
            when: every(0),
            requests_per_second: 1000,
            status: 429,
            retry_after_seconds: 2,
        }),
        ..FaultProfile::default()
    })
    .await;
    // About 2,000 requests a second for 3 s: 16 senders, one request each every 8 ms.
    let drive = Duration::from_secs(3);
    let start = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (client, addr) = (node.client.clone(), node.addr.clone());
        senders.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(8));
            let (mut ok, mut refused, mut other) = (0u64, 0u64, 0u64);
            while start.elapsed() < drive {
                tick.tick().await;
                match client
                    .request(Method::GET, &addr, "/", None, REQUEST_TIMEOUT, 4096)
                    .await
                    .map(|reply| reply.status)
                {
                    Ok(200) => ok += 1,
                    Ok(429) => refused += 1,
                    _ => other += 1,
                }
            }
            (ok, refused, other)
        }));
    }
    let (mut ok, mut refused, mut other) = (0, 0, 0);
    for sender in senders {
        let (o, r, x) = sender.await.unwrap();
        (ok, refused, other) = (ok + o, refused + r, other + x);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = ok as f64 / elapsed;
    let offered = (ok + refused + other) as f64 / elapsed;
    let report = format!(
        "{ok} let through, {refused} refused, {other} other in {elapsed:.2} s: {rate:.0}/s of {offered:.0}/s offered"
    );
    assert_eq!(other, 0, "{report}");
    assert!(refused > 0, "{report}");
    assert!((950.0..=1050.0).contains(&rate), "{report}");

    eprintln!("rate limit: {report}");

    // A refusal's shape: a bucket of one, taken by the first request.
    node.set_faults(&FaultProfile {
        rate_limit: Some(RateLimitFault {
            when: every(0),
            requests_per_second: 1,
            status: 429,
            retry_after_seconds: 2,
        }),
        ..FaultProfile::default()
    })
    .await;
    let request = "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let (first, _) = raw(&node.addr, request).await;
    assert!(first.starts_with("http/1.1 200"), "{first}");
    let (head, body) = raw(&node.addr, request).await;
    assert!(head.starts_with("http/1.1 429"), "{head}");
    assert!(head.contains("retry-after: 2"), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "fault: rate limited", "code": 429})
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_throughput_fault_drips_the_body() {
    let mut node = faulty(1).await;
    node.set_faults(&FaultProfile {
        throughput: Some(ThroughputFault {
            when: FaultWhen {
                path_prefix: Some("/data".into()),
                ..every(0)
            },
            bytes_per_second: 5000,
        }),
        ..FaultProfile::default()
    })
    .await;
    let reply = node.get("/data/10").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 10 * 1024);
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(4)).contains(&reply.latency),
        "10 KiB at 5,000 B/s took {:?}",
        reply.latency
    );
    // Out of its scope, and on the watched routes, bodies go at full speed.
    let fast = node.get("/").await;
    assert!(
        fast.latency < Duration::from_millis(500),
        "{:?}",
        fast.latency
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_health_fault_fails_health_while_the_rest_serves() {
    let mut node = faulty(4).await;
    node.set_faults(&FaultProfile {
        health: Some(HealthFault {
            when: every(0),
            status: 503,
        }),
        ..FaultProfile::default()
    })
    .await;
    let reply = node.get("/health").await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        json(&reply),
        serde_json::json!({"status": "unhealthy", "server_id": 4})
    );
    assert_eq!(
        node.client
            .health(&node.addr, REQUEST_TIMEOUT)
            .await
            .unwrap_err(),
        ClientError::Status(503),
        "probes see it too"
    );
    assert_eq!(node.get("/").await.status, 200);
    assert_eq!(node.get("/ready").await.status, 200);
    node.set_faults(&FaultProfile::default()).await;
    assert_eq!(node.get("/health").await.status, 200);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_readiness_fault_drains_ready() {
    let mut node = faulty(6).await;
    let reply = node.get("/ready").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        json(&reply),
        serde_json::json!({"ready": true, "server_id": 6})
    );
    node.set_faults(&FaultProfile {
        readiness: Some(ReadinessFault { when: every(0) }),
        ..FaultProfile::default()
    })
    .await;
    let reply = node.get("/ready").await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        json(&reply),
        serde_json::json!({"ready": false, "server_id": 6})
    );
    assert_eq!(node.get("/health").await.status, 200);
    assert_eq!(node.get("/").await.status, 200);
    node.set_faults(&FaultProfile::default()).await;
    assert_eq!(node.get("/ready").await.status, 200);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn active_faults_are_reported_until_they_expire() {
    let mut node = faulty(1).await;
    assert!(node.metrics().await.faults_active.is_empty());
    let mut profile = abort(100.0, 0);
    profile.latency = Some(LatencyFault {
        when: FaultWhen {
            remaining_ms: Some(1500),
            ..every(0)
        },
        shape: LatencyShape::Fixed {
            delay_ms: 1,
            jitter_ms: 0,
        },
    });
    node.set_faults(&profile).await;
    node.wait_for_faults(&["abort"]).await;
    assert!(node.get("/").await.status >= 500);
    // A profile whose every fault has expired is gone.
    profile.abort.as_mut().unwrap().when.remaining_ms = Some(1000);
    profile.latency = None;
    node.set_faults(&profile).await;
    node.wait_for_faults(&[]).await;
    assert_eq!(node.get("/").await.status, 200);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_shutdown_cuts_a_fault_delay_short() {
    let mut node = faulty(1).await;
    node.set_faults(&FaultProfile {
        latency: Some(LatencyFault {
            when: every(0),
            shape: LatencyShape::Fixed {
                delay_ms: 30_000,
                jitter_ms: 0,
            },
        }),
        ..FaultProfile::default()
    })
    .await;
    let (client, addr) = (node.client.clone(), node.addr.clone());
    let slow = tokio::spawn(async move {
        client
            .request(Method::GET, &addr, "/", None, REQUEST_TIMEOUT, 4096)
            .await
    });
    wait_for("the delayed request", Duration::from_secs(5), || async {
        (node.metrics().await.in_flight == 1).then_some(())
    })
    .await;
    node.begin_stop();
    let reply = slow.await.unwrap().unwrap();
    assert_eq!(reply.status, 503);
    assert!(
        reply.latency < Duration::from_secs(5),
        "{:?}",
        reply.latency
    );
    node.stop().await.unwrap();
}

/// A request with these extra headers, on a connection of its own: status line and headers
/// (lowercase), body, and how long the exchange took.
async fn with_headers(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, Vec<u8>, Duration) {
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let start = Instant::now();
    let (head, body) = raw(addr, &request).await;
    (head, body, start.elapsed())
}

#[tokio::test]
async fn header_faults_apply_when_allowed() {
    let node = TestNode::start_faulty(1, ConnectionLimits::default(), true).await;
    let (head, _, took) = with_headers(&node.addr, "/", &[(FAULT_DELAY_HEADER, "300")]).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(took >= Duration::from_millis(300), "{took:?}");

    let (head, body, _) = with_headers(&node.addr, "/", &[(FAULT_ABORT_HEADER, "502")]).await;
    assert!(head.starts_with("http/1.1 502"), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "fault: aborted", "code": 502})
    );

    let (head, body, took) =
        with_headers(&node.addr, "/data/2", &[(FAULT_THROUGHPUT_HEADER, "2048")]).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body.len(), 2048);
    assert!(
        took >= Duration::from_millis(900),
        "2 KiB at 2 KiB/s took {took:?}"
    );

    let (head, _, _) = with_headers(
        &node.addr,
        "/",
        &[(FAULT_ABORT_HEADER, "502"), (FAULT_PERCENT_HEADER, "0")],
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "percent 0: {head}");
    let mut aborted = 0;
    for _ in 0..100 {
        let (head, _, _) = with_headers(
            &node.addr,
            "/",
            &[(FAULT_ABORT_HEADER, "502"), (FAULT_PERCENT_HEADER, "50")],
        )
        .await;
        aborted += usize::from(head.starts_with("http/1.1 502"));
    }
    assert!((30..=70).contains(&aborted), "{aborted} of 100 at 50 %");

    for (name, value) in [
        (FAULT_DELAY_HEADER, "soon"),
        (FAULT_DELAY_HEADER, "60001"),
        (FAULT_ABORT_HEADER, "302"),
        (FAULT_THROUGHPUT_HEADER, "0"),
        (FAULT_PERCENT_HEADER, "101"),
    ] {
        let (head, body, _) = with_headers(&node.addr, "/", &[(name, value)]).await;
        assert!(head.starts_with("http/1.1 400"), "{name}: {value}: {head}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(name), "{message}");
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn header_faults_are_ignored_when_not_allowed() {
    let node = faulty(1).await;
    for headers in [
        [(FAULT_ABORT_HEADER, "502"), (FAULT_DELAY_HEADER, "2000")],
        [(FAULT_ABORT_HEADER, "oops"), (FAULT_PERCENT_HEADER, "500")],
    ] {
        let (head, _, took) = with_headers(&node.addr, "/", &headers).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }
    node.stop().await.unwrap();
}

/// The `farm` binary next to this test's own (`target/<triple>/debug/farm` or
/// `target/debug/farm`), which `cargo build -p farm` (or `cargo test --workspace`) builds.
fn farm_bin() -> std::path::PathBuf {
    let test = std::env::current_exe().unwrap();
    // target/<...>/debug/deps/faults-<hash> -> target/<...>/debug/farm
    let bin = test
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("farm"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p farm`",
        bin.display()
    );
    let help = Command::new(&bin)
        .args(["node", "--help"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--fault-channel"),
        "{} predates the fault channel: rebuild it with `cargo build -p farm`",
        bin.display()
    );
    bin
}

/// A `farm node` process with a piped standard input, and its standard error collected.
struct NodeProcess {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl NodeProcess {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(farm_bin())
            .args(["node", "--id", "5", "--listen", "127.0.0.1:0"])
            .args(extra)
            // Info, to see the channel's end of input.
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut banner = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut banner)
            .unwrap();
        let addr = banner
            .trim()
            .strip_prefix("farm node: listening on ")
            .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
            .to_owned();
        let stderr = Arc::new(Mutex::new(String::new()));
        let collected = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut all = collected.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Self {
            child,
            addr,
            stderr,
        }
    }

    fn write(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn status_of(client: &NodeClient, addr: &str) -> u16 {
    client
        .request(Method::GET, addr, "/", None, REQUEST_TIMEOUT, 4096)
        .await
        .unwrap()
        .status
}

async fn wait_for_status(client: &NodeClient, addr: &str, status: u16) {
    wait_for(
        &format!("GET / to answer {status}"),
        Duration::from_secs(10),
        || async { (status_of(client, addr).await == status).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_stdin_channel_sets_clears_and_ignores_bad_lines() {
    let mut node = NodeProcess::start(&["--fault-channel", "stdin"]);
    let client = NodeClient::new();
    assert_eq!(status_of(&client, &node.addr).await, 200);
    let aborting = serde_json::to_string(&FaultProfile {
        abort: Some(AbortFault {
            when: every(0),
            statuses: vec![StatusWeight {
                status: 503,
                weight: 1,
            }],
        }),
        ..FaultProfile::default()
    })
    .unwrap();
    node.write(&aborting);
    wait_for_status(&client, &node.addr, 503).await;
    node.write("{}");
    wait_for_status(&client, &node.addr, 200).await;

    node.write(&aborting);
    wait_for_status(&client, &node.addr, 503).await;
    node.write("garbage");
    node.write(
        r#"{"abort":{"when":{"percent":150,"seed":0},"statuses":[{"status":503,"weight":1}]}}"#,
    );
    wait_for(
        "both bad lines to be logged",
        Duration::from_secs(10),
        || async {
            let stderr = node.stderr();
            (stderr.matches("fault profile line ignored").count() >= 2).then_some(stderr)
        },
    )
    .await;
    let stderr = node.stderr();
    assert!(stderr.contains("percent"), "the field is named: {stderr}");
    for _ in 0..20 {
        assert_eq!(status_of(&client, &node.addr).await, 503, "nothing changed");
    }
    // End of input keeps the profile.
    drop(node.child.stdin.take());
    wait_for("the channel to close", Duration::from_secs(10), || async {
        node.stderr().contains("fault channel closed").then_some(())
    })
    .await;
    assert_eq!(status_of(&client, &node.addr).await, 503);
    let metrics = client.metrics(&node.addr, REQUEST_TIMEOUT).await.unwrap();
    assert_eq!(metrics.faults_active, ["abort"]);
}

#[tokio::test]
async fn without_the_flag_stdin_is_never_read() {
    let mut node = NodeProcess::start(&[]);
    node.write(
        r#"{"abort":{"when":{"percent":100,"seed":0},"statuses":[{"status":503,"weight":1}]}}"#,
    );
    let client = NodeClient::new();
    // A node with the channel applies a line within milliseconds; this one, for 300 ms, not.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        assert_eq!(status_of(&client, &node.addr).await, 200);
    }
    assert!(
        client
            .metrics(&node.addr, REQUEST_TIMEOUT)
            .await
            .unwrap()
            .faults_active
            .is_empty()
    );
}
