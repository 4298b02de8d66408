//! Monitoring a farm with a real Prometheus (Debian's `prometheus` package) through the
//! gateway's HTTP service discovery, configured by `monitoring/prometheus.yml`: every server's
//! node is found and scraped on `/metrics/prometheus`, and servers added by scaling are
//! scraped within a refresh and a scrape. Prometheus and promtool are required: a missing one
//! fails the test with the command that installs it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Farm, get, low_port, post_json, servers, unique_dir};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// The ready config, as the README tells people to run it.
const CONFIG: &str = include_str!("../../monitoring/prometheus.yml");

/// How many ports [`Prometheus::start`] tries: each is free when picked, but another test may
/// bind it first, and Prometheus cannot bind port 0 and say which port it got.
const PORT_ATTEMPTS: usize = 5;
/// How long Prometheus may take to be ready to serve queries.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long the first 20 targets may take to be discovered and scraped.
const FIRST_SCRAPES: Duration = Duration::from_secs(60);
/// How long servers added by scaling may take to be scraped: the test's refresh (2 s) and
/// scrape (1 s) intervals, the new nodes' start, and room for a busy machine.
const NEW_SCRAPES: Duration = Duration::from_secs(15);

fn require(path: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is not installed; this test needs it: apt-get install -y prometheus \
         (Debian's package ships both prometheus and promtool)"
    );
}

/// `monitoring/prometheus.yml` for a farm whose gateway is at `gateway`, with the test's
/// short intervals. Each replaced text must be in the file, so that a change to the file that
/// this test no longer matches fails here rather than testing something else.
fn config_for(gateway: &str) -> String {
    let mut config = CONFIG.to_string();
    for (from, to) in [
        ("127.0.0.1:8000", gateway),
        ("refresh_interval: 5s", "refresh_interval: 2s"),
        ("scrape_interval: 5s", "scrape_interval: 1s"),
        ("evaluation_interval: 5s", "evaluation_interval: 1s"),
    ] {
        assert!(
            config.contains(from),
            "monitoring/prometheus.yml has no {from:?}"
        );
        config = config.replace(from, to);
    }
    config
}

