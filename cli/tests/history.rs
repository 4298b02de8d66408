//! The farm's history against a real farm: runs, events and metrics survive a controller
//! killed with SIGKILL; a run that was under way is kept as interrupted; ids go on; two farms
//! side by side keep theirs apart; and a file that cannot be a history stops the start with
//! its cause named, untouched.

mod common;

use std::time::Duration;

use common::{Farm, eventually, farm_bin, unique_dir};
use farm_proto::v1 as pb;
use nix::sys::signal::Signal;

async fn runs(farm: &Farm) -> Vec<pb::RunSummary> {
    farm.client()
        .await
        .list_runs(pb::ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .runs
}

async fn events(farm: &Farm) -> Vec<pb::FarmEvent> {
    farm.client()
        .await
        .list_events(pb::ListEventsRequest {
            limit: 1000,
            ..pb::ListEventsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

#[tokio::test]
async fn runs_events_and_metrics_outlive_a_killed_controller() {
    let history = unique_dir("history").join("farm.sqlite");
    let history_arg = history.to_str().unwrap().to_string();
    let mut first = Farm::up_with(3, &["--history", &history_arg], Duration::from_secs(30));
    let mut client = first.client().await;

    // A finished load test, a fault, and a load test still running when the controller dies.
    let finished = common::run_to_end(
        &mut client,
        pb::LoadTestSpec {
            total_requests: 60,
            rate_per_second: 100.0,
            ..pb::LoadTestSpec::default()
        },
    )
    .await;
    assert_eq!(finished.requests, 60);
    client
        .set_faults(first.authorized(pb::SetFaultsRequest {
            targets: Some(pb::FaultTargets {
                server_ids: vec![2],
                ..pb::FaultTargets::default()
            }),
            faults: Some(pb::FaultProfile {
                latency: Some(pb::LatencyFault {
                    delay_ms: 5,
                    ..pb::LatencyFault::default()
                }),
                ..pb::FaultProfile::default()
            }),
        }))
        .await
        .unwrap();
    let running = client
        .start_load_test(first.authorized(pb::StartLoadTestRequest {
            spec: Some(pb::LoadTestSpec {
                rate_per_second: 20.0,
                duration_seconds: 120,
                ..pb::LoadTestSpec::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .run_id;
    // Metrics for a few seconds, and the events written (once a second; a loaded machine
    // may take longer).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = events(&first).await;
        if seen
            .iter()
            .any(|e| e.kind == "fault_set" && e.server_id == 2)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fault_set event for server 2 within 60 s; the events: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = farm_proto::now_ms();
    common::signal(first.child.id(), Signal::SIGKILL);
    let _ = first.child.wait();

    let second = Farm::up_with(3, &["--history", &history_arg], Duration::from_secs(30));
    let kept = runs(&second).await;
    let state = |id: &str| {
        kept.iter()
            .find(|r| r.run_id == id)
            .map(|r| r.state.clone())
            .unwrap_or_default()
    };
    assert_eq!(state("lt-1"), "finished", "{kept:?}");
    assert_eq!(state(&running), "interrupted", "{kept:?}");
    // The finished run is whole: its figures, through GetRun and GetLoadTest alike.
    let mut client = second.client().await;
    let whole = client
        .get_load_test(pb::GetLoadTestRequest {
            run_id: "lt-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    assert_eq!(whole.result.unwrap().requests, 60);
    // New runs go on from the last id.
    let next = client
        .start_load_test(second.authorized(pb::StartLoadTestRequest {
            spec: Some(pb::LoadTestSpec {
                total_requests: 10,
                ..pb::LoadTestSpec::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .run_id;
    assert_eq!(next, "lt-3");
    // Every event is there, both controllers' starts among them.
    let kept_events = events(&second).await;
    let count = |kind: &str| kept_events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count("controller_started"), 2, "{kept_events:?}");
    assert!(
        kept_events
            .iter()
            .any(|e| e.kind == "run_ended" && e.detail == "lt-1 finished")
    );
    assert!(
        kept_events
            .iter()
            .any(|e| e.kind == "fault_set" && e.server_id == 2 && e.detail == "latency")
    );
    let seqs: Vec<u64> = kept_events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // The metrics from before the kill, second by second, for the farm and for a server.
    for server_id in [0, 1] {
        let points = client
            .get_metric_history(pb::GetMetricHistoryRequest {
                server_id,
                ..pb::GetMetricHistoryRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(points.resolution_seconds, 1);
        let before_kill = points.points.iter().filter(|p| p.at_ms < killed_at).count();
        assert!(before_kill >= 3, "server {server_id}: {points:?}");
    }
}

#[tokio::test]
async fn two_farms_side_by_side_keep_their_histories_apart() {
    let data = unique_dir("shared-data");
    let data_arg = data.to_str().unwrap().to_string();
    let a = Farm::up_with(1, &["--data-dir", &data_arg], Duration::from_secs(30));
    let b = Farm::up_with(1, &["--data-dir", &data_arg], Duration::from_secs(30));
    let files: Vec<String> = std::fs::read_dir(data.join("history"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".sqlite"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut client = a.client().await;
    common::run_to_end(
        &mut client,
        pb::LoadTestSpec {
            total_requests: 5,
            ..pb::LoadTestSpec::default()
        },
    )
    .await;
    eventually(Duration::from_secs(5), "a's run in its history", || async {
        (runs(&a).await.len() == 1).then_some(())
    })
    .await;
    assert!(runs(&b).await.is_empty());
}

#[test]
fn a_file_that_cannot_be_a_history_stops_the_start_and_is_left_as_it_was() {
    let dir = unique_dir("bad-history");
    let damaged = dir.join("damaged.sqlite");
    std::fs::write(&damaged, b"not a database at all").unwrap();
    let blocked = dir.join("a-file");
    std::fs::write(&blocked, b"").unwrap();
    let unwritable = blocked.join("history.sqlite");
    let newer = dir.join("newer.sqlite");
    drop(farm_history::History::open(&newer).unwrap());
    // A newer farm's file: the schema version a later build would write.
    let bump = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version=99'); c.commit()",
            newer.to_str().unwrap(),
        ])
        .status();
    assert!(
        bump.is_ok_and(|s| s.success()),
        "python3 with its sqlite3 module writes the newer schema version"
    );
    for (path, expected) in [
        (&damaged, "is not a farm history"),
        (&unwritable, "cannot open the farm's history"),
        (&newer, "written by a newer farm"),
    ] {
        let before = std::fs::read(path).ok();
        let output = std::process::Command::new(farm_bin())
            .args(["up", "--servers", "1", "--listen", "127.0.0.1:0"])
            .args(["--gateway-listen", "127.0.0.1:0", "--node-base-port", "0"])
            .arg("--history")
            .arg(path)
            .env("FARM_DATA_DIR", &dir)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{}: {said}", path.display());
        assert!(said.contains(expected), "{}: {said}", path.display());
        assert_eq!(
            std::fs::read(path).ok(),
            before,
            "{} changed",
            path.display()
        );
    }
}
