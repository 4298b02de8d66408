//! Attacks on a real farm, each of which must now fail to do harm: an agent stream without the
//! farm's token, a second agent claiming a running server, an agent pointing the farm at an
//! address of its own, registrations past the farm's bound, and samples built to overflow the
//! farm's sums.

mod common;

use std::time::Duration;

use common::{Farm, act, eventually, get, is, servers};
use farm_node_api::client::NodeClient;
use farm_proto::v1::agent_service_client::AgentServiceClient;
use farm_proto::v1::{
    GetMetricsRequest, Hello, LinkRequest, LinkResponse, MetricsSample, ServerActionKind,
    ServerStatus, link_request,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

/// An agent stream opened by hand: what it sends, and what the controller answers.
struct Stream {
    outbound: mpsc::Sender<LinkRequest>,
    _inbound: Streaming<LinkResponse>,
}

fn hello(server_id: u32, node_address: &str, instance: &str) -> link_request::Kind {
    link_request::Kind::Hello(Hello {
        server_id,
        name: String::new(),
        node_address: node_address.into(),
        version: "attacker".into(),
        runtime: String::new(),
        instance: instance.into(),
    })
}

/// Opens a Link stream to `farm`'s controller with `token` (none when `None`), says `first`
/// and waits for the welcome.
async fn open(
    farm: &Farm,
    token: Option<&str>,
    first: link_request::Kind,
) -> Result<Stream, Status> {
    let mut agents = AgentServiceClient::connect(farm.controller_url())
        .await
        .unwrap();
    let (outbound, requests) = mpsc::channel(16);
    outbound
        .send(LinkRequest { kind: Some(first) })
        .await
        .unwrap();
    let stream = ReceiverStream::new(requests);
    let request = match token {
        Some(token) => common::authorized(stream, token),
        None => tonic::Request::new(stream),
    };
    let mut inbound = agents.link(request).await?.into_inner();
    match inbound.message().await? {
        Some(_) => Ok(Stream {
            outbound,
            _inbound: inbound,
        }),
        None => Err(Status::unavailable("the stream ended before the welcome")),
    }
}

fn assert_refused<T>(result: Result<T, Status>, code: Code, needle: &str) {
    let Err(status) = result else {
        panic!("the stream must be refused ({needle})")
    };
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{:?} should mention {needle:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_the_farms_token_is_refused_and_counted() {
    let farm = Farm::up(1);
    assert_refused(
        open(&farm, None, hello(40, "127.0.0.1:9", "x")).await,
        Code::Unauthenticated,
        "token",
    );
    assert_refused(
        open(
            &farm,
            Some("not-the-farms-token-at-all"),
            hello(40, "127.0.0.1:9", "x"),
        )
        .await,
        Code::Unauthenticated,
        "token",
    );
    assert_eq!(farm.refused_streams().await, 2);
    assert_eq!(servers(&mut farm.client().await).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_cannot_be_taken_over() {
    let farm = Farm::up(2);
    let token = farm.token();
    let address = farm.node_address(1).await;
    // Even with the farm's token and the server's own node address, the claim is refused
    // while the real agent's stream is alive.
    assert_refused(
        open(&farm, Some(&token), hello(1, &address, "hijacker")).await,
        Code::AlreadyExists,
        "held by another agent",
    );
    let mut client = farm.client().await;
    let list = servers(&mut client).await;
    assert!(
        list[0].connected && is(&list[0], ServerStatus::Healthy),
        "{:?}",
        list[0]
    );

    // Commands still reach the real agent: a stop stops the real node.
    act(&mut client, 1, ServerActionKind::Stop).await;
    let probe = NodeClient::new();
    eventually(Duration::from_secs(10), "the real node to stop", || {
        let (probe, address) = (probe.clone(), address.clone());
        async move {
            probe
                .health(&address, Duration::from_millis(200))
                .await
                .is_err()
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_aim_the_farm_at_another_address() {
    let farm = Farm::up(1);
    let token = farm.token();
    // A server the runtime runs: its node is on loopback, where its agent put it.
    assert_refused(
        open(&farm, Some(&token), hello(1, "10.11.12.13:80", "a")).await,
        Code::PermissionDenied,
        "node_address",
    );
    // A server nobody announced may only be on this machine.
    assert_refused(
        open(&farm, Some(&token), hello(41, "192.168.7.7:22", "b")).await,
        Code::PermissionDenied,
        "node_address",
    );
    let list = servers(&mut farm.client().await).await;
    assert_eq!(list.len(), 1);
    assert!(
        list[0].node_address.starts_with("127.0.0.1:"),
        "{:?}",
        list[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_stop_at_the_farms_bound() {
    let farm = Farm::up_with(2, &["--max-servers", "3"], Duration::from_secs(30));
    let token = farm.token();
    let _third = open(&farm, Some(&token), hello(50, "127.0.0.1:9", "c"))
        .await
        .expect("a third server fits");
    for id in 51..=60 {
        assert_refused(
            open(&farm, Some(&token), hello(id, "127.0.0.1:9", "d")).await,
            Code::ResourceExhausted,
            "bound",
        );
    }
    assert_eq!(servers(&mut farm.client().await).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_built_to_overflow_leave_the_farms_sums_whole() {
    let farm = Farm::up(1);
    let token = farm.token();
    let mut streams = Vec::new();
    for id in [70, 71] {
        let stream = open(
            &farm,
            Some(&token),
            hello(id, "127.0.0.1:9", &format!("o{id}")),
        )
        .await
        .unwrap();
        stream
            .outbound
            .send(LinkRequest {
                kind: Some(link_request::Kind::Sample(MetricsSample {
                    timestamp_ms: 1,
                    memory_bytes: u64::MAX,
                    requests_total: u64::MAX,
                    errors_total: u64::MAX,
                    in_flight: u32::MAX,
                    cpu_percent: f64::MAX,
                    latency_p99_ms: f64::NAN,
                    ..MetricsSample::default()
                })),
            })
            .await
            .unwrap();
        streams.push(stream);
    }
    let url = format!("{}/api/metrics", farm.gateway_url());
    let metrics = eventually(Duration::from_secs(10), "both samples counted", || {
        let url = url.clone();
        async move {
            let reply = get(&url).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            let body = reply.json();
            (body["memory_bytes_total"].as_u64() == Some(u64::MAX)).then_some(body)
        }
    })
    .await;
    assert_eq!(
        metrics["requests_total"].as_u64(),
        Some(u64::MAX),
        "{metrics}"
    );
    assert!(
        metrics["latency_p99_ms_max"]
            .as_f64()
            .is_some_and(f64::is_finite),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_of_another_origin_cannot_change_the_farm() {
    let farm = Farm::up(1);
    let url = format!("{}/api/servers/1/action", farm.gateway_url());
    let body = br#"{"action":"stop"}"#;
    // A "simple" cross-origin POST, which browsers send without asking CORS first.
    let reply = common::http(
        "POST",
        &url,
        &[
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ],
        body,
    )
    .await;
    assert!(
        reply
            .expect_error(403, "forbidden")
            .contains("http://evil.example")
    );
    let reply = common::http(
        "POST",
        &url,
        &[
            ("origin", "http://evil.example"),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await;
    reply.expect_error(403, "forbidden");
    // CORS tells a browser on another origin nothing either, preflight included.
    let preflight = common::http(
        "OPTIONS",
        &format!("{}/api/scale", farm.gateway_url()),
        &[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        b"",
    )
    .await;
    assert_eq!(preflight.header("access-control-allow-origin"), "");
    let list = servers(&mut farm.client().await).await;
    assert!(
        is(&list[0], ServerStatus::Healthy),
        "nothing changed: {:?}",
        list[0]
    );

    // The dashboard's own origin may.
    let own = format!("http://{}", farm.gateway_address());
    let reply = common::http(
        "POST",
        &url,
        &[
            ("origin", own.as_str()),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_name_reaches_nothing() {
    let farm = Farm::up(1);
    for path in [
        "/api/servers",
        "/api/metrics",
        "/metrics",
        "/farm.v1.FarmService/ListServers",
    ] {
        let reply = common::http(
            "GET",
            &format!("{}{path}", farm.gateway_url()),
            &[("host", "attacker.example:8000")],
            b"",
        )
        .await;
        assert!(
            reply
                .expect_error(403, "forbidden")
                .contains("attacker.example"),
            "{path}"
        );
    }
    let reply = common::http(
        "GET",
        &format!("{}/api/servers", farm.gateway_url()),
        &[(
            "host",
            &format!(
                "localhost:{}",
                farm.gateway_address().rsplit(':').next().unwrap()
            ),
        )],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_changes_need_the_farms_token() {
    // Listening on every interface; the test still only talks to 127.0.0.1.
    let farm = Farm::up_with(
        1,
        &["--listen", "0.0.0.0:0", "--gateway-listen", "0.0.0.0:0"],
        Duration::from_secs(30),
    );
    let token = farm.token();
    let url = format!("{}/api/servers/1/action", farm.gateway_url());
    let json = [("content-type", "application/json")];
    let reply = common::http("POST", &url, &json, br#"{"action":"pause"}"#).await;
    assert!(reply.expect_error(401, "unauthenticated").contains("token"));
    let wrong = [
        ("content-type", "application/json"),
        ("authorization", "Bearer not-the-farms-token-at-all"),
    ];
    common::http("POST", &url, &wrong, br#"{"action":"pause"}"#)
        .await
        .expect_error(401, "unauthenticated");
    // Reads stay open.
    assert_eq!(
        get(&format!("{}/api/servers", farm.gateway_url()))
            .await
            .status,
        200
    );
    // Starting and stopping a scenario change the farm; checking one only reads it.
    let scenarios = format!("{}/api/scenarios", farm.gateway_url());
    let source = br#"{"source": "version: 1"}"#;
    common::http("POST", &scenarios, &json, source)
        .await
        .expect_error(401, "unauthenticated");
    common::http("POST", &format!("{scenarios}/sc-1/stop"), &json, b"")
        .await
        .expect_error(401, "unauthenticated");
    let check = common::http("POST", &format!("{scenarios}/check"), &json, source).await;
    assert_eq!(check.status, 200, "{}", check.text());
    assert_eq!(check.json()["valid"], false);
    let bearer = format!("Bearer {}", token.trim());
    let right = [
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    let reply = common::http("POST", &url, &right, br#"{"action":"pause"}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // The controller's own port asks the same of gRPC changes.
    let mut client = farm.client().await;
    let change = || farm_proto::v1::ServerActionRequest {
        server_ids: vec![1],
        action: ServerActionKind::Unpause as i32,
    };
    let refused = client.server_action(change()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let answer = client
        .server_action(farm.authorized(change()))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.outcomes[0].ok, "{answer:?}");
    assert_eq!(servers(&mut client).await.len(), 1, "reads need no token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_shows_the_node_degraded_and_idle_connections_are_cut() {
    let farm = Farm::start(
        1,
        &[],
        &[
            ("FARM_NODE_MAX_CONNECTIONS", "8"),
            ("FARM_NODE_IDLE_TIMEOUT_MS", "1500"),
        ],
        Duration::from_secs(30),
    )
    .unwrap();
    let address = farm.node_address(1).await;
    let mut flood = Vec::new();
    for _ in 0..40 {
        if let Ok(stream) = tokio::net::TcpStream::connect(&address).await {
            flood.push(stream);
        }
    }
    let mut client = farm.client().await;
    let reason = eventually(
        Duration::from_secs(15),
        "server 1 to show it refuses",
        || {
            let mut client = client.clone();
            async move {
                let server = servers(&mut client).await.remove(0);
                (is(&server, ServerStatus::Degraded) && server.status_reason.contains("refusing"))
                    .then_some(server.status_reason)
            }
        },
    )
    .await;
    assert!(reason.contains("refused"), "{reason}");
    // The flood sends nothing: the node cuts every connection it took after its idle
    // timeout, and serves again.
    for stream in &mut flood {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            use tokio::io::AsyncReadExt;
            stream.read(&mut byte).await
        })
        .await
        .expect("the node cuts an idle connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    eventually(Duration::from_secs(20), "server 1 healthy again", || {
        let mut client = client.clone();
        async move { is(&servers(&mut client).await[0], ServerStatus::Healthy).then_some(()) }
    })
    .await;
    let metrics = servers(&mut client).await.remove(0).metrics.unwrap();
    assert!(metrics.connections_open <= 8, "{metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_outlasts_slow_and_idle_clients() {
    let farm = Farm::up_with(
        1,
        &[
            "--gateway-max-connections",
            "16",
            "--gateway-idle-timeout-ms",
            "1000",
        ],
        Duration::from_secs(30),
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Slowloris: a head dripped a byte at a time is cut.
    let mut slow = tokio::net::TcpStream::connect(farm.gateway_address())
        .await
        .unwrap();
    let dripped = tokio::time::timeout(Duration::from_secs(15), async {
        for byte in b"GET /api/servers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 0123456789abcdef" {
            if slow.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    })
    .await
    .unwrap();
    assert!(dripped, "a head that never ends is cut");

    // An idle flood past the bound: the extra connections are closed at once, the others
    // when their idle time is up, and the gateway answers again.
    let mut flood = Vec::new();
    for _ in 0..48 {
        if let Ok(stream) = tokio::net::TcpStream::connect(farm.gateway_address()).await {
            flood.push(stream);
        }
    }
    for stream in &mut flood {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("every flooding connection is closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let reply = get(&format!("{}/api/servers", farm.gateway_url())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        farm.client()
            .await
            .get_metrics(GetMetricsRequest {})
            .await
            .is_ok()
    );
}
