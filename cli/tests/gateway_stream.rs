//! grpc-web through the gateway, read by a real grpc-web client (tonic-web's
//! `GrpcWebClientLayer` over a plain HTTP/1.1 hyper client), and the gateway riding out a
//! controller restart. Every wait is bounded.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Farm, HttpReply, eventually, farm_bin, get, low_port, post_json, signal};
use farm_proto::v1::farm_service_client::FarmServiceClient;
use farm_proto::v1::{
    GetServerRequest, ListServersRequest, ServerStatus, WatchRequest, WatchResponse,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::Signal;
use tonic_web::GrpcWebClientLayer;

/// A grpc-web client of the farm service at `base` (the gateway), over HTTP/1.1 only.
fn grpc_web_client(
    base: &str,
) -> FarmServiceClient<
    tonic_web::GrpcWebClientService<
        Client<
            hyper_util::client::legacy::connect::HttpConnector,
            tonic_web::GrpcWebCall<tonic::body::Body>,
        >,
    >,
> {
    let http1 = Client::builder(TokioExecutor::new()).build_http();
    let service = tower::ServiceBuilder::new()
        .layer(GrpcWebClientLayer::new())
        .service(http1);
    FarmServiceClient::with_origin(service, base.parse().unwrap())
}

async fn next(stream: &mut tonic::Streaming<WatchResponse>, limit: Duration) -> WatchResponse {
    tokio::time::timeout(limit, stream.message())
        .await
        .unwrap_or_else(|_| panic!("no watch message within {limit:?}"))
        .expect("the stream is healthy")
        .expect("the stream is still open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_watch_streams_message_by_message_over_http1() {
    let farm = Farm::up(3);
    let base = farm.gateway_url();
    let mut client = grpc_web_client(&base);

    // A unary call and a gRPC error, both through grpc-web.
    let list = client
        .list_servers(ListServersRequest::default())
        .await
        .expect("ListServers over grpc-web")
        .into_inner();
    assert_eq!(list.servers.len(), 3);
    let missing = client
        .get_server(GetServerRequest { server_id: 99 })
        .await
        .expect_err("server 99 does not exist");
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");

    // The watch: a snapshot first, then changes while the stream stays open.
    let mut stream = client
        .watch(WatchRequest {
            min_interval_ms: 100,
        })
        .await
        .expect("Watch over grpc-web")
        .into_inner();
    let first = next(&mut stream, Duration::from_secs(5)).await;
    assert!(first.full, "the first message is the whole farm");
    assert_eq!(first.servers.len(), 3);

    let opened = Instant::now();
    let mut seen = 1;
    // Heartbeats arrive while nothing changes: the stream is not buffered to its end.
    while seen < 3 {
        let message = next(&mut stream, Duration::from_secs(10)).await;
        assert!(message.metrics.is_some());
        seen += 1;
    }
    assert!(opened.elapsed() < Duration::from_secs(5));

    // A change made elsewhere arrives on the open stream.
    let stop = post_json(
        &format!("{base}/api/servers/2/action"),
        r#"{"action":"stop"}"#,
    )
    .await;
    assert_eq!(stop.status, 200, "{}", stop.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let message = next(&mut stream, Duration::from_secs(10)).await;
        let stopped = message
            .servers
            .iter()
            .any(|s| s.id == 2 && s.status == ServerStatus::Stopped as i32);
        if stopped {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server 2's stop did not arrive on the watch"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_frames_arrive_chunked_before_the_stream_ends() {
    let farm = Farm::up(1);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    // One grpc-web frame: flag 0, length 0, an empty WatchRequest.
    let request = http::Request::post(format!("{}/farm.v1.FarmService/Watch", farm.gateway_url()))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .expect("headers within 5 s")
        .expect("the gateway answers");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let mut body = response.into_body();
    let mut frames = 0;
    let started = Instant::now();
    while frames < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a frame within 3 s")
            .expect("the body goes on")
            .expect("the frame is readable");
        let data = frame.into_data().expect("data, not trailers");
        assert_eq!(data[0], 0, "a message frame, not the trailer frame");
        frames += 1;
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // Only the public farm service is exposed.
    let agents = http::Request::post(format!("{}/farm.v1.AgentService/Link", farm.gateway_url()))
        .header("content-type", "application/grpc-web+proto")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let refused = client.request(agents).await.unwrap();
    assert_eq!(refused.headers()["grpc-status"], "12");
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(farm_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_rides_out_a_controller_restart() {
    // The controller comes back on the same port, and the gateway must be reached before it
    // can say where it listens: both on ports below the ephemeral range.
    let controller_listen = format!("127.0.0.1:{}", low_port());
    let controller_url = format!("http://{controller_listen}");
    let gateway_port = low_port();
    let base = format!("http://127.0.0.1:{gateway_port}");

    // The gateway starts first: with no controller, it answers 503, fast.
    let gateway = spawn(&[
        "gateway",
        "--listen",
        &format!("127.0.0.1:{gateway_port}"),
        "--controller",
        &controller_url,
    ]);
    let early = eventually(Duration::from_secs(10), "the gateway to listen", || {
        let url = format!("{base}/api/servers");
        async move {
            let started = Instant::now();
            let reply = tokio::time::timeout(Duration::from_secs(5), async {
                std::net::TcpStream::connect(("127.0.0.1", gateway_port)).ok()?;
                Some(get(&url).await)
            })
            .await
            .ok()??;
            Some((reply, started.elapsed()))
        }
    })
    .await;
    early.0.expect_error(503, "unavailable");

    let mut controller = spawn(&["controller", "--listen", &controller_listen]);
    let _agents: Vec<Proc> = (1..=3u32)
        .map(|id| {
            spawn(&[
                "agent",
                "--id",
                &id.to_string(),
                "--controller",
                &controller_url,
                "--node-listen",
                "127.0.0.1:0",
            ])
        })
        .collect();
    let all_three = |base: String| async move {
        let reply = get(&format!("{base}/api/servers")).await;
        (reply.status == 200
            && reply.json()["servers"]
                .as_array()
                .is_some_and(|s| s.len() == 3 && s.iter().all(|s| s["connected"] == true)))
        .then_some(())
    };
    eventually(
        Duration::from_secs(15),
        "3 servers through the gateway",
        || all_three(base.clone()),
    )
    .await;

    // Traffic runs all along: every answer is a 200 or a JSON 503, and none hangs.
    let outages = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let traffic = {
        let base = base.clone();
        let outages = outages.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until {
                let started = Instant::now();
                let reply = get(&format!("{base}/api/metrics")).await;
                if reply.status == 503 {
                    outages.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                answers.push((reply.status, reply.text(), started.elapsed()));
                if answers.len() > 20 && answers.iter().rev().take(20).all(|a| a.0 == 200) {
                    // Back to normal after the restart (checked by the main task below).
                    if answers.iter().any(|a| a.0 == 503) {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tag_before = etag_version(&get(&format!("{base}/api/servers")).await);

    signal(controller.0.id(), Signal::SIGKILL);
    let _ = controller.0.wait();
    let down = eventually(Duration::from_secs(15), "a 503 from the gateway", || {
        let url = format!("{base}/api/servers");
        async move {
            let reply = get(&url).await;
            (reply.status == 503).then_some(reply)
        }
    })
    .await;
    let message = down.expect_error(503, "unavailable");
    assert!(
        !message.contains("127.0.0.1") && !message.contains("os error"),
        "no internals: {message}"
    );
    for _ in 0..5 {
        let started = Instant::now();
        get(&format!("{base}/api/servers/1"))
            .await
            .expect_error(503, "unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a 503 comes fast, took {:?}",
            started.elapsed()
        );
    }
    let scrape = get(&format!("{base}/metrics")).await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape.text().contains("farm_controller_up 0"),
        "{}",
        scrape.text()
    );

    // The traffic sees the outage too before the controller comes back.
    eventually(Duration::from_secs(10), "the traffic to see a 503", || {
        let outages = outages.clone();
        async move { (outages.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(()) }
    })
    .await;

    // The controller comes back on the same port; the gateway reconnects by itself.
    controller = spawn(&["controller", "--listen", &controller_listen]);
    eventually(
        Duration::from_secs(15),
        "the farm back through the gateway",
        || all_three(base.clone()),
    )
    .await;
    // The new controller's versions start above the old one's, so the answer the gateway
    // kept from before cannot pass for the new farm's.
    let tag_after = etag_version(&get(&format!("{base}/api/servers")).await);
    assert!(
        tag_after > tag_before,
        "versions after a restart ({tag_after}) start above those before ({tag_before})"
    );
    let answers = tokio::time::timeout(Duration::from_secs(70), traffic)
        .await
        .expect("the traffic task ends")
        .unwrap();
    assert!(answers.iter().any(|a| a.0 == 503), "the outage was seen");
    assert_eq!(answers.last().unwrap().0, 200, "and it is over");
    for (status, body, took) in &answers {
        assert!(
            *status == 200 || *status == 503,
            "only 200 or 503 during a restart, got {status}: {body}"
        );
        assert!(*took < Duration::from_secs(10), "no request hung: {took:?}");
    }
    drop(controller);
    drop(gateway);
}

/// The farm version in a list's `ETag`, `"<version>"`.
fn etag_version(reply: &HttpReply) -> u64 {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let etag = reply.headers["etag"].to_str().unwrap();
    etag.trim_matches('"')
        .parse()
        .unwrap_or_else(|_| panic!("{etag}"))
}
