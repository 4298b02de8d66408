//! The swarm runtime on a real swarm of two Docker engines: the lab that `scripts/swarm-lab up`
//! builds on this machine (two engines in network namespaces of their own), which
//! `scripts/test-all` starts once per run and describes in `FARM_LAB_*`. Without the lab these
//! tests fail and say how to start it. Each test names its farm uniquely and removes it. The
//! farm's controller runs as a service on the manager's node, as `farm up --runtime swarm`
//! makes it.
//!
//! The lab's nodes share this machine's hostname, so the tests tell them apart by address.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// The lab, as `scripts/swarm-lab env` describes it.
struct Lab {
    manager: String,
    worker: String,
    n1: String,
    n2: String,
}

fn lab() -> Lab {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the swarm lab is not up. Run `sudo scripts/swarm-lab up` and `eval \"$(scripts/swarm-lab env)\"` first (scripts/test-all does both)"
            )
        })
    };
    Lab {
        manager: var("FARM_LAB_MANAGER_HOST"),
        worker: var("FARM_LAB_WORKER_HOST"),
        n1: var("FARM_LAB_N1_ADDR"),
        n2: var("FARM_LAB_N2_ADDR"),
    }
}

/// `docker -H engine args...`; its standard output, or a panic with what it said.
fn docker_on(engine: &str, args: &[&str]) -> String {
    let output = Command::new("docker")
        .arg("-H")
        .arg(engine)
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        output.status.success(),
        "docker -H {engine} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("fs{}-{test}-{nanos:x}", std::process::id())
}

/// Removes a farm's services and network however the test ends.
struct Down<'a> {
    lab: &'a Lab,
    prefix: String,
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(farm_bin())
            .args(["down", "--runtime", "swarm", "--swarm-manager"])
            .arg(&self.lab.manager)
            .args(["--name-prefix", &self.prefix])
            .output();
    }
}

/// Sets a node's availability back to active however the test ends.
struct Reactivate<'a> {
    lab: &'a Lab,
    node: String,
}

impl Drop for Reactivate<'_> {
    fn drop(&mut self) {
        // No panic here: this may run while a failed test unwinds.
        let _ = Command::new("docker")
            .args([
                "-H",
                &self.lab.manager,
                "node",
                "update",
                "--availability",
                "active",
            ])
            .arg(&self.node)
            .output();
    }
}

/// One test at a time on the lab: a test that cuts or drains a node would move the servers of
/// another test's farm under it.
static LAB_IN_USE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `scripts/swarm-lab cut|mend 2`: the worker off the lab's network, as a machine that is lost,
/// or back on it.
fn worker_link(verb: &str) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/swarm-lab"))
        .args([verb, "2"])
        .output()
        .expect("scripts/swarm-lab runs")
}

