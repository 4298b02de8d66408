//! Tests of the whole format: the examples, the documented example, and every kind of bad
//! input, each with the line and the field it must name.

use std::time::Duration;

use farm_proto::limits::{
    MAX_ABORT_STATUSES, MAX_ABORT_WEIGHT, MAX_CONCURRENCY, MAX_DURATION_SECONDS,
    MAX_FAULT_DELAY_MS, MAX_FAULT_RATE_PER_SECOND, MAX_FAULT_STATUS, MAX_HANG_MS, MAX_PATH_LEN,
    MAX_RATE_PER_SECOND, MAX_RETRY_AFTER_SECONDS, MAX_SERVER_ID, MAX_THROUGHPUT_BYTES_PER_SECOND,
    MAX_TIMEOUT_MS, MIN_FAULT_STATUS,
};
use farm_proto::v1::{ConnectionFaultMode, StatusWeight};

use crate::*;

const EXAMPLES: &[(&str, &str)] = &[
    (
        "kill-under-load",
        include_str!("../../scenarios/kill-under-load.yaml"),
    ),
    (
        "slow-backend",
        include_str!("../../scenarios/slow-backend.yaml"),
    ),
    (
        "error-burst",
        include_str!("../../scenarios/error-burst.yaml"),
    ),
    (
        "partition-heals",
        include_str!("../../scenarios/partition-heals.yaml"),
    ),
];

/// The example of `docs/scenarios.md`: its one YAML block.
fn documented() -> &'static str {
    let docs = include_str!("../../docs/scenarios.md");
    let start = docs.find("```yaml\n").expect("a YAML block") + "```yaml\n".len();
    let end = start + docs[start..].find("```").expect("its end");
    &docs[start..end]
}

/// A small valid file to break one piece at a time: the load lasts 35 s.
const BASE: &str = "\
version: 1
name: base
load:
  phases:
    - { name: warmup, for: 5s, rate: 50 }
    - { name: hold, for: 30s, rate: 100 }
";

fn refuse(source: &str) -> Vec<Problem> {
    match parse(source) {
        Ok(scenario) => panic!("expected problems, got {scenario:#?}\n---\n{source}"),
        Err(problems) => problems,
    }
}

/// The problem at `line` on `field`; fails listing them all when there is none.
#[track_caller]
fn find(problems: &[Problem], line: u32, field: &str) -> Problem {
    problems
        .iter()
        .find(|p| p.line == line && p.field == field)
        .cloned()
        .unwrap_or_else(|| {
            let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
            panic!(
                "no problem at line {line} on {field:?}; got:\n{}",
                all.join("\n")
            )
        })
}

/// `BASE` with `extra` appended (its first line is line 7).
fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn every_example_parses_and_says_what_its_comments_say() {
    for (name, source) in EXAMPLES {
        let scenario = parse(source).unwrap_or_else(|problems| {
            let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
            panic!("scenarios/{name}.yaml:\n{}", all.join("\n"))
        });
        assert_eq!(&scenario.name, name);
        assert!(!scenario.description.is_empty(), "{name}");
        // Each runs against `farm up --servers 6` in under a minute at modest rates.
        assert!(scenario.load_duration() < Duration::from_secs(60), "{name}");
        for phase in &scenario.load.phases {
            assert!(phase.rate_from <= 300.0 && phase.rate_to <= 300.0, "{name}");
        }
        let docker = *name == "partition-heals";
        assert_eq!(
            scenario.check_servers(&[1, 2, 3, 4, 5, 6], docker),
            [],
            "{name}"
        );
        assert!(!scenario.slo.is_empty(), "{name}");
    }

    let kill = parse(EXAMPLES[0].1).unwrap();
    assert_eq!(kill.load_duration(), Duration::from_secs(20));
    let fault = &kill.faults[0];
    assert_eq!(fault.action, FaultAction::Kill);
    assert_eq!(
        (fault.at, fault.duration),
        (Duration::from_secs(6), Some(Duration::from_secs(3)))
    );
    assert_eq!(fault.servers.selection, Selection::Ids(vec![2]));
    assert_eq!(kill.steady_state[0].when, When::Both);
    assert_eq!(kill.steady_state[0].within, Duration::from_secs(15));
    assert_eq!(
        kill.slo[1].text,
        "recover from kill2: error_rate < 1% within 5s for 3s"
    );

    let slow = parse(EXAMPLES[1].1).unwrap();
    let FaultAction::Profile(profile) = &slow.faults[0].action else {
        panic!("a profile")
    };
    assert_eq!(profile.latency.as_ref().unwrap().delay_ms, 200);
    // The `before` phase ends when the fault starts.
    assert_eq!(slow.load.phases[0].name, "before");
    assert_eq!(slow.load.phases[0].duration, slow.faults[0].at);

    let burst = parse(EXAMPLES[2].1).unwrap();
    assert_eq!(burst.seed, Some(7));
    assert_eq!(burst.faults[0].share, Some(50.0));
    let FaultAction::Profile(profile) = &burst.faults[0].action else {
        panic!("a profile")
    };
    let abort = profile.abort.as_ref().unwrap();
    assert_eq!(abort.when.as_ref().unwrap().percent, Some(50.0));
    assert_eq!(
        abort.statuses,
        [StatusWeight {
            status: 503,
            weight: 1
        }]
    );
    assert_eq!(burst.abort[0].text, "error_rate > 90% for 3s");

    let partition = parse(EXAMPLES[3].1).unwrap();
    let problems = partition.check_servers(&[1, 2, 3, 4, 5, 6], false);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field, "faults[0].kind");
}

