//! The farm's processes: nothing left behind on SIGTERM or SIGKILL, also after agents and
//! nodes were killed by hand; agents re-register after a controller restart; bad flags and
//! taken ports fail with a clear message.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Farm, agent_pid, eventually, farm_bin, low_port, low_port_range, node_pid, servers, signal,
    wait_exit,
};
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_nothing_behind_even_after_kills_by_hand() {
    let mut farm = Farm::up(3);
    assert_eq!(farm.descendants().len(), 6, "3 agents and 3 nodes");

    // An agent killed by hand takes its node with it, and the runtime starts both again.
    let agent = agent_pid(&farm, 1).unwrap();
    let node = node_pid(&farm, 1).unwrap();
    signal(agent, Signal::SIGKILL);
    eventually(
        Duration::from_secs(15),
        "server 1 to have a new agent and node",
        || {
            let farm = &farm;
            async move {
                let (a, n) = (agent_pid(farm, 1)?, node_pid(farm, 1)?);
                (a != agent && n != node).then_some(())
            }
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the orphaned node to exit",
        || async move { (!is_live(node)).then_some(()) },
    )
    .await;
    // A node killed by hand is restarted by its agent.
    signal(node_pid(&farm, 2).unwrap(), Signal::SIGKILL);

    let pids = farm.descendants();
    let status = farm.stop();
    assert!(status.success(), "farm up exits 0 on SIGTERM: {status}");
    // farm up waits for its agents, and each agent for its node, before exiting.
    let left: Vec<u32> = pids.iter().copied().filter(|&p| is_live(p)).collect();
    assert!(
        left.is_empty(),
        "still running after farm up exited: {left:?}"
    );
    assert!(farm.descendants().is_empty(), "{:?}", farm.descendants());
}

fn is_live(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_farm_up_leaves_nothing_behind() {
    let mut farm = Farm::up(3);
    let pids = farm.descendants();
    assert_eq!(pids.len(), 6);
    signal(farm.child.id(), Signal::SIGKILL);
    wait_exit(&mut farm.child, Duration::from_secs(5));
    eventually(
        Duration::from_secs(15),
        "orphaned agents and nodes to exit",
        || {
            let live: Vec<u32> = pids.iter().copied().filter(|&p| is_live(p)).collect();
            async move { live.is_empty().then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_register_again_after_a_controller_restart() {
    // The controller comes back on the same port: one below the ephemeral range.
    let listen = format!("127.0.0.1:{}", low_port());
    let start_controller = || {
        Command::new(farm_bin())
            .args(["controller", "--listen", &listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut controller = start_controller();
    let mut agents: Vec<_> = (1..=3)
        .map(|id| {
            Command::new(farm_bin())
                .args(["agent", "--id", &id.to_string()])
                .args(["--controller", &format!("http://{listen}")])
                .args(["--node-listen", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let url = format!("http://{listen}");
    let all_connected = |url: String| async move {
        let mut client = common::connect(&url).await;
        let list = servers(&mut client).await;
        (list.len() == 3 && list.iter().all(|s| s.connected && s.metrics.is_some())).then_some(())
    };
    eventually(Duration::from_secs(10), "3 agents to register", || {
        all_connected(url.clone())
    })
    .await;

    signal(controller.id(), Signal::SIGTERM);
    wait_exit(&mut controller, Duration::from_secs(10));
    let restarted_at = Instant::now();
    let mut controller = start_controller();
    eventually(
        Duration::from_secs(15),
        "every agent to re-register",
        || all_connected(url.clone()),
    )
    .await;
    let took = restarted_at.elapsed();
    eprintln!("agents re-registered {took:?} after the controller restarted (target: 5 s)");
    assert!(took < Duration::from_secs(15), "took {took:?}");

    let nodes = common::children_of(&agents.iter().map(Child::id).collect::<Vec<_>>());
    assert_eq!(nodes.len(), 3, "each agent runs its node");
    for agent in &mut agents {
        signal(agent.id(), Signal::SIGTERM);
        assert!(wait_exit(agent, Duration::from_secs(5)).success());
    }
    signal(controller.id(), Signal::SIGTERM);
    wait_exit(&mut controller, Duration::from_secs(10));
    for node in nodes {
        assert!(!common::is_alive(node), "node {node} left behind");
    }
}

fn farm_up(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(farm_bin())
        .arg("up")
        // Never the default port, should a case get as far as the gateway.
        .args(["--gateway-listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every case here fails before starting anything; a farm that starts is a failure too.
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let mut output = child.wait_with_output().unwrap();
    output.status = status;
    output
}

#[test]
fn bad_flags_fail_with_a_clear_message() {
    for (args, expected) in [
        (vec!["--servers", "0"], "0 is not in 1..=1000"),
        (vec!["--servers", "many"], "invalid value 'many'"),
        (vec!["--servers", "1001"], "1001 is not in 1..=1000"),
        (vec!["--listen", "nowhere"], "invalid value 'nowhere'"),
        (
            vec!["--node-base-port", "65500", "--servers", "50"],
            "ports stop at 65535",
        ),
        (vec!["--sample-interval-ms", "5"], "5 is not in 100..=60000"),
    ] {
        let output = farm_up(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn taken_ports_fail_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let output = farm_up(&[
        "--listen",
        &format!("127.0.0.1:{taken_port}"),
        "--servers",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{taken_port} for the controller"
        )),
        "{stderr}"
    );

    let base = low_port_range(3);
    let node_port = std::net::TcpListener::bind(("127.0.0.1", base + 2)).unwrap();
    let output = farm_up(&[
        "--listen",
        "127.0.0.1:0",
        "--node-base-port",
        &base.to_string(),
        "--servers",
        "3",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "port {} for server 2's node is not free",
            base + 2
        )),
        "{stderr}"
    );
    drop((taken, node_port));
}
