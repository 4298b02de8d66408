//! Bad requests to every RPC get a clear error that names the problem, and change nothing.

mod common;

use std::time::Duration;

use common::{Farm, is, servers};
use farm_proto::v1::agent_service_client::AgentServiceClient;
use farm_proto::v1::{
    BroadcastRequest, CheckHealthRequest, GetServerRequest, Hello, LinkRequest, ListServersRequest,
    LoadSpec, LoadTestSpec, MetricsSample, RunLoadTestRequest, ServerActionKind,
    ServerActionRequest, ServerStatus, SimulateLoadRequest, WatchRequest, link_request,
};
use tonic::Code;

fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("the request must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{:?} should mention {needle:?}",
        status.message()
    );
}

fn load(cpu_percent: f64, memory_mb: u32, duration_seconds: u32) -> Option<LoadSpec> {
    Some(LoadSpec {
        cpu_percent,
        memory_mb,
        duration_seconds,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_bad_input_clearly_and_changes_nothing() {
    let farm = Farm::up(2);
    let mut c = farm.client().await;
    let before = servers(&mut c).await;
    use Code::{InvalidArgument as Invalid, NotFound};

    assert_refused(
        c.get_server(GetServerRequest { server_id: 0 }).await,
        NotFound,
        "server 0",
    );
    assert_refused(
        c.get_server(GetServerRequest { server_id: 99 }).await,
        NotFound,
        "server 99",
    );
    assert_refused(
        c.list_servers(ListServersRequest {
            status: 42,
            ..Default::default()
        })
        .await,
        Invalid,
        "status 42",
    );

    let action = |ids: Vec<u32>, action: i32| ServerActionRequest {
        server_ids: ids,
        action,
    };
    let stop = ServerActionKind::Stop as i32;
    assert_refused(
        c.server_action(action(vec![], stop)).await,
        Invalid,
        "server_ids",
    );
    assert_refused(c.server_action(action(vec![1], 0)).await, Invalid, "action");
    assert_refused(
        c.server_action(action(vec![1], 17)).await,
        Invalid,
        "action",
    );
    // One unknown id refuses the whole request: server 1 is not stopped.
    assert_refused(
        c.server_action(action(vec![1, 99], stop)).await,
        NotFound,
        "99",
    );
    assert_refused(
        c.server_action(action(vec![7; 10_001], stop)).await,
        Invalid,
        "at most 10000",
    );

    assert_refused(
        c.check_health(CheckHealthRequest { timeout_ms: 10_001 })
            .await,
        Invalid,
        "timeout_ms",
    );

    let spec = |f: fn(&mut LoadTestSpec)| {
        let mut s = LoadTestSpec {
            total_requests: 10,
            ..LoadTestSpec::default()
        };
        f(&mut s);
        RunLoadTestRequest { spec: Some(s) }
    };
    assert_refused(
        c.run_load_test(RunLoadTestRequest { spec: None }).await,
        Invalid,
        "spec",
    );
    for (request, needle) in [
        (spec(|s| s.concurrency = 1001), "spec.concurrency"),
        (
            spec(|s| s.total_requests = 10_000_001),
            "spec.total_requests",
        ),
        (spec(|s| s.duration_seconds = 3601), "spec.duration_seconds"),
        (spec(|s| s.timeout_ms = 60_001), "spec.timeout_ms"),
        (spec(|s| s.path = "http://example.com/".into()), "spec.path"),
        (spec(|s| s.path = "health".into()), "spec.path"),
        (spec(|s| s.method = "CONNECT".into()), "spec.method"),
        (spec(|s| s.rate_per_second = -1.0), "spec.rate_per_second"),
        (
            spec(|s| s.rate_per_second = f64::NAN),
            "spec.rate_per_second",
        ),
        (spec(|s| s.rate_per_second = 2e6), "spec.rate_per_second"),
        (
            spec(|s| {
                s.duration_seconds = 5;
                s.ramp_up_seconds = 6
            }),
            "spec.ramp_up_seconds",
        ),
    ] {
        assert_refused(c.run_load_test(request).await, Invalid, needle);
    }
    assert_refused(
        c.run_load_test(spec(|s| s.server_ids = vec![42])).await,
        NotFound,
        "42",
    );

    let simulate = |server_ids: Vec<u32>, load| SimulateLoadRequest { server_ids, load };
    assert_refused(
        c.simulate_load(simulate(vec![1], None)).await,
        Invalid,
        "load",
    );
    assert_refused(
        c.simulate_load(simulate(vec![1], load(-1.0, 0, 5))).await,
        Invalid,
        "load.cpu_percent",
    );
    assert_refused(
        c.simulate_load(simulate(vec![1], load(f64::INFINITY, 0, 5)))
            .await,
        Invalid,
        "load.cpu_percent",
    );
    assert_refused(
        c.simulate_load(simulate(vec![1], load(10.0, 1025, 5)))
            .await,
        Invalid,
        "load.memory_mb",
    );
    assert_refused(
        c.simulate_load(simulate(vec![1], load(10.0, 0, 301))).await,
        Invalid,
        "load.duration_seconds",
    );
    assert_refused(
        c.simulate_load(simulate(vec![1], load(0.0, 0, 5))).await,
        Invalid,
        "asks for nothing",
    );
    assert_refused(
        c.simulate_load(simulate(vec![77], load(10.0, 0, 5))).await,
        NotFound,
        "77",
    );
    // Within the controller's bound, past the node's own (a 2-core machine at most has 200 %):
    // the server answers for itself, and nothing starts.
    let outcomes = c
        .simulate_load(simulate(vec![1], load(6400.0, 0, 5)))
        .await
        .unwrap()
        .into_inner()
        .outcomes;
    assert!(
        !outcomes[0].ok && outcomes[0].message.contains("cpu_percent"),
        "{outcomes:?}"
    );

    let broadcast = |f: fn(&mut BroadcastRequest)| {
        let mut b = BroadcastRequest::default();
        f(&mut b);
        b
    };
    for (request, code, needle) in [
        (
            broadcast(|b| b.path = "//evil.example/".into()),
            Invalid,
            "path",
        ),
        (broadcast(|b| b.method = "TRACE".into()), Invalid, "method"),
        (
            broadcast(|b| b.body = "x".repeat(64 * 1024 + 1)),
            Invalid,
            "body",
        ),
        (broadcast(|b| b.timeout_ms = 30_001), Invalid, "timeout_ms"),
        (broadcast(|b| b.server_ids = vec![5]), NotFound, "5"),
    ] {
        assert_refused(c.broadcast(request).await, code, needle);
    }

    assert_refused(
        c.watch(WatchRequest { min_interval_ms: 5 }).await,
        Invalid,
        "min_interval_ms",
    );

    // Nothing changed: both servers still healthy, nothing simulating load.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = servers(&mut c).await;
    assert_eq!(after.len(), before.len());
    for server in &after {
        assert!(is(server, ServerStatus::Healthy), "{server:?}");
        assert!(
            !server.metrics.as_ref().unwrap().simulating_load,
            "{server:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_stream_refuses_bad_hellos() {
    let farm = Farm::up(1);
    let agents = AgentServiceClient::connect(farm.controller_url())
        .await
        .unwrap();
    let token = farm.token();
    let open = |first: link_request::Kind| {
        let (mut agents, token) = (agents.clone(), token.clone());
        async move {
            let messages = tokio_stream::iter(vec![LinkRequest { kind: Some(first) }]);
            match agents.link(common::authorized(messages, &token)).await {
                Ok(response) => {
                    let mut inbound = response.into_inner();
                    inbound.message().await.map(|_| ())
                }
                Err(status) => Err(status),
            }
        }
    };
    let hello = |server_id: u32, node_address: &str| {
        link_request::Kind::Hello(Hello {
            server_id,
            name: String::new(),
            node_address: node_address.into(),
            version: "test".into(),
            runtime: String::new(),
            instance: String::new(),
        })
    };
    assert_refused(
        open(hello(0, "127.0.0.1:1")).await,
        Code::InvalidArgument,
        "server_id",
    );
    assert_refused(
        open(hello(5, "no-port")).await,
        Code::InvalidArgument,
        "node_address",
    );
    assert_refused(
        open(link_request::Kind::Sample(MetricsSample::default())).await,
        Code::InvalidArgument,
        "hello",
    );
    let list = servers(&mut farm.client().await).await;
    assert_eq!(list.len(), 1, "nothing was registered: {list:?}");
}
