//! Load tests through a front, checked without a load balancer: the front is one server's own
//! node (a real HTTP server on loopback, the simplest front there is), so every answer must
//! be attributed to that server and the shares, fairness and drill figures are known in
//! advance. The real balancers (haproxy, nginx) are driven in `balancers.rs`. Also the bad
//! input a run through a front can carry: refused with the field named, nothing run.

mod common;
use common::{Farm, get, post_json, run_to_end};
use farm_proto::v1::{
    BackendWeight, FailoverAction, FailoverDrill, ListLoadTestsRequest, LoadTestSpec,
    RunLoadTestRequest,
};

/// A front that is server `id`'s node itself.
async fn node_as_front(farm: &Farm, id: u32) -> String {
    format!("http://{}", farm.node_address(id).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_through_a_front_is_attributed_to_the_server_that_gave_it() {
    let farm = Farm::up(3);
    let mut client = farm.client().await;
    let front = node_as_front(&farm, 2).await;
    let result = run_to_end(
        &mut client,
        LoadTestSpec {
            front_url: front.clone(),
            path: "/".into(),
            concurrency: 4,
            total_requests: 600,
            ..LoadTestSpec::default()
        },
    )
    .await;
    assert_eq!(result.requests, 600);
    assert!(
        result.per_server.is_empty(),
        "a run through a front has no per-target table"
    );
    let front_result = result.front.expect("a front result");
    assert_eq!(front_result.url, front);
    assert_eq!(front_result.unattributed, 0);
    let shares: Vec<(u32, u64, f64)> = front_result
        .backends
        .iter()
        .map(|b| (b.server_id, b.requests, b.share))
        .collect();
    assert_eq!(shares, [(1, 0, 0.0), (2, 600, 1.0), (3, 0, 0.0)]);
    assert!(
        front_result
            .backends
            .iter()
            .all(|b| (b.expected_share - 1.0 / 3.0).abs() < 1e-9)
    );
    assert_eq!(
        front_result.max_min_ratio, 0.0,
        "two servers got nothing: unfair"
    );
    assert!((front_result.max_deviation - 2.0).abs() < 1e-9);
    let counted: u64 = front_result.timeline.iter().map(|s| s.requests).sum();
    assert_eq!(counted, 600, "the per-second timeline holds every request");
    assert!(
        front_result
            .timeline
            .iter()
            .all(|s| s.backends.iter().all(|b| b.server_id == 2))
    );

    // Weights: judged against them instead of equal shares.
    let weighted = run_to_end(
        &mut client,
        LoadTestSpec {
            front_url: front.clone(),
            concurrency: 2,
            total_requests: 100,
            weights: vec![BackendWeight {
                server_id: 2,
                weight: 5,
            }],
            ..LoadTestSpec::default()
        },
    )
    .await
    .front
    .unwrap();
    assert_eq!(weighted.max_min_ratio, 1.0, "{weighted:?}");
    assert_eq!(weighted.max_deviation, 0.0);
}

/// A health drill on the front's own server: its /health fails while it keeps serving, so the
/// front (which checks nothing) never stops sending to it: nothing fails, the last answer
/// from it falls at the end of its time down, and it answers again right after it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_drill_takes_its_server_down_and_back_and_times_both() {
    let farm = Farm::up(2);
    let mut client = farm.client().await;
    let result = run_to_end(
        &mut client,
        LoadTestSpec {
            front_url: node_as_front(&farm, 1).await,
            path: "/".into(),
            rate_per_second: 200.0,
            concurrency: 8,
            duration_seconds: 4,
            failover: Some(FailoverDrill {
                server_id: 1,
                action: FailoverAction::Health as i32,
                at_ms: 1000,
                down_ms: 1500,
            }),
            ..LoadTestSpec::default()
        },
    )
    .await;
    let drill = result.front.unwrap().failover.expect("the drill's figures");
    assert!(drill.error.is_empty(), "{drill:?}");
    let action_at = drill.action_at_ms.expect("taken down");
    let back_at = drill.back_at_ms.expect("brought back");
    // Bounds wide enough for a slow machine; the order of events is what counts.
    assert!((1000.0..2000.0).contains(&action_at), "{drill:?}");
    assert!(
        back_at - action_at >= 1500.0 && back_at - action_at < 3500.0,
        "{drill:?}"
    );
    assert_eq!(drill.failed_requests, 0, "{drill:?}");
    assert_eq!(drill.failover_ms, None);
    let detection = drill.detection_ms.expect("it answered while down");
    assert!(
        detection > 1300.0 && detection <= back_at - action_at,
        "the front kept sending to it until it was back: {drill:?}"
    );
    assert!(
        drill.readmission_ms.expect("answered after") < 1000.0,
        "{drill:?}"
    );
    // The health fault is gone with the drill.
    let faults = get(&format!("{}/api/faults", farm.gateway_url()))
        .await
        .json();
    assert_eq!(faults["servers"], serde_json::json!([]), "{faults}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_front_is_refused_with_the_field_named_and_nothing_runs() {
    let farm = Farm::up(2);
    let mut client = farm.client().await;
    let own = node_as_front(&farm, 1).await;
    let drill = |server_id, at_ms, down_ms| FailoverDrill {
        server_id,
        action: FailoverAction::Kill as i32,
        at_ms,
        down_ms,
    };
    let cases: Vec<(LoadTestSpec, &str)> = vec![
        (
            LoadTestSpec {
                front_url: "http://10.1.2.3:80".into(),
                ..LoadTestSpec::default()
            },
            "farm's own network",
        ),
        (
            LoadTestSpec {
                front_url: "http://example.com".into(),
                ..LoadTestSpec::default()
            },
            "IP address or localhost",
        ),
        (
            LoadTestSpec {
                front_url: own.clone(),
                server_ids: vec![1],
                ..LoadTestSpec::default()
            },
            "do not combine",
        ),
        (
            LoadTestSpec {
                front_url: own.clone(),
                weights: vec![BackendWeight {
                    server_id: 9,
                    weight: 1,
                }],
                ..LoadTestSpec::default()
            },
            "spec.weights[0].server_id",
        ),
        (
            LoadTestSpec {
                front_url: own.clone(),
                weights: vec![BackendWeight {
                    server_id: 1,
                    weight: 1000,
                }],
                ..LoadTestSpec::default()
            },
            "spec.weights[0].weight",
        ),
        (
            LoadTestSpec {
                front_url: own.clone(),
                duration_seconds: 5,
                failover: Some(drill(1, 4000, 2000)),
                ..LoadTestSpec::default()
            },
            "within the run",
        ),
        (
            LoadTestSpec {
                front_url: own.clone(),
                duration_seconds: 5,
                failover: Some(drill(7, 1000, 1000)),
                ..LoadTestSpec::default()
            },
            "spec.failover.server_id",
        ),
        (
            LoadTestSpec {
                failover: Some(drill(1, 1000, 1000)),
                ..LoadTestSpec::default()
            },
            "need spec.front_url",
        ),
    ];
    for (spec, why) in cases {
        let status = client
            .run_load_test(RunLoadTestRequest { spec: Some(spec) })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{why}");
        assert!(
            status.message().contains(why),
            "{why}: {}",
            status.message()
        );
    }
    let kept = client
        .list_load_tests(ListLoadTestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert!(kept.is_empty(), "nothing ran: {kept:?}");
    let faults = get(&format!("{}/api/faults", farm.gateway_url()))
        .await
        .json();
    assert_eq!(faults["servers"], serde_json::json!([]), "{faults}");

    // The same through REST: a 400 naming the field.
    let reply = post_json(
        &format!("{}/api/load-tests", farm.gateway_url()),
        r#"{"front_url": "http://192.0.2.1:8080", "duration_seconds": 2}"#,
    )
    .await;
    let message = reply.expect_error(400, "invalid_argument");
    assert!(message.contains("spec.front_url"), "{message}");
    let reply = post_json(
        &format!("{}/api/load-tests", farm.gateway_url()),
        r#"{"front_url": "http://127.0.0.1:1", "failover": {"server_id": 1, "action": "melt", "at_ms": 1, "down_ms": 1}}"#,
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
}
