//! `POST /simulate-load` really burns CPU and really holds memory, measured from
//! `/proc` for this very process (the node runs in it).
//!
//! This is its own test binary, so that no other test's work shows up in the
//! measurements; its tests run one at a time for the same reason.

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, assert_error, json, wait_for};
use farm_node_api::api::LoadStatus;
use farm_node_api::proc::{self, CpuMeter};
use http::Method;
use tokio::sync::Mutex;

/// Serialises the tests of this binary: each measures the whole process.
static MEASURING: Mutex<()> = Mutex::const_new(());

const MIB: u64 = 1024 * 1024;

/// CPU use of this process over a `window` that starts now, in percent of one core.
async fn measure_cpu(window: Duration) -> f64 {
    let mut meter = CpuMeter::new();
    meter.update(&proc::sample_self().unwrap(), Instant::now());
    tokio::time::sleep(window).await;
    meter
        .update(&proc::sample_self().unwrap(), Instant::now())
        .unwrap()
}

fn rss() -> u64 {
    proc::sample_self().unwrap().rss_bytes
}

#[tokio::test]
async fn load_burns_cpu_holds_memory_and_stops() {
    let _serial = MEASURING.lock().await;
    let node = TestNode::start(1).await;
    let rss_before = rss();

    let reply = node
        .send(
            Method::POST,
            "/simulate-load",
            Some(r#"{"cpu_percent": 100, "memory_mb": 64, "duration_seconds": 30}"#),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", json(&reply));
    let started: LoadStatus = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(started.cpu_percent, 100.0);
    assert_eq!(started.memory_mb, 64);
    assert_eq!(started.duration_seconds, 30);

    // The 202 comes once the memory is resident.
    let rss_loaded = rss();
    assert!(
        rss_loaded >= rss_before + 60 * MIB,
        "rss {} MiB -> {} MiB",
        rss_before / MIB,
        rss_loaded / MIB
    );

    // One full core, give or take a busy 2-core machine; idle is ~0.
    let cpu = measure_cpu(Duration::from_secs(1)).await;
    assert!(cpu >= 40.0, "cpu during load: {cpu:.1}%");

    // The runtime keeps serving while loaded.
    let health = node
        .client
        .health(&node.addr, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(health < Duration::from_secs(1), "{health:?}");

    // The node's own gauge sees it too (its sampler runs every second).
    wait_for(
        "the node to report its CPU load",
        Duration::from_secs(5),
        || async { (node.metrics().await.cpu_percent >= 40.0).then_some(()) },
    )
    .await;
    let reported = node.metrics().await.simulated_load.expect("load reported");
    assert_eq!(reported.memory_mb, 64);

    // A second load is turned away and the first goes on.
    let second = node
        .send(
            Method::POST,
            "/simulate-load",
            Some(r#"{"cpu_percent": 10, "duration_seconds": 5}"#),
        )
        .await;
    assert_error(&second, 409, "already running");
    let active: LoadStatus = serde_json::from_value(json(&second)["active"].clone()).unwrap();
    assert_eq!(active.cpu_percent, 100.0);
    assert_eq!(active.memory_mb, 64);
    assert!(active.remaining_seconds > 0.0 && active.remaining_seconds < 30.0);

    // DELETE stops it: the memory goes back and the CPU falls.
    let stopped = node.send(Method::DELETE, "/simulate-load", None).await;
    assert_eq!(stopped.status, 200);
    let stopped: LoadStatus = serde_json::from_slice(&stopped.body).unwrap();
    assert_eq!(stopped.cpu_percent, 100.0);
    wait_for(
        "the load's memory to be freed",
        Duration::from_secs(5),
        || async { (rss() + 40 * MIB <= rss_loaded).then_some(()) },
    )
    .await;
    let cpu = measure_cpu(Duration::from_millis(500)).await;
    assert!(cpu < 30.0, "cpu after DELETE: {cpu:.1}%");
    assert_eq!(node.metrics().await.simulated_load, None);
    assert_error(
        &node.send(Method::DELETE, "/simulate-load", None).await,
        404,
        "no simulated load",
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn load_ends_by_itself_and_frees_the_slot() {
    let _serial = MEASURING.lock().await;
    let node = TestNode::start(1).await;
    let body = r#"{"cpu_percent": 20, "duration_seconds": 1}"#;
    let reply = node.send(Method::POST, "/simulate-load", Some(body)).await;
    assert_eq!(reply.status, 202);
    wait_for("the load to end", Duration::from_secs(5), || async {
        node.metrics().await.simulated_load.is_none().then_some(())
    })
    .await;
    // The slot is free again.
    let reply = node.send(Method::POST, "/simulate-load", Some(body)).await;
    assert_eq!(reply.status, 202);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_the_load() {
    let _serial = MEASURING.lock().await;
    let node = TestNode::start(1).await;
    let reply = node
        .send(
            Method::POST,
            "/simulate-load",
            Some(r#"{"cpu_percent": 100, "duration_seconds": 60}"#),
        )
        .await;
    assert_eq!(reply.status, 202);
    let threads_loaded = proc::sample_self().unwrap().threads;
    node.stop().await.unwrap();
    wait_for(
        "the burner thread to exit",
        Duration::from_secs(5),
        || async { (proc::sample_self().unwrap().threads < threads_loaded).then_some(()) },
    )
    .await;
    let cpu = measure_cpu(Duration::from_millis(500)).await;
    assert!(cpu < 30.0, "cpu after shutdown: {cpu:.1}%");
}

/// `/data` serves its zeros without making them resident: the 10 MiB payload costs the
/// node (this process) no RSS, however often it is read.
#[tokio::test]
async fn data_payload_costs_no_resident_memory() {
    let _serial = MEASURING.lock().await;
    let node = TestNode::start(1).await;
    let before = rss();
    let fetch = || async {
        let reply = node
            .client
            .request(
                Method::GET,
                &node.addr,
                "/data/10240",
                None,
                common::REQUEST_TIMEOUT,
                0,
            )
            .await
            .unwrap();
        assert_eq!(reply.body_len, 10 * MIB);
    };
    for _ in 0..3 {
        fetch().await;
    }
    let grown = rss().saturating_sub(before);
    // Connection buffers and the like, but far from the 10 MiB payload.
    assert!(grown < 4 * MIB, "rss grew by {} KiB", grown / 1024);
    node.stop().await.unwrap();
}
