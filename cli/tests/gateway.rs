//! The gateway against a real farm: `farm up` on free ports, real HTTP/1.1 requests to every
//! route of the REST table and every error path, the docs page, CORS, and the OpenAPI
//! document. Every wait is bounded.

mod common;

use std::time::Duration;

use common::{Farm, HttpReply, eventually, get, http, post_json};
use serde_json::Value;

fn ids(list: &Value) -> Vec<u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_route_answers_in_the_documented_shape() {
    let farm = Farm::up(3);
    let base = farm.gateway_url();

    let info = get(&format!("{base}/")).await;
    assert_eq!(info.status, 200);
    let info = info.json();
    assert_eq!(info["name"], "farm");
    assert_eq!(info["links"]["docs"], "/docs");
    assert_eq!(info["links"]["openapi"], "/openapi.json");

    let list = get(&format!("{base}/api/servers")).await;
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.json();
    assert_eq!(ids(&list["servers"]), [1, 2, 3]);
    for server in list["servers"].as_array().unwrap() {
        assert_eq!(server["status"], "healthy", "{server}");
        assert_eq!(
            server["node_address"],
            farm.node_address(server["id"].as_u64().unwrap() as u32)
                .await
        );
        assert_eq!(server["runtime"], "process");
        assert_eq!(server["connected"], true);
        assert!(server["metrics"]["memory_bytes"].as_u64().unwrap() > 0);
        assert_eq!(server["metrics"]["node_state"], "running");
    }

    let healthy = get(&format!("{base}/api/servers?status=healthy"))
        .await
        .json();
    assert_eq!(ids(&healthy["servers"]), [1, 2, 3]);
    let stopped = get(&format!("{base}/api/servers?status=stopped"))
        .await
        .json();
    assert_eq!(ids(&stopped["servers"]), Vec::<u64>::new());

    let one = get(&format!("{base}/api/servers/2")).await;
    assert_eq!(one.status, 200);
    let one = one.json();
    assert_eq!(one["server"]["id"], 2);
    assert_eq!(one["server"]["name"], "server-2");
    assert!(!one["history"].as_array().unwrap().is_empty(), "{one}");
    assert!(one["events"].is_array());

    let health = get(&format!("{base}/api/health?timeout_ms=2000")).await;
    assert_eq!(health.status, 200, "{}", health.text());
    let health = health.json();
    assert_eq!(health["healthy"], 3);
    assert_eq!(health["total"], 3);
    assert_eq!(health["servers"][0]["probe_ok"], true);
    assert_eq!(health["servers"][0]["status"], "healthy");

    let metrics = get(&format!("{base}/api/metrics")).await;
    assert_eq!(metrics.status, 200);
    let metrics = metrics.json();
    assert_eq!(metrics["servers_total"], 3);
    assert_eq!(metrics["healthy"], 3);
    assert!(metrics["memory_bytes_total"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_list_is_tagged_with_the_farm_version_and_a_current_tag_gets_a_304() {
    let farm = Farm::up(2);
    let url = format!("{}/api/servers", farm.gateway_url());
    let tagged = |reply: &HttpReply| {
        assert_eq!(
            reply.headers["cache-control"], "no-cache",
            "revalidate every time"
        );
        reply.headers["etag"].to_str().unwrap().to_string()
    };
    let first = get(&url).await;
    assert_eq!(first.status, 200);
    let first_tag = tagged(&first);
    assert!(
        first_tag.starts_with('"') && first_tag.ends_with('"'),
        "{first_tag}"
    );

    // Samples keep changing the farm; ask again at once until it sat still in between. A
    // strong tag, a weak one, and a list that names it all get their 304.
    let revalidate = |header_for: fn(&str) -> String| {
        let url = url.clone();
        eventually(
            Duration::from_secs(10),
            "a 304 for a current tag",
            move || {
                let url = url.clone();
                async move {
                    let list = get(&url).await;
                    let tag = tagged(&list);
                    let again =
                        http("GET", &url, &[("if-none-match", &header_for(&tag))], b"").await;
                    if again.status == 200 {
                        assert_ne!(tagged(&again), tag, "a 200 for a tag only when it changed");
                        return None;
                    }
                    Some((list, tag, again))
                }
            },
        )
    };
    let (list, tag, not_modified) = revalidate(|tag| tag.to_string()).await;
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty(), "a 304 has no body");
    assert_eq!(tagged(&not_modified), tag);
    assert_eq!(ids(&list.json()["servers"]), [1, 2]);
    for header_for in [
        (|tag: &str| format!("W/{tag}")) as fn(&str) -> String,
        |tag: &str| format!("\"1\", {tag}"),
    ] {
        let (_, tag, reply) = revalidate(header_for).await;
        assert_eq!((reply.status, tagged(&reply)), (304, tag));
    }
    let any = http("GET", &url, &[("if-none-match", "*")], b"").await;
    assert_eq!(any.status, 304, "`*` matches any current answer");

    // A tag the farm has moved past gets the list.
    let stale = http("GET", &url, &[("if-none-match", "\"1\"")], b"").await;
    assert_eq!(stale.status, 200);
    assert_eq!(ids(&stale.json()["servers"]), [1, 2]);

    // A change: the tag held before no longer matches, and the list shows the change.
    let stop = post_json(
        &format!("{}/api/servers/1/action", farm.gateway_url()),
        r#"{"action":"stop"}"#,
    )
    .await;
    assert_eq!(stop.json()["ok"], true, "{}", stop.text());
    let after = eventually(
        Duration::from_secs(10),
        "server 1 stopped in the list",
        || {
            let (url, tag) = (url.clone(), tag.clone());
            async move {
                let reply = http("GET", &url, &[("if-none-match", &tag)], b"").await;
                (reply.status == 200 && reply.json()["servers"][0]["status"] == "stopped")
                    .then_some(reply)
            }
        },
    )
    .await;
    assert_ne!(tagged(&after), tag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_load_tests_simulated_load_broadcast_and_scale_reach_the_farm() {
    let farm = Farm::up(3);
    let base = farm.gateway_url();

    // A lifecycle action, and its effect seen through the REST API.
    let stop = post_json(
        &format!("{base}/api/servers/2/action"),
        r#"{"action":"stop"}"#,
    )
    .await;
    assert_eq!(stop.status, 200, "{}", stop.text());
    let stop = stop.json();
    assert_eq!(stop["server_id"], 2);
    assert_eq!(stop["action"], "stop");
    assert_eq!(stop["ok"], true, "{stop}");
    eventually(Duration::from_secs(10), "server 2 to be stopped", || {
        let url = format!("{base}/api/servers?status=stopped");
        async move { (ids(&get(&url).await.json()["servers"]) == [2]).then_some(()) }
    })
    .await;
    let start = post_json(
        &format!("{base}/api/servers/2/action"),
        r#"{"action":"start"}"#,
    )
    .await;
    assert_eq!(start.json()["ok"], true);
    eventually(
        Duration::from_secs(15),
        "server 2 to be healthy again",
        || {
            let url = format!("{base}/api/servers/2");
            async move { (get(&url).await.json()["server"]["status"] == "healthy").then_some(()) }
        },
    )
    .await;

    // A load test runs to its end and is kept.
    let run = post_json(
        &format!("{base}/api/load-test"),
        r#"{"total_requests": 300, "concurrency": 4, "path": "/health"}"#,
    )
    .await;
    assert_eq!(run.status, 200, "{}", run.text());
    let run = run.json();
    assert_eq!(run["done"], true, "{run}");
    let result = &run["result"];
    assert_eq!(result["requests"], 300, "{run}");
    assert_eq!(result["failures"], 0, "{run}");
    assert_eq!(result["per_server"].as_array().unwrap().len(), 3);
    assert_eq!(result["spec"]["method"], "GET");
    assert!(result["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    let id = run["id"].as_str().unwrap().to_string();
    let kept = get(&format!("{base}/api/load-tests")).await.json();
    assert!(
        kept["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{kept}"
    );
    let again = get(&format!("{base}/api/load-tests/{id}")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["result"]["requests"], 300);

    // An open-model run with a duration, on one server.
    let open = post_json(
        &format!("{base}/api/load-test"),
        r#"{"server_ids": [3], "rate_per_second": 50, "duration_seconds": 1}"#,
    )
    .await;
    assert_eq!(open.status, 200, "{}", open.text());
    let open = open.json();
    assert_eq!(open["result"]["per_server"][0]["server_id"], 3);
    assert!(open["result"]["latency_uncorrected"].is_object(), "{open}");

    // A simulated load on one server.
    let load = post_json(
        &format!("{base}/api/simulate-load"),
        r#"{"server_ids": [1], "cpu_percent": 10, "memory_mb": 8, "duration_seconds": 1}"#,
    )
    .await;
    assert_eq!(load.status, 200, "{}", load.text());
    let outcomes = &load.json()["outcomes"];
    assert_eq!(outcomes.as_array().unwrap().len(), 1);
    assert_eq!(outcomes[0]["server_id"], 1);
    assert_eq!(outcomes[0]["ok"], true, "{outcomes}");

    // A broadcast to every server.
    let broadcast = post_json(
        &format!("{base}/api/broadcast"),
        r#"{"path": "/health", "timeout_ms": 3000}"#,
    )
    .await;
    assert_eq!(broadcast.status, 200, "{}", broadcast.text());
    let replies = broadcast.json()["replies"].clone();
    assert_eq!(replies.as_array().unwrap().len(), 3);
    for reply in replies.as_array().unwrap() {
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["status_code"], 200, "{reply}");
        assert!(reply["error"].is_null());
    }

    // Scaling down and back up, on ports the farm already used.
    let down = post_json(&format!("{base}/api/scale"), r#"{"servers": 2}"#).await;
    assert_eq!(down.status, 200, "{}", down.text());
    let down = down.json();
    assert_eq!(down["removed"], serde_json::json!([3]));
    assert_eq!(down["servers"], 2);
    assert_eq!(
        get(&format!("{base}/api/servers/3")).await.status,
        404,
        "a removed server is gone"
    );
    let up = post_json(&format!("{base}/api/scale"), r#"{"servers": 3}"#).await;
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!(up.json()["added"], serde_json::json!([3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_with_the_field_named() {
    let farm = Farm::up(2);
    let base = farm.gateway_url();

    // Unknown things.
    let m = get(&format!("{base}/api/servers/99"))
        .await
        .expect_error(404, "not_found");
    assert!(m.contains("99"), "{m}");
    get(&format!("{base}/api/servers/0"))
        .await
        .expect_error(404, "not_found");
    let m = post_json(
        &format!("{base}/api/servers/99/action"),
        r#"{"action":"stop"}"#,
    )
    .await
    .expect_error(404, "not_found");
    assert!(m.contains("99"), "{m}");
    get(&format!("{base}/api/load-tests/lt-none"))
        .await
        .expect_error(404, "not_found");
    let m = get(&format!("{base}/api/nope"))
        .await
        .expect_error(404, "not_found");
    assert!(m.contains("/api/nope"), "{m}");
    let m = post_json(
        &format!("{base}/api/load-test"),
        r#"{"server_ids": [1, 77], "total_requests": 1}"#,
    )
    .await
    .expect_error(404, "not_found");
    assert!(m.contains("77"), "{m}");

    // Bad paths and queries name the parameter.
    let m = get(&format!("{base}/api/servers/abc"))
        .await
        .expect_error(400, "bad_request");
    assert!(m.contains("id"), "{m}");
    let m = get(&format!("{base}/api/servers?status=sleepy"))
        .await
        .expect_error(400, "bad_request");
    assert!(m.contains("status") && m.contains("sleepy"), "{m}");
    let m = get(&format!("{base}/api/health?timeout_ms=0"))
        .await
        .expect_error(400, "invalid_argument");
    assert!(m.contains("timeout_ms"), "{m}");
    let m = get(&format!("{base}/api/health?timeout_ms=soon"))
        .await
        .expect_error(400, "bad_request");
    assert!(m.contains("timeout_ms"), "{m}");

    // Bad bodies name the field.
    let action = format!("{base}/api/servers/1/action");
    let m = post_json(&action, r#"{"action":"explode"}"#)
        .await
        .expect_error(422, "unprocessable_entity");
    assert!(m.contains("action") && m.contains("explode"), "{m}");
    let m = post_json(&action, r#"{"actoin":"stop"}"#)
        .await
        .expect_error(422, "unprocessable_entity");
    assert!(m.contains("actoin"), "{m}");
    // serde_json files a number where an enum's string belongs under syntax errors: a
    // 400 then, still naming the field.
    let wrong_type = post_json(&action, r#"{"action": 3}"#).await;
    assert!(matches!(wrong_type.status, 400 | 422), "{wrong_type:?}");
    let m = wrong_type.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(m.contains("action"), "{m}");
    post_json(&action, r#"{"action": "stop""#)
        .await
        .expect_error(400, "bad_request");
    post_json(&action, "")
        .await
        .expect_error(400, "bad_request");
    http("POST", &action, &[("content-type", "text/plain")], b"stop")
        .await
        .expect_error(415, "unsupported_media_type");

    let load = format!("{base}/api/load-test");
    for (body, field) in [
        (r#"{"concurrency": 5000}"#, "concurrency"),
        (r#"{"concurrency": 0}"#, "concurrency"),
        (r#"{"duration_seconds": 100000}"#, "duration_seconds"),
        (r#"{"total_requests": 20000000}"#, "total_requests"),
        (r#"{"timeout_ms": 0}"#, "timeout_ms"),
        (r#"{"rate_per_second": 2e6}"#, "rate_per_second"),
        (r#"{"path": "http://example.com/"}"#, "path"),
        (r#"{"path": "//example.com/x"}"#, "path"),
        (r#"{"server_ids": [0]}"#, "server_ids"),
    ] {
        let m = post_json(&load, body)
            .await
            .expect_error(400, "invalid_argument");
        assert!(m.contains(field), "{body}: {m}");
    }
    // A URL cannot be smuggled in as a field either.
    let m = post_json(&load, r#"{"url": "http://example.com/"}"#)
        .await
        .expect_error(422, "unprocessable_entity");
    assert!(m.contains("url"), "{m}");
    let m = post_json(&load, r#"{"method": "CONNECT"}"#)
        .await
        .expect_error(422, "unprocessable_entity");
    assert!(m.contains("method"), "{m}");
    let m = post_json(&load, r#"{"concurrency": -1}"#)
        .await
        .expect_error(422, "unprocessable_entity");
    assert!(m.contains("concurrency"), "{m}");

    let simulate = format!("{base}/api/simulate-load");
    let m = post_json(&simulate, r#"{"duration_seconds": 2}"#)
        .await
        .expect_error(400, "invalid_argument");
    assert!(m.contains("cpu_percent") && m.contains("memory_mb"), "{m}");
    let m = post_json(&simulate, r#"{"cpu_percent": 99999}"#)
        .await
        .expect_error(400, "invalid_argument");
    assert!(m.contains("cpu_percent"), "{m}");
    let m = post_json(&simulate, r#"{"memory_mb": 1, "duration_seconds": 301}"#)
        .await
        .expect_error(400, "invalid_argument");
    assert!(m.contains("duration_seconds"), "{m}");

    let broadcast = format!("{base}/api/broadcast");
    let m = post_json(&broadcast, r#"{"path": "health"}"#)
        .await
        .expect_error(400, "invalid_argument");
    assert!(m.contains("path"), "{m}");
    let m = post_json(&broadcast, r#"{"timeout_ms": 60000}"#)
        .await
        .expect_error(400, "invalid_argument");
    assert!(m.contains("timeout_ms"), "{m}");
    let m = post_json(&broadcast, r#"{"target": "http://example.com"}"#)
        .await
        .expect_error(422, "unprocessable_entity");
    assert!(m.contains("target"), "{m}");

    let scale = format!("{base}/api/scale");
    for body in [r#"{"servers": 0}"#, r#"{"servers": 1001}"#] {
        let m = post_json(&scale, body)
            .await
            .expect_error(400, "invalid_argument");
        assert!(m.contains("servers"), "{m}");
    }
    post_json(&scale, "{}")
        .await
        .expect_error(422, "unprocessable_entity");

    // Wrong methods, with the Allow header.
    let wrong = http("DELETE", &format!("{base}/api/servers"), &[], b"").await;
    wrong.expect_error(405, "method_not_allowed");
    assert!(wrong.header("allow").contains("GET"), "{:?}", wrong.headers);
    let wrong = http("GET", &format!("{base}/api/load-test"), &[], b"").await;
    wrong.expect_error(405, "method_not_allowed");
    assert!(
        wrong.header("allow").contains("POST"),
        "{:?}",
        wrong.headers
    );

    // Too large a body.
    let huge = format!(r#"{{"body": "{}"}}"#, "x".repeat(300 * 1024));
    let m = post_json(&broadcast, &huge)
        .await
        .expect_error(413, "payload_too_large");
    assert!(m.contains("256 KiB"), "{m}");

    // Nothing above changed the farm.
    let list = get(&format!("{base}/api/servers")).await.json();
    assert_eq!(ids(&list["servers"]), [1, 2]);
    assert!(
        list["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "healthy"),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_work_offline_and_the_schema_covers_every_route() {
    let farm = Farm::up(1);
    let base = farm.gateway_url();

    let docs = get(&format!("{base}/docs")).await;
    assert_eq!(docs.status, 200);
    assert!(docs.header("content-type").starts_with("text/html"));
    let page = docs.text();
    assert!(page.contains("SwaggerUIBundle"), "Swagger UI is inline");
    assert!(page.contains("/openapi.json"));
    let lower = page.to_ascii_lowercase();
    for remote in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "url(http",
        "@import",
        "cdn.",
        "unpkg",
        "jsdelivr",
        "googleapis",
    ] {
        assert!(!lower.contains(remote), "the docs page loads {remote}");
    }
    assert!(page.contains("validatorUrl: null"), "no online validator");

    let doc = get(&format!("{base}/openapi.json")).await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/", "get"),
        ("/api/servers", "get"),
        ("/api/servers/{id}", "get"),
        ("/api/servers/{id}/action", "post"),
        ("/api/health", "get"),
        ("/api/metrics", "get"),
        ("/api/load-test", "post"),
        ("/api/load-tests", "get"),
        ("/api/load-tests", "post"),
        ("/api/load-tests/{id}", "get"),
        ("/api/load-tests/{id}/stop", "post"),
        ("/api/scenarios", "get"),
        ("/api/scenarios", "post"),
        ("/api/scenarios/check", "post"),
        ("/api/scenarios/{run_id}", "get"),
        ("/api/scenarios/{run_id}/stop", "post"),
        ("/api/runs", "get"),
        ("/api/runs/{run_id}", "get"),
        ("/api/events", "get"),
        ("/api/metrics/history", "get"),
        ("/api/simulate-load", "post"),
        ("/api/broadcast", "post"),
        ("/api/scale", "post"),
        ("/api/prometheus/targets", "get"),
        ("/metrics", "get"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert!(
            operation["responses"]["default"].is_object(),
            "{method} {path} documents its errors"
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["LoadTestRequest"]["properties"]["concurrency"]["maximum"],
        1000
    );
    assert_eq!(schemas["LoadTestRequest"]["additionalProperties"], false);
    assert_eq!(
        schemas["LoadTestRequest"]["properties"]["phases"]["maxItems"],
        32
    );
    assert_eq!(
        schemas["LoadPhase"]["properties"]["duration_ms"]["minimum"],
        100
    );
    assert_eq!(
        schemas["StartScenarioRequest"]["properties"]["source"]["maxLength"],
        65536
    );
    let start = &paths["/api/scenarios"]["post"];
    assert!(
        start["responses"]["202"].is_object(),
        "a started scenario is a 202: {start}"
    );
    assert!(
        start["description"]
            .as_str()
            .unwrap()
            .contains("docs/scenarios.md")
    );
    assert!(schemas["ErrorBody"].is_object());
    let bound = |path: &str, name: &str, key: &str| {
        let parameters = paths[path]["get"]["parameters"].as_array().unwrap();
        let parameter = parameters
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} documents {name}: {parameters:?}"));
        assert!(parameter["description"].is_string(), "{parameter}");
        parameter["schema"][key].clone()
    };
    assert_eq!(bound("/api/runs", "page_size", "maximum"), 100);
    assert_eq!(bound("/api/runs", "page_size", "minimum"), 1);
    assert_eq!(bound("/api/runs", "page_token", "maxLength"), 64);
    assert_eq!(bound("/api/events", "limit", "maximum"), 1000);
    assert_eq!(bound("/api/runs/{run_id}", "run_id", "maxLength"), 64);
    assert_eq!(bound("/api/metrics/history", "from_ms", "format"), "uint64");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_admits_the_dashboard_and_its_dev_server_and_exposes_grpc_status() {
    let farm = Farm::up(1);
    let base = farm.gateway_url();
    let preflight = http(
        "OPTIONS",
        &format!("{base}/farm.v1.FarmService/Watch"),
        &[
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,x-grpc-web,x-user-agent",
            ),
        ],
        b"",
    )
    .await;
    assert!(preflight.status < 300, "{preflight:?}");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        "http://localhost:3000"
    );
    let allowed = preflight
        .header("access-control-allow-headers")
        .to_ascii_lowercase();
    assert!(allowed.contains("x-grpc-web"), "{allowed}");
    assert!(
        allowed.contains("if-none-match"),
        "conditional reads: {allowed}"
    );

    let own = format!("http://{}", farm.gateway_address());
    let simple = http(
        "GET",
        &format!("{base}/api/servers"),
        &[("origin", own.as_str())],
        b"",
    )
    .await;
    assert_eq!(simple.status, 200);
    assert_eq!(simple.header("access-control-allow-origin"), own);
    // Another site's page gets no CORS headers: its script cannot read the answer.
    let elsewhere = http(
        "GET",
        &format!("{base}/api/servers"),
        &[("origin", "http://elsewhere.example")],
        b"",
    )
    .await;
    assert_eq!(elsewhere.header("access-control-allow-origin"), "");
    let exposed = simple
        .header("access-control-expose-headers")
        .to_ascii_lowercase();
    assert!(
        exposed.contains("grpc-status") && exposed.contains("grpc-message"),
        "{exposed}"
    );
    assert!(exposed.contains("etag"), "{exposed}");

    // Not a browser: no CORS headers, and a Vary that keeps caches from mixing the two.
    let plain = http("GET", &format!("{base}/api/servers"), &[], b"").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("access-control-allow-origin"), "");
    assert_eq!(plain.header("vary"), "origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origins_can_be_restricted() {
    let farm = Farm::up_with(
        1,
        &["--cors-origins", "http://localhost:3000"],
        Duration::from_secs(30),
    );
    let base = farm.gateway_url();
    let allowed = http(
        "GET",
        &format!("{base}/api/servers"),
        &[("origin", "http://localhost:3000")],
        b"",
    )
    .await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        "http://localhost:3000"
    );
    let refused = http(
        "GET",
        &format!("{base}/api/servers"),
        &[("origin", "http://evil.example")],
        b"",
    )
    .await;
    assert_eq!(refused.header("access-control-allow-origin"), "");
}

#[test]
fn a_taken_gateway_port_fails_with_a_clear_message() {
    use std::process::{Command, Stdio};
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut child = Command::new(common::farm_bin())
        .args(["up", "--servers", "1"])
        .args(["--listen", "127.0.0.1:0", "--node-base-port", "0"])
        .args(["--gateway-listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::wait_exit(&mut child, Duration::from_secs(10));
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success());
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port} for the gateway"
        )) && stderr.contains("--gateway-listen"),
        "{stderr}"
    );
    for (flag, value, expected) in [
        ("--cors-origins", "localhost:3000", "CORS origin"),
        ("--max-load-test-seconds", "0", "0 is not in 1..=3600"),
    ] {
        let output = Command::new(common::farm_bin())
            .args(["gateway", flag, value])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} {value}");
        assert!(stderr.contains(expected), "{flag} {value}: {stderr}");
    }
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_load_test_is_started_then_followed_by_its_id() {
    let farm = Farm::up(1);
    let base = farm.gateway_url();
    let spec = r#"{"path":"/health","concurrency":2,"duration_seconds":60,"rate_per_second":50}"#;
    let started = post_json(&format!("{base}/api/load-tests"), spec).await;
    assert_eq!(started.status, 200, "{}", started.text());
    let id = started.json()["id"].as_str().unwrap().to_string();
    assert_eq!(started.json()["done"], false);

    // Progress while it runs, fetched by id.
    let url = format!("{base}/api/load-tests/{id}");
    let running = eventually(Duration::from_secs(10), "progress of the run", || {
        let url = url.clone();
        async move {
            let body = get(&url).await.json();
            (body["done"] == false && body["result"]["requests"].as_u64() > Some(0)).then_some(body)
        }
    })
    .await;
    assert_eq!(running["id"], id.as_str());

    // At most 4 run this way at once.
    let mut others = Vec::new();
    for _ in 0..3 {
        let reply = post_json(&format!("{base}/api/load-tests"), spec).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        others.push(reply.json()["id"].as_str().unwrap().to_string());
    }
    post_json(&format!("{base}/api/load-tests"), spec)
        .await
        .expect_error(429, "too_many_requests");

    // Stopping answers the final report, kept for later.
    let stopped = post_json(&format!("{url}/stop"), "").await;
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    assert_eq!(stopped.json()["done"], true);
    assert_eq!(stopped.json()["stopped_reason"], "cancelled");
    assert_eq!(get(&url).await.json()["done"], true);
    // Stopping an ended run answers its report again; an unknown one is not found.
    let again = post_json(&format!("{url}/stop"), "").await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["stopped_reason"], "cancelled");
    post_json(&format!("{base}/api/load-tests/lt-999999/stop"), "")
        .await
        .expect_error(404, "not_found");
    for other in others {
        let reply = post_json(&format!("{base}/api/load-tests/{other}/stop"), "").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

/// A scenario of 3 s of open-model load at 20 requests a second on every server, whose one
/// SLO holds on a healthy farm.
const TINY_SCENARIO: &str = "\
version: 1
name: rest-tiny
target: { servers: all, path: /health }
load:
  model: open
  phases:
    - { name: hold, for: 3s, rate: 20 }
slo:
  - { metric: error_rate, lt: 5%, during: all }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_is_checked_started_and_followed_to_its_verdict() {
    let farm = Farm::up(2);
    let base = farm.gateway_url();
    let body = |source: &str| serde_json::json!({ "source": source }).to_string();

    // Checked first: nothing starts.
    let check = post_json(&format!("{base}/api/scenarios/check"), &body(TINY_SCENARIO)).await;
    assert_eq!(check.status, 200, "{}", check.text());
    assert_eq!(check.json()["valid"], true, "{}", check.text());
    assert_eq!(check.json()["problems"], serde_json::json!([]));

    let started = post_json(
        &format!("{base}/api/scenarios"),
        &serde_json::json!({ "source": TINY_SCENARIO, "seed": 42 }).to_string(),
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.text());
    let started = started.json();
    let id = started["run_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sc-"), "{started}");
    let url = format!("{base}/api/scenarios/{id}");
    assert_eq!(started["links"]["run"], format!("/api/scenarios/{id}"));
    assert_eq!(
        started["links"]["stop"],
        format!("/api/scenarios/{id}/stop")
    );

    let listed = get(&format!("{base}/api/scenarios")).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(
        listed.json()["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["run_id"] == id.as_str()),
        "{}",
        listed.text()
    );

    // Followed by id until it ends: 3 s of load, no steady-state checks.
    let report = eventually(Duration::from_secs(30), "the scenario to end", || {
        let url = url.clone();
        async move {
            let reply = get(&url).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            let report = reply.json();
            (report["state"] != "running").then_some(report)
        }
    })
    .await;
    assert_eq!(report["state"], "passed", "{report}");
    assert_eq!(report["name"], "rest-tiny");
    assert_eq!(report["seed"], 42);
    assert!(report["reason"].is_null(), "{report}");
    assert!(report["ended_at_ms"].as_u64() > report["started_at_ms"].as_u64());
    assert_eq!(report["phases"][0]["name"], "hold", "{report}");
    let load = &report["load"];
    let seconds = load["timeline"].as_array().unwrap();
    assert!(
        (3..=4).contains(&seconds.len()),
        "about one entry per second of 3 s: {load}"
    );
    assert!(seconds.iter().all(|s| s["provisional"] == false), "{load}");
    assert_eq!(load["failures"], 0, "{load}");
    assert_eq!(load["phases"][0]["name"], "hold", "{load}");
    let verdicts = report["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 1, "{report}");
    assert_eq!(verdicts[0]["passed"], true, "{report}");
    assert_eq!(verdicts[0]["final"], true, "{report}");
    assert_eq!(verdicts[0]["line"], 9, "{report}");

    // The history has it too, whole, once it has noted its end.
    let whole = eventually(
        Duration::from_secs(20),
        "the run's end in the history",
        || {
            let url = format!("{base}/api/runs/{id}");
            async move {
                let reply = get(&url).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                let whole = reply.json();
                (whole["summary"]["state"] != "running").then_some(whole)
            }
        },
    )
    .await;
    let summary = &whole["summary"];
    assert_eq!(summary["kind"], "scenario", "{whole}");
    assert_eq!(summary["state"], "passed", "{whole}");
    assert_eq!(summary["name"], "rest-tiny", "{whole}");
    assert_eq!(
        (
            summary["verdicts_passed"].as_u64(),
            summary["verdicts_total"].as_u64()
        ),
        (Some(1), Some(1)),
        "{whole}"
    );
    assert_eq!(whole["scenario"]["run_id"], id.as_str(), "{whole}");
    assert_eq!(whole["scenario"]["verdicts"], report["verdicts"], "{whole}");
    assert!(whole["load_test"].is_null(), "{whole}");
    let listed = get(&format!("{base}/api/runs?kind=scenario")).await.json();
    assert_eq!(run_ids(&listed), [id.as_str()], "{listed}");

    // Stopping a run that has ended answers its final report again.
    let stopped = post_json(&format!("{url}/stop"), "").await;
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    assert_eq!(stopped.json()["state"], "passed");

    // A file with an unknown key: a 400 naming its line and field, and nothing started.
    let typo = TINY_SCENARIO.replace("target:", "tagret:");
    let m = post_json(&format!("{base}/api/scenarios"), &body(&typo))
        .await
        .expect_error(400, "invalid_argument");
    assert!(m.contains("line 3") && m.contains("tagret"), "{m}");
    let checked = post_json(&format!("{base}/api/scenarios/check"), &body(&typo)).await;
    assert_eq!(checked.status, 200, "{}", checked.text());
    let checked = checked.json();
    assert_eq!(checked["valid"], false, "{checked}");
    let problem = &checked["problems"][0];
    assert_eq!(problem["line"], 3, "{checked}");
    assert_eq!(problem["field"], "tagret", "{checked}");
    assert!(
        problem["message"].as_str().unwrap().contains("target"),
        "{checked}"
    );
    let runs = get(&format!("{base}/api/scenarios")).await.json();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");

    // Bounds and unknown ids.
    let m = post_json(&format!("{base}/api/scenarios"), &body(&"#".repeat(65_537)))
        .await
        .expect_error(400, "invalid_argument");
    assert!(m.contains("source"), "{m}");
    let m = post_json(
        &format!("{base}/api/scenarios/check"),
        r#"{"source": "version: 1", "seed": 1}"#,
    )
    .await
    .expect_error(422, "unprocessable_entity");
    assert!(m.contains("seed"), "{m}");
    get(&format!("{base}/api/scenarios/sc-999999"))
        .await
        .expect_error(404, "not_found");
    post_json(&format!("{base}/api/scenarios/sc-999999/stop"), "")
        .await
        .expect_error(404, "not_found");
    let m = get(&format!("{base}/api/scenarios/{}", "x".repeat(65)))
        .await
        .expect_error(400, "invalid_argument");
    assert!(m.contains("run_id"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_test_in_phases_reports_each_phase_and_each_second() {
    let farm = Farm::up_with(
        1,
        &["--max-load-test-seconds", "2"],
        Duration::from_secs(30),
    );
    let base = farm.gateway_url();
    let run = post_json(
        &format!("{base}/api/load-test"),
        r#"{"path": "/health", "phases": [
            {"name": "warm", "duration_ms": 1000, "rate": 20},
            {"name": "hold", "duration_ms": 1000, "rate": 40}
        ]}"#,
    )
    .await;
    assert_eq!(run.status, 200, "{}", run.text());
    let run = run.json();
    let result = &run["result"];
    assert_eq!(result["spec"]["duration_seconds"], 2, "{result}");
    let asked: Vec<&str> = result["spec"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(asked, ["warm", "hold"], "{result}");
    let phases = result["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2, "{result}");
    assert_eq!(phases[0]["name"], "warm");
    assert_eq!(
        (phases[1]["start_ms"].as_u64(), phases[1]["end_ms"].as_u64()),
        (Some(1000), Some(2000))
    );
    // 20 and 40 requests are due; allow for the edges of a busy machine.
    let requests = |p: &Value| p["requests"].as_u64().unwrap();
    assert!((15..=25).contains(&requests(&phases[0])), "{result}");
    assert!((30..=50).contains(&requests(&phases[1])), "{result}");
    let seconds = result["timeline"].as_array().unwrap();
    assert!((2..=3).contains(&seconds.len()), "{result}");
    let total: u64 = seconds
        .iter()
        .map(|s| s["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, result["requests"].as_u64().unwrap(), "{result}");

    // The phases' sum is held to the gateway's bound on a run, as a duration is.
    let m = post_json(
        &format!("{base}/api/load-test"),
        r#"{"phases": [
            {"name": "a", "duration_ms": 1500, "rate": 5},
            {"name": "b", "duration_ms": 1000, "rate": 5}
        ]}"#,
    )
    .await
    .expect_error(400, "invalid_argument");
    assert!(m.contains("phases") && m.contains("2 s"), "{m}");
    let m = post_json(
        &format!("{base}/api/load-tests"),
        r#"{"phases": [{"name": "a", "duration_ms": 50, "rate": 5}]}"#,
    )
    .await
    .expect_error(400, "invalid_argument");
    assert!(m.contains("phases[0].duration_ms"), "{m}");
    // The controller's rules across phases come back naming the phase.
    let m = post_json(
        &format!("{base}/api/load-test"),
        r#"{"phases": [
            {"name": "a", "duration_ms": 500, "rate": 5},
            {"name": "b", "duration_ms": 500}
        ]}"#,
    )
    .await
    .expect_error(400, "invalid_argument");
    assert!(m.contains("phases[1].rate"), "{m}");
}

/// `text` as a query parameter's value: every byte but the unreserved ones percent-encoded.
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The `run_id`s of a page of `GET /api/runs`.
fn run_ids(page: &Value) -> Vec<&str> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect()
}

/// The points of a metric history, checked to be one a second and in order.
fn points_by_the_second(history: &Value) -> &Vec<Value> {
    assert_eq!(history["resolution_seconds"], 1, "{history}");
    let points = history["points"].as_array().unwrap();
    let at: Vec<u64> = points
        .iter()
        .map(|p| p["at_ms"].as_u64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{history}");
    assert!(
        at.iter().all(|ms| ms % 1000 == 0),
        "whole seconds: {history}"
    );
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_has_the_runs_the_events_and_the_metrics_over_time() {
    let farm = Farm::up(2);
    let base = farm.gateway_url();
    let links = get(&format!("{base}/")).await.json()["links"].clone();
    assert_eq!(links["runs"], "/api/runs", "{links}");
    assert_eq!(links["metric_history"], "/api/metrics/history", "{links}");

    // Two short load tests; the history lists the newest first, once both have ended.
    let mut ran = Vec::new();
    for _ in 0..2 {
        let run = post_json(
            &format!("{base}/api/load-test"),
            r#"{"total_requests": 20, "concurrency": 2, "path": "/health"}"#,
        )
        .await;
        assert_eq!(run.status, 200, "{}", run.text());
        ran.push(run.json()["id"].as_str().unwrap().to_string());
    }
    let (older, newer) = (ran[0].as_str(), ran[1].as_str());
    let runs = eventually(Duration::from_secs(20), "both runs in the history", || {
        let url = format!("{base}/api/runs");
        async move {
            let reply = get(&url).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            let page = reply.json();
            let ended = page["runs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["state"] == "finished")
                .count();
            (ended == 2).then_some(page)
        }
    })
    .await;
    assert_eq!(run_ids(&runs), [newer, older], "{runs}");
    assert_eq!(runs["total"], 2, "{runs}");
    assert!(runs["next_page_token"].is_null(), "{runs}");
    let line = &runs["runs"][0];
    assert_eq!(line["kind"], "load_test", "{line}");
    assert!(line["name"].as_str().unwrap().contains("/health"), "{line}");
    assert_eq!(
        (line["requests"].as_u64(), line["failures"].as_u64()),
        (Some(20), Some(0))
    );
    assert!(
        line["ended_at_ms"].as_u64() >= line["started_at_ms"].as_u64(),
        "{line}"
    );
    assert!(line["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{line}");
    assert_eq!(
        (
            line["verdicts_passed"].as_u64(),
            line["verdicts_total"].as_u64()
        ),
        (Some(0), Some(0))
    );

    // A page at a time: the first page's token fetches the next, the last has none.
    let first = get(&format!("{base}/api/runs?page_size=1")).await.json();
    assert_eq!(run_ids(&first), [newer], "{first}");
    assert_eq!(first["total"], 2, "{first}");
    let token = first["next_page_token"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = get(&format!(
        "{base}/api/runs?page_size=1&page_token={}",
        query_value(&token)
    ))
    .await;
    assert_eq!(second.status, 200, "{}", second.text());
    let second = second.json();
    assert_eq!(run_ids(&second), [older], "{second}");
    assert!(second["next_page_token"].is_null(), "{second}");
    let load_tests = get(&format!("{base}/api/runs?kind=load_test")).await.json();
    assert_eq!(run_ids(&load_tests), [newer, older], "{load_tests}");
    let scenarios = get(&format!("{base}/api/runs?kind=scenario")).await.json();
    assert_eq!(run_ids(&scenarios), Vec::<&str>::new(), "{scenarios}");
    assert_eq!(scenarios["total"], 0, "{scenarios}");

    // One run, whole: its summary and its load test's report, as the load-test routes give it.
    let whole = get(&format!("{base}/api/runs/{older}")).await;
    assert_eq!(whole.status, 200, "{}", whole.text());
    let whole = whole.json();
    assert_eq!(whole["summary"]["run_id"], older, "{whole}");
    assert_eq!(whole["summary"]["state"], "finished", "{whole}");
    let report = &whole["load_test"];
    assert_eq!(report["id"], older, "{whole}");
    assert_eq!(report["done"], true, "{whole}");
    assert_eq!(report["result"]["requests"], 20, "{whole}");
    assert_eq!(report["result"]["spec"]["path"], "/health", "{whole}");
    assert!(whole["scenario"].is_null(), "{whole}");

    // The events, oldest first: the controller's start, then the servers as the history
    // first saw them and their changes (it looks about once a second, so a server that
    // turned healthy before its first look is "added" healthy, with no change of status).
    let healthy_after_start = |events: &Value| {
        let list = events["events"].as_array().unwrap();
        let started = list.iter().find(|e| e["kind"] == "controller_started")?;
        list.iter()
            .find(|e| {
                e["seq"].as_u64() > started["seq"].as_u64()
                    && match e["kind"].as_str() {
                        Some("added") => e["detail"] == "healthy",
                        Some("status") => e["detail"]
                            .as_str()
                            .is_some_and(|d| d.contains("-> healthy")),
                        _ => false,
                    }
            })
            .map(|healthy| (started.clone(), healthy.clone()))
    };
    let events = eventually(
        Duration::from_secs(20),
        "a server seen healthy after the controller's start",
        || {
            let url = format!("{base}/api/events?newest=true");
            async move {
                let reply = get(&url).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                let events = reply.json();
                healthy_after_start(&events).is_some().then_some(events)
            }
        },
    )
    .await;
    let list = events["events"].as_array().unwrap();
    let seqs: Vec<u64> = list.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{events}");
    assert_eq!(
        events["last_seq"].as_u64(),
        seqs.last().copied(),
        "{events}"
    );
    let (started, healthy) = healthy_after_start(&events).unwrap();
    assert_eq!(started["server_id"], 0, "the farm's own: {started}");
    assert!(healthy["server_id"].as_u64().unwrap() >= 1, "{healthy}");
    assert!(
        healthy["at_ms"].as_u64() >= started["at_ms"].as_u64(),
        "{events}"
    );
    for id in [1, 2] {
        assert!(
            list.iter()
                .any(|e| e["server_id"] == id && e["kind"] == "added"),
            "server {id} added: {events}"
        );
    }
    let ended = list.iter().filter(|e| e["kind"] == "run_ended").count();
    assert_eq!(ended, 2, "{events}");
    // Read on from a number: the next event, and only it.
    let next = get(&format!("{base}/api/events?after_seq={}&limit=1", seqs[0]))
        .await
        .json();
    assert_eq!(next["events"].as_array().unwrap().len(), 1, "{next}");
    assert_eq!(next["events"][0]["seq"], seqs[1], "{next}");
    let one = get(&format!("{base}/api/events?server_id=1")).await.json();
    let one = one["events"].as_array().unwrap();
    assert!(
        !one.is_empty() && one.iter().all(|e| e["server_id"] == 1),
        "{one:?}"
    );

    // The farm's metrics and a server's, one point a second; `/api/metrics` is still the
    // farm's latest figures.
    let history = eventually(Duration::from_secs(20), "seconds of metrics", || {
        let url = format!("{base}/api/metrics/history");
        async move {
            let reply = get(&url).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            let history = reply.json();
            let points = history["points"].as_array().unwrap();
            // A point that counts a healthy server: the farm's figures are in.
            let counted = points.iter().any(|p| p["healthy"].as_f64() > Some(0.0));
            (points.len() >= 2 && counted).then_some(history)
        }
    })
    .await;
    let points = points_by_the_second(&history);
    let last = points.last().unwrap();
    assert!(last["memory_bytes"].as_u64().unwrap() > 0, "{history}");
    assert!(
        points
            .iter()
            .all(|p| (0.0..=2.0).contains(&p["healthy"].as_f64().unwrap())),
        "{history}"
    );
    let reply = get(&format!("{base}/api/metrics/history?server_id=1")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let server = reply.json();
    let points = points_by_the_second(&server);
    assert!(!points.is_empty(), "{server}");
    assert!(
        points
            .iter()
            .all(|p| (0.0..=1.0).contains(&p["healthy"].as_f64().unwrap())),
        "{server}"
    );
    let to_ms = last["at_ms"].as_u64().unwrap();
    let span = get(&format!(
        "{base}/api/metrics/history?from_ms={}&to_ms={to_ms}",
        to_ms - 60_000
    ))
    .await;
    assert_eq!(span.status, 200, "{}", span.text());
    let span = span.json();
    let ends = points_by_the_second(&span)
        .last()
        .map(|p| p["at_ms"].clone());
    assert_eq!(ends, Some(last["at_ms"].clone()), "{span}");
    let now = get(&format!("{base}/api/metrics")).await;
    assert_eq!(now.status, 200, "{}", now.text());
    assert_eq!(now.json()["servers_total"], 2, "{}", now.text());

    // Bad input names the parameter; an unknown run is not found.
    for (query, code, field) in [
        ("runs?page_size=101", "invalid_argument", "page_size"),
        ("runs?page_size=0", "invalid_argument", "page_size"),
        ("runs?page_size=many", "bad_request", "page_size"),
        (
            &format!("runs?page_token={}", "7".repeat(65)),
            "invalid_argument",
            "page_token",
        ),
        (
            "runs?page_token=not-a-token",
            "invalid_argument",
            "page_token",
        ),
        ("runs?kind=both", "bad_request", "kind"),
        ("events?limit=1001", "invalid_argument", "limit"),
        ("events?limit=0", "invalid_argument", "limit"),
        ("events?server_id=one", "bad_request", "server_id"),
        ("events?after_seq=-1", "bad_request", "after_seq"),
        ("events?newest=maybe", "bad_request", "newest"),
        ("metrics/history?server_id=one", "bad_request", "server_id"),
        ("metrics/history?from_ms=soon", "bad_request", "from_ms"),
        (
            &format!("metrics/history?from_ms=1&to_ms={to_ms}"),
            "invalid_argument",
            "from_ms",
        ),
    ] {
        let m = get(&format!("{base}/api/{query}"))
            .await
            .expect_error(400, code);
        assert!(m.contains(field), "{query}: {m}");
    }
    let m = get(&format!("{base}/api/runs/lt-999999"))
        .await
        .expect_error(404, "not_found");
    assert!(m.contains("lt-999999"), "{m}");
    let m = get(&format!("{base}/api/runs/{}", "x".repeat(65)))
        .await
        .expect_error(400, "invalid_argument");
    assert!(m.contains("run_id"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_that_keeps_no_history_says_so() {
    let farm = Farm::up_with(1, &["--no-history"], Duration::from_secs(30));
    let base = farm.gateway_url();
    for route in ["runs", "events", "metrics/history"] {
        let m = get(&format!("{base}/api/{route}"))
            .await
            .expect_error(409, "conflict");
        assert!(m.contains("no history"), "{route}: {m}");
    }
    get(&format!("{base}/api/runs/lt-1"))
        .await
        .expect_error(404, "not_found");
}
