//! `GET /metrics` against a real farm: the series it promises, `promtool check metrics`
//! accepting it, and a real Prometheus (Debian's `prometheus` package) scraping it. Both
//! tools are required: a missing one fails the test with the command that installs it.

mod common;

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Farm, eventually, get, low_port};

fn require(tool: &str) -> String {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
    });
    match found {
        Some(path) => path.to_string_lossy().into_owned(),
        None => panic!(
            "`{tool}` is not installed; this test needs it: apt-get install -y prometheus \
             (Debian's package ships both prometheus and promtool)"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_hold_per_server_farm_and_gateway_series_and_pass_promtool() {
    let promtool = require("promtool");
    let farm = Farm::up(2);
    let base = farm.gateway_url();
    assert_eq!(get(&format!("{base}/api/servers")).await.status, 200);
    assert_eq!(get(&format!("{base}/api/servers/99")).await.status, 404);

    let scrape = get(&format!("{base}/metrics")).await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = scrape.text();
    for line in [
        "farm_controller_up 1",
        "farm_server_up{server=\"1\"} 1",
        "farm_server_up{server=\"2\"} 1",
        "farm_server_status{server=\"1\",status=\"healthy\"} 1",
        "farm_server_status{server=\"1\",status=\"stopped\"} 0",
        "farm_servers{status=\"healthy\"} 2",
        "farm_gateway_http_requests_total{route=\"/api/servers\",method=\"GET\",status=\"200\"} 1",
        "farm_gateway_http_requests_total{route=\"/api/servers/{id}\",method=\"GET\",status=\"404\"} 1",
        "farm_gateway_http_request_duration_seconds_bucket{route=\"/api/servers\",le=\"+Inf\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    for family in [
        "farm_server_info{server=\"1\",name=\"server-1\"",
        "farm_server_cpu_cores{server=\"1\"}",
        "farm_server_memory_bytes{server=\"2\"}",
        "farm_server_requests_total{server=\"1\"}",
        "farm_server_errors_total{server=\"1\"}",
        "farm_server_requests_per_second{server=\"1\"}",
        "farm_cpu_cores ",
        "farm_memory_bytes ",
        "farm_requests_total ",
        "# TYPE farm_gateway_http_request_duration_seconds histogram",
        "# TYPE farm_server_requests_total counter",
    ] {
        assert!(text.contains(family), "missing {family:?} in:\n{text}");
    }

    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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

/// Prometheus, killed and its storage removed when dropped.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The result of an instant query, or None while Prometheus is still starting (503).
async fn query(prometheus: &str, promql: &str) -> Option<Vec<serde_json::Value>> {
    let encoded: String = promql
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let reply = get(&format!("{prometheus}/api/v1/query?query={encoded}")).await;
    if reply.status == 503 {
        return None;
    }
    assert_eq!(reply.status, 200, "{}", reply.text());
    Some(
        reply.json()["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_gateway() {
    let binary = require("prometheus");
    let farm = Farm::up(2);
    // Prometheus cannot report the port it got: one below the ephemeral range.
    let port = low_port();
    let dir = std::env::temp_dir().join(format!("farm-prometheus-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: farm\n    static_configs:\n      - targets: ['{}']\n",
            farm.gateway_address()
        ),
    )
    .unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let _prometheus = Prometheus { child, dir };
    let url = format!("http://127.0.0.1:{port}");

    eventually(
        Duration::from_secs(60),
        "Prometheus to scrape the gateway",
        || {
            let url = url.clone();
            async move {
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
                let up = query(&url, "up{job=\"farm\"}").await?;
                (up.len() == 1 && up[0]["value"][1] == "1").then_some(())
            }
        },
    )
    .await;
    let servers = query(&url, "farm_server_up{job=\"farm\"}").await.unwrap();
    assert_eq!(servers.len(), 2, "{servers:?}");
    let healthy = query(&url, "farm_servers{job=\"farm\",status=\"healthy\"}")
        .await
        .unwrap();
    assert_eq!(healthy[0]["value"][1], "2", "{healthy:?}");
    // A scrape is counted once it is answered, so from the second scrape on.
    eventually(Duration::from_secs(10), "the gateway's own series", || {
        let url = url.clone();
        async move {
            let scrapes =
                query(&url, "farm_gateway_http_requests_total{route=\"/metrics\"}").await?;
            (!scrapes.is_empty()).then_some(())
        }
    })
    .await;
}