/// [`worker_link`], which must succeed.
fn set_worker_link(verb: &str) {
    let output = worker_link(verb);
    assert!(
        output.status.success(),
        "swarm-lab {verb} 2: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Puts the worker back on the lab's network however the test ends.
struct Mend;

impl Drop for Mend {
    fn drop(&mut self) {
        // No panic here: this may run while a failed test unwinds.
        let _ = worker_link("mend");
    }
}

/// `farm up --runtime swarm` of `servers` servers on the lab: its controller runs as a service
/// on the manager's node, published on ports the engine picks.
fn swarm_farm(lab: &Lab, servers: u32, prefix: &str) -> Farm {
    swarm_farm_with(lab, servers, prefix, &[], &[])
}

/// [`swarm_farm`] with `extra` arguments and environment `env`.
fn swarm_farm_with(
    lab: &Lab,
    servers: u32,
    prefix: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Farm {
    let mut args = vec![
        "--runtime",
        "swarm",
        "--name-prefix",
        prefix,
        "--swarm-manager",
        &lab.manager,
        "--swarm-engine",
        &lab.worker,
    ];
    args.extend(extra);
    Farm::start(servers, &args, env, Duration::from_secs(180)).unwrap_or_else(|e| panic!("{e}"))
}

/// Service `service`'s running task, as the engine says; empty when none runs.
fn running_task(lab: &Lab, service: &str) -> String {
    docker_on(
        &lab.manager,
        &[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            service,
        ],
    )
    .trim()
    .to_string()
}

/// The REST list of servers.
async fn rest_servers(farm: &Farm) -> Vec<serde_json::Value> {
    let reply = get(&format!("{}/api/servers", farm.gateway_url())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["servers"].as_array().unwrap().clone()
}

/// `POST` of a change through the gateway, which listens beyond loopback on the manager's node
/// and so asks for the farm's token.
async fn post_change(farm: &Farm, path: &str, body: &str) -> HttpReply {
    let bearer = format!("Bearer {}", farm.token().trim());
    http(
        "POST",
        &format!("{}{path}", farm.gateway_url()),
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer),
        ],
        body.as_bytes(),
    )
    .await
}

/// The addresses (`host:port`) the running controller task of farm `prefix` is published
/// on, gRPC then gateway, once its task runs.
fn controller_addresses(lab: &Lab, prefix: &str) -> Option<(String, String)> {
    let ports = docker_on(
        &lab.manager,
        &[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.CurrentState}}|{{.Ports}}",
            &format!("{prefix}-controller"),
        ],
    );
    let line = ports.lines().find(|l| l.starts_with("Running"))?;
    // `*:32776->50051/tcp,*:32777->8000/tcp` (each may be listed twice).
    let published = |target: &str| {
        line.split(['|', ','])
            .find_map(|p| p.strip_suffix(&format!("->{target}/tcp")))
            .and_then(|p| p.rsplit_once(':'))
            .map(|(_, port)| format!("{}:{port}", lab.n1))
    };
    Some((published("50051")?, published("8000")?))
}

/// The swarm node address that server `server`'s node is published on.
fn node_host(server: &serde_json::Value) -> String {
    let address = server["node_address"].as_str().unwrap();
    address.rsplit_once(':').unwrap().0.to_string()
}

/// Waits until every server is healthy and placed on a node, returning the list.
async fn all_healthy(farm: &Farm, limit: Duration, what: &str) -> Vec<serde_json::Value> {
    eventually(limit, what, || async {
        let list = rest_servers(farm).await;
        list.iter()
            .all(|s| s["status"] == "healthy" && s["placement"] != "")
            .then_some(list)
    })
    .await
}

/// The lab engines' logs, and how long each is now.
fn engine_logs() -> Vec<(std::path::PathBuf, u64)> {
    let name = std::env::var("FARM_LAB_NAME").unwrap_or_else(|_| "farm-lab".into());
    ["n1", "n2"]
        .iter()
        .map(|node| {
            let path = std::path::PathBuf::from(format!("/var/lib/{name}/{node}/dockerd.log"));
            let len = std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("the lab's engine log {}: {e}", path.display()))
                .len();
            (path, len)
        })
        .collect()
}

