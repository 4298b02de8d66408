//! Fault profiles against a real farm: each fault's effect measured by the farm's own load
//! engine, the profile kept by the controller through node and agent restarts, expiry, the
//! REST and command-line surfaces, and bad input that changes nothing.
//!
//! The tolerances hold on a busy 2-core machine; the figures a benchmark checks more tightly
//! are in BENCHMARKS.md.

mod common;

use std::time::{Duration, Instant};

use common::{Farm, agent_pid, eventually, farm_bin, get, http, node_pid, run_to_end, signal};
use farm_node_api::client::NodeClient;
use farm_proto::v1::farm_service_client::FarmServiceClient;
use farm_proto::v1::{
    self as pb, FaultProfile, FaultWhen, LoadTestResult, LoadTestSpec, ServerStatus,
};
use nix::sys::signal::Signal;
use tonic::transport::Channel;

fn targets(ids: &[u32]) -> Option<pb::FaultTargets> {
    Some(pb::FaultTargets {
        server_ids: ids.to_vec(),
        ..pb::FaultTargets::default()
    })
}

fn when(percent: f64, seed: u64) -> Option<FaultWhen> {
    Some(FaultWhen {
        percent: Some(percent),
        seed,
        ..FaultWhen::default()
    })
}

/// Sets `faults` on `ids` and checks that every server took them.
async fn set(client: &mut FarmServiceClient<Channel>, ids: &[u32], faults: FaultProfile) {
    let response = client
        .set_faults(pb::SetFaultsRequest {
            targets: targets(ids),
            faults: Some(faults),
        })
        .await
        .expect("SetFaults answers")
        .into_inner();
    assert!(
        response.outcomes.iter().all(|o| o.ok),
        "{:?}",
        response.outcomes
    );
}

async fn clear(client: &mut FarmServiceClient<Channel>, ids: &[u32]) {
    let response = client
        .clear_faults(pb::ClearFaultsRequest {
            targets: targets(ids),
            kinds: vec![],
        })
        .await
        .expect("ClearFaults answers")
        .into_inner();
    assert!(response.outcomes.iter().all(|o| o.ok), "{response:?}");
}

fn latency(delay_ms: u32, jitter_ms: u32) -> FaultProfile {
    FaultProfile {
        latency: Some(pb::LatencyFault {
            when: when(100.0, 1),
            delay_ms,
            jitter_ms,
            ..pb::LatencyFault::default()
        }),
        ..FaultProfile::default()
    }
}

fn on(id: u32, spec: LoadTestSpec) -> LoadTestSpec {
    LoadTestSpec {
        server_ids: vec![id],
        ..spec
    }
}

fn status_count(result: &LoadTestResult, code: u32) -> u64 {
    result
        .status_codes
        .iter()
        .filter(|s| s.code == code)
        .map(|s| s.count)
        .sum()
}

