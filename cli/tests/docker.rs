//! The docker runtime against a real Docker engine: containers with the limits and labels
//! asked for, every action, `docker kill` seen and recovered, scaling, metrics against
//! `docker stats`, `farm down`, a farm started again after a crash adopting the containers it
//! left, and clear errors with nothing half made.
//!
//! These tests need a running engine (`.ci/run` installs Debian's docker.io and starts
//! dockerd). Without one they fail and say so: they never pass by skipping. Every farm here
//! has a unique name prefix, so containers and networks of parallel runs never collide, and
//! each test removes what it made.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Farm, act, eventually, farm_bin, is, servers, signal, wait_exit};
use farm_proto::v1::{
    LoadSpec, ScaleFarmRequest, ServerActionKind, ServerStatus, SimulateLoadRequest, WatchRequest,
};
use nix::sys::signal::Signal;
use tokio_stream::StreamExt;

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs (apt-get install docker.io)")
}

fn docker_text(args: &[&str]) -> String {
    String::from_utf8_lossy(&docker(args).stdout)
        .trim()
        .to_string()
}

/// Fails the test, saying why, when no engine answers.
fn require_engine() {
    let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        info.status.success(),
        "these tests need a running Docker engine (.ci/run installs docker.io and starts dockerd): {}",
        String::from_utf8_lossy(&info.stderr)
    );
}

/// A name prefix no other test or run uses.
fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ft{}-{test}-{nanos:x}", std::process::id())
}

/// Names of containers labelled as farm `prefix`'s.
fn farm_containers(prefix: &str) -> Vec<String> {
    let out = docker_text(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.farm.name={prefix}"),
        "--format",
        "{{.Names}}",
    ]);
    let mut names: Vec<String> = out
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    names.sort();
    names
}

