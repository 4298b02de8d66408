//! Helpers shared by the integration tests: a real node on 127.0.0.1:0, spoken to over
//! real HTTP through the crate's own client.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::future::Future;
use std::time::{Duration, Instant};

use farm_node::connections::ConnectionLimits;
use farm_node::{Config, Error};
use farm_node_api::client::{NodeClient, Reply};
use farm_node_api::faults::FaultProfile;
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
    /// The writing end of the node's fault channel, for nodes started with one.
    faults: Option<std::io::PipeWriter>,
}

impl TestNode {
    pub(crate) async fn start(server_id: u32) -> Self {
        Self::start_with(server_id, ConnectionLimits::default()).await
    }

    /// A node with these connection bounds.
    pub(crate) async fn start_with(server_id: u32, connections: ConnectionLimits) -> Self {
        Self::launch(server_id, connections, false, false).await
    }

    /// A node whose fault channel the test writes to ([`TestNode::set_faults`]), with these
    /// connection bounds, and header faults allowed or not.
    pub(crate) async fn start_faulty(
        server_id: u32,
        connections: ConnectionLimits,
        allow_fault_headers: bool,
    ) -> Self {
        Self::launch(server_id, connections, true, allow_fault_headers).await
    }

    async fn launch(
        server_id: u32,
        connections: ConnectionLimits,
        channel: bool,
        allow_fault_headers: bool,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let config = Config {
            server_id,
            name: format!("server-{server_id}"),
            connections,
            fault_channel: None,
            allow_fault_headers,
        };
        let (task, faults) = if channel {
            let (reader, writer) = std::io::pipe().unwrap();
            let run = farm_node::run_with_fault_channel(config, listener, shutdown.clone(), reader);
            (tokio::spawn(run), Some(writer))
        } else {
            (
                tokio::spawn(farm_node::run(config, listener, shutdown.clone())),
                None,
            )
        };
        Self {
            addr,
            client: NodeClient::new(),
            shutdown,
            task,
            faults,
        }
    }

    /// Writes one line to the node's fault channel, as the agent would.
    pub(crate) fn write_fault_line(&mut self, line: &str) {
        use std::io::Write;
        let writer = self
            .faults
            .as_mut()
            .expect("a node started with start_faulty");
        writer.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Replaces the node's fault profile and waits until `/metrics` reports it in force. It
    /// clears the profile first, so that a profile with the same kinds as the last one is
    /// seen to arrive too.
    pub(crate) async fn set_faults(&mut self, profile: &FaultProfile) {
        self.write_fault_line("{}");
        self.wait_for_faults(&[]).await;
        self.write_fault_line(&serde_json::to_string(profile).unwrap());
        self.wait_for_faults(&kinds(profile)).await;
    }

    /// Waits until `/metrics` reports exactly these kinds of fault active.
    pub(crate) async fn wait_for_faults(&self, expected: &[&str]) {
        wait_for(
            &format!("faults {expected:?} in force"),
            Duration::from_secs(10),
            || async {
                let active = self.metrics().await.faults_active;
                (active == expected).then_some(())
            },
        )
        .await;
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

    /// Starts the node's shutdown without waiting for it.
    pub(crate) fn begin_stop(&self) {
        self.shutdown.cancel();
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

/// The kinds of fault `profile` sets, as `/metrics` names them.
pub(crate) fn kinds(profile: &FaultProfile) -> Vec<&'static str> {
    [
        ("latency", profile.latency.is_some()),
        ("abort", profile.abort.is_some()),
        ("hang", profile.hang.is_some()),
        ("throughput", profile.throughput.is_some()),
        ("connection", profile.connection.is_some()),
        ("rate_limit", profile.rate_limit.is_some()),
        ("health", profile.health.is_some()),
        ("readiness", profile.readiness.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
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
