//! `GET /metrics/prometheus` over real HTTP: the histogram counts exactly the requests made,
//! by status class and bucket; probes are left out; faults do not touch the route but show in
//! it; and `promtool check metrics` (Debian's `prometheus` package) accepts the output. A
//! missing promtool fails the test with the command that installs it.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{TestNode, raw};
use farm_node::connections::ConnectionLimits;
use farm_node_api::PROBE_HEADER;
use farm_node_api::faults::{AbortFault, FaultProfile, FaultWhen, HealthFault, StatusWeight};

const PROMTOOL: &str = "/usr/bin/promtool";

const DURATION: &str = "farm_node_request_duration_seconds";

/// One scrape: the head (lowercase) and the text.
async fn scrape(addr: &str, probe: bool) -> (String, String) {
    let probe = if probe {
        format!("{PROBE_HEADER}: 1\r\n")
    } else {
        String::new()
    };
    let request =
        format!("GET /metrics/prometheus HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{probe}\r\n");
    let (head, body) = raw(addr, &request).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    (
        head,
        String::from_utf8(body).expect("the exposition is UTF-8"),
    )
}

/// A probe's scrape, which leaves every figure alone.
async fn probe(node: &TestNode) -> String {
    scrape(&node.addr, true).await.1
}

/// The value of the one sample named exactly `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{series}: {v:?}")))
        .collect();
    assert_eq!(found.len(), 1, "one sample {series} in:\n{text}");
    found[0]
}

fn bucket(text: &str, class: &str, le: &str) -> f64 {
    value(
        text,
        &format!("{DURATION}_bucket{{class=\"{class}\",le=\"{le}\"}}"),
    )
}

fn count(text: &str, class: &str) -> f64 {
    value(text, &format!("{DURATION}_count{{class=\"{class}\"}}"))
}

/// How much `series` grew from `before` to `after`.
fn grew(before: &str, after: &str, f: impl Fn(&str) -> f64) -> f64 {
    f(after) - f(before)
}

/// Runs `promtool check metrics` on `text` and fails on any complaint.
fn promtool_check(text: &str) {
    assert!(
        std::path::Path::new(PROMTOOL).is_file(),
        "{PROMTOOL} is not installed; this test needs it: apt-get install -y prometheus \
         (Debian's package ships both prometheus and promtool)"
    );
    let mut check = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = check.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_histogram_counts_the_requests_made_and_promtool_accepts_it() {
    let node = TestNode::start(5).await;
    let (head, first) = scrape(&node.addr, true).await;
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("x-farm-server: 5"), "{head}");
    for line in [
        "farm_node_up 1",
        "farm_node_healthy 1",
        "farm_node_ready 1",
        "farm_node_requests_total 0",
        "farm_node_fault_active{kind=\"latency\"} 0",
        "# TYPE farm_node_request_duration_seconds histogram",
        "# TYPE farm_node_requests_total counter",
        "# TYPE farm_node_cpu_ratio gauge",
        "# TYPE farm_node_memory_resident_bytes gauge",
    ] {
        assert!(
            first.lines().any(|l| l == line),
            "missing {line:?} in:\n{first}"
        );
    }
    assert!(
        !first.contains("server=") && !first.contains("instance=") && !first.contains("job="),
        "Prometheus adds the target's labels itself:\n{first}"
    );
    assert!(value(&first, "farm_node_memory_resident_bytes") > 0.0);

    // 10 quick 2xx, one 2xx that sleeps 300 ms, 4 4xx and 3 5xx.
    for _ in 0..10 {
        assert_eq!(node.get("/health").await.status, 200);
    }
    assert_eq!(node.get("/slow-endpoint?delay_ms=300").await.status, 200);
    for _ in 0..4 {
        assert_eq!(node.get("/nope").await.status, 404);
    }
    for _ in 0..3 {
        assert_eq!(node.get("/error/503").await.status, 503);
    }
    let after = probe(&node).await;
    assert_eq!(grew(&first, &after, |t| count(t, "2xx")), 11.0, "{after}");
    assert_eq!(grew(&first, &after, |t| count(t, "4xx")), 4.0, "{after}");
    assert_eq!(grew(&first, &after, |t| count(t, "5xx")), 3.0, "{after}");
    assert_eq!(grew(&first, &after, |t| count(t, "1xx")), 0.0, "{after}");
    assert_eq!(
        grew(&first, &after, |t| bucket(t, "2xx", "+Inf")),
        11.0,
        "{after}"
    );
    // The slow answer is above 0.25 s, so at most the 10 quick ones are at or below it.
    assert!(
        grew(&first, &after, |t| bucket(t, "2xx", "0.25")) <= 10.0,
        "{after}"
    );
    let slow_sum = value(&after, &format!("{DURATION}_sum{{class=\"2xx\"}}"));
    assert!(
        slow_sum >= 0.3,
        "the 300 ms sleep is in the sum: {slow_sum}"
    );
    assert_eq!(
        grew(&first, &after, |t| value(t, "farm_node_requests_total")),
        18.0
    );
    assert_eq!(
        grew(&first, &after, |t| value(t, "farm_node_errors_total")),
        3.0
    );
    // Buckets are cumulative.
    let les = [
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
        "10", "+Inf",
    ];
    for pair in les.windows(2) {
        assert!(bucket(&after, "2xx", pair[0]) <= bucket(&after, "2xx", pair[1]));
    }

    // A scrape without the probe header is an ordinary request: it counts once answered.
    scrape(&node.addr, false).await;
    let later = probe(&node).await;
    assert_eq!(grew(&after, &later, |t| count(t, "2xx")), 1.0, "{later}");
    assert_eq!(
        grew(&after, &later, |t| value(t, "farm_node_requests_total")),
        1.0
    );

    promtool_check(&later);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn faults_leave_the_route_alone_and_show_in_it() {
    let mut node = TestNode::start_faulty(8, ConnectionLimits::default(), false).await;
    node.set_faults(&FaultProfile {
        abort: Some(AbortFault {
            when: FaultWhen::default(),
            statuses: vec![StatusWeight {
                status: 500,
                weight: 1,
            }],
        }),
        health: Some(HealthFault {
            when: FaultWhen::default(),
            status: 503,
        }),
        ..FaultProfile::default()
    })
    .await;
    assert_eq!(node.get("/").await.status, 500, "the abort is in force");
    // Not a probe: the abort would answer it if it touched the route.
    let (_, text) = scrape(&node.addr, false).await;
    for line in [
        "farm_node_healthy 0",
        "farm_node_ready 1",
        "farm_node_fault_active{kind=\"abort\"} 1",
        "farm_node_fault_active{kind=\"health\"} 1",
        "farm_node_fault_active{kind=\"latency\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert_eq!(count(&text, "5xx"), 1.0, "the aborted GET /: {text}");
    promtool_check(&text);

    node.set_faults(&FaultProfile::default()).await;
    let text = probe(&node).await;
    assert!(text.lines().any(|l| l == "farm_node_healthy 1"), "{text}");
    node.stop().await.unwrap();
}
