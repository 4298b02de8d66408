//! Scenario files against a real farm: the examples in `scenarios/` pass, an SLO that cannot
//! hold fails with its exit code and says by how much, the same seed gives the same fault
//! decisions, an abort rule stops a run and undoes its faults, and bad files are refused by
//! line and field with nothing run.
//!
//! The partition example needs the docker runtime; `tests/docker.rs` runs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;

use common::{Farm, farm_bin, unique_dir};
use farm_proto::v1 as pb;

/// Scenario runs share the machine's two cores: one at a time, so that latency SLOs judge the
/// farm and not the other tests.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name)
}

/// Writes `yaml` to a scenario file of its own.
fn file(yaml: &str) -> PathBuf {
    let path = unique_dir("scenario").join("scenario.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn scenario(farm: &Farm, args: &[&str]) -> Output {
    std::process::Command::new(farm_bin())
        .arg("scenario")
        .args(args)
        .env_remove("FARM_CONTROLLER")
        .env("FARM_DATA_DIR", &farm.data_dir)
        .output()
        .unwrap()
}

/// `farm scenario run FILE --json`: its exit code and its report.
fn run(farm: &Farm, path: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let controller = farm.controller_url();
    let mut args = vec![
        "run",
        path.to_str().unwrap(),
        "--json",
        "--controller",
        &controller,
    ];
    args.extend_from_slice(extra);
    let output = scenario(farm, &args);
    let code = output.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "{}: exit {code}, no JSON report; stderr: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (code, report)
}

async fn runs(farm: &Farm) -> Vec<pb::ScenarioReport> {
    farm.client()
        .await
        .list_scenario_runs(pb::ListScenarioRunsRequest {})
        .await
        .unwrap()
        .into_inner()
        .runs
}

/// Every fault a run set was undone: no server has any left.
async fn assert_no_faults_left(farm: &Farm) {
    let faults = farm
        .client()
        .await
        .list_faults(pb::ListFaultsRequest {})
        .await
        .unwrap()
        .into_inner()
        .servers;
    assert!(faults.is_empty(), "{faults:?}");
}

#[tokio::test]
async fn the_example_scenarios_pass_against_a_real_farm() {
    let farm = Farm::up(6);
    for name in [
        "kill-under-load.yaml",
        "slow-backend.yaml",
        "error-burst.yaml",
    ] {
        let (code, report) = run(&farm, &example(name), &[]);
        assert_eq!(
            (code, report["state"].as_str()),
            (0, Some("passed")),
            "{name}: {report:#}"
        );
        let verdicts = report["verdicts"].as_array().unwrap();
        assert!(
            !verdicts.is_empty()
                && verdicts
                    .iter()
                    .all(|v| v["passed"] == true && v["final"] == true)
        );
        // One entry a second, from the run's start.
        let timeline = report["load"]["timeline"].as_array().unwrap();
        let last_phase_end = report["phases"].as_array().unwrap().last().unwrap()["end_ms"]
            .as_u64()
            .unwrap();
        assert!(
            timeline.len() as u64 >= last_phase_end / 1000,
            "{name}: {} seconds in the timeline",
            timeline.len()
        );
        for (i, second) in timeline.iter().enumerate() {
            assert_eq!(second["second"].as_u64(), Some(i as u64));
        }
        // Every fault was applied, and ended where it lasts.
        for fault in report["faults"].as_array().unwrap() {
            assert!(fault["applied_ms"].as_u64().unwrap() > 0, "{fault}");
            assert_eq!(fault["error"], "", "{fault}");
        }
    }
    // The kill's recovery was judged from the seconds after its end: it took a moment.
    let kept = runs(&farm).await;
    assert_eq!(kept.len(), 3);
    assert!(
        kept.iter()
            .all(|r| r.state == pb::ScenarioState::Passed as i32)
    );
    let kill = &kept[0];
    let recovery = kill
        .verdicts
        .iter()
        .find(|v| v.assertion.starts_with("recover"))
        .unwrap();
    assert!(
        recovery.observed >= 0.0 && recovery.observed <= recovery.threshold,
        "{recovery:?}"
    );
    // The list leaves the timelines out; GetScenarioRun has them.
    assert!(kill.load.as_ref().unwrap().timeline.is_empty());
    let full = farm
        .client()
        .await
        .get_scenario_run(pb::GetScenarioRunRequest {
            run_id: kill.run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert!(full.load.unwrap().timeline.len() >= 20);
}

#[tokio::test]
async fn an_slo_that_cannot_hold_fails_with_its_exit_code_and_says_by_how_much() {
    let farm = Farm::up(3);
    // A closed model in two phases: two workers, then four.
    let path = file(
        "version: 1\n\
         name: impossible\n\
         load:\n\
         \x20 model: closed\n\
         \x20 concurrency: 4\n\
         \x20 phases:\n\
         \x20   - { name: two, for: 2s, concurrency: 2 }\n\
         \x20   - { name: four, for: 2s }\n\
         slo:\n\
         \x20 - { metric: error_rate, lt: 1%, during: all }\n\
         \x20 - { metric: latency.p50, lt: 0.001ms, during: four }\n",
    );
    let (code, report) = run(&farm, &path, &[]);
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["state"], "failed");
    let verdicts = report["verdicts"].as_array().unwrap();
    assert_eq!(verdicts[0]["passed"], true, "{verdicts:?}");
    let failed = &verdicts[1];
    assert_eq!(failed["passed"], false);
    assert_eq!(failed["assertion"], "latency.p50 < 0.001ms during four");
    assert!(failed["observed"].as_f64().unwrap() > failed["threshold"].as_f64().unwrap());
    assert!(
        failed["detail"].as_str().unwrap().contains("over"),
        "{failed}"
    );
    // Both phases ran, each with its own figures.
    let phases = report["load"]["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    assert!(phases.iter().all(|p| p["requests"].as_u64().unwrap() > 0));
}

#[tokio::test]
async fn the_same_seed_gives_the_same_fault_decisions() {
    let farm = Farm::up(6);
    let burst = example("error-burst.yaml");
    let (first_code, first) = run(&farm, &burst, &["--seed", "11"]);
    let (second_code, second) = run(&farm, &burst, &["--seed", "11"]);
    assert_eq!((first_code, second_code), (0, 0));
    assert_eq!(first["seed"], 11);
    let chosen = |r: &serde_json::Value| r["faults"][0]["server_ids"].clone();
    assert_eq!(chosen(&first), chosen(&second));
    assert_eq!(chosen(&first).as_array().unwrap().len(), 3, "50% of 6");
    let failed = |r: &serde_json::Value| {
        r["load"]["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "burst")
            .unwrap()["failures"]
            .as_u64()
            .unwrap() as f64
    };
    let (a, b) = (failed(&first), failed(&second));
    // The same servers fail the same share of their requests: within noise (the requests
    // that fall exactly at the burst's edges may land on either side).
    assert!(
        a > 0.0 && (a - b).abs() <= (a.max(b) * 0.2).max(10.0),
        "{a} and {b}"
    );
}

#[tokio::test]
async fn an_abort_rule_stops_the_run_and_undoes_its_faults() {
    let farm = Farm::up(3);
    let path = file(
        "version: 1\n\
         name: doomed\n\
         load:\n\
         \x20 phases: [ { name: steady, for: 20s, rate: 50 } ]\n\
         faults:\n\
         \x20 - { id: everything-fails, at: 1s, for: 15s, kind: abort, servers: all }\n\
         abort:\n\
         \x20 - { metric: error_rate, gt: 50%, window: 2s }\n",
    );
    let (code, report) = run(&farm, &path, &[]);
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["state"], "aborted");
    assert_eq!(report["aborted_by"], "error_rate > 50% for 2s");
    // It stopped well before the load's 20 s: two seconds of errors, judged once closed.
    let lasted = report["load"]["elapsed_seconds"].as_f64().unwrap();
    assert!(lasted < 15.0, "{lasted} s");
    // Its fault was undone before the report came back.
    let fault = &report["faults"][0];
    assert!(fault["ended_ms"].as_u64().unwrap() > fault["applied_ms"].as_u64().unwrap());
    assert_no_faults_left(&farm).await;
}

#[tokio::test]
async fn a_stopped_scenario_ends_aborted_with_its_faults_undone() {
    let farm = Farm::up(3);
    let source = "version: 1\n\
                  name: stopped\n\
                  load:\n\
                  \x20 phases: [ { name: steady, for: 30s, rate: 20 } ]\n\
                  faults:\n\
                  \x20 - { id: slow, at: 0s, kind: latency, servers: [1], delay: 50ms }\n";
    let mut client = farm.client().await;
    let run_id = client
        .start_scenario(farm.authorized(pb::StartScenarioRequest {
            source: source.into(),
            seed: Some(5),
        }))
        .await
        .unwrap()
        .into_inner()
        .run_id;
    common::eventually(
        std::time::Duration::from_secs(10),
        "the fault applied",
        || {
            let mut client = client.clone();
            let run_id = run_id.clone();
            async move {
                let report = client
                    .get_scenario_run(pb::GetScenarioRunRequest { run_id })
                    .await
                    .ok()?
                    .into_inner()
                    .report?;
                (report.faults[0].applied_ms > 0).then_some(())
            }
        },
    )
    .await;
    let report = client
        .stop_scenario(farm.authorized(pb::StopScenarioRequest {
            run_id: run_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(report.state, pb::ScenarioState::Aborted as i32);
    assert_eq!(report.reason, "stopped before its end");
    assert!(report.faults[0].ended_ms > 0);
    assert_no_faults_left(&farm).await;
}

#[tokio::test]
async fn bad_scenarios_are_refused_by_line_and_field_and_nothing_runs() {
    let farm = Farm::up(3);
    let load = "load:\n  phases: [ { name: steady, for: 5s, rate: 10 } ]\n";
    let cases: [(&str, String, &str, bool); 4] = [
        (
            "malformed",
            format!("version: 1\nname: broken\n{load}faults: [ {{ id: x\n"),
            "line ",
            false,
        ),
        (
            "unknown key",
            format!(
                "version: 1\nname: typo\n{load}faults:\n  - {{ at: 1s, kind: latency, servers: all, delya: 5ms }}\n"
            ),
            "line 6: faults[0].delya",
            false,
        ),
        (
            "after the load",
            format!(
                "version: 1\nname: late\n{load}faults:\n  - {{ at: 60s, kind: kill, servers: [1] }}\n"
            ),
            "line 6: faults[0].at",
            false,
        ),
        (
            "no such server",
            format!(
                "version: 1\nname: stranger\n{load}faults:\n  - {{ at: 1s, kind: kill, servers: [99] }}\n"
            ),
            "line 6: faults[0].servers",
            true,
        ),
    ];
    for (what, yaml, expected, needs_farm) in cases {
        let path = file(&yaml);
        let path = path.to_str().unwrap();
        // Offline: only what the file alone can tell.
        let offline = scenario(&farm, &["check", path]);
        let said = String::from_utf8_lossy(&offline.stderr).to_string();
        if needs_farm {
            assert!(offline.status.success(), "{what}: {said}");
            let online = scenario(
                &farm,
                &["check", path, "--controller", &farm.controller_url()],
            );
            let said = String::from_utf8_lossy(&online.stderr).to_string();
            assert_eq!(online.status.code(), Some(2), "{what}: {said}");
            assert!(said.contains(expected), "{what}: {said}");
        } else {
            assert_eq!(offline.status.code(), Some(2), "{what}: {said}");
            assert!(said.contains(expected), "{what}: {said}");
        }
        let ran = scenario(
            &farm,
            &["run", path, "--controller", &farm.controller_url()],
        );
        assert_eq!(ran.status.code(), Some(4), "{what}");
    }
    // The controller refuses them the same way, and nothing ran.
    let refused = farm
        .client()
        .await
        .start_scenario(farm.authorized(pb::StartScenarioRequest {
            source: format!("version: 1\nname: stranger\n{load}faults:\n  - {{ at: 1s, kind: kill, servers: [99] }}\n"),
            seed: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("faults[0].servers"),
        "{}",
        refused.message()
    );
    assert!(runs(&farm).await.is_empty());
}

#[tokio::test]
async fn every_lifecycle_fault_is_applied_and_undone_under_a_ramped_load() {
    let farm = Farm::up(4);
    let path = file(
        "version: 1\n\
         name: lifecycle\n\
         steady_state:\n\
         \x20 - { check: all_healthy, within: 20s }\n\
         load:\n\
         \x20 phases:\n\
         \x20   - { name: ramp, for: 3s, rate: { from: 10, to: 40 } }\n\
         \x20   - { name: hold, for: 5s, rate: 40 }\n\
         faults:\n\
         \x20 - { id: stop1, at: 1s, for: 2s, kind: stop, servers: [1] }\n\
         \x20 - { id: pause2, at: 1s, for: 2s, kind: pause, servers: [2] }\n\
         \x20 - { id: restart3, at: 2s, kind: restart, servers: [3] }\n\
         \x20 - { id: kill4, at: 3s, kind: kill, servers: [4] }\n\
         slo:\n\
         \x20 - { metric: error_rate, lt: 60%, during: all }\n",
    );
    let (code, report) = run(&farm, &path, &[]);
    assert_eq!(
        (code, report["state"].as_str()),
        (0, Some("passed")),
        "{report:#}"
    );
    for fault in report["faults"].as_array().unwrap() {
        let (applied, ended) = (
            fault["applied_ms"].as_u64().unwrap(),
            fault["ended_ms"].as_u64().unwrap(),
        );
        assert!(applied > 0 && fault["error"] == "", "{fault}");
        if fault["for_ms"] == 0 {
            // An instant: a restart, or a kill the farm restarts by itself.
            assert_eq!(ended, applied, "{fault}");
        } else {
            assert!(ended >= applied + 1900, "{fault}");
        }
    }
    // The steady state after the load held: every server came back.
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passed"] == true),
        "{report:#}"
    );
    // The open schedule followed the ramp: (10 + 40) / 2 × 3 = 75 requests due in it, then
    // 200. A phase counts the requests that ended in it, and the paused server held some of
    // the ramp's until the hold, so the ramp has at most its 75 and the two together 275.
    let phases = report["load"]["phases"].as_array().unwrap();
    let requests = |i: usize| phases[i]["requests"].as_u64().unwrap();
    assert!((40..=76).contains(&requests(0)), "{phases:?}");
    assert!(
        (265..=285).contains(&(requests(0) + requests(1))),
        "{phases:?}"
    );
}

#[tokio::test]
async fn a_fault_that_some_servers_refuse_is_undone_on_the_others_and_the_run_could_not_run() {
    use nix::sys::signal::Signal;
    let farm = Farm::up(2);
    // Server 2's agent is frozen: it takes no command until the run is over.
    let agent = common::agent_pid(&farm, 2).expect("server 2's agent");
    common::signal(agent, Signal::SIGSTOP);
    let path = file(
        "version: 1\n\
         name: half-applied\n\
         target: { servers: [1] }\n\
         load:\n\
         \x20 phases: [ { name: steady, for: 14s, rate: 20 } ]\n\
         faults:\n\
         \x20 - { id: freeze, at: 0s, for: 2s, kind: pause, servers: [1, 2] }\n",
    );
    let (code, report) = run(&farm, &path, &[]);
    common::signal(agent, Signal::SIGCONT);
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["state"], "error");
    assert!(
        report["reason"].as_str().unwrap().contains("fault freeze"),
        "{report:#}"
    );
    let fault = &report["faults"][0];
    assert!(
        fault["error"].as_str().unwrap().contains("server 2"),
        "{fault}"
    );
    assert!(fault["ended_ms"].as_u64().unwrap() > 0, "{fault}");
    // Server 1, which took the pause, was resumed: it answers.
    let result = common::run_to_end(
        &mut farm.client().await,
        pb::LoadTestSpec {
            server_ids: vec![1],
            total_requests: 5,
            timeout_ms: 2000,
            ..pb::LoadTestSpec::default()
        },
    )
    .await;
    assert_eq!(result.successes, 5, "{result:?}");
}