fn farm_networks(prefix: &str) -> Vec<String> {
    let out = docker_text(&[
        "network",
        "ls",
        "--filter",
        &format!("label=io.farm.name={prefix}"),
        "--format",
        "{{.Name}}",
    ]);
    out.lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Removes whatever a failed test left, so runs never leak into each other.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(farm_bin())
            .args(["down", "--name-prefix", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A docker farm and the base port it publishes node N on (base+N). The docker runtime
/// publishes fixed ports, so the base is picked below the ephemeral range, and picked again
/// when another test took one of its ports first.
fn docker_farm(servers: u32, prefix: &str) -> (Farm, u16) {
    docker_farm_with(servers, prefix, &[])
}

/// Like [`docker_farm`], with `env` for `farm up`.
fn docker_farm_with(servers: u32, prefix: &str, env: &[(&str, &str)]) -> (Farm, u16) {
    docker_farm_args(servers, prefix, &[], env)
}

/// Like [`docker_farm_with`], with `extra` arguments for `farm up`.
fn docker_farm_args(
    servers: u32,
    prefix: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Farm, u16) {
    let mut tries = 0;
    loop {
        let base = common::low_port_range(servers as u16);
        match docker_farm_on(servers, prefix, base, extra, env) {
            Ok(farm) => return (farm, base),
            Err(e) if e.contains("is not free") && tries < 5 => tries += 1,
            Err(e) => panic!("{e}"),
        }
    }
}

/// `farm up` of `servers` docker servers whose nodes are published from `base` + 1.
fn docker_farm_on(
    servers: u32,
    prefix: &str,
    base: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Farm, String> {
    let base = base.to_string();
    let mut args = vec![
        "--runtime",
        "docker",
        "--name-prefix",
        prefix,
        "--node-base-port",
        &base,
    ];
    args.extend_from_slice(extra);
    Farm::start(servers, &args, env, Duration::from_secs(120))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_makes_labelled_limited_containers_and_sigterm_removes_them() {
    require_engine();
    let prefix = unique_prefix("up");
    let _cleanup = Cleanup(prefix.clone());
    let (mut farm, base_port) = docker_farm(3, &prefix);

    let names = farm_containers(&prefix);
    assert_eq!(
        names,
        (1..=3)
            .map(|i| format!("{prefix}-server-{i}"))
            .collect::<Vec<_>>()
    );
    let inspect = docker_text(&[
        "inspect",
        "--format",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}} {{index .Config.Labels \"io.farm.server-id\"}} {{(index (index .HostConfig.PortBindings \"8000/tcp\") 0).HostPort}} {{len .Config.Healthcheck.Test}}",
        &format!("{prefix}-server-2"),
    ]);
    let expected_port = u32::from(base_port) + 2;
    assert_eq!(
        inspect,
        format!("500000000 268435456 unless-stopped 2 {expected_port} 4"),
        "limits, restart policy, labels, published port and health check"
    );
    assert_eq!(farm_networks(&prefix), [format!("{prefix}-net")]);

    let mut client = farm.client().await;
    let list = servers(&mut client).await;
    assert_eq!(list.len(), 3);
    for server in &list {
        assert!(is(server, ServerStatus::Healthy), "{server:?}");
        assert_eq!(server.runtime, "docker");
        let m = server.metrics.unwrap();
        assert_eq!(
            m.memory_limit_bytes,
            256 << 20,
            "cgroup limit seen from inside"
        );
        assert!((m.cpu_limit_cores - 0.5).abs() < 1e-9, "{m:?}");
    }
    // The engine's own health check (the binary probing itself) turns healthy too; its first
    // probe comes one 30 s interval after the start.
    eventually(
        Duration::from_secs(120),
        "docker health checks to pass",
        || {
            let prefix = prefix.clone();
            async move {
                let health = docker_text(&[
                    "inspect",
                    "--format",
                    "{{.State.Health.Status}}",
                    &format!("{prefix}-server-1"),
                ]);
                (health == "healthy").then_some(())
            }
        },
    )
    .await;

    assert!(farm.stop().success());
    assert!(
        farm_containers(&prefix).is_empty(),
        "containers left behind"
    );
    assert!(farm_networks(&prefix).is_empty(), "network left behind");
}

async fn wait_status(farm: &Farm, id: u32, status: ServerStatus, limit: Duration) {
    let client = farm.client().await;
    eventually(limit, &format!("server {id} to be {status:?}"), || {
        let mut c = client.clone();
        async move {
            let list = servers(&mut c).await;
            list.iter()
                .find(|s| s.id == id)
                .filter(|s| is(s, status))
                .map(|_| ())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_works_and_docker_kill_is_seen_and_recovered() {
    require_engine();
    let prefix = unique_prefix("act");
    let _cleanup = Cleanup(prefix.clone());
    let (farm, _) = docker_farm(2, &prefix);
    let mut client = farm.client().await;
    let name = format!("{prefix}-server-1");
    let state = |n: &str| docker_text(&["inspect", "--format", "{{.State.Status}}", n]);

    act(&mut client, 1, ServerActionKind::Stop).await;
    assert_eq!(state(&name), "exited");
    wait_status(&farm, 1, ServerStatus::Stopped, Duration::from_secs(15)).await;
    act(&mut client, 1, ServerActionKind::Start).await;
    wait_status(&farm, 1, ServerStatus::Healthy, Duration::from_secs(15)).await;

    act(&mut client, 1, ServerActionKind::Restart).await;
    assert_eq!(state(&name), "running");
    wait_status(&farm, 1, ServerStatus::Healthy, Duration::from_secs(15)).await;

    act(&mut client, 1, ServerActionKind::Pause).await;
    assert_eq!(state(&name), "paused");
    wait_status(&farm, 1, ServerStatus::Unreachable, Duration::from_secs(15)).await;
    act(&mut client, 1, ServerActionKind::Unpause).await;
    wait_status(&farm, 1, ServerStatus::Healthy, Duration::from_secs(15)).await;

    // A kill from outside the farm: seen as stopped within a second through the event
    // stream, then brought back by the farm's restart policy.
    for kill_from_outside in [false, true] {
        let mut watch = client
            .watch(WatchRequest {
                min_interval_ms: 50,
            })
            .await
            .unwrap()
            .into_inner();
        let _snapshot = watch.next().await.unwrap().unwrap();
        let killed_at = Instant::now();
        if kill_from_outside {
            assert!(docker(&["kill", &name]).status.success());
        } else {
            act(&mut client, 1, ServerActionKind::Kill).await;
        }
        let seen = loop {
            let message = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .expect("watch messages keep coming")
                .unwrap()
                .unwrap();
            if message
                .servers
                .iter()
                .any(|s| s.id == 1 && is(s, ServerStatus::Stopped))
            {
                break killed_at.elapsed();
            }
        };
        eprintln!("docker kill seen after {seen:?} (target: 1 s)");
        assert!(seen < Duration::from_secs(5), "kill seen after {seen:?}");
        wait_status(&farm, 1, ServerStatus::Healthy, Duration::from_secs(15)).await;
        assert_eq!(state(&name), "running");
    }
    let list = servers(&mut client).await;
    assert!(
        is(&list[1], ServerStatus::Healthy),
        "server 2 untouched: {:?}",
        list[1]
    );
}

/// What a load test of `requests` on server `id`, each with a 1 s timeout, got through.
async fn answered(farm: &Farm, id: u32, requests: u64) -> u64 {
    let spec = farm_proto::v1::LoadTestSpec {
        server_ids: vec![id],
        total_requests: requests,
        concurrency: 4,
        timeout_ms: 1000,
        ..Default::default()
    };
    common::run_to_end(&mut farm.client().await, spec)
        .await
        .successes
}

/// The containers' agents and nodes send their spans to a collector on the host: the farm is
/// given a loopback endpoint, which a container cannot reach as such; the runtime hands the
/// containers the host's address on the farm's network instead (the collector listens there
/// too: on every address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_send_their_spans_to_a_collector_on_the_host() {
    require_engine();
    let (collector, endpoint) = common::otlp::Collector::start("0.0.0.0:0").await;
    let prefix = unique_prefix("otel");
    let _cleanup = Cleanup(prefix.clone());
    let (farm, _) = docker_farm_with(1, &prefix, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let env = docker_text(&[
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        &format!("{prefix}-server-1"),
    ]);
    assert!(
        env.contains("OTEL_EXPORTER_OTLP_ENDPOINT=http://") && !env.contains("127.0.0.1"),
        "the container's collector address: {env}"
    );
    let trace_id = *b"farm-docker-otel";
    common::otlp::traced_simulate_load(&farm.gateway_url(), 1, &trace_id, b"caller!!").await;
    common::eventually(
        Duration::from_secs(30),
        "the container's agent and node spans",
        || {
            let spans = collector.spans_of(&trace_id);
            async move {
                (spans.iter().any(|s| s.service == "farm-agent")
                    && spans.iter().any(|s| s.service == "farm-node"))
                .then_some(())
            }
        },
    )
    .await;
}

/// A request that sets `faults` on server 1.
fn on_server_1(faults: farm_proto::v1::FaultProfile) -> farm_proto::v1::SetFaultsRequest {
    farm_proto::v1::SetFaultsRequest {
        targets: Some(farm_proto::v1::FaultTargets {
            server_ids: vec![1],
            ..Default::default()
        }),
        faults: Some(faults),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_cuts_a_server_off_the_farm_until_cleared_or_over() {
    require_engine();
    let prefix = unique_prefix("part");
    let _cleanup = Cleanup(prefix.clone());
    let (farm, _) = docker_farm(2, &prefix);
    let mut client = farm.client().await;
    let name = format!("{prefix}-server-1");
    let network = format!("{prefix}-net");
    let networks = |n: &str| {
        docker_text(&[
            "inspect",
            "--format",
            "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
            n,
        ])
    };
    let partition = |duration_seconds| {
        on_server_1(farm_proto::v1::FaultProfile {
            partition: Some(farm_proto::v1::PartitionFault {
                when: Some(farm_proto::v1::FaultWhen {
                    duration_seconds,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        })
    };

    let outcome = client.set_faults(partition(0)).await.unwrap().into_inner();
    assert!(outcome.outcomes[0].ok, "{outcome:?}");
    assert!(!networks(&name).contains(&network), "{}", networks(&name));
    assert_eq!(
        docker_text(&["inspect", "--format", "{{.State.Status}}", &name]),
        "running"
    );
    wait_status(&farm, 1, ServerStatus::Unreachable, Duration::from_secs(15)).await;
    let server = servers(&mut client).await.remove(0);
    assert!(server.status_reason.contains("partition"), "{server:?}");
    assert_eq!(
        answered(&farm, 1, 8).await,
        0,
        "the load engine no longer reaches it"
    );
    assert!(is(&servers(&mut client).await[1], ServerStatus::Healthy));

    // Removed from outside while cut off: made again, and still cut off.
    let id_of = |n: &str| docker_text(&["inspect", "--format", "{{.Id}}", n]);
    let before = id_of(&name);
    assert!(docker(&["rm", "-f", &name]).status.success());
    eventually(Duration::from_secs(60), "the container made again", || {
        let (before, id) = (before.clone(), id_of(&name));
        async move { (!id.is_empty() && id != before).then_some(()) }
    })
    .await;
    assert!(!networks(&name).contains(&network), "{}", networks(&name));

    // Cleared: joined again, its agent back, its published port serving.
    let cleared = client
        .clear_faults(farm_proto::v1::ClearFaultsRequest {
            targets: Some(farm_proto::v1::FaultTargets {
                server_ids: vec![1],
                ..Default::default()
            }),
            kinds: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cleared.outcomes[0].ok, "{cleared:?}");
    assert!(networks(&name).contains(&network));
    wait_status(&farm, 1, ServerStatus::Healthy, Duration::from_secs(30)).await;
    assert_eq!(answered(&farm, 1, 8).await, 8);

    // A partition with a duration heals itself.
    client.set_faults(partition(2)).await.unwrap();
    wait_status(&farm, 1, ServerStatus::Unreachable, Duration::from_secs(15)).await;
    wait_status(&farm, 1, ServerStatus::Healthy, Duration::from_secs(30)).await;
    assert!(networks(&name).contains(&network));
    let faults = client
        .list_faults(farm_proto::v1::ListFaultsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(faults.servers.is_empty(), "{faults:?}");

    // The example scenario of a partition that heals passes on this farm.
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/partition-heals.yaml");
    let run = std::process::Command::new(common::farm_bin())
        .args([
            "scenario",
            "run",
            "--json",
            "--controller",
            &farm.controller_url(),
        ])
        .arg(&example)
        .env("FARM_DATA_DIR", &farm.data_dir)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap_or_default();
    assert_eq!(
        (run.status.code(), report["state"].as_str()),
        (Some(0), Some("passed")),
        "{report:#}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(report["faults"][0]["server_ids"], serde_json::json!([2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_from_outside_is_created_again() {
    require_engine();
    let prefix = unique_prefix("gone");
    let _cleanup = Cleanup(prefix.clone());
    let (farm, _) = docker_farm(2, &prefix);
    let mut client = farm.client().await;
    let name = format!("{prefix}-server-2");
    let container_id = |n: &str| docker_text(&["inspect", "--format", "{{.Id}}", n]);
    let state = |n: &str| docker_text(&["inspect", "--format", "{{.State.Status}}", n]);
    let removed = container_id(&name);
    assert!(!removed.is_empty(), "server 2 has a container");

    let removed_at = Instant::now();
    let rm = docker(&["rm", "-f", &name]);
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );

    // The farm makes a new container under the same name, with the same labels, and runs it.
    eventually(
        Duration::from_secs(60),
        "server 2's container to be created again and running",
        || {
            let (name, removed) = (name.clone(), removed.clone());
            async move {
                let id = container_id(&name);
                (!id.is_empty() && id != removed && state(&name) == "running").then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        farm_containers(&prefix),
        [format!("{prefix}-server-1"), name.clone()],
        "the new container is labelled as this farm's"
    );
    wait_status(&farm, 2, ServerStatus::Healthy, Duration::from_secs(60)).await;
    eprintln!(
        "server 2 healthy again {:?} after docker rm -f",
        removed_at.elapsed()
    );

    // Actions reach the new container.
    act(&mut client, 2, ServerActionKind::Stop).await;
    assert_eq!(state(&name), "exited");
    wait_status(&farm, 2, ServerStatus::Stopped, Duration::from_secs(15)).await;
    act(&mut client, 2, ServerActionKind::Start).await;
    assert_eq!(state(&name), "running");
    wait_status(&farm, 2, ServerStatus::Healthy, Duration::from_secs(30)).await;
    let list = servers(&mut client).await;
    assert!(
        is(&list[0], ServerStatus::Healthy),
        "server 1 untouched: {:?}",
        list[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_farm_scales_up_and_down() {
    require_engine();
    let prefix = unique_prefix("scale");
    let _cleanup = Cleanup(prefix.clone());
    let (farm, _) = docker_farm(2, &prefix);
    let mut client = farm.client().await;

    let up = client
        .scale_farm(ScaleFarmRequest { servers: 4 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(up.added, [3, 4]);
    assert_eq!(farm_containers(&prefix).len(), 4);
    wait_status(&farm, 4, ServerStatus::Healthy, Duration::from_secs(20)).await;

    let down = client
        .scale_farm(ScaleFarmRequest { servers: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(down.removed, [2, 3, 4]);
    assert_eq!(down.servers, 1);
    assert_eq!(farm_containers(&prefix), [format!("{prefix}-server-1")]);
    assert_eq!(servers(&mut client).await.len(), 1);

    let refused = client
        .scale_farm(ScaleFarmRequest { servers: 1001 })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

/// `docker stats` for one container: (CPU percent, memory bytes).
fn docker_stats(name: &str) -> (f64, f64) {
    let out = docker_text(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.CPUPerc}}|{{.MemUsage}}",
        name,
    ]);
    let (cpu, memory) = out.split_once('|').expect("cpu|memory");
    let cpu: f64 = cpu.trim_end_matches('%').parse().unwrap();
    let used = memory.split('/').next().unwrap().trim();
    let (number, unit) = used.split_at(used.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let factor = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unknown unit {other}"),
    };
    (cpu, number.parse::<f64>().unwrap() * factor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_metrics_agree_with_docker_stats() {
    require_engine();
    let prefix = unique_prefix("stats");
    let _cleanup = Cleanup(prefix.clone());
    let (farm, _) = docker_farm(1, &prefix);
    let mut client = farm.client().await;
    client
        .simulate_load(SimulateLoadRequest {
            server_ids: vec![1],
            load: Some(LoadSpec {
                cpu_percent: 40.0,
                memory_mb: 96,
                duration_seconds: 20,
            }),
        })
        .await
        .unwrap();
    // Let the load settle, then compare a few paired readings.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let name = format!("{prefix}-server-1");
    let mut ours_cpu = 0.0;
    let mut theirs_cpu = 0.0;
    let mut ours_memory = 0.0;
    let mut theirs_memory = 0.0;
    for _ in 0..3 {
        let (cpu, memory) = docker_stats(&name);
        let sample = servers(&mut client).await[0].metrics.unwrap();
        theirs_cpu += cpu;
        theirs_memory += memory;
        ours_cpu += sample.cpu_percent;
        ours_memory += sample.memory_bytes as f64;
    }
    let within = |ours: f64, theirs: f64, share: f64| (ours - theirs).abs() <= share * theirs;
    assert!(
        within(ours_memory, theirs_memory, 0.1),
        "memory: ours {ours_memory}, docker stats {theirs_memory}"
    );
    // Both read CPU over one second, at moments a little apart; on a busy machine the load
    // itself moves from one second to the next, so the two agree in size, not to the percent.
    assert!(
        within(ours_cpu, theirs_cpu, 0.5),
        "cpu: ours {ours_cpu}, docker stats {theirs_cpu}"
    );
}

#[test]
fn down_after_a_crash_removes_this_farm_only() {
    require_engine();
    let prefix = unique_prefix("down");
    let _cleanup = Cleanup(prefix.clone());
    let (mut farm, _) = docker_farm(2, &prefix);
    // Something on the same engine that is not this farm's, named and labelled alike.
    let bystander = format!("{prefix}-bystander");
    let image = docker_text(&[
        "inspect",
        "--format",
        "{{.Config.Image}}",
        &format!("{prefix}-server-1"),
    ]);
    let label = format!("io.farm.name={prefix}x");
    assert!(
        docker(&[
            "create",
            "--name",
            &bystander,
            "--label",
            &label,
            &image,
            "probe",
            "127.0.0.1:1"
        ])
        .status
        .success()
    );
    signal(farm.child.id(), Signal::SIGKILL);
    wait_exit(&mut farm.child, Duration::from_secs(5));
    assert_eq!(
        farm_containers(&prefix).len(),
        2,
        "a crashed controller leaves its containers"
    );

    let down = Command::new(farm_bin())
        .args(["down", "--name-prefix", &prefix])
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(String::from_utf8_lossy(&down.stdout).contains("removed 2 containers and 1 networks"));
    assert!(farm_containers(&prefix).is_empty());
    assert!(farm_networks(&prefix).is_empty());
    assert_eq!(
        docker_text(&["inspect", "--format", "{{.Name}}", &bystander]),
        format!("/{bystander}"),
        "untouched"
    );
    assert!(docker(&["rm", "-f", &bystander]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_started_again_adopts_the_containers_a_crash_left() {
    require_engine();
    let prefix = unique_prefix("adopt");
    let _cleanup = Cleanup(prefix.clone());
    let data_dir = common::unique_dir("adopt-data");
    let data_dir = data_dir.to_str().unwrap();
    // The same controller port and node ports both times: the containers' agents call the
    // controller where they were told it is.
    let listen = format!("127.0.0.1:{}", common::low_port());
    let again = ["--listen", listen.as_str()];
    let env = [("FARM_DATA_DIR", data_dir)];
    let made = |id: u32| {
        docker_text(&[
            "inspect",
            "--format",
            "{{.Id}} {{.State.StartedAt}}",
            &format!("{prefix}-server-{id}"),
        ])
    };

    let (mut first, base) = docker_farm_args(3, &prefix, &again, &env);
    let before: Vec<String> = (1..=3).map(made).collect();
    // A fault that the crash leaves on server 1's node: every request answered 503.
    let node_1 = format!("http://127.0.0.1:{}/", base + 1);
    let mut client = first.client().await;
    let set = client
        .set_faults(first.authorized(on_server_1(farm_proto::v1::FaultProfile {
            abort: Some(farm_proto::v1::AbortFault {
                when: Some(farm_proto::v1::FaultWhen {
                    percent: Some(100.0),
                    ..Default::default()
                }),
                statuses: vec![farm_proto::v1::StatusWeight {
                    status: 503,
                    weight: 1,
                }],
            }),
            ..Default::default()
        })))
        .await
        .unwrap()
        .into_inner();
    assert!(set.outcomes.iter().all(|o| o.ok), "{set:?}");
    assert_eq!(common::get(&node_1).await.status, 503);
    drop(client);
    signal(first.child.id(), Signal::SIGKILL);
    wait_exit(&mut first.child, Duration::from_secs(5));
    assert_eq!(farm_containers(&prefix).len(), 3, "a crash leaves them");

    // Started again with fewer servers: the first two are taken as they are (same container,
    // never restarted), the third is removed.
    let second = docker_farm_on(2, &prefix, base, &again, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(made(1), before[0], "server 1 adopted, not made again");
    assert_eq!(made(2), before[1], "server 2 adopted, not made again");
    let mut names = farm_containers(&prefix);
    names.sort();
    assert_eq!(
        names,
        [format!("{prefix}-server-1"), format!("{prefix}-server-2")]
    );
    let mut client = second.client().await;
    let list = servers(&mut client).await;
    assert_eq!(list.len(), 2, "{list:?}");
    // The new controller set no fault, and the adopted node keeps none of the old one's.
    assert!(list.iter().all(|s| s.faults.is_none()), "{list:?}");
    eventually(Duration::from_secs(10), "server 1's fault cleared", || {
        let url = node_1.clone();
        async move { (common::get(&url).await.status == 200).then_some(()) }
    })
    .await;
    assert!(
        list.iter().all(|s| is(s, ServerStatus::Healthy)),
        "{list:?}"
    );
    // The adopted servers are the farm's to drive, and their history goes on.
    act(&mut client, 1, ServerActionKind::Restart).await;
    wait_status(&second, 1, ServerStatus::Healthy, Duration::from_secs(15)).await;
    assert_ne!(made(1), before[0], "restarted through the engine");
    let events = client
        .list_events(farm_proto::v1::ListEventsRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let starts = events
        .iter()
        .filter(|e| e.kind == "controller_started")
        .count();
    assert_eq!(starts, 2, "one history across the crash: {events:?}");

    // A farm stopped as it should be removes them all.
    drop(client);
    drop(second);
    assert!(
        farm_containers(&prefix).is_empty(),
        "containers left behind"
    );
    assert!(farm_networks(&prefix).is_empty(), "network left behind");
}

fn farm_up_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(farm_bin())
        .arg("up")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(120));
    let output = child.wait_with_output().unwrap();
    assert!(!status.success(), "farm up {args:?} must fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn errors_are_clear_and_leave_nothing_half_made() {
    require_engine();
    let prefix = unique_prefix("err");
    let _cleanup = Cleanup(prefix.clone());
    let listen = format!("127.0.0.1:{}", common::low_port());
    let base = common::low_port_range(3).to_string();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "--runtime",
            "docker",
            "--servers",
            "3",
            "--name-prefix",
            prefix.as_str(),
            "--listen",
            listen.as_str(),
            "--gateway-listen",
            "127.0.0.1:0",
            "--node-base-port",
            base.as_str(),
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |extra: &[&'static str], env: &[(&str, &str)]| {
        let owned = args(extra);
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        farm_up_fails(&refs, env)
    };

    let no_engine = run(&[], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert!(
        no_engine.contains("no Docker engine answers"),
        "{no_engine}"
    );

    let dynamic = run(&["--image-binary", "/bin/sh"], &[]);
    assert!(dynamic.contains("dynamically linked"), "{dynamic}");

    // A foreign container holding server 2's name: refused before anything is made.
    let taken = format!("{prefix}-server-2");
    let image = docker_text(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "farm-server",
    ]);
    let image = image
        .lines()
        .next()
        .expect("an earlier step built the farm image")
        .to_string();
    assert!(
        docker(&["create", "--name", &taken, &image, "probe", "127.0.0.1:1"])
            .status
            .success()
    );
    let conflict = run(&[], &[]);
    assert!(
        conflict.contains(&format!("the container name \"{taken}\" is taken")),
        "{conflict}"
    );
    assert!(
        farm_containers(&prefix).is_empty(),
        "nothing of the farm was created"
    );
    assert!(
        docker(&["rm", "-f", &taken]).status.success(),
        "the foreign container is untouched"
    );

    // A taken node port.
    let port: u16 = base.parse::<u16>().unwrap() + 3;
    let _holder = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let busy = run(&[], &[]);
    assert!(
        busy.contains(&format!("port {port} for server 3's node is not free")),
        "{busy}"
    );
    assert!(
        farm_containers(&prefix).is_empty(),
        "nothing half made: {:?}",
        farm_containers(&prefix)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_file_brings_up_a_farm_that_turns_healthy() {
    require_engine();
    let prefix = unique_prefix("compose");
    let _cleanup = Cleanup(prefix.clone());
    let dir = std::env::temp_dir().join(&prefix);
    // Port 0 everywhere: the engine picks every published port, and `docker-compose port`
    // tells which.
    let written = Command::new(farm_bin())
        .args(["compose", "--servers", "3", "--name-prefix", &prefix])
        .args(["--output", dir.to_str().unwrap()])
        .args(["--controller-port", "0", "--gateway-port", "0"])
        .args(["--node-base-port", "0"])
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let file = dir.join("docker-compose.yml");
    let token = format!("compose-test-token-{prefix}");
    let compose = |args: &[&str]| {
        Command::new("docker-compose")
            .env("FARM_TOKEN", &token)
            .args(["-f", file.to_str().unwrap(), "-p", &prefix])
            .args(args)
            .output()
            .expect("docker-compose runs (apt-get install docker-compose)")
    };
    let config = compose(&["config", "-q"]);
    assert!(
        config.status.success(),
        "a valid compose file: {}",
        String::from_utf8_lossy(&config.stderr)
    );
    let up = compose(&["up", "-d"]);
    let down_on_exit = scopeguard(|| {
        let _ = compose(&["down", "--timeout", "2"]);
    });
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let published = |service: &str, port: &str| {
        let output = compose(&["port", service, port]);
        let address = String::from_utf8_lossy(&output.stdout).trim().to_string();
        assert!(
            output.status.success() && address.starts_with("127.0.0.1:"),
            "{service}'s port {port}: {address} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        address
    };
    let url = format!("http://{}", published("controller", "50051"));
    let mut client = common::connect(&url).await;
    eventually(
        Duration::from_secs(60),
        "3 healthy servers in the compose farm",
        || {
            let mut c = client.clone();
            async move {
                let list = servers(&mut c).await;
                (list.len() == 3 && list.iter().all(|s| is(s, ServerStatus::Healthy))).then_some(())
            }
        },
    )
    .await;
    // The controller drives the containers through the mounted socket.
    // The controller listens on every interface of its container: changes need the token.
    common::act_with(&mut client, 2, ServerActionKind::Stop, Some(&token)).await;
    let state = docker_text(&[
        "inspect",
        "--format",
        "{{.State.Status}}",
        &format!("{prefix}-server-2"),
    ]);
    assert_eq!(state, "exited");
    common::act_with(&mut client, 2, ServerActionKind::Start, Some(&token)).await;
    let server_2 = published("server-2", "8000");
    let probe = farm_node_api::client::NodeClient::new();
    eventually(
        Duration::from_secs(30),
        "server 2 serving on its published port",
        || {
            let (probe, server_2) = (probe.clone(), server_2.clone());
            async move {
                probe
                    .health(&server_2, Duration::from_millis(200))
                    .await
                    .ok()
            }
        },
    )
    .await;
    drop(down_on_exit);
    assert!(
        farm_containers(&prefix).is_empty(),
        "docker-compose down removes the servers"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `f` when dropped, also when the test fails half way.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