#[test]
fn the_documented_example_reads_as_documented() {
    let scenario = parse(documented()).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(scenario.seed, Some(42));
    assert_eq!(
        scenario.target,
        Target {
            servers: Servers {
                selection: Selection::All,
                line: 5
            },
            path: "/".into(),
            method: "GET".into(),
            timeout: Duration::from_secs(2),
        }
    );
    let texts: Vec<&str> = scenario
        .steady_state
        .iter()
        .map(|c| c.text.as_str())
        .collect();
    assert_eq!(
        texts,
        ["all_healthy within 10s", "min_healthy 9 within 20s"]
    );
    assert_eq!(scenario.steady_state[1].kind, CheckKind::MinHealthy(9));
    assert_eq!(scenario.steady_state[1].when, When::After);
    assert_eq!(scenario.steady_state[1].line, 8);

    assert_eq!(scenario.load.model, Model::Open);
    assert_eq!(scenario.load_duration(), Duration::from_secs(35));
    let ramp = &scenario.load.phases[1];
    assert_eq!(
        (ramp.rate_from, ramp.rate_to, ramp.concurrency, ramp.line),
        (50.0, 200.0, 0, 14)
    );

    let [slow, kill, errs] = &scenario.faults[..] else {
        panic!("three faults")
    };
    let FaultAction::Profile(profile) = &slow.action else {
        panic!("a profile")
    };
    let latency = profile.latency.as_ref().unwrap();
    assert_eq!((latency.delay_ms, latency.jitter_ms), (200, 50));
    let when = latency.when.as_ref().unwrap();
    assert_eq!(
        (when.percent, when.duration_seconds, when.seed),
        (None, 0, 0)
    );
    assert_eq!(slow.servers.line, 17);
    assert_eq!(kill.duration, None);
    assert_eq!(kill.line, 18);
    assert_eq!(errs.share, Some(30.0));

    let texts: Vec<&str> = scenario.slo.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "latency.p99 < 300ms during hold",
            "error_rate < 1% during all",
            "recover from kill5: error_rate < 1% within 10s for 5s",
        ]
    );
    assert_eq!(
        scenario.slo[0].kind,
        AssertionKind::Window {
            metric: Metric::Latency(Percentile::P99),
            bound: Bound {
                op: Op::Lt,
                value: 300.0
            },
            during: During::Phase("hold".into()),
        }
    );
    assert_eq!(
        scenario.slo[2].kind,
        AssertionKind::Recovery {
            fault: "kill5".into(),
            metric: Metric::ErrorRate,
            bound: Bound {
                op: Op::Lt,
                value: 0.01
            },
            within: Duration::from_secs(10),
            stable_for: Duration::from_secs(5),
        }
    );
    assert_eq!(scenario.abort[0].bound.value, 0.5);
    assert_eq!(scenario.abort[0].window, Duration::from_secs(5));
    assert_eq!(scenario.abort[0].line, 25);
}

#[test]
fn defaults_are_filled_in() {
    let scenario = parse(&with(
        "faults:\n  - { at: 1s, kind: hang, servers: all }\n  - { at: 1s, kind: kill, servers: [1] }\n\
         slo:\n  - { metric: throughput, gt: 10 }\n  - { recover: kill-2, metric: latency.max, lt: 1.5s }\n\
         abort:\n  - { metric: latency.mean, gt: 2000 }\n",
    ))
    .unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(scenario.target.servers.selection, Selection::All);
    assert_eq!(scenario.target.path, "/");
    assert_eq!(scenario.target.method, "GET");
    assert_eq!(scenario.target.timeout, Duration::from_secs(2));
    assert_eq!(scenario.load.concurrency, 64);
    assert_eq!(scenario.faults[0].id, "hang-1");
    assert_eq!(scenario.faults[1].id, "kill-2");
    let FaultAction::Profile(profile) = &scenario.faults[0].action else {
        panic!("a profile")
    };
    assert_eq!(profile.hang.as_ref().unwrap().max_ms, 60_000);
    assert_eq!(scenario.slo[0].text, "throughput > 10 req/s during all");
    assert_eq!(
        scenario.slo[1].text,
        "recover from kill-2: latency.max < 1.5s within 10s for 3s"
    );
    assert_eq!(scenario.abort[0].text, "latency.mean > 2s for 5s");
}

