//! Helpers shared by the integration tests: a real node on 127.0.0.1:0, spoken to over
//! real HTTP through the crate's own client.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::future::Future;
use std::time::{Duration, Instant};

use farm_node::connections::ConnectionLimits;
use farm_node::{Config, Error};
use farm_node_api::client::{NodeClient, Reply};
use http::Method;
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Timeout of one test request: generous, a hung request fails the test instead of
/// hanging it.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A node served by `farm_node::run` for the length of a test.
pub(crate) struct TestNode {
    pub(crate) addr: String,
    pub(crate) client: NodeClient,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
}

impl TestNode {
    pub(crate) async fn start(server_id: u32) -> Self {
        Self::start_with(server_id, ConnectionLimits::default()).await
    }

    /// A node with these connection bounds.
    pub(crate) async fn start_with(server_id: u32, connections: ConnectionLimits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let config = Config {
            server_id,
            name: format!("server-{server_id}"),
            connections,
        };
        let task = tokio::spawn(farm_node::run(config, listener, shutdown.clone()));
        Self {
            addr,
            client: NodeClient::new(),
            shutdown,
            task,
        }
    }

    /// An ordinary (counted) request, keeping up to 16 MiB of body.
    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<&str>) -> Reply {
        let body = body.map(|b| Bytes::copy_from_slice(b.as_bytes()));
        self.client
            .request(method, &self.addr, path, body, REQUEST_TIMEOUT, 16 << 20)
            .await
            .unwrap_or_else(|err| panic!("{path}: {err}"))
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub(crate) async fn metrics(&self) -> farm_node_api::api::NodeMetrics {
        self.client
            .metrics(&self.addr, REQUEST_TIMEOUT)
            .await
            .unwrap()
    }

    /// Cancels the node and waits (boundedly) for `run` to return.
    pub(crate) async fn stop(self) -> Result<(), Error> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("node did not shut down within 10 s")
            .expect("node task panicked")
    }
}

/// The reply body as JSON.
pub(crate) fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|err| {
        panic!(
            "status {}: body is not JSON ({err}): {:?}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )
    })
}

/// Asserts `reply` is an error with `status` and a JSON `error` mentioning `needle`.
pub(crate) fn assert_error(reply: &Reply, status: u16, needle: &str) {
    let body = json(reply);
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {body}"));
    assert_eq!(reply.status, status, "{message}");
    assert!(
        message.contains(needle),
        "error {message:?} should mention {needle:?}"
    );
}

/// One raw HTTP/1.1 exchange, for what the client does not expose (headers). Returns
/// the head (status line and headers) and the body.
pub(crate) async fn raw(addr: &str, request: &str) -> (String, Vec<u8>) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.unwrap();
        bytes
    };
    let bytes = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .expect("raw exchange timed out");
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of head");
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    (head.to_ascii_lowercase(), bytes[split + 4..].to_vec())
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `limit`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