/// What the engines logged after `marks` that speaks of pulling an image.
fn pulls_since(marks: &[(std::path::PathBuf, u64)]) -> Vec<String> {
    marks
        .iter()
        .flat_map(|(path, from)| {
            let text = std::fs::read(path).unwrap();
            let new =
                String::from_utf8_lossy(&text[(*from as usize).min(text.len())..]).into_owned();
            new.lines()
                .filter(|line| {
                    let line = line.to_lowercase();
                    // The swarm's gossip logs "Push/Pull" exchanges with the other node.
                    line.contains("pull") && !line.contains("push/pull")
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_farm_spreads_serves_recovers_moves_and_leaves_nothing_behind() {
    let _one_at_a_time = LAB_IN_USE.lock().await;
    let lab = lab();
    let prefix = unique_prefix("all");
    let logs = engine_logs();
    let _down = Down {
        lab: &lab,
        prefix: prefix.clone(),
    };
    let mut farm = swarm_farm(&lab, 10, &prefix);

    // Spread over both nodes; each server's published address answers as that server.
    let list = all_healthy(&farm, Duration::from_secs(30), "a healthy farm").await;
    let hosts: BTreeSet<String> = list.iter().map(node_host).collect();
    assert_eq!(
        hosts,
        BTreeSet::from([lab.n1.clone(), lab.n2.clone()]),
        "the servers run on both nodes: {list:#?}"
    );
    for server in &list {
        assert!(
            server["placement"]
                .as_str()
                .unwrap()
                .starts_with(server["node_address"].as_str().unwrap()),
            "the placement names the node: {server}"
        );
        let reply = get(&format!(
            "http://{}/health",
            server["node_address"].as_str().unwrap()
        ))
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.headers["x-farm-server"].to_str().unwrap(),
            server["id"].to_string(),
        );
    }

    // A second farm asking for the port the first one's controller is published on is told
    // at once why its controller cannot start, and leaves nothing behind.
    let taken = farm.controller.rsplit_once(':').unwrap().1.to_string();
    let second = format!("{prefix}-b");
    let _down_second = Down {
        lab: &lab,
        prefix: second.clone(),
    };
    let data = unique_dir("farm-data");
    let refused = Command::new(farm_bin())
        .env("FARM_DATA_DIR", &data)
        .args([
            "up",
            "--runtime",
            "swarm",
            "--servers",
            "1",
            "--name-prefix",
            &second,
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{taken}"),
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .args(["--node-base-port", "0", "--swarm-manager", &lab.manager])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&data);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    // The scheduler knows the ports it was asked for ("host-mode port already in use"); one
    // the engine picked, only the node finds taken ("port is already allocated").
    assert!(
        said.contains("port already in use") || said.contains("port is already allocated"),
        "{said}"
    );
    assert_eq!(
        docker_on(
            &lab.manager,
            &[
                "service",
                "ls",
                "-q",
                "--filter",
                &format!("label=io.farm.name={second}")
            ]
        ),
        ""
    );

    // A load test reaches every server.
    let reply = post_change(
        &farm,
        "/api/load-test",
        r#"{"path": "/", "concurrency": 10, "total_requests": 1000, "timeout_ms": 5000}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let result = &reply.json()["result"];
    assert_eq!(result["failures"], 0, "{result}");
    let reached: BTreeSet<u64> = result["per_server"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["requests"].as_u64().unwrap() > 0)
        .map(|s| s["server_id"].as_u64().unwrap())
        .collect();
    assert_eq!(reached, (1..=10).collect::<BTreeSet<u64>>());

    // Actions go to the engine: a stop scales the service to nothing, a start brings it
    // back, a restart has the engine replace its task.
    let action = |id: u32, action: &'static str| {
        let path = format!("/api/servers/{id}/action");
        let farm = &farm;
        async move {
            let reply = post_change(farm, &path, &format!(r#"{{"action": "{action}"}}"#)).await;
            assert_eq!(reply.status, 200, "{action}: {}", reply.text());
            assert_eq!(reply.json()["ok"], true, "{action}: {}", reply.text());
        }
    };
    let server_status = |id: u32, status: &'static str| {
        let farm = &farm;
        move || async move {
            rest_servers(farm)
                .await
                .iter()
                .any(|s| s["id"] == id && s["status"] == status)
                .then_some(())
        }
    };
    action(1, "stop").await;
    eventually(
        Duration::from_secs(15),
        "server 1 stopped",
        server_status(1, "stopped"),
    )
    .await;
    let label = format!("label=io.farm.name={prefix}");
    let service_1 = format!("{prefix}-server-1");
    assert_eq!(
        docker_on(
            &lab.manager,
            &[
                "service",
                "inspect",
                &service_1,
                "--format",
                "{{.Spec.Mode.Replicated.Replicas}}"
            ],
        )
        .trim(),
        "0"
    );
    action(1, "start").await;
    all_healthy(&farm, Duration::from_secs(30), "server 1 started again").await;
    let running_task = || running_task(&lab, &service_1);
    let task_before = running_task();
    action(1, "restart").await;
    eventually(
        Duration::from_secs(30),
        "server 1's task replaced",
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let task = running_task();
            (!task.trim().is_empty() && task != task_before).then_some(())
        },
    )
    .await;
    all_healthy(&farm, Duration::from_secs(30), "server 1 restarted").await;

    // Scaling adds services with the next ids and removes the highest.
    let scale = |servers: u32| {
        let farm = &farm;
        async move {
            let reply =
                post_change(farm, "/api/scale", &format!(r#"{{"servers": {servers}}}"#)).await;
            assert_eq!(reply.status, 200, "scale to {servers}: {}", reply.text());
        }
    };
    scale(12).await;
    let list = all_healthy(&farm, Duration::from_secs(60), "12 servers").await;
    assert_eq!(list.len(), 12);
    scale(10).await;
    let services = docker_on(
        &lab.manager,
        &["service", "ls", "--filter", &label, "--format", "{{.Name}}"],
    );
    let mut names: Vec<&str> = services.lines().collect();
    names.sort_unstable();
    let mut expected: Vec<String> = (1..=10).map(|id| format!("{prefix}-server-{id}")).collect();
    expected.push(format!("{prefix}-controller"));
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(rest_servers(&farm).await.len(), 10);

    // Agents on the swarm's network with a wrong token, or none, are refused and counted.
    let image = docker_on(
        &lab.manager,
        &[
            "service",
            "inspect",
            &format!("{prefix}-server-1"),
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ],
    );
    let refused_before = farm.refused_streams().await;
    for (name, token) in [("wrong", Some("not-this-farms-token-0123")), ("none", None)] {
        let service = format!("{prefix}-intruder-{name}");
        let mut args = vec![
            "service".to_string(),
            "create".into(),
            "--detach".into(),
            "--no-resolve-image".into(),
            "--name".into(),
            service,
            "--label".into(),
            format!("io.farm.name={prefix}"),
            "--network".into(),
            format!("{prefix}-net"),
            "--restart-condition".into(),
            "none".into(),
            // Its logs are read from its node: the manager's are there whatever the worker
            // went through (a worker cut off once no longer streams its tasks' logs).
            "--constraint".into(),
            "node.role==manager".into(),
        ];
        if let Some(token) = token {
            args.extend(["--env".into(), format!("FARM_TOKEN={token}")]);
        }
        args.extend([
            image.trim().to_string(),
            "agent".into(),
            "--id".into(),
            "99".into(),
            // Over the farm's network, as the farm's own agents reach it.
            "--controller".into(),
            format!("http://{prefix}-controller:50051"),
            "--node-listen".into(),
            "0.0.0.0:8000".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_on(&lab.manager, &args);
    }
    eventually(
        Duration::from_secs(60),
        "both intruders refused",
        || async { (farm.refused_streams().await >= refused_before + 2).then_some(()) },
    )
    .await;
    assert!(
        rest_servers(&farm).await.iter().all(|s| s["id"] != 99),
        "no intruder joined the farm"
    );
    for name in ["wrong", "none"] {
        let service = format!("{prefix}-intruder-{name}");
        eventually(Duration::from_secs(30), "the intruder told why", || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // The CLI writes what the task wrote to its standard error to its own.
            let logs = Command::new("docker")
                .args(["-H", &lab.manager, "service", "logs", "--raw", &service])
                .output()
                .expect("the docker CLI runs");
            String::from_utf8_lossy(&logs.stderr)
                .contains("the farm's token is missing or wrong")
                .then_some(())
        })
        .await;
        docker_on(&lab.manager, &["service", "rm", &service]);
    }

    // `docker kill` of a task's container on the worker is seen, and the server comes back.
    let list = all_healthy(&farm, Duration::from_secs(30), "a healthy farm").await;
    let victim = list
        .iter()
        .find(|s| node_host(s) == lab.n2)
        .expect("a server on the worker");
    let victim_id = victim["id"].as_u64().unwrap();
    let id = victim_id.to_string();
    let container = docker_on(
        &lab.worker,
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=io.farm.name={prefix}"),
            "--filter",
            &format!("label=io.farm.server-id={id}"),
        ],
    );
    docker_on(&lab.worker, &["kill", container.trim()]);
    eventually(Duration::from_secs(10), "the kill seen", || async {
        rest_servers(&farm)
            .await
            .iter()
            .any(|s| s["id"] == victim_id && s["status"] == "stopped")
            .then_some(())
    })
    .await;
    all_healthy(&farm, Duration::from_secs(30), "the killed server back").await;

    // The worker lost (off the network, its engine still running): the manager marks it
    // down and starts its servers' tasks on its own node; the farm shows them moving and
    // healthy again there.
    let on_worker: Vec<u64> = all_healthy(&farm, Duration::from_secs(30), "a healthy farm")
        .await
        .iter()
        .filter(|s| node_host(s) == lab.n2)
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert!(!on_worker.is_empty(), "servers run on the worker");
    let _mend = Mend;
    set_worker_link("cut");
    eventually(
        Duration::from_secs(15),
        "the lost worker's servers seen gone",
        || async {
            rest_servers(&farm)
                .await
                .iter()
                .any(|s| on_worker.contains(&s["id"].as_u64().unwrap()) && s["status"] != "healthy")
                .then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "every server healthy on the manager's node",
        || async {
            let list = rest_servers(&farm).await;
            list.iter()
                .all(|s| s["status"] == "healthy" && node_host(s) == lab.n1)
                .then_some(())
        },
    )
    .await;
    // Back on the network, the worker stops the tasks it ran, and the farm stays as it is.
    set_worker_link("mend");
    eventually(
        Duration::from_secs(60),
        "the worker back, without the farm's old tasks",
        || async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let nodes = docker_on(&lab.manager, &["node", "ls", "--format", "{{.Status}}"]);
            let ready = nodes.lines().filter(|l| *l == "Ready").count() == 2;
            let left = docker_on(&lab.worker, &["ps", "-q", "--filter", &label]);
            (ready && left.is_empty()).then_some(())
        },
    )
    .await;
    let list = all_healthy(&farm, Duration::from_secs(10), "a farm whole").await;
    assert!(list.iter().all(|s| node_host(s) == lab.n1), "{list:#?}");

    // Draining the worker moves its servers to the manager's node, and the farm is whole.
    // The worker is empty now: the servers a scale-up adds go there.
    scale(13).await;
    let list = all_healthy(&farm, Duration::from_secs(60), "13 servers").await;
    assert!(
        list.iter().any(|s| node_host(s) == lab.n2),
        "new servers on the empty worker: {list:#?}"
    );
    let worker_node = docker_on(&lab.worker, &["info", "--format", "{{.Swarm.NodeID}}"])
        .trim()
        .to_string();
    let _reactivate = Reactivate {
        lab: &lab,
        node: worker_node.clone(),
    };
    docker_on(
        &lab.manager,
        &["node", "update", "--availability", "drain", &worker_node],
    );
    let moved = eventually(
        Duration::from_secs(60),
        "every server on the manager's node",
        || async {
            let list = rest_servers(&farm).await;
            list.iter()
                .all(|s| s["status"] == "healthy" && node_host(s) == lab.n1)
                .then_some(list)
        },
    )
    .await;
    assert_eq!(moved.len(), 13);

    // A task the engine cannot place says why.
    docker_on(
        &lab.manager,
        &[
            "service",
            "update",
            "--detach",
            "--constraint-add",
            "node.labels.nowhere==at-all",
            &service_1,
        ],
    );
    eventually(
        Duration::from_secs(30),
        "server 1 says why it waits",
        || async {
            rest_servers(&farm)
                .await
                .iter()
                .any(|s| {
                    s["id"] == 1
                        && s["status_reason"]
                            .as_str()
                            .unwrap()
                            .contains("the engine says: no suitable node")
                })
                .then_some(())
        },
    )
    .await;

    // SIGTERM: no service, network or container of the farm is left on either engine.
    signal(farm.child.id(), Signal::SIGTERM);
    assert!(wait_exit(&mut farm.child, Duration::from_secs(60)).success());
    assert_eq!(
        docker_on(&lab.manager, &["service", "ls", "-q", "--filter", &label]),
        ""
    );
    assert_eq!(
        docker_on(&lab.manager, &["network", "ls", "-q", "--filter", &label]),
        ""
    );
    for engine in [&lab.manager, &lab.worker] {
        eventually(
            Duration::from_secs(30),
            "the tasks' containers gone",
            || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                docker_on(engine, &["ps", "-aq", "--filter", &label])
                    .is_empty()
                    .then_some(())
            },
        )
        .await;
    }
    let pulls = pulls_since(&logs);
    assert!(pulls.is_empty(), "an engine tried to pull: {pulls:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_farm_over_tls_outlives_its_controllers_task_and_is_taken_over_by_a_new_farm_up() {
    let _one_at_a_time = LAB_IN_USE.lock().await;
    let lab = lab();
    let prefix = unique_prefix("again");
    let _down = Down {
        lab: &lab,
        prefix: prefix.clone(),
    };
    let label = format!("label=io.farm.name={prefix}");
    // The controller serves TLS, its certificate naming it on the farm's network and on the
    // manager's node: its agents, on both nodes, trust the CA.
    let ca = TestCa::new(&[
        &format!("DNS:{prefix}-controller"),
        &format!("IP:{}", lab.n1),
    ]);
    let tls = [
        "--tls-cert",
        ca.cert.to_str().unwrap(),
        "--tls-key",
        ca.key.to_str().unwrap(),
        "--tls-ca",
        ca.ca.to_str().unwrap(),
    ];
    let mut first = swarm_farm_with(&lab, 3, &prefix, &tls, &[]);
    let spec = docker_on(
        &lab.manager,
        &["service", "inspect", &format!("{prefix}-controller")],
    );
    assert!(
        !spec.contains("PRIVATE KEY"),
        "the key is a secret, not in the service's spec"
    );
    let secrets = docker_on(
        &lab.manager,
        &["secret", "ls", "--filter", &label, "--format", "{{.Name}}"],
    );
    assert_eq!(secrets.lines().count(), 3, "{secrets}");
    let running_task = |id: u32| running_task(&lab, &format!("{prefix}-server-{id}"));
    let statuses = |farm: &Farm| {
        let url = format!("{}/api/servers", farm.gateway_url());
        async move {
            let reply = get(&url).await;
            (reply.status == 200).then_some(())?;
            let list = reply.json()["servers"].as_array()?.clone();
            Some(
                list.iter()
                    .map(|s| {
                        (
                            s["id"].as_u64().unwrap(),
                            s["status"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
        }
    };

    // Scaled to 4, server 2 stopped: what the controller's next task must keep.
    let reply = post_change(&first, "/api/scale", r#"{"servers": 4}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = post_change(&first, "/api/servers/2/action", r#"{"action": "stop"}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let as_left = |list: Vec<(u64, String)>| {
        let healthy = |id| list.iter().any(|(i, s)| *i == id && s == "healthy");
        let stopped_2 = list.iter().any(|(i, s)| *i == 2 && s == "stopped");
        (list.len() == 4 && healthy(1) && healthy(3) && healthy(4) && stopped_2).then_some(())
    };
    eventually(
        Duration::from_secs(60),
        "4 servers, server 2 stopped",
        || async { as_left(statuses(&first).await?) },
    )
    .await;
    let tasks_before: Vec<String> = [1, 3, 4].map(running_task).to_vec();

    // The controller's task killed: the engine starts another, which takes the servers'
    // services over as they are (the same tasks, server 2 still stopped, 4 servers).
    let controller_container = docker_on(
        &lab.manager,
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={prefix}-controller"),
        ],
    );
    let old_addresses = controller_addresses(&lab, &prefix).expect("the controller runs");
    docker_on(&lab.manager, &["kill", controller_container.trim()]);
    let (controller, gateway) = eventually(
        Duration::from_secs(30),
        "the controller's task started again",
        || async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            controller_addresses(&lab, &prefix).filter(|now| *now != old_addresses)
        },
    )
    .await;
    first.controller = controller;
    first.gateway = gateway;
    eventually(
        Duration::from_secs(30),
        "the farm as it was under its new controller",
        || async { as_left(statuses(&first).await?) },
    )
    .await;
    assert_eq!(
        [1, 3, 4].map(running_task).to_vec(),
        tasks_before,
        "the servers' tasks were kept"
    );
    assert_eq!(running_task(2), "", "server 2 stays stopped");
    // The history lives in the farm's data directory, mounted into each controller task: the
    // new one goes on with the old one's.
    let events = get(&format!("{}/api/events", first.gateway_url())).await;
    assert_eq!(events.status, 200, "{}", events.text());
    let starts = events.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "controller_started")
        .count();
    assert!(
        starts >= 2,
        "both controllers' starts in the history: {}",
        events.text()
    );
    let reply = post_change(&first, "/api/servers/2/action", r#"{"action": "start"}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    all_healthy(&first, Duration::from_secs(30), "server 2 started again").await;
    let tasks_before: Vec<String> = [1, 2].map(running_task).to_vec();

    // farm up killed: the farm runs on without it, and a new farm up takes it over with
    // its own number of servers, keeping the tasks of those it keeps.
    signal(first.child.id(), Signal::SIGKILL);
    wait_exit(&mut first.child, Duration::from_secs(10));
    let services = || {
        let mut names: Vec<String> = docker_on(
            &lab.manager,
            &["service", "ls", "--filter", &label, "--format", "{{.Name}}"],
        )
        .lines()
        .map(str::to_string)
        .collect();
        names.sort_unstable();
        names
    };
    assert_eq!(services().len(), 5, "the controller and 4 servers run on");

    // The same data directory: the farm's token, history and number of servers.
    let data_dir = first.data_dir.to_str().unwrap().to_string();
    let mut farm = swarm_farm_with(&lab, 2, &prefix, &tls, &[("FARM_DATA_DIR", &data_dir)]);
    let list = all_healthy(&farm, Duration::from_secs(60), "the two servers").await;
    assert_eq!(list.len(), 2);
    assert_eq!(
        [1, 2].map(running_task).to_vec(),
        tasks_before,
        "the new farm up kept the tasks of the servers it kept"
    );
    // The controller answers over TLS only, at its published address.
    let status = Command::new(farm_bin())
        .args([
            "status",
            "--controller",
            &format!("https://{}", farm.controller),
        ])
        .env("FARM_TLS_CA", &ca.ca)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let plain = Command::new(farm_bin())
        .args([
            "status",
            "--controller",
            &format!("http://{}", farm.controller),
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success(), "a plaintext client was answered");
    assert_eq!(
        services(),
        [
            format!("{prefix}-controller"),
            format!("{prefix}-server-1"),
            format!("{prefix}-server-2")
        ]
    );
    signal(farm.child.id(), Signal::SIGTERM);
    assert!(wait_exit(&mut farm.child, Duration::from_secs(90)).success());
    for kind in ["service", "secret", "network"] {
        assert_eq!(
            docker_on(&lab.manager, &[kind, "ls", "-q", "--filter", &label]),
            "",
            "no {kind} of the farm left"
        );
    }
}