#[test]
fn every_fault_kind_becomes_its_action_or_profile() {
    let scenario = parse(&with(
        "faults:
  - { kind: latency, at: 1s, for: 1s, servers: [1], p50: 10ms, p90: 50ms, p99: 200ms, path_prefix: /data }
  - { kind: abort, at: 1s, servers: [1], statuses: { 503: 3, 500: 1 } }
  - { kind: hang, at: 1s, servers: [1], max: 2s, percent: 10 }
  - { kind: throughput, at: 1s, servers: [1], bytes_per_second: 1024 }
  - { kind: close, at: 1s, servers: [1] }
  - { kind: reset, at: 1s, servers: [2] }
  - { kind: rate_limit, at: 1s, servers: [1], requests_per_second: 20, retry_after: 2s }
  - { kind: health, at: 1s, servers: [1], status: 500 }
  - { kind: readiness, at: 1s, servers: [1] }
  - { kind: partition, at: 1s, for: 2s, servers: [1] }
  - { kind: kill, at: 1s, servers: [1] }
  - { kind: stop, at: 1s, servers: [1] }
  - { kind: restart, at: 1s, servers: [1] }
  - { kind: pause, at: 1s, for: 500ms, servers: [1] }
",
    ))
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let profile = |i: usize| match &scenario.faults[i].action {
        FaultAction::Profile(p) => p.clone(),
        other => panic!("faults[{i}] is {other:?}"),
    };
    let latency = profile(0).latency.unwrap();
    assert_eq!(
        (latency.p50_ms, latency.p90_ms, latency.p99_ms),
        (10, 50, 200)
    );
    assert_eq!(latency.when.unwrap().path_prefix, "/data");
    let abort = profile(1).abort.unwrap();
    assert_eq!(
        abort.statuses,
        [
            StatusWeight {
                status: 503,
                weight: 3
            },
            StatusWeight {
                status: 500,
                weight: 1
            }
        ]
    );
    let hang = profile(2).hang.unwrap();
    assert_eq!(
        (hang.max_ms, hang.when.unwrap().percent),
        (2000, Some(10.0))
    );
    assert_eq!(profile(3).throughput.unwrap().bytes_per_second, 1024);
    assert_eq!(
        profile(4).connection.unwrap().mode,
        ConnectionFaultMode::Close as i32
    );
    assert_eq!(
        profile(5).connection.unwrap().mode,
        ConnectionFaultMode::Reset as i32
    );
    let limit = profile(6).rate_limit.unwrap();
    assert_eq!(
        (
            limit.requests_per_second,
            limit.status,
            limit.retry_after_seconds
        ),
        (20, 429, 2)
    );
    assert_eq!(profile(7).health.unwrap().status, 500);
    assert!(profile(8).readiness.is_some());
    assert!(profile(9).partition.is_some());
    let actions: Vec<&FaultAction> = scenario.faults[10..].iter().map(|f| &f.action).collect();
    assert_eq!(
        actions,
        [
            &FaultAction::Kill,
            &FaultAction::Stop,
            &FaultAction::Restart,
            &FaultAction::Pause
        ]
    );
    // Exactly one kind per profile.
    for i in 0..10 {
        let p = profile(i);
        let set = [
            p.latency.is_some(),
            p.abort.is_some(),
            p.hang.is_some(),
            p.throughput.is_some(),
            p.connection.is_some(),
            p.rate_limit.is_some(),
            p.health.is_some(),
            p.readiness.is_some(),
            p.partition.is_some(),
        ];
        assert_eq!(set.iter().filter(|s| **s).count(), 1, "faults[{i}]");
    }
}

