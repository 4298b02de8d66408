//! The node's routes, over real HTTP: happy paths, every kind of bad input, counting,
//! and the client's error kinds.

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, assert_error, json, raw, wait_for};
use farm_node_api::api::{DelayReply, LoadStatus, NodeInfo};
use farm_node_api::client::{ClientError, NodeClient};
use farm_node_api::faults::{AbortFault, FaultProfile, FaultWhen, HealthFault, StatusWeight};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn root_reports_identity_and_version() {
    let node = TestNode::start(7).await;
    let reply = node.get("/").await;
    assert_eq!(reply.status, 200);
    let info: NodeInfo = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(info.server_id, 7);
    assert_eq!(info.name, "server-7");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.requests_total, 1, "GET / counts itself");
    assert!(info.memory_rss_bytes > 0);
    assert!(info.uptime_seconds >= 0.0);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn health_is_prebuilt_json() {
    let node = TestNode::start(3).await;
    let reply = node.get("/health").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        json(&reply),
        serde_json::json!({"status": "healthy", "server_id": 3})
    );
    node.client
        .health(&node.addr, Duration::from_secs(5))
        .await
        .unwrap();

    let (head, body) = raw(
        &node.addr,
        "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body, br#"{"status":"healthy","server_id":3}"#);
    node.stop().await.unwrap();
}

/// The `x-farm-server` values in a response head (lowercase, as [`raw`] returns it).
fn server_headers(head: &str) -> Vec<&str> {
    head.lines()
        .filter_map(|line| line.strip_prefix("x-farm-server:"))
        .map(str::trim)
        .collect()
}

/// One request on a connection of its own; its status line and the `x-farm-server` values.
async fn signed(addr: &str, method: &str, path: &str, extra: &str) -> (String, Vec<String>) {
    let request =
        format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{extra}\r\n");
    let (head, _) = raw(addr, &request).await;
    let status = head.lines().next().unwrap_or_default().to_owned();
    let servers = server_headers(&head)
        .into_iter()
        .map(String::from)
        .collect();
    (status, servers)
}

