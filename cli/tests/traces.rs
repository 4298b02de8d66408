//! Traces across the farm, received by an OTLP collector the test runs itself (the
//! opentelemetry-proto crate's `TraceService` on 127.0.0.1:0; no collector is installable
//! here, and this is the same gRPC service a collector serves):
//! - one REST simulate-load call sent with a sampled `traceparent` becomes one trace with
//!   spans from the gateway, the controller, the agent and the node, each the child of the
//!   one before, each process named by its `service.name`;
//! - with the collector down the farm works as ever;
//! - a malformed endpoint or resource attribute list stops `farm up` with the variable named.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::otlp::{Collector, Received, traced_simulate_load, traceparent};
use common::{Farm, farm_bin, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rest_call_is_one_trace_from_the_gateway_to_the_node() {
    let (collector, endpoint) = Collector::start("127.0.0.1:0").await;
    let farm = Farm::start(
        2,
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // The caller's own trace: its span is the parent of the gateway's.
    let trace_id: [u8; 16] = *b"farm-trace-test!";
    let caller_span: [u8; 8] = *b"caller!!";
    traced_simulate_load(&farm.gateway_url(), 1, &trace_id, &caller_span).await;

    let wanted = ["farm-gateway", "farm-controller", "farm-agent", "farm-node"];
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = collector.spans_of(&trace_id);
        if wanted.iter().all(|w| spans.iter().any(|s| s.service == *w)) {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "not every process sent its span within 20 s: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let by_id: HashMap<&[u8], &Received> =
        spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let parent_of = |s: &Received| by_id.get(s.parent_span_id.as_slice()).copied();
    let one = |service: &str, name_part: &str| {
        spans
            .iter()
            .find(|s| s.service == service && s.name.contains(name_part))
            .unwrap_or_else(|| panic!("no {service} span named *{name_part}*: {spans:#?}"))
    };
    let gateway = one("farm-gateway", "/api/simulate-load");
    assert_eq!(
        gateway.parent_span_id, caller_span,
        "the gateway's span is the caller's child"
    );
    let call = one("farm-controller", "FarmService/SimulateLoad");
    assert_eq!(
        parent_of(call).map(|p| p.span_id.clone()),
        Some(gateway.span_id.clone())
    );
    let command = one("farm-controller", "command simulate_load");
    assert_eq!(
        parent_of(command).map(|p| p.span_id.clone()),
        Some(call.span_id.clone())
    );
    let agent = one("farm-agent", "handle simulate_load");
    assert_eq!(
        parent_of(agent).map(|p| p.span_id.clone()),
        Some(command.span_id.clone())
    );
    let node = one("farm-node", "POST /simulate-load");
    // (That a node makes no span for untraced requests is `node/src/server.rs`'s unit test:
    // such spans would not be exported anyway, nodes never starting a trace.)
    assert_eq!(
        parent_of(node).map(|p| p.span_id.clone()),
        Some(agent.span_id.clone())
    );

    // A load test is a span with one span per phase (the ramp, then the steady part), and no
    // span per request.
    let load_trace: [u8; 16] = *b"farm-load-trace!";
    let traceparent = traceparent(&load_trace, &caller_span);
    let reply = http(
        "POST",
        &format!("{}/api/load-test", farm.gateway_url()),
        &[
            ("content-type", "application/json"),
            ("traceparent", &traceparent),
        ],
        br#"{"rate_per_second": 100, "duration_seconds": 2, "ramp_up_seconds": 1, "path": "/"}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let deadline = Instant::now() + Duration::from_secs(20);
    let load_spans = loop {
        let spans = collector.spans_of(&load_trace);
        if spans
            .iter()
            .filter(|s| s.service == "farm-controller")
            .count()
            >= 4
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "the load test's spans: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let named = |name: &str| {
        load_spans
            .iter()
            .find(|s| s.name == name || s.name.starts_with(name))
            .unwrap_or_else(|| panic!("no span {name}: {load_spans:#?}"))
    };
    let run = named("load test lt-");
    assert_eq!(
        named("farm.v1.FarmService/RunLoadTest").span_id,
        run.parent_span_id
    );
    for phase in ["ramp", "steady"] {
        assert_eq!(named(phase).parent_span_id, run.span_id, "{phase}");
    }
    assert!(
        load_spans.len() < 10,
        "no span per load request: {load_spans:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_whose_collector_is_down_works_as_ever() {
    // A port nothing listens on: bound, learnt, released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let farm = Farm::start(
        3,
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{closed}"))],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    for _ in 0..20 {
        let reply = common::get(&format!("{}/api/servers", farm.gateway_url())).await;
        assert_eq!(reply.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "20 REST reads took {:?} with the collector down",
        started.elapsed()
    );
    traced_simulate_load(&farm.gateway_url(), 2, b"collector-down!!", b"caller!!").await;
}

#[test]
fn a_malformed_endpoint_or_attribute_list_is_named_at_start_up() {
    for (name, value, expect) in [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "collector:4317",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://[bad",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "ftp://x:1",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "team=a,oops",
            "OTEL_RESOURCE_ATTRIBUTES",
        ),
    ] {
        let mut command = std::process::Command::new(farm_bin());
        command
            .args(["up", "--servers", "1", "--listen", "127.0.0.1:0"])
            .args(["--gateway-listen", "127.0.0.1:0", "--node-base-port", "0"])
            .env("FARM_DATA_DIR", common::unique_dir("farm-data"))
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
            .env(name, value);
        let output = command.output().unwrap();
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}={value} started the farm");
        assert!(said.contains(expect), "{name}={value}: {said}");
        assert!(!said.contains("healthy"), "{name}={value}: {said}");
    }
    // The flag is checked the same way, for a server's own processes too.
    let output = std::process::Command::new(farm_bin())
        .args([
            "node",
            "--id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            "nowhere",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--otlp-endpoint"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A node whose collector is down logs one warning, however many spans it drops, and serves
/// as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_one_warning() {
    use std::io::{BufRead, BufReader, Read};
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut node = std::process::Command::new(farm_bin())
        .args(["node", "--id", "1", "--listen", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(node.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let address = banner
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string();
    for round in 0..3 {
        for _ in 0..20 {
            let reply = http(
                "GET",
                &format!("http://{address}/"),
                &[(
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )],
                b"",
            )
            .await;
            assert_eq!(reply.status, 200, "round {round}");
        }
        // A batch goes out every 500 ms; each one fails.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    common::signal(node.id(), nix::sys::signal::Signal::SIGTERM);
    let _ = node.wait();
    let mut said = String::new();
    node.stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert_eq!(
        said.matches("Traces cannot reach the collector").count(),
        1,
        "{said}"
    );
}