/// A Prometheus the test started: killed, and its directory (config, storage, log) removed,
/// when dropped, also when the test fails.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts Prometheus on `config` on a free low port, and waits until it is ready; on a
    /// port taken meanwhile, tries another.
    async fn start(config: &str) -> Prometheus {
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = low_port();
            let dir = unique_dir("farm-prometheus");
            let config_path = dir.join("prometheus.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
            let child = Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("{PROMETHEUS} does not start: {e}"));
            let mut prometheus = Prometheus {
                child,
                dir,
                url: format!("http://127.0.0.1:{port}"),
            };
            match prometheus.wait_ready(port).await {
                Ok(()) => return prometheus,
                Err(said) if said.contains("address already in use") => {
                    failures.push(format!("port {port}: {said}"));
                }
                Err(said) => panic!("prometheus did not start on port {port}: {said}"),
            }
        }
        panic!("prometheus found no free port in {PORT_ATTEMPTS} attempts: {failures:#?}");
    }

    /// Waits until `/-/ready` answers 200; `Err` with Prometheus' log when it exits first.
    async fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status}): {}", self.log()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && get(&format!("{}/-/ready", self.url)).await.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready within {START_LIMIT:?}: {}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The result of an instant query.
    async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
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
        let reply = get(&format!("{}/api/v1/query?query={encoded}", self.url)).await;
        assert_eq!(reply.status, 200, "{promql}: {}", reply.text());
        reply.json()["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The servers (their `server` label) whose node target is up, and those that are not.
    async fn nodes_up(&self) -> (BTreeSet<u32>, BTreeSet<u32>) {
        let mut up = BTreeSet::new();
        let mut down = BTreeSet::new();
        for series in self.query("up{job=\"farm-nodes\"}").await {
            let server: u32 = series["metric"]["server"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("a node target without a server label: {series}"));
            if series["value"][1] == "1" {
                up.insert(server);
            } else {
                down.insert(server);
            }
        }
        (up, down)
    }

    /// Waits until exactly the servers `ids` are scraped and up; panics after `limit` with
    /// what Prometheus saw last, and its view of the targets.
    async fn wait_nodes_up(&self, ids: std::ops::RangeInclusive<u32>, limit: Duration) {
        let expected: BTreeSet<u32> = ids.collect();
        let deadline = Instant::now() + limit;
        loop {
            let (up, down) = self.nodes_up().await;
            if up == expected && down.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                let targets = get(&format!("{}/api/v1/targets?state=active", self.url))
                    .await
                    .text();
                panic!(
                    "within {limit:?} Prometheus did not see exactly servers {expected:?} up: \
                     up {up:?}, not up {down:?}\ntargets: {targets}\nlog: {}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_finds_every_node_through_the_gateway_and_follows_scaling() {
    require(PROMETHEUS);
    require(PROMTOOL);
    let farm = Farm::up_with(20, &[], Duration::from_secs(90));
    let base = farm.gateway_url();

    // The discovery document itself: one group per server, at the node's address.
    let reply = get(&format!("{base}/api/prometheus/targets")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "application/json");
    let groups = reply.json();
    let groups = groups.as_array().expect("a JSON array");
    let mut client = farm.client().await;
    let listed = servers(&mut client).await;
    assert_eq!(groups.len(), 20, "{groups:?}");
    for (group, server) in groups.iter().zip(&listed) {
        assert_eq!(
            group,
            &serde_json::json!({
                "targets": [server.node_address],
                "labels": {
                    "server": server.id.to_string(),
                    "name": format!("server-{}", server.id),
                    "runtime": "process",
                    "__metrics_path__": "/metrics/prometheus",
                },
            })
        );
    }

    // The ready config, pointed at this farm, passes promtool and drives a real Prometheus.
    let config = config_for(&farm.gateway_address());
    let check_dir = unique_dir("farm-promtool");
    let check_path = check_dir.join("prometheus.yml");
    std::fs::write(&check_path, &config).unwrap();
    let check = Command::new(PROMTOOL)
        .args(["check", "config"])
        .arg(&check_path)
        .output()
        .expect("promtool runs");
    let _ = std::fs::remove_dir_all(&check_dir);
    assert!(
        check.status.success(),
        "promtool check config: {}{}\n{config}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let prometheus = Prometheus::start(&config).await;
    prometheus.wait_nodes_up(1..=20, FIRST_SCRAPES).await;
    // The nodes' own series arrive with the discovery labels, and nothing else names them.
    let healthy = prometheus
        .query("farm_node_healthy{job=\"farm-nodes\",runtime=\"process\"}")
        .await;
    assert_eq!(healthy.len(), 20, "{healthy:?}");
    for series in &healthy {
        assert_eq!(series["value"][1], "1", "{series}");
        let server = series["metric"]["server"].as_str().unwrap();
        assert_eq!(series["metric"]["name"], format!("server-{server}"));
    }
    let histogram = prometheus
        .query("farm_node_request_duration_seconds_bucket{job=\"farm-nodes\",class=\"2xx\",le=\"+Inf\"}")
        .await;
    assert_eq!(histogram.len(), 20, "{histogram:?}");

    // Five more servers: discovered and scraped within one refresh and one scrape, plus
    // their start.
    let scaled = post_json(&format!("{base}/api/scale"), r#"{"servers": 25}"#).await;
    assert_eq!(scaled.status, 200, "{}", scaled.text());
    assert_eq!(
        scaled.json()["added"],
        serde_json::json!([21, 22, 23, 24, 25])
    );
    let started = Instant::now();
    prometheus.wait_nodes_up(1..=25, NEW_SCRAPES).await;
    eprintln!(
        "five new servers scraped {:?} after the scale answered",
        started.elapsed()
    );
}
