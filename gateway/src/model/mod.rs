//! The REST shapes: what the JSON looks like, converted from and to the proto messages at
//! this edge and nowhere else.
//!
//! Conventions, kept everywhere: field names in snake_case; server ids are numbers; a
//! status or kind is a lowercase string (`"healthy"`, `"node_exited"`); HTTP methods keep
//! their canonical uppercase spelling (`"GET"`); times are `*_ms` (milliseconds since the
//! Unix epoch, or a duration when the name says so) and rates are per second. Numbers that
//! are not finite never appear (they become 0), so every body is valid JSON.
//!
//! Request bodies reject unknown fields (a typo is a 422 naming it, not a silent default),
//! and every bound a request can carry is written once here, in the schema attribute that
//! documents it, and checked by `validate` with the same constant before the controller is
//! called. The controller checks again; the two agree, so anything the schema accepts the
//! controller accepts too.
//!
//! # Layout
//! One module per resource: [`servers`], [`actions`], [`faults`], [`health`] (with the farm's metrics),
//! [`load_test`] (its phases, per-second and per-phase results; with [`front`]: runs through a load balancer), [`scenarios`], [`history`] (past runs, events, metrics over time), [`operations`] (simulated load, broadcast, scale) and [`info`]; [`uint`] is the
//! lenient reader of whole numbers, and this module holds the validators they share.

mod actions;
mod faults;
mod front;
mod health;
mod history;
mod info;
mod load_test;
mod operations;
mod scenarios;
mod servers;
pub mod uint;

pub use actions::*;
pub use faults::*;
pub use front::*;
pub use health::*;
pub use history::*;
pub use info::*;
pub use load_test::*;
pub use operations::*;
pub use scenarios::*;
pub use servers::*;

use farm_proto::limits::{self, MAX_TARGETS};

use crate::error::ApiError;

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

fn range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ApiError> {
    if value < min || value > max {
        return Err(ApiError::InvalidArgument(format!(
            "{field} must be {min} to {max}, got {value}"
        )));
    }
    Ok(())
}

fn server_ids(field: &str, ids: &[u32]) -> Result<(), ApiError> {
    if ids.len() > MAX_TARGETS {
        return Err(ApiError::InvalidArgument(format!(
            "{field} lists {} servers; at most {MAX_TARGETS}",
            ids.len()
        )));
    }
    if let Some(pos) = ids.iter().position(|&id| id == 0) {
        return Err(ApiError::InvalidArgument(format!(
            "{field}[{pos}] must be a server id (1 or more), got 0"
        )));
    }
    Ok(())
}