#[test]
fn the_closed_model_takes_workers_per_phase() {
    let scenario = parse(
        "version: 1\nname: closed\nload:\n  model: closed\n  concurrency: 16\n  phases:\n    \
         - { name: a, for: 1s }\n    - { name: b, for: 1s, concurrency: 4 }\n",
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let phases = &scenario.load.phases;
    assert_eq!((phases[0].concurrency, phases[1].concurrency), (16, 4));
    assert_eq!((phases[1].rate_from, phases[1].rate_to), (0.0, 0.0));
}

// ---- 1. Malformed YAML ------------------------------------------------------------------

#[test]
fn malformed_yaml_names_the_line() {
    let source = with("faults: [ { at: 5s, kind: kill, servers: [1] }\nslo: []\n");
    let problems = refuse(&source);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let problem = &problems[0];
    assert_eq!(problem.line, 8);
    assert!(problem.field.starts_with("faults"), "{problem}");
    assert!(problem.message.contains("malformed YAML"), "{problem}");
    assert!(problem.message.contains("`[` on line 7"), "{problem}");

    // A tab where indentation goes, on the line of the tab.
    let problems = refuse("version: 1\nname: x\nload:\n\tphases: []\n");
    assert_eq!(problems[0].line, 4, "{problems:?}");
}

#[test]
fn anchors_duplicates_and_second_documents_are_refused() {
    let problems = refuse(&with("seed: 1\nseed: 2\n"));
    let problem = find(&problems, 8, "seed");
    assert!(problem.message.contains("duplicate key"), "{problem}");
    let problems = refuse(&with("description: &d hi\nslo: *d\n"));
    find(&problems, 7, "description");
    find(&problems, 8, "slo");
    let problems = refuse(&with("---\nname: other\n"));
    assert_eq!(problems[0].line, 7);
}

// ---- 2. Unknown keys ----------------------------------------------------------------------

#[test]
fn unknown_keys_are_named_at_the_top_and_inside_a_fault() {
    let problems = refuse(&with(
        "sloo: []\nfaults:\n  - { at: 1s, kind: latency, servers: [1], delya: 200ms }\n",
    ));
    let top = find(&problems, 7, "sloo");
    assert!(top.message.contains("unknown key `sloo`"), "{top}");
    assert!(top.message.contains("did you mean `slo`?"), "{top}");
    assert!(
        top.message.contains("expected one of version, name"),
        "{top}"
    );
    let inner = find(&problems, 9, "faults[0].delya");
    assert!(inner.message.contains("did you mean `delay`?"), "{inner}");
    assert!(inner.message.contains("in a latency fault"), "{inner}");
    // The latency fault also misses its delay: reported on the fault.
    find(&problems, 9, "faults[0].delay");

    // Keys of another kind are unknown to this one.
    let problems = refuse(&with(
        "faults:\n  - { at: 1s, kind: kill, servers: [1], percent: 50% }\n",
    ));
    find(&problems, 8, "faults[0].percent");
    let problems = refuse(&with(
        "faults:\n  - { at: 1s, kind: health, servers: [1], path_prefix: /x }\n",
    ));
    find(&problems, 8, "faults[0].path_prefix");
}

// ---- 3. Faults outside the load ---------------------------------------------------------

#[test]
fn a_fault_after_the_load_is_refused_with_the_loads_length() {
    let problems = refuse(&with(
        "faults:\n  - { at: 10s, for: 5s, kind: kill, servers: [1] }\n  - id: late\n    kind: kill\n    at: 60s\n    servers: [1]\n",
    ));
    let problem = find(&problems, 11, "faults[1].at");
    assert!(problem.message.contains("the phases last 35s"), "{problem}");
    assert_eq!(problems.len(), 1, "{problems:?}");

    let problems = refuse(&with(
        "faults:\n  - id: long\n    kind: latency\n    delay: 10ms\n    at: 30s\n    for: 10s\n    servers: [1]\n",
    ));
    let problem = find(&problems, 12, "faults[0].for");
    assert!(problem.message.contains("40s"), "{problem}");
    assert!(problem.message.contains("35s"), "{problem}");
    // Exactly at the end is fine.
    parse(&with(
        "faults:\n  - { at: 30s, for: 5s, kind: stop, servers: [1] }\n",
    ))
    .unwrap();
}

// ---- 4. Types, required keys, versions, names, references, units, ranges --------------

#[test]
fn a_wrong_type_names_the_field() {
    let source = "version: 1\nname: x\nload:\n  phases:\n    - { name: a, for: 5s, rate: fast }\n";
    let problem = find(&refuse(source), 5, "load.phases[0].rate");
    assert!(problem.message.contains("`fast`"), "{problem}");
    assert!(problem.message.contains("requests per second"), "{problem}");

    let problems = refuse(&with("target: [1]\nseed: -1\nfaults: { at: 1s }\n"));
    find(&problems, 7, "target");
    find(&problems, 8, "seed");
    find(&problems, 9, "faults");
}

#[test]
fn a_missing_required_key_is_named() {
    let problems = refuse("version: 1\nname: x\nload:\n  model: open\n");
    let problem = find(&problems, 3, "load.phases");
    assert!(problem.message.starts_with("missing"), "{problem}");

    let problems = refuse("version: 1\nload: { phases: [{ name: a, for: 1s, rate: 1 }] }\n");
    find(&problems, 0, "name");
    let problems = refuse("name: x\nload: { phases: [{ name: a, for: 1s, rate: 1 }] }\n");
    find(&problems, 0, "version");
    let problems = refuse(&with("faults:\n  - { kind: kill, servers: [1] }\n"));
    find(&problems, 8, "faults[0].at");
    let problems = refuse(&with("faults:\n  - at: 1s\n    kind: kill\n    servers:\n"));
    let problem = find(&problems, 10, "faults[0].servers");
    assert!(problem.message.starts_with("has no value"), "{problem}");
    let problems = refuse(&with("slo:\n  - { metric: error_rate }\n"));
    find(&problems, 8, "slo[0].lt");
    assert!(refuse("").iter().any(|p| p.line == 0));
}

#[test]
fn another_version_is_refused_alone() {
    let problems = refuse("version: 2\nname: x\nwhatever: 1\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let problem = find(&problems, 1, "version");
    assert!(
        problem.message.contains("this build reads version 1"),
        "{problem}"
    );
}

#[test]
fn names_are_unique_and_well_formed() {
    let problems = refuse(
        "version: 1\nname: x\nload:\n  phases:\n    - { name: hold, for: 5s, rate: 1 }\n    - { name: hold, for: 5s, rate: 1 }\n",
    );
    let problem = find(&problems, 6, "load.phases[1].name");
    assert!(problem.message.contains("load.phases[0]"), "{problem}");

    let problems = refuse(
        "version: 1\nname: bad name\nload:\n  phases:\n    - { name: all, for: 5s, rate: 1 }\n",
    );
    find(&problems, 2, "name");
    find(&problems, 5, "load.phases[0].name");

    let problems = refuse(&with(
        "faults:\n  - { id: k, at: 1s, kind: kill, servers: [1] }\n  - { id: k, at: 2s, kind: kill, servers: [1] }\n  - { id: kill-4, at: 2s, kind: kill, servers: [1] }\n  - { at: 2s, kind: kill, servers: [1] }\n",
    ));
    find(&problems, 9, "faults[1].id");
    let problem = find(&problems, 11, "faults[3].id");
    assert!(problem.message.contains("default id `kill-4`"), "{problem}");
}

#[test]
fn slos_name_phases_and_faults_of_the_file() {
    let problems = refuse(&with(
        "faults:\n  - { id: kill1, at: 1s, kind: kill, servers: [1] }\nslo:\n  - { metric: error_rate, lt: 1%, during: nosuch }\n  - { recover: nosuch, metric: error_rate, lt: 1% }\n",
    ));
    let during = find(&problems, 10, "slo[0].during");
    assert!(during.message.contains("warmup, hold"), "{during}");
    let recover = find(&problems, 11, "slo[1].recover");
    assert!(recover.message.contains("kill1"), "{recover}");

    // A fault that lasts until the load ends has no recovery.
    let problems = refuse(&with(
        "faults:\n  - { id: s, at: 1s, kind: stop, servers: [1] }\nslo:\n  - { recover: s, metric: error_rate, lt: 1% }\n",
    ));
    find(&problems, 10, "slo[0].recover");
    // Nor one that leaves no time to hold.
    let problems = refuse(&with(
        "faults:\n  - { id: s, at: 30s, for: 3s, kind: stop, servers: [1] }\nslo:\n  - { recover: s, metric: error_rate, lt: 1%, stable_for: 5s }\n",
    ));
    find(&problems, 10, "slo[0].stable_for");
}

#[test]
fn a_bound_in_the_wrong_unit_is_refused() {
    let problems = refuse(&with(
        "slo:
  - { metric: latency.p99, lt: 5% }
  - { metric: error_rate, lt: 300ms }
  - { metric: error_rate, lt: 5 }
  - { metric: throughput, gt: 10% }
  - { metric: latency.p50, lt: 0 }
  - { metric: error_rate, gt: 100% }
  - { metric: error_rate, lt: 1%, gt: 2% }
  - { metric: latency.p42, lt: 1s }
",
    ));
    let p = find(&problems, 8, "slo[0].lt");
    assert!(p.message.contains("not a percentage"), "{p}");
    let p = find(&problems, 9, "slo[1].lt");
    assert!(p.message.contains("not a duration"), "{p}");
    let p = find(&problems, 10, "slo[2].lt");
    assert!(p.message.contains("write 5% for a percentage"), "{p}");
    let p = find(&problems, 11, "slo[3].gt");
    assert!(p.message.contains("requests per second"), "{p}");
    find(&problems, 12, "slo[4].lt");
    find(&problems, 13, "slo[5].gt");
    find(&problems, 14, "slo[6].gt");
    find(&problems, 15, "slo[7].metric");
    assert_eq!(problems.len(), 8, "{problems:#?}");
}

#[test]
fn durations_need_a_unit() {
    let problems = refuse(&with("target: { timeout: 2 }\n"));
    let problem = find(&problems, 7, "target.timeout");
    assert!(
        problem.message.contains("write a unit, e.g. 2s"),
        "{problem}"
    );
}

/// One value past each bound, with the line (8: the fault, the target or the load's field)
/// and the field that must be named.
#[test]
fn every_bound_is_enforced_with_the_field_named() {
    let fault = |keys: &str| {
        with(&format!(
            "faults:\n  - {{ at: 1s, servers: [1], {keys} }}\n"
        ))
    };
    let cases: Vec<(String, &str)> = vec![
        (
            fault(&format!(
                "kind: latency, delay: {}ms",
                MAX_FAULT_DELAY_MS + 1
            )),
            "faults[0].delay",
        ),
        (
            fault(&format!(
                "kind: latency, delay: 1ms, jitter: {}ms",
                MAX_FAULT_DELAY_MS + 1
            )),
            "faults[0].jitter",
        ),
        (
            fault("kind: latency, p50: 50ms, p90: 40ms, p99: 60ms"),
            "faults[0].p90",
        ),
        (
            fault(&format!("kind: hang, max: {}ms", MAX_HANG_MS + 1)),
            "faults[0].max",
        ),
        (
            fault(&format!(
                "kind: throughput, bytes_per_second: {}",
                u64::from(MAX_THROUGHPUT_BYTES_PER_SECOND) + 1
            )),
            "faults[0].bytes_per_second",
        ),
        (
            fault(&format!("kind: abort, status: {}", MAX_FAULT_STATUS + 1)),
            "faults[0].status",
        ),
        (
            fault(&format!("kind: abort, status: {}", MIN_FAULT_STATUS - 1)),
            "faults[0].status",
        ),
        (
            fault(&format!(
                "kind: abort, statuses: {{ 503: {} }}",
                MAX_ABORT_WEIGHT + 1
            )),
            "faults[0].statuses.503",
        ),
        (
            fault("kind: abort, statuses: { 200: 1 }"),
            "faults[0].statuses.200",
        ),
        (
            fault(&format!(
                "kind: abort, statuses: {{ {} }}",
                (0..=MAX_ABORT_STATUSES)
                    .map(|i| format!("{}: 1", 500 + i))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            "faults[0].statuses",
        ),
        (
            fault(&format!(
                "kind: rate_limit, requests_per_second: {}",
                MAX_FAULT_RATE_PER_SECOND + 1
            )),
            "faults[0].requests_per_second",
        ),
        (
            fault(&format!(
                "kind: rate_limit, requests_per_second: 1, retry_after: {}s",
                MAX_RETRY_AFTER_SECONDS + 1
            )),
            "faults[0].retry_after",
        ),
        (
            fault("kind: rate_limit, requests_per_second: 1, retry_after: 1500ms"),
            "faults[0].retry_after",
        ),
        (fault("kind: kill, share: 0%"), "faults[0].share"),
        (fault("kind: abort, percent: 101"), "faults[0].percent"),
        (fault("kind: abort, path_prefix: data"), "faults[0].path_prefix"),
        (
            with(&format!(
                "faults:\n  - {{ at: 1s, kind: kill, servers: [{}] }}\n",
                MAX_SERVER_ID + 1
            )),
            "faults[0].servers[0]",
        ),
        (
            with("faults:\n  - { at: 1s, kind: kill, servers: [1, 1] }\n"),
            "faults[0].servers[1]",
        ),
        (
            with("faults:\n  - { at: 1s, kind: kill, servers: [] }\n"),
            "faults[0].servers",
        ),
        (
            with(&format!(
                "target: {{ timeout: {}ms }}\n",
                MAX_TIMEOUT_MS + 1
            )),
            "target.timeout",
        ),
        (
            with(&format!(
                "target: {{ path: /{} }}\n",
                "a".repeat(MAX_PATH_LEN)
            )),
            "target.path",
        ),
        (with("target: { method: PATCH }\n"), "target.method"),
        (
            with(&format!(
                "target: {{ servers: [{}] }}\n",
                (1..=1001).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
            )),
            "target.servers",
        ),
        (
            format!(
                "version: 1\nname: x\nload:\n  concurrency: {}\n  phases: [{{ name: a, for: 1s, rate: 1 }}]\n",
                MAX_CONCURRENCY + 1
            ),
            "load.concurrency",
        ),
        (
            format!(
                "version: 1\nname: x\nload:\n  phases:\n    - {{ name: a, for: 1s, rate: {} }}\n",
                MAX_RATE_PER_SECOND * 2.0
            ),
            "load.phases[0].rate",
        ),
        (
            "version: 1\nname: x\nload:\n  phases:\n    - { name: a, for: 99ms, rate: 1 }\n"
                .into(),
            "load.phases[0].for",
        ),
        (
            format!(
                "version: 1\nname: x\nload:\n  phases:\n    - {{ name: a, for: {}s, rate: 1 }}\n    - {{ name: b, for: 1s, rate: 1 }}\n",
                MAX_DURATION_SECONDS
            ),
            "load.phases",
        ),
        (
            "version: 1\nname: x\nload:\n  model: closed\n  concurrency: 4\n  phases:\n    - { name: a, for: 1s, concurrency: 5 }\n"
                .into(),
            "load.phases[0].concurrency",
        ),
        (
            format!(
                "version: 1\nname: x\nload:\n  phases:\n{}",
                (0..=MAX_PHASES)
                    .map(|i| format!("    - {{ name: p{i}, for: 1s, rate: 1 }}\n"))
                    .collect::<String>()
            ),
            "load.phases",
        ),
        (
            with(&format!(
                "faults:\n{}",
                (0..=MAX_FAULTS)
                    .map(|_| "  - { at: 1s, kind: restart, servers: [1] }\n")
                    .collect::<String>()
            )),
            "faults",
        ),
        (
            with("steady_state:\n  - { check: min_healthy, count: 1001 }\n"),
            "steady_state[0].count",
        ),
        (
            with("steady_state:\n  - { check: all_healthy, within: 301s }\n"),
            "steady_state[0].within",
        ),
        (
            with("abort:\n  - { metric: error_rate, gt: 50%, window: 301s }\n"),
            "abort[0].window",
        ),
        (
            with("abort:\n  - { metric: error_rate, gt: 50%, window: 1500ms }\n"),
            "abort[0].window",
        ),
        (
            with(&format!("description: {}\n", "x".repeat(1025))),
            "description",
        ),
    ];
    for (source, field) in cases {
        let problems = refuse(&source);
        assert!(
            problems.iter().any(|p| p.field == field && p.line > 0),
            "expected a problem on {field} with a line in\n{source}\ngot {problems:#?}"
        );
    }
}

#[test]
fn a_restart_has_no_length_and_a_partition_needs_one() {
    let problems = refuse(&with(
        "faults:\n  - { at: 1s, for: 2s, kind: restart, servers: [1] }\n  - { at: 1s, kind: partition, servers: [1] }\n",
    ));
    let restart = find(&problems, 8, "faults[0].for");
    assert!(restart.message.contains("remove `for`"), "{restart}");
    find(&problems, 9, "faults[1].for");
}

#[test]
fn a_file_over_the_limit_is_refused_as_a_whole() {
    let source = with(&format!("# {}\n", "x".repeat(MAX_SOURCE_BYTES)));
    let problems = refuse(&source);
    assert_eq!(problems.len(), 1);
    assert_eq!((problems[0].line, problems[0].field.as_str()), (0, ""));
    assert!(problems[0].message.contains("65536"), "{}", problems[0]);
    assert_eq!(problems[0].to_string(), problems[0].message);
}

#[test]
fn open_and_closed_phases_do_not_mix() {
    let problems = refuse(
        "version: 1\nname: x\nload:\n  model: open\n  phases:\n    - { name: a, for: 1s, rate: 5, concurrency: 4 }\n",
    );
    let problem = find(&problems, 6, "load.phases[0].concurrency");
    assert!(problem.message.contains("closed model"), "{problem}");

    let problems = refuse(
        "version: 1\nname: x\nload:\n  model: closed\n  phases:\n    - { name: a, for: 1s }\n    - { name: b, for: 1s, rate: 5 }\n",
    );
    let problem = find(&problems, 7, "load.phases[1].rate");
    assert!(problem.message.contains("open model"), "{problem}");

    let problems = refuse("version: 1\nname: x\nload:\n  phases:\n    - { name: a, for: 1s }\n");
    find(&problems, 5, "load.phases[0].rate");
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let source = "\
version: 1
name: x y
load:
  phases:
    - { name: a, for: 5, rate: 1 }
faults:
  - { at: 1s, kind: latency, servers: [1], delay: 5% }
slo:
  - { metric: error_rate, lt: 1ms }
";
    let problems = refuse(source);
    let found: Vec<(u32, &str)> = problems
        .iter()
        .map(|p| (p.line, p.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (2, "name"),
            (5, "load.phases[0].for"),
            (7, "faults[0].delay"),
            (9, "slo[0].lt"),
        ]
    );
}

// ---- 5. The farm's servers --------------------------------------------------------------

#[test]
fn servers_outside_the_farm_are_named_with_their_list() {
    let scenario = parse(&with(
        "target:\n  servers: [1, 2]\nfaults:\n  - { at: 1s, kind: kill, servers: [1] }\n  - at: 2s\n    kind: stop\n    servers: [3, 99]\n  - { at: 1s, for: 2s, kind: partition, servers: all }\nsteady_state:\n  - { check: min_healthy, count: 5 }\n",
    ))
    .unwrap_or_else(|p| panic!("{p:#?}"));
    assert!(
        scenario
            .check_servers(&[1, 2, 3, 4, 5, 99], true)
            .is_empty()
    );

    let problems = scenario.check_servers(&[1, 2, 3], false);
    let fault = find(&problems, 13, "faults[1].servers");
    assert_eq!(
        fault.message,
        "server 99 is not in the farm (its servers: 1-3)"
    );
    assert_eq!(
        fault.to_string(),
        "line 13: faults[1].servers: server 99 is not in the farm (its servers: 1-3)"
    );
    let partition = find(&problems, 14, "faults[2].kind");
    assert!(partition.message.contains("docker"), "{partition}");
    find(&problems, 16, "steady_state[0].count");
    assert_eq!(problems.len(), 3, "{problems:#?}");

    let problems = scenario.check_servers(&[2, 3, 5], true);
    let target = find(&problems, 8, "target.servers");
    assert_eq!(
        target.message,
        "server 1 is not in the farm (its servers: 2-3, 5)"
    );
    find(&problems, 10, "faults[0].servers");
}

// ---- Robustness -------------------------------------------------------------------------

#[test]
fn no_input_makes_the_parser_panic() {
    // Every prefix of every example, and each with one byte changed to a YAML indicator:
    // half-written files are what an editor's live check sees.
    let mut count = 0;
    for (_, source) in EXAMPLES.iter().chain([&("documented", documented())]) {
        for end in (0..=source.len()).filter(|&i| source.is_char_boundary(i)) {
            let _ = parse(&source[..end]);
            count += 1;
        }
        for (i, _) in source.char_indices().step_by(11) {
            for c in ['[', '{', ':', '-', '&', '*', '!', '|', '"', '\t', '#', '?'] {
                let mut mutated = source.to_string();
                mutated.replace_range(
                    i..i + source[i..].chars().next().unwrap().len_utf8(),
                    &c.to_string(),
                );
                if let Err(problems) = parse(&mutated) {
                    assert!(!problems.is_empty());
                }
                count += 1;
            }
        }
    }
    assert!(count > 1000);
}

#[test]
fn windows_line_ends_and_a_byte_order_mark_read_the_same() {
    let crlf = with("faults:\n  - { at: 60s, kind: kill, servers: [1] }\n").replace('\n', "\r\n");
    find(&refuse(&crlf), 8, "faults[0].at");
    let bom = format!("\u{feff}{BASE}");
    assert_eq!(parse(&bom), parse(BASE));
}

#[test]
fn two_faults_of_one_kind_on_shared_servers_at_once_are_refused() {
    let problems = refuse(&with(
        "faults:\n\
         \x20 - { id: a, at: 1s, for: 5s, kind: latency, servers: [1, 2], delay: 10ms }\n\
         \x20 - { id: b, at: 3s, for: 1s, kind: latency, servers: all, delay: 20ms }\n",
    ));
    let overlap = find(&problems, 9, "faults[1].at");
    assert!(overlap.message.contains("overlaps faults[0]"), "{overlap}");
    // Other kinds, other servers, or one after the other: all fine.
    for ok in [
        "faults:\n  - { at: 1s, for: 5s, kind: latency, servers: [1], delay: 10ms }\n  - { at: 2s, for: 1s, kind: abort, servers: [1] }\n",
        "faults:\n  - { at: 1s, for: 5s, kind: latency, servers: [1], delay: 10ms }\n  - { id: l2, at: 2s, for: 1s, kind: latency, servers: [2], delay: 10ms }\n",
        "faults:\n  - { at: 1s, for: 2s, kind: latency, servers: [1], delay: 10ms }\n  - { id: l2, at: 3s, for: 1s, kind: latency, servers: [1], delay: 10ms }\n",
    ] {
        parse(&with(ok)).unwrap_or_else(|p| panic!("{p:?}\n{ok}"));
    }
}