fn error_count(result: &LoadTestResult) -> u64 {
    result.errors.iter().map(|e| e.count).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_ms_latency_with_50_ms_jitter_has_its_median_at_200_ms() {
    let farm = Farm::up(2);
    let mut client = farm.client().await;
    set(&mut client, &[1], latency(200, 50)).await;
    let spec = LoadTestSpec {
        concurrency: 20,
        total_requests: 200,
        ..LoadTestSpec::default()
    };
    let result = run_to_end(&mut client, on(1, spec.clone())).await;
    let latency = result.latency.unwrap();
    println!(
        "latency 200±50 ms: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms over {} requests",
        latency.p50_ms, latency.p90_ms, latency.max_ms, result.requests
    );
    assert_eq!(result.successes, 200, "{result:?}");
    assert!(
        (190.0..=260.0).contains(&latency.p50_ms),
        "p50 {} ms",
        latency.p50_ms
    );
    assert!(latency.max_ms <= 300.0, "max {} ms", latency.max_ms);

    // The other server is untouched, and clearing brings server 1 back.
    let other = run_to_end(&mut client, on(2, spec.clone())).await;
    assert!(other.latency.unwrap().p50_ms < 100.0);
    clear(&mut client, &[1]).await;
    let cleared = run_to_end(&mut client, on(1, spec)).await;
    assert!(cleared.latency.unwrap().p50_ms < 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_30_percent_abort_fails_30_percent_and_the_same_on_every_server() {
    let farm = Farm::up(2);
    let mut client = farm.client().await;
    let abort = FaultProfile {
        abort: Some(pb::AbortFault {
            when: when(30.0, 42),
            statuses: vec![
                pb::StatusWeight {
                    status: 503,
                    weight: 20,
                },
                pb::StatusWeight {
                    status: 500,
                    weight: 5,
                },
            ],
        }),
        ..FaultProfile::default()
    };
    set(&mut client, &[1, 2], abort).await;
    let spec = LoadTestSpec {
        concurrency: 20,
        total_requests: 5000,
        ..LoadTestSpec::default()
    };
    let first = run_to_end(&mut client, on(1, spec.clone())).await;
    let second = run_to_end(&mut client, on(2, spec)).await;
    let share = first.failures as f64 / first.requests as f64 * 100.0;
    println!(
        "abort 30 %: {} of {} failed ({share:.2} %), 503: {}, 500: {}; second server {} failed",
        first.failures,
        first.requests,
        status_count(&first, 503),
        status_count(&first, 500),
        second.failures
    );
    assert_eq!(first.requests, 5000);
    assert!((27.0..=33.0).contains(&share), "{share} % failed");
    // 20:5 among the aborts: 503 four times as often as 500.
    let ratio = status_count(&first, 503) as f64 / status_count(&first, 500).max(1) as f64;
    assert!((3.0..=5.5).contains(&ratio), "503/500 = {ratio}");
    assert_eq!(
        (status_count(&first, 503), status_count(&first, 500)),
        (status_count(&second, 503), status_count(&second, 500)),
        "the same seed decides the same way on every server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_shows_as_client_timeouts_and_a_reset_as_connection_errors() {
    let farm = Farm::up(2);
    let mut client = farm.client().await;
    let hang = FaultProfile {
        hang: Some(pb::HangFault {
            when: when(100.0, 0),
            max_ms: 60_000,
        }),
        ..FaultProfile::default()
    };
    let reset = FaultProfile {
        connection: Some(pb::ConnectionFault {
            when: when(100.0, 0),
            mode: pb::ConnectionFaultMode::Reset as i32,
        }),
        ..FaultProfile::default()
    };
    set(&mut client, &[1], hang).await;
    set(&mut client, &[2], reset).await;
    let spec = LoadTestSpec {
        concurrency: 5,
        total_requests: 20,
        timeout_ms: 500,
        ..LoadTestSpec::default()
    };
    let hung = run_to_end(&mut client, on(1, spec.clone())).await;
    let reset = run_to_end(&mut client, on(2, spec)).await;
    println!("hang: {:?}; reset: {:?}", hung.errors, reset.errors);
    assert_eq!(hung.successes, 0);
    assert!(
        hung.errors
            .iter()
            .any(|e| e.kind == "timeout" && e.count == hung.requests),
        "{:?}",
        hung.errors
    );
    assert_eq!(reset.successes, 0);
    assert_eq!(error_count(&reset), reset.requests, "{:?}", reset.errors);
    assert!(
        reset.errors.iter().all(|e| e.kind != "timeout"),
        "a reset is no timeout: {:?}",
        reset.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throughput_cap_drips_the_body_and_a_close_ends_without_an_answer() {
    let farm = Farm::up(2);
    let mut client = farm.client().await;
    let drip = FaultProfile {
        throughput: Some(pb::ThroughputFault {
            when: when(100.0, 0),
            bytes_per_second: 5000,
        }),
        ..FaultProfile::default()
    };
    let close = FaultProfile {
        connection: Some(pb::ConnectionFault {
            when: when(100.0, 0),
            mode: pb::ConnectionFaultMode::Close as i32,
        }),
        ..FaultProfile::default()
    };
    set(&mut client, &[1], drip).await;
    set(&mut client, &[2], close).await;
    let dripped = run_to_end(
        &mut client,
        on(
            1,
            LoadTestSpec {
                path: "/data/10".into(),
                concurrency: 4,
                total_requests: 4,
                ..LoadTestSpec::default()
            },
        ),
    )
    .await;
    let closed = run_to_end(
        &mut client,
        on(
            2,
            LoadTestSpec {
                concurrency: 5,
                total_requests: 20,
                timeout_ms: 2000,
                ..LoadTestSpec::default()
            },
        ),
    )
    .await;
    let p50 = dripped.latency.unwrap().p50_ms;
    println!(
        "10 KiB at 5,000 B/s: p50 {p50:.0} ms; close: {:?}",
        closed.errors
    );
    assert_eq!(dripped.successes, 4, "{dripped:?}");
    assert!((1800.0..=3000.0).contains(&p50), "p50 {p50} ms");
    assert_eq!(closed.successes, 0);
    assert_eq!(error_count(&closed), closed.requests, "{:?}", closed.errors);
    assert!(
        closed.errors.iter().all(|e| e.kind != "timeout"),
        "a close is no timeout: {:?}",
        closed.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1000_per_second_rate_limit_lets_1000_per_second_through() {
    let farm = Farm::up(1);
    let mut client = farm.client().await;
    let limit = FaultProfile {
        rate_limit: Some(pb::RateLimitFault {
            when: when(100.0, 0),
            requests_per_second: 1000,
            status: 0,
            retry_after_seconds: 2,
        }),
        ..FaultProfile::default()
    };
    set(&mut client, &[1], limit).await;
    let result = run_to_end(
        &mut client,
        on(
            1,
            LoadTestSpec {
                path: "/".into(),
                rate_per_second: 1500.0,
                concurrency: 50,
                duration_seconds: 5,
                ..LoadTestSpec::default()
            },
        ),
    )
    .await;
    let passed = status_count(&result, 200) as f64 / result.elapsed_seconds;
    println!(
        "rate limit 1000/s at 1500/s offered: {passed:.0}/s answered 200, {} answered 429, {:.2} s",
        status_count(&result, 429),
        result.elapsed_seconds
    );
    assert!((950.0..=1050.0).contains(&passed), "{passed}/s passed");
    assert!(status_count(&result, 429) > 0);
    // A refused request says when to come back.
    let address = farm.node_address(1).await;
    let mut refused = None;
    for _ in 0..5000 {
        let reply = get(&format!("http://{address}/")).await;
        if reply.status == 429 {
            refused = Some(reply);
            break;
        }
    }
    assert_eq!(
        refused
            .expect("a burst meets the limit")
            .header("retry-after"),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_fault_turns_the_servers_status_within_2_s_while_it_keeps_serving() {
    let farm = Farm::up(2);
    let mut client = farm.client().await;
    let health = FaultProfile {
        health: Some(pb::HealthFault {
            when: when(100.0, 0),
            status: 503,
        }),
        ..FaultProfile::default()
    };
    let started = Instant::now();
    set(&mut client, &[1], health).await;
    let server = eventually(Duration::from_secs(10), "server 1 degraded", || {
        let mut client = client.clone();
        async move {
            let server = common::servers(&mut client).await.remove(0);
            common::is(&server, ServerStatus::Degraded).then_some(server)
        }
    })
    .await;
    let took = started.elapsed();
    println!(
        "health 503: status {} ({}) after {took:?}",
        server.status, server.status_reason
    );
    assert!(took <= Duration::from_secs(2), "{took:?}");
    let address = farm.node_address(1).await;
    assert_eq!(get(&format!("http://{address}/health")).await.status, 503);
    assert_eq!(get(&format!("http://{address}/")).await.status, 200);

    clear(&mut client, &[1]).await;
    eventually(Duration::from_secs(10), "server 1 healthy again", || {
        let mut client = client.clone();
        async move {
            let server = common::servers(&mut client).await.remove(0);
            common::is(&server, ServerStatus::Healthy).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_or_agent_gets_its_faults_back_and_a_fault_expires() {
    let farm = Farm::up(2);
    let mut client = farm.client().await;
    set(&mut client, &[1], latency(300, 0)).await;
    let address = farm.node_address(1).await;
    // A node being restarted refuses connections for a moment: that is not slow.
    let slow = |address: String| async move {
        let started = Instant::now();
        let reply = NodeClient::new()
            .request(
                http::Method::GET,
                &address,
                "/",
                None,
                Duration::from_secs(5),
                4096,
            )
            .await;
        reply.is_ok_and(|r| r.status == 200) && started.elapsed() >= Duration::from_millis(280)
    };
    assert!(slow(address.clone()).await, "the fault applies");

    // The node is killed and its agent starts it again: the agent hands it the profile.
    let node = node_pid(&farm, 1).expect("node 1 runs");
    signal(node, Signal::SIGKILL);
    eventually(Duration::from_secs(20), "a new node, slow", || {
        let (farm, address) = (&farm, address.clone());
        async move {
            let fresh = node_pid(farm, 1).is_some_and(|pid| pid != node);
            (fresh && slow(address).await).then_some(())
        }
    })
    .await;

    // The agent is killed and the runtime starts it again: the controller hands it the
    // profile when it connects.
    let agent = agent_pid(&farm, 1).expect("agent 1 runs");
    signal(agent, Signal::SIGKILL);
    // A new agent holds a new port for its node.
    eventually(Duration::from_secs(30), "a new agent, slow node", || {
        let farm = &farm;
        async move {
            let fresh = agent_pid(farm, 1).is_some_and(|pid| pid != agent);
            (fresh && slow(farm.node_address(1).await).await).then_some(())
        }
    })
    .await;

    // A fault with a duration clears itself, on the node and in the farm.
    let mut brief = latency(300, 0);
    brief
        .latency
        .as_mut()
        .unwrap()
        .when
        .as_mut()
        .unwrap()
        .duration_seconds = 2;
    set(&mut client, &[2], brief).await;
    let address = farm.node_address(2).await;
    assert!(slow(address.clone()).await);
    let listed = client
        .list_faults(pb::ListFaultsRequest {})
        .await
        .unwrap()
        .into_inner();
    let expires = listed.servers[1]
        .faults
        .as_ref()
        .unwrap()
        .latency
        .as_ref()
        .unwrap();
    assert!(expires.when.as_ref().unwrap().expires_at_ms > 0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!slow(address).await, "expired on the node");
    let listed = client
        .list_faults(pb::ListFaultsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .servers
            .iter()
            .map(|s| s.server_id)
            .collect::<Vec<_>>(),
        [1],
        "expired in the farm: {listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_sets_lists_and_clears_faults_per_server_and_in_bulk() {
    let farm = Farm::up(3);
    let base = format!("http://{}", farm.gateway_address());
    let json = [("content-type", "application/json")];

    let put = http(
        "PUT",
        &format!("{base}/api/servers/2/faults"),
        &json,
        br#"{"latency": {"delay_ms": 50, "when": {"duration_seconds": 600}}}"#,
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let body = put.json();
    assert_eq!(body["outcomes"][0]["ok"], true, "{body}");
    assert_eq!(body["servers"][0]["faults"]["latency"]["delay_ms"], 50);
    let one = get(&format!("{base}/api/servers/2/faults")).await.json();
    assert!(
        one["faults"]["latency"]["when"]["expires_at_ms"]
            .as_u64()
            .unwrap()
            > 0,
        "{one}"
    );
    let server = get(&format!("{base}/api/servers/2")).await.json();
    assert_eq!(
        server["server"]["faults"]["latency"]["delay_ms"], 50,
        "{server}"
    );

    // Every healthy server, then a seeded share of the farm.
    let bulk = common::post_json(
        &format!("{base}/api/faults"),
        r#"{"targets": {"status": "healthy"}, "faults": {"readiness": {}}}"#,
    )
    .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text());
    assert_eq!(bulk.json()["outcomes"].as_array().unwrap().len(), 3);
    let address = farm.node_address(3).await;
    assert_eq!(get(&format!("http://{address}/ready")).await.status, 503);
    let share = common::post_json(
        &format!("{base}/api/faults"),
        r#"{"targets": {"all": true, "share_percent": 34, "share_seed": 9}, "faults": {"health": {"status": 500}}}"#,
    )
    .await
    .json();
    assert_eq!(share["outcomes"].as_array().unwrap().len(), 1, "{share}");

    let listed = get(&format!("{base}/api/faults")).await.json();
    assert_eq!(listed["servers"].as_array().unwrap().len(), 3, "{listed}");

    let delete = http(
        "DELETE",
        &format!("{base}/api/servers/2/faults?kind=latency"),
        &[],
        b"",
    )
    .await
    .json();
    assert!(
        delete["servers"][0]["faults"]["latency"].is_null(),
        "{delete}"
    );
    assert!(
        !delete["servers"][0]["faults"]["readiness"].is_null(),
        "{delete}"
    );
    let cleared = common::post_json(
        &format!("{base}/api/faults/clear"),
        r#"{"targets": {"all": true}}"#,
    )
    .await;
    assert_eq!(cleared.status, 200, "{}", cleared.text());
    let listed = get(&format!("{base}/api/faults")).await.json();
    assert_eq!(listed["servers"], serde_json::json!([]));
    assert_eq!(get(&format!("http://{address}/ready")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_faults_are_refused_by_name_and_change_nothing() {
    let farm = Farm::up(1);
    let base = format!("http://{}", farm.gateway_address());
    let json = [("content-type", "application/json")];
    let faults_url = format!("{base}/api/servers/1/faults");

    let unknown = http("PUT", &faults_url, &json, br#"{"lag": {}}"#).await;
    assert!(
        unknown
            .expect_error(422, "unprocessable_entity")
            .contains("lag")
    );
    let unknown_field = http("PUT", &faults_url, &json, br#"{"latency": {"delay": 5}}"#).await;
    assert!(
        unknown_field
            .expect_error(422, "unprocessable_entity")
            .contains("delay")
    );
    for (body, field) in [
        (
            r#"{"abort": {"when": {"percent": 150}}}"#,
            "faults.abort.when.percent",
        ),
        (
            r#"{"latency": {"delay_ms": 60001}}"#,
            "faults.latency.delay_ms",
        ),
        (r#"{"hang": {"max_ms": 600001}}"#, "faults.hang.max_ms"),
        (
            r#"{"rate_limit": {"requests_per_second": 0}}"#,
            "faults.rate_limit.requests_per_second",
        ),
        (
            r#"{"latency": {"delay_ms": 5, "when": {"duration_seconds": 86401}}}"#,
            "faults.latency.when.duration_seconds",
        ),
        (r#"{"partition": {}}"#, "faults.partition"),
        (r#"{}"#, "faults"),
    ] {
        let reply = http("PUT", &faults_url, &json, body.as_bytes()).await;
        let message = reply.expect_error(400, "invalid_argument");
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let unknown_server = http(
        "PUT",
        &format!("{base}/api/servers/9/faults"),
        &json,
        br#"{"readiness": {}}"#,
    )
    .await;
    unknown_server.expect_error(404, "not_found");
    let no_targets = common::post_json(
        &format!("{base}/api/faults"),
        r#"{"targets": {}, "faults": {"readiness": {}}}"#,
    )
    .await;
    assert!(
        no_targets
            .expect_error(400, "invalid_argument")
            .contains("exactly one of server_ids, status and all")
    );

    let listed = get(&format!("{base}/api/faults")).await.json();
    assert_eq!(listed["servers"], serde_json::json!([]), "nothing changed");
    // The node's port offers no way to change its faults.
    let address = farm.node_address(1).await;
    for path in ["/faults", "/fault-profile"] {
        let reply = http(
            "POST",
            &format!("http://{address}{path}"),
            &json,
            br#"{"abort": {"when": {"percent": 100, "seed": 0}, "statuses": [{"status": 503, "weight": 1}]}}"#,
        )
        .await;
        assert_eq!(reply.status, 404, "{path}");
    }
    assert_eq!(get(&format!("http://{address}/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_sets_lists_and_clears_faults() {
    let farm = Farm::up(2);
    let farm_cli = |args: &[&str]| {
        let output = std::process::Command::new(farm_bin())
            .arg("fault")
            .args(args)
            .args(["--controller", &farm.controller_url()])
            .env("FARM_DATA_DIR", &farm.data_dir)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, out) = farm_cli(&[
        "set",
        "--servers",
        "1,2",
        "--abort",
        "503:20,500:5",
        "--percent",
        "30",
        "--seed",
        "7",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("abort 503:20,500:5 30%"), "{out}");
    let (ok, out) = farm_cli(&[
        "set",
        "--servers",
        "2",
        "--latency",
        "100",
        "--jitter",
        "10",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = farm_cli(&["list"]);
    assert!(ok, "{out}");
    assert!(out.contains("latency 100±10ms"), "{out}");
    assert!(out.contains("2 servers have faults"), "{out}");
    let status = std::process::Command::new(farm_bin())
        .args(["status", "--controller", &farm.controller_url()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    let row = |id: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("1").contains(" abort "), "{table}");
    assert!(row("2").contains(" latency,abort "), "{table}");
    let (ok, out) = farm_cli(&["clear", "--servers", "2", "--kind", "abort"]);
    assert!(ok, "{out}");
    let (ok, out) = farm_cli(&[
        "set",
        "--servers",
        "1",
        "--abort",
        "503",
        "--percent",
        "150",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("faults.abort.when.percent"), "{out}");
    let (ok, out) = farm_cli(&["clear", "--all"]);
    assert!(ok, "{out}");
    let (_, out) = farm_cli(&["list"]);
    assert!(out.contains("0 servers have faults"), "{out}");
}