/// A node path as the schema's [`NODE_PATH_PATTERN`] says: unlike gRPC, REST has no empty
/// path (its default is `/`).
fn node_path(field: &str, path: &str) -> Result<(), ApiError> {
    if path.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "{field} must be a path on the node starting with a single \"/\", got \"\""
        )));
    }
    limits::check_node_path(path, field).map_err(ApiError::InvalidArgument)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_paths_are_the_contracts_without_the_empty_one() {
        assert!(node_path("path", "/data/4?x=1").is_ok());
        for bad in ["", "data", "//evil/x", "/<x>"] {
            let e = node_path("path", bad).unwrap_err();
            assert!(e.to_string().contains("path"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn load_test_defaults_fit_the_gateway_bound() {
        let req: LoadTestRequest = serde_json::from_str("{}").unwrap();
        let spec = req.into_spec(300).unwrap();
        assert_eq!(spec.duration_seconds, 60);
        assert_eq!(spec.path, "/");
        assert_eq!(spec.method, "GET");
        assert_eq!(spec.concurrency, 10);
        let req: LoadTestRequest =
            serde_json::from_str(r#"{"total_requests": 5, "ramp_up_seconds": 9}"#).unwrap();
        let spec = req.into_spec(2).unwrap_err();
        assert!(spec.to_string().contains("ramp_up_seconds"), "{spec}");
        let req: LoadTestRequest =
            serde_json::from_str(r#"{"duration_seconds": 3, "ramp_up_seconds": 9}"#).unwrap();
        let spec = req.into_spec(300).unwrap();
        assert_eq!(spec.ramp_up_seconds, 3, "the ramp is cut to the run");
        let req: LoadTestRequest = serde_json::from_str(r#"{"duration_seconds": 301}"#).unwrap();
        let e = req.into_spec(300).unwrap_err();
        assert!(e.to_string().contains("duration_seconds"), "{e}");
    }

    #[test]
    fn phases_are_bounded_by_field_and_their_sum_by_the_gateway() {
        let spec = |body: &str, max_seconds: u32| {
            serde_json::from_str::<LoadTestRequest>(body)
                .unwrap()
                .into_spec(max_seconds)
        };
        let two = r#"{"phases": [
            {"name": "warm", "duration_ms": 1500, "rate": 10, "rate_to": 40},
            {"name": "hold", "duration_ms": 1000, "rate": 40}
        ]}"#;
        let ok = spec(two, 300).unwrap();
        assert_eq!(
            ok.duration_seconds, 3,
            "2.5 s rounded up, not the default 60"
        );
        assert_eq!(ok.phases.len(), 2);
        assert_eq!(ok.phases[0].rate_to, Some(40.0));
        assert_eq!(ok.phases[1].rate_to, None);
        let e = spec(two, 2).unwrap_err().to_string();
        assert!(
            e.contains("phases") && e.contains("--max-load-test-seconds"),
            "{e}"
        );
        for (body, field) in [
            (
                r#"{"phases": [{"name": "", "duration_ms": 500}]}"#,
                "phases[0].name",
            ),
            (
                r#"{"phases": [{"name": "a b", "duration_ms": 500}]}"#,
                "phases[0].name",
            ),
            (
                r#"{"phases": [{"name": "a", "duration_ms": 500}, {"name": "b", "duration_ms": 99}]}"#,
                "phases[1].duration_ms",
            ),
            (
                r#"{"phases": [{"name": "a", "duration_ms": 500, "rate": 2e6}]}"#,
                "phases[0].rate",
            ),
            (
                r#"{"phases": [{"name": "a", "duration_ms": 500, "rate": 1, "rate_to": -1}]}"#,
                "phases[0].rate_to",
            ),
            (
                r#"{"phases": [{"name": "a", "duration_ms": 500, "concurrency": 1001}]}"#,
                "phases[0].concurrency",
            ),
            (
                r#"{"rate_per_second": 5, "phases": [{"name": "a", "duration_ms": 500, "rate": 1}]}"#,
                "rate_per_second",
            ),
            (
                r#"{"total_requests": 5, "phases": [{"name": "a", "duration_ms": 500}]}"#,
                "total_requests",
            ),
            (
                r#"{"duration_seconds": 2, "phases": [{"name": "a", "duration_ms": 500}]}"#,
                "duration_seconds",
            ),
        ] {
            let e = spec(body, 300).unwrap_err().to_string();
            assert!(e.contains(field), "{body}: {e}");
        }
        let e = serde_json::from_str::<LoadTestRequest>(
            r#"{"phases": [{"name": "a", "duration_ms": 500, "rps": 1}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("rps"), "{e}");
        let many: Vec<String> = (0..33)
            .map(|i| format!(r#"{{"name": "p{i}", "duration_ms": 100}}"#))
            .collect();
        let e = spec(&format!(r#"{{"phases": [{}]}}"#, many.join(",")), 300).unwrap_err();
        assert!(e.to_string().contains("at most 32"), "{e}");
    }

    #[test]
    fn scenario_sources_are_bounded_in_bytes_and_reports_read_plainly() {
        let body = |source: &str| serde_json::json!({ "source": source, "seed": 7 }).to_string();
        let ok: StartScenarioRequest = serde_json::from_str(&body("version: 1")).unwrap();
        assert_eq!(ok.into_proto().unwrap().seed, Some(7));
        // 40,000 characters of two bytes each: within maxLength, beyond the bytes.
        let wide: StartScenarioRequest = serde_json::from_str(&body(&"é".repeat(40_000))).unwrap();
        let e = wide.into_proto().unwrap_err().to_string();
        assert!(e.contains("source") && e.contains("65536"), "{e}");
        let e = serde_json::from_str::<CheckScenarioRequest>(&body("version: 1")).unwrap_err();
        assert!(e.to_string().contains("seed"), "check takes no seed: {e}");

        let report = ScenarioReport::from(farm_proto::v1::ScenarioReport {
            run_id: "sc-1".into(),
            state: farm_proto::v1::ScenarioState::Passed as i32,
            verdicts: vec![farm_proto::v1::ScenarioVerdict {
                r#final: true,
                observed: f64::NAN,
                ..Default::default()
            }],
            ..Default::default()
        });
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["state"], "passed");
        assert_eq!(json["verdicts"][0]["final"], true);
        assert_eq!(json["verdicts"][0]["observed"], 0.0);
        assert!(json["ended_at_ms"].is_null() && json["reason"].is_null());
        let started = serde_json::to_value(ScenarioStarted::new("sc-4".into())).unwrap();
        assert_eq!(started["links"]["run"], "/api/scenarios/sc-4");
        assert_eq!(started["links"]["stop"], "/api/scenarios/sc-4/stop");
    }

    #[test]
    fn history_queries_are_bounded_by_field_and_answers_read_plainly() {
        use farm_proto::v1 as pb;
        fn parse<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, String> {
            let uri: http::Uri = format!("/?{query}").parse().unwrap();
            axum::extract::Query::<T>::try_from_uri(&uri)
                .map(|q| q.0)
                .map_err(|e| e.body_text())
        }
        let runs = |query: &str| parse::<RunsQuery>(query).unwrap().into_proto();
        let page = runs("").unwrap();
        assert_eq!((page.page_size, page.page_token.as_str()), (20, ""));
        assert_eq!(page.kind, pb::RunKind::Unspecified as i32);
        let page = runs("page_size=100&page_token=7&kind=load_test").unwrap();
        assert_eq!((page.page_size, page.page_token.as_str()), (100, "7"));
        assert_eq!(page.kind, pb::RunKind::LoadTest as i32);
        for (query, field) in [
            ("page_size=0", "page_size"),
            ("page_size=101", "page_size"),
            (&format!("page_token={}", "7".repeat(65)), "page_token"),
            (&format!("page_token={}", "%C3%A9".repeat(33)), "page_token"),
        ] {
            let e = runs(query).unwrap_err().to_string();
            assert!(e.contains(field), "{query}: {e}");
        }
        let e = parse::<RunsQuery>("kind=both").unwrap_err();
        assert!(e.contains("both"), "{e}");

        let events = |query: &str| parse::<EventsQuery>(query).unwrap().into_proto();
        let all = events("").unwrap();
        assert_eq!((all.after_seq, all.limit, all.server_id), (0, 100, None));
        assert!(!all.newest);
        let some = events("after_seq=9&limit=1000&server_id=0&newest=true").unwrap();
        assert_eq!(
            (some.after_seq, some.limit, some.server_id),
            (9, 1000, Some(0))
        );
        assert!(some.newest);
        for query in ["limit=0", "limit=1001"] {
            let e = events(query).unwrap_err().to_string();
            assert!(e.contains("limit"), "{query}: {e}");
        }
        let farm = parse::<MetricHistoryQuery>("").unwrap().into_proto();
        assert_eq!((farm.server_id, farm.from_ms, farm.to_ms), (0, 0, 0));
        let e = parse::<MetricHistoryQuery>("server_id=one").unwrap_err();
        assert!(e.contains("whole number"), "{e}");

        let long = RunPath {
            run_id: "x".repeat(65),
        };
        assert!(long.validate().unwrap_err().to_string().contains("run_id"));
        let wide = RunPath {
            run_id: "é".repeat(64),
        };
        assert!(matches!(wide.validate(), Err(ApiError::NotFound(_))));

        let summary = pb::RunSummary {
            run_id: "lt-3".into(),
            kind: pb::RunKind::LoadTest as i32,
            state: "finished".into(),
            requests_per_second: f64::INFINITY,
            ..Default::default()
        };
        let detail = RunDetail::new(
            &RunPath {
                run_id: "lt-3".into(),
            },
            pb::GetRunResponse {
                summary: Some(summary.clone()),
                run: Some(pb::get_run_response::Run::LoadTest(
                    pb::RunLoadTestResponse {
                        run_id: "lt-3".into(),
                        done: true,
                        ..Default::default()
                    },
                )),
            },
        )
        .unwrap();
        let json = serde_json::to_value(&detail).unwrap();
        assert_eq!(json["summary"]["kind"], "load_test");
        assert_eq!(json["summary"]["state"], "finished");
        assert_eq!(json["summary"]["requests_per_second"], 0.0);
        assert!(json["summary"]["ended_at_ms"].is_null());
        assert_eq!(json["load_test"]["id"], "lt-3");
        assert!(json["scenario"].is_null());
        let list = serde_json::to_value(RunList::from(pb::ListRunsResponse {
            runs: vec![pb::RunSummary {
                state: "something new".into(),
                kind: 9,
                ..summary
            }],
            next_page_token: String::new(),
            total: 1,
        }))
        .unwrap();
        assert_eq!(list["runs"][0]["state"], "unknown");
        assert_eq!(list["runs"][0]["kind"], "unknown");
        assert!(list["next_page_token"].is_null());
        let event = serde_json::to_value(FarmEvent::from(pb::FarmEvent {
            kind: "controller_started".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(event["kind"], "controller_started");
    }

    #[test]
    fn whole_floats_count_as_integers() {
        let r: ScaleRequest = serde_json::from_str(r#"{"servers": 4.0}"#).unwrap();
        assert_eq!(r.servers, 4);
        for bad in [
            r#"{"servers": 4.5}"#,
            r#"{"servers": -1}"#,
            r#"{"servers": 4294967296}"#,
        ] {
            let e = serde_json::from_str::<ScaleRequest>(bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("whole number from 0 to 4294967295"),
                "{bad}: {e}"
            );
        }
        let r: LoadTestRequest =
            serde_json::from_str(r#"{"server_ids": [1.0, 2], "duration_seconds": 3.0}"#).unwrap();
        assert_eq!(r.server_ids, [1, 2]);
        assert_eq!(r.duration_seconds, Some(3));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e =
            serde_json::from_str::<ActionRequest>(r#"{"action":"stop","force":true}"#).unwrap_err();
        assert!(e.to_string().contains("force"), "{e}");
    }

    #[test]
    fn simulated_load_must_ask_for_something() {
        let r: SimulateLoadRequest = serde_json::from_str(r#"{"duration_seconds": 5}"#).unwrap();
        assert!(r.into_proto().is_err());
        let r: SimulateLoadRequest = serde_json::from_str(r#"{"memory_mb": 1}"#).unwrap();
        assert_eq!(r.into_proto().unwrap().load.unwrap().duration_seconds, 10);
    }
}
