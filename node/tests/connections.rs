//! A node's connections are bounded: past its cap a connection is closed at once and counted,
//! and a connection that sits idle, or sends its request too slowly to complete (slowloris),
//! is cut after the idle timeout. A response slow on purpose is never cut.

mod common;

use std::time::{Duration, Instant};

use common::TestNode;
use farm_node::connections::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limits(max_connections: usize, idle_ms: u64) -> ConnectionLimits {
    ConnectionLimits {
        max_connections,
        idle_timeout: Duration::from_millis(idle_ms),
    }
}

/// Reads until the node closes the connection; how long that took (bounded at 10 s).
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the node never closed the connection");
    started.elapsed()
}

#[tokio::test]
async fn an_idle_connection_is_cut_after_the_idle_timeout() {
    let node = TestNode::start_with(1, limits(64, 300)).await;
    let mut idle = TcpStream::connect(&node.addr).await.unwrap();
    let took = closed_after(&mut idle).await;
    assert!(
        took >= Duration::from_millis(250),
        "cut too early: {took:?}"
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_sent_too_slowly_is_cut() {
    let node = TestNode::start_with(1, limits(64, 300)).await;
    let mut slow = TcpStream::connect(&node.addr).await.unwrap();
    let dripping = async {
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890" {
            if slow.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    let cut = tokio::time::timeout(Duration::from_secs(10), dripping)
        .await
        .expect("bounded");
    assert!(cut, "a header that never ends is cut while it drips");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_response_is_not_cut() {
    let node = TestNode::start_with(1, limits(64, 200)).await;
    let reply = node.get("/slow-endpoint?delay_ms=900").await;
    assert_eq!(reply.status, 200);
    // And a keep-alive connection that keeps asking stays open past the timeout.
    for _ in 0..6 {
        assert_eq!(node.get("/health").await.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop().await.unwrap();
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_and_counted() {
    let node = TestNode::start_with(1, limits(4, 60_000)).await;
    // The test's own client holds one connection for /metrics.
    assert_eq!(node.metrics().await.connections_refused_total, 0);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&node.addr).await.unwrap());
    }
    for _ in 0..5 {
        let mut extra = TcpStream::connect(&node.addr).await.unwrap();
        let took = closed_after(&mut extra).await;
        assert!(
            took < Duration::from_secs(2),
            "refused at once, took {took:?}"
        );
    }
    let metrics = node.metrics().await;
    assert_eq!(metrics.connections_refused_total, 5, "{metrics:?}");
    assert_eq!(metrics.connections_open, 4, "{metrics:?}");
    drop(held);
    node.stop().await.unwrap();
}