#[tokio::test]
async fn every_answer_names_its_server() {
    let node = TestNode::start(42).await;
    let probe = format!("{}: 1\r\n", farm_node_api::PROBE_HEADER);
    let cases = [
        ("GET", "/", "", "200"),
        ("GET", "/health", "", "200"),
        ("GET", "/health", probe.as_str(), "200"),
        ("HEAD", "/health", "", "200"),
        ("GET", "/ready", "", "200"),
        ("GET", "/metrics", "", "200"),
        ("GET", "/slow-endpoint?delay_ms=0", "", "200"),
        ("GET", "/data/1", "", "200"),
        ("GET", "/error/503", "", "503"),
        ("GET", "/slow-endpoint?delay_ms=x", "", "400"),
        ("GET", "/nope", "", "404"),
        ("DELETE", "/simulate-load", "", "404"),
        ("DELETE", "/metrics", "", "405"),
        ("POST", "/health", "content-length: 0\r\n", "405"),
    ];
    for (method, path, extra, status) in cases {
        let (line, servers) = signed(&node.addr, method, path, extra).await;
        assert!(
            line.starts_with(&format!("http/1.1 {status}")),
            "{method} {path}: {line}"
        );
        assert_eq!(servers, ["42"], "{method} {path}: {line}");
    }
    node.stop().await.unwrap();

    // Fault answers: an abort on every route but the watched ones, a failing /health, and a
    // header fault out of bounds.
    let mut node = TestNode::start_faulty(7, Default::default(), true).await;
    node.set_faults(&FaultProfile {
        abort: Some(AbortFault {
            when: FaultWhen::default(),
            statuses: vec![StatusWeight {
                status: 502,
                weight: 1,
            }],
        }),
        health: Some(HealthFault {
            when: FaultWhen::default(),
            status: 503,
        }),
        ..FaultProfile::default()
    })
    .await;
    let bad_header = format!("{}: -1\r\n", farm_node_api::api::FAULT_DELAY_HEADER);
    let cases = [
        ("/", "", "502"),
        ("/nope", "", "502"),
        ("/health", "", "503"),
        ("/ready", "", "200"),
        ("/", bad_header.as_str(), "400"),
    ];
    for (path, extra, status) in cases {
        let (line, servers) = signed(&node.addr, "GET", path, extra).await;
        assert!(
            line.starts_with(&format!("http/1.1 {status}")),
            "{path}: {line}"
        );
        assert_eq!(servers, ["7"], "{path}: {line}");
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn probes_are_not_counted() {
    let node = TestNode::start(1).await;
    assert_eq!(node.get("/").await.status, 200);
    assert_eq!(node.get("/health").await.status, 200);
    assert_eq!(node.get("/error/503").await.status, 503);
    assert_eq!(node.get("/data/1").await.body.len(), 1024);
    for _ in 0..3 {
        node.client
            .health(&node.addr, Duration::from_secs(5))
            .await
            .unwrap();
    }
    let first = node.metrics().await;
    let second = node.metrics().await;
    for m in [&first, &second] {
        assert_eq!(m.requests_total, 4, "{m:?}");
        assert_eq!(m.errors_total, 1, "{m:?}");
        assert_eq!(m.in_flight, 0, "{m:?}");
    }
    assert_eq!(
        first.http_tx_bytes, second.http_tx_bytes,
        "probe bodies not counted"
    );
    assert!(first.http_tx_bytes >= 1024, "{first:?}");
    assert_eq!(first.server_id, 1);
    assert_eq!(first.name, "server-1");
    assert!(first.memory_rss_bytes > 0);
    assert_eq!(first.simulated_load, None);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn request_bodies_count_as_received_bytes() {
    let node = TestNode::start(1).await;
    let body = r#"{"cpu_percent": "lots"}"#;
    assert_eq!(
        node.send(Method::POST, "/simulate-load", Some(body))
            .await
            .status,
        422
    );
    assert_eq!(node.metrics().await.http_rx_bytes, body.len() as u64);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn slow_endpoint_fixed_delay_shows_in_percentiles() {
    let node = TestNode::start(1).await;
    let reply = node.get("/slow-endpoint?delay_ms=200").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.latency >= Duration::from_millis(200),
        "{:?}",
        reply.latency
    );
    let delay: DelayReply = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(delay.delay_ms, 200);

    let m = node.metrics().await;
    assert_eq!(m.requests_total, 1);
    for p in [
        m.latency_p50_ms,
        m.latency_p90_ms,
        m.latency_p99_ms,
        m.latency_max_ms,
    ] {
        assert!((200.0..1000.0).contains(&p), "{m:?}");
    }

    // Fast requests pull the median down but the maximum stays, once the percentiles are
    // computed again (`/metrics` reuses them for 100 ms).
    for _ in 0..10 {
        node.get("/health").await;
    }
    let m = wait_for("the median to drop", Duration::from_secs(5), || async {
        let m = node.metrics().await;
        (m.latency_p50_ms < 100.0).then_some(m)
    })
    .await;
    assert!(m.latency_max_ms >= 200.0, "{m:?}");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn slow_endpoint_random_delay_stays_in_range() {
    let node = TestNode::start(1).await;
    for _ in 0..5 {
        let reply = node.get("/slow-endpoint?min_ms=10&max_ms=30").await;
        assert_eq!(reply.status, 200);
        let delay: DelayReply = serde_json::from_slice(&reply.body).unwrap();
        assert!((10..=30).contains(&delay.delay_ms), "{delay:?}");
        assert!(reply.latency >= Duration::from_millis(delay.delay_ms));
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn slow_endpoint_rejects_bad_queries_without_sleeping() {
    let node = TestNode::start(1).await;
    let cases = [
        ("delay_ms=30001", "delay_ms"),
        ("delay_ms=-1", "delay_ms"),
        ("delay_ms=abc", "delay_ms"),
        ("delay_ms=", "delay_ms"),
        ("min_ms=30001&max_ms=30001", "min_ms"),
        ("max_ms=30001", "max_ms"),
        ("min_ms=200&max_ms=100", "min_ms"),
        ("min_ms=6000", "max_ms"),
        ("delay_ms=5&min_ms=1", "cannot be combined"),
        ("delay=5", "delay"),
        ("delay_ms=1&delay_ms=2", "delay_ms"),
    ];
    for (query, needle) in cases {
        let start = Instant::now();
        let reply = node.get(&format!("/slow-endpoint?{query}")).await;
        assert_error(&reply, 400, needle);
        assert!(
            start.elapsed() < Duration::from_millis(900),
            "{query} slept"
        );
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn error_endpoint_answers_the_asked_code() {
    let node = TestNode::start(1).await;
    for code in [400u16, 404, 418, 500, 503, 599] {
        let reply = node.get(&format!("/error/{code}")).await;
        assert_eq!(reply.status, code);
        assert_eq!(
            json(&reply),
            serde_json::json!({"error": "simulated error", "code": code})
        );
    }
    let m = node.metrics().await;
    assert_eq!(m.errors_total, 3, "500, 503 and 599 are errors: {m:?}");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn error_endpoint_rejects_bad_codes() {
    let node = TestNode::start(1).await;
    for code in [
        "200",
        "399",
        "600",
        "abc",
        "-500",
        "+500",
        "5%2000",
        "99999999999999999999999",
    ] {
        let reply = node.get(&format!("/error/{code}")).await;
        assert_error(&reply, 400, "code");
    }
    assert_eq!(node.metrics().await.errors_total, 0);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn data_returns_exact_sizes() {
    let node = TestNode::start(1).await;
    for kb in [0usize, 1, 7, 1024, 10240] {
        let reply = node.get(&format!("/data/{kb}")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.len(), kb * 1024, "size_kb={kb}");
        assert_eq!(reply.body_len, (kb * 1024) as u64);
        assert!(!reply.truncated);
    }
    let (head, body) = raw(
        &node.addr,
        "GET /data/2 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );
    assert!(head.contains("content-length: 2048"), "{head}");
    assert_eq!(body.len(), 2048);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn data_rejects_bad_sizes() {
    let node = TestNode::start(1).await;
    for size in ["10241", "abc", "-1", "1.5", "18446744073709551617"] {
        let reply = node.get(&format!("/data/{size}")).await;
        assert_error(&reply, 400, "size_kb");
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn client_truncates_long_bodies() {
    let node = TestNode::start(1).await;
    let reply = node
        .client
        .request(
            Method::GET,
            &node.addr,
            "/data/64",
            None,
            Duration::from_secs(5),
            100,
        )
        .await
        .unwrap();
    assert_eq!(reply.body.len(), 100);
    assert_eq!(reply.body_len, 64 * 1024);
    assert!(reply.truncated);
    // The connection was drained, so the pool can reuse it.
    assert_eq!(node.get("/health").await.status, 200);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let node = TestNode::start(1).await;
    assert_error(&node.get("/nope").await, 404, "/nope");
    assert_error(&node.get("/error/").await, 404, "/error/");
    assert_error(&node.get("/data/1/2").await, 404, "/data/1/2");
    assert_error(&node.send(Method::POST, "/health", None).await, 405, "POST");
    assert_error(
        &node.send(Method::PUT, "/simulate-load", Some("{}")).await,
        405,
        "/simulate-load",
    );
    assert_error(&node.get("/simulate-load").await, 405, "GET");

    let (head, body) = raw(
        &node.addr,
        "DELETE /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 405"), "{head}");
    assert!(head.contains("allow: get,head"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("DELETE"));
    node.stop().await.unwrap();
}

/// Every rejected load leaves the node without a load.
#[tokio::test]
async fn simulate_load_rejects_bad_input_and_starts_nothing() {
    let node = TestNode::start(1).await;
    let cores = std::thread::available_parallelism().unwrap().get();
    let too_much_cpu = format!(r#"{{"cpu_percent": {}}}"#, 100 * cores + 1);
    let cases: Vec<(&str, u16, &str)> = vec![
        (&too_much_cpu, 400, "cpu_percent"),
        (r#"{"cpu_percent": -5}"#, 400, "cpu_percent"),
        (r#"{"memory_mb": 1025}"#, 400, "memory_mb"),
        (r#"{"duration_seconds": 0}"#, 400, "duration_seconds"),
        (r#"{"duration_seconds": 301}"#, 400, "duration_seconds"),
        (r#"{"cpu_percent": "high"}"#, 422, "cpu_percent"),
        (r#"{"memory_mb": -1}"#, 422, "memory_mb"),
        (r#"{"memory_mb": 1.5}"#, 422, "memory_mb"),
        (r#"{"duration_seconds": null}"#, 422, "duration_seconds"),
        (r#"{"cpu": 10}"#, 422, "cpu"),
        (r#"[1, 2]"#, 400, "JSON object"),
        ("null", 400, "JSON object"),
        (r#"{"cpu_percent": 10"#, 400, "EOF"),
        ("not json", 400, "JSON object"),
        (r#"{"cpu_percent": 10} trailing"#, 400, "trailing"),
    ];
    for (body, status, needle) in cases {
        let reply = node.send(Method::POST, "/simulate-load", Some(body)).await;
        assert_error(&reply, status, needle);
    }
    // Too large a body: 413, still JSON.
    let huge = format!(r#"{{"cpu_percent": 1{}}}"#, " ".repeat(100 * 1024));
    let reply = node.send(Method::POST, "/simulate-load", Some(&huge)).await;
    assert_error(&reply, 413, "length limit");

    assert_eq!(node.metrics().await.simulated_load, None);
    assert_error(
        &node.send(Method::DELETE, "/simulate-load", None).await,
        404,
        "no simulated load",
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn empty_load_body_means_defaults() {
    let node = TestNode::start(1).await;
    // A small load with no CPU or memory, so this test does not burn anything.
    let reply = node.send(Method::POST, "/simulate-load", None).await;
    assert_eq!(reply.status, 202);
    let status: LoadStatus = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(status.cpu_percent, 50.0);
    assert_eq!(status.memory_mb, 0);
    assert_eq!(status.duration_seconds, 10);
    assert!(status.remaining_seconds > 9.0 && status.remaining_seconds <= 10.0);
    let stopped = node.send(Method::DELETE, "/simulate-load", None).await;
    assert_eq!(stopped.status, 200);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_cuts_slow_requests_short() {
    let node = TestNode::start(1).await;
    let client = node.client.clone();
    let addr = node.addr.clone();
    let slow = tokio::spawn(async move {
        client
            .request(
                Method::GET,
                &addr,
                "/slow-endpoint?delay_ms=30000",
                None,
                Duration::from_secs(20),
                1024,
            )
            .await
    });
    wait_for(
        "the slow request to be in flight",
        Duration::from_secs(5),
        || async { (node.metrics().await.in_flight == 1).then_some(()) },
    )
    .await;
    let start = Instant::now();
    node.stop().await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let reply = slow.await.unwrap().unwrap();
    assert_error(&reply, 503, "shutting down");
}

#[tokio::test]
async fn client_error_kinds() {
    let client = NodeClient::new();

    // Connect: a port nobody listens on any more.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = client
        .health(&closed, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "connect", "{err}");
    let err = client
        .request(
            Method::GET,
            "bad host",
            "/",
            None,
            Duration::from_secs(1),
            10,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "connect", "{err}");

    // Timeout: the node is slower than the client's patience.
    let node = TestNode::start(1).await;
    let err = client
        .request(
            Method::GET,
            &node.addr,
            "/slow-endpoint?delay_ms=2000",
            None,
            Duration::from_millis(100),
            10,
        )
        .await
        .unwrap_err();
    assert_eq!(err, ClientError::Timeout(Duration::from_millis(100)));
    node.stop().await.unwrap();

    // Status, decode and io, from something that is not a node.
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake.local_addr().unwrap().to_string();
    let answers: [&[u8]; 3] = [
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nnot json",
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\ncut",
    ];
    let server = tokio::spawn(async move {
        for answer in answers {
            let (mut stream, _) = fake.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await.unwrap();
            stream.write_all(answer).await.unwrap();
        }
    });
    let timeout = Duration::from_secs(5);
    let err = client.health(&fake_addr, timeout).await.unwrap_err();
    assert_eq!(err, ClientError::Status(503));
    let err = client.metrics(&fake_addr, timeout).await.unwrap_err();
    assert_eq!(err.kind(), "decode", "{err}");
    let err = client.metrics(&fake_addr, timeout).await.unwrap_err();
    assert_eq!(err.kind(), "io", "{err}");
    server.await.unwrap();
}

#[tokio::test]
async fn exit_with_parent_returns_when_cancelled() {
    let token = CancellationToken::new();
    let watch = tokio::spawn(farm_node::exit_with_parent(token.clone()));
    token.cancel();
    tokio::time::timeout(Duration::from_secs(2), watch)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn run_rejects_an_invalid_config() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = farm_node::Config {
        server_id: 0,
        name: "server-0".into(),
        connections: Default::default(),
        fault_channel: None,
        allow_fault_headers: false,
    };
    let err = farm_node::run(config, listener, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("server_id"), "{err}");
}

/// `app()` served by plain `axum::serve` counts like `run` does (it has its own counting
/// middleware; `run` counts in its connection service).
#[tokio::test]
async fn app_router_counts_requests_but_not_probes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = farm_node::Config {
        server_id: 9,
        name: "server-9".into(),
        connections: Default::default(),
        fault_channel: None,
        allow_fault_headers: false,
    };
    let state = farm_node::AppState::new(&config);
    let stop = CancellationToken::new();
    let signal = stop.clone();
    let server = tokio::spawn(
        axum::serve(listener, farm_node::app(state.clone()))
            .with_graceful_shutdown(async move { signal.cancelled().await })
            .into_future(),
    );
    let client = NodeClient::new();
    let timeout = Duration::from_secs(5);
    for path in ["/health", "/error/500", "/data/1", "/nope"] {
        client
            .request(Method::GET, &addr, path, None, timeout, 4096)
            .await
            .unwrap();
    }
    client.health(&addr, timeout).await.unwrap();
    let (head, _) = raw(
        &addr,
        "GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert_eq!(
        server_headers(&head),
        ["9"],
        "the bare router names its server too"
    );
    let m = client.metrics(&addr, timeout).await.unwrap();
    assert_eq!(m.server_id, 9);
    assert_eq!(m.requests_total, 5, "{m:?}");
    assert_eq!(m.errors_total, 1, "{m:?}");
    assert!(m.http_tx_bytes >= 1024, "{m:?}");
    assert_eq!(state.metrics().requests_total, 5);
    stop.cancel();
    state.close();
    tokio::time::timeout(timeout, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A client that stops halfway through a request head cannot hold shutdown up: each
/// connection gets a bounded drain (5 s).
#[tokio::test]
async fn stalled_client_does_not_block_shutdown() {
    let node = TestNode::start(1).await;
    let mut stalled = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    stalled
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // An idle keep-alive connection, which closes at once on shutdown.
    assert_eq!(node.get("/health").await.status, 200);
    let start = Instant::now();
    node.stop().await.unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    // The stalled connection was dropped, not answered.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stalled.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "connection still open"
    );
}
