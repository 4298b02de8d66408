//! The typed HTTP client for a node, used by the agent, the controller and load tests.
//!
//! One [`NodeClient`] is meant to be shared (it is a cheap clone): it pools keep-alive
//! connections per node address and sets `TCP_NODELAY`, so a probe every second or a load
//! test's thousands of requests reuse a handful of connections.
//!
//! There are two kinds of traffic, one method each:
//!
//! - [`NodeClient::request`] is ordinary traffic: it counts in the node's metrics, like a
//!   user's request would.
//! - [`NodeClient::health`] and [`NodeClient::metrics`] are probes: they carry
//!   [`PROBE_HEADER`], so watching a node does not change its numbers.

use std::time::{Duration, Instant};

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::PROBE_HEADER;
use crate::api::NodeMetrics;

/// How long an unused pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest `/health` body [`NodeClient::health`] reads (the real one is ~40 bytes).
const MAX_HEALTH_BODY: usize = 1024;

/// Largest `/metrics` body [`NodeClient::metrics`] accepts (the real one is under 1 KiB).
const MAX_METRICS_BODY: usize = 64 * 1024;

/// A node's answer to [`NodeClient::request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The first `max_body` bytes of the body.
    pub body: Bytes,
    /// The size of the whole body, kept or not.
    pub body_len: u64,
    /// Whether the body was longer than `max_body` (the rest was read and discarded, so
    /// the connection stays reusable).
    pub truncated: bool,
    /// From sending the request to the end of the body.
    pub latency: Duration,
}

/// Why a request to a node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made (refused, unreachable, unresolvable, or an address
    /// or path that does not form a URL).
    #[error("cannot connect to {addr}: {message}")]
    Connect {
        /// The `host:port` that was asked for.
        addr: String,
        /// What went wrong, with its causes.
        message: String,
    },
    /// No complete answer, body included, within the timeout.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed after it was made (reset, closed mid-answer, bad HTTP).
    #[error("i/o error talking to the node: {0}")]
    Io(String),
    /// The node answered, with a status the call does not accept.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// The node answered 200 with a body that is not what the call expects.
    #[error("cannot decode the answer: {0}")]
    Decode(String),
}

impl ClientError {
    /// A stable, lowercase name for the kind of failure, for metrics labels and logs:
    /// `connect`, `timeout`, `io`, `status` or `decode`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout(_) => "timeout",
            Self::Io(_) => "io",
            Self::Status(_) => "status",
            Self::Decode(_) => "decode",
        }
    }
}

/// An error and its chain of causes on one line: hyper's own messages are terse
/// ("client error (Connect)") and the useful part is in the sources.
fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// One request, as [`NodeClient::send`] takes it.
struct Call<'a> {
    method: Method,
    addr: &'a str,
    path_and_query: &'a str,
    body: Option<Bytes>,
    max_body: usize,
    probe: bool,
}

/// The HTTP client for nodes; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct NodeClient {
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Default for NodeClient {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeClient {
    /// A client with an empty pool. Needs a tokio runtime when used, not when built.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Self { http }
    }

    /// Sends `method path_and_query` to the node at `addr` (`host:port`), as ordinary
    /// traffic that the node counts.
    ///
    /// With a `body`, the request says `content-type: application/json`. Any status is
    /// an `Ok`; only the transport can fail. At most `max_body` bytes of the answer are
    /// kept; the rest is read and dropped. `timeout` bounds the whole exchange,
    /// connecting and reading the body included.
    pub async fn request(
        &self,
        method: Method,
        addr: &str,
        path_and_query: &str,
        body: Option<Bytes>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Reply, ClientError> {
        let call = Call {
            method,
            addr,
            path_and_query,
            body,
            max_body,
            probe: false,
        };
        self.send(call, timeout).await
    }

    /// Probes `GET /health` on the node at `addr`; `Ok` with the round-trip time only if
    /// it answered 200 within `timeout`.
    pub async fn health(&self, addr: &str, timeout: Duration) -> Result<Duration, ClientError> {
        let reply = self
            .probe(addr, "/health", timeout, MAX_HEALTH_BODY)
            .await?;
        Ok(reply.latency)
    }

    /// Scrapes `GET /metrics` from the node at `addr`, as a probe.
    pub async fn metrics(&self, addr: &str, timeout: Duration) -> Result<NodeMetrics, ClientError> {
        let reply = self
            .probe(addr, "/metrics", timeout, MAX_METRICS_BODY)
            .await?;
        if reply.truncated {
            return Err(ClientError::Decode(format!(
                "metrics body larger than {MAX_METRICS_BODY} bytes"
            )));
        }
        serde_json::from_slice(&reply.body).map_err(|err| ClientError::Decode(err.to_string()))
    }

    /// A `GET` carrying [`PROBE_HEADER`] that must answer 200.
    async fn probe(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Reply, ClientError> {
        let call = Call {
            method: Method::GET,
            addr,
            path_and_query: path,
            body: None,
            max_body,
            probe: true,
        };
        let reply = self.send(call, timeout).await?;
        if reply.status != 200 {
            return Err(ClientError::Status(reply.status));
        }
        Ok(reply)
    }

    async fn send(&self, call: Call<'_>, timeout: Duration) -> Result<Reply, ClientError> {
        let bad_url = |message: String| ClientError::Connect {
            addr: call.addr.to_owned(),
            message,
        };
        if !call.path_and_query.starts_with('/') {
            return Err(bad_url(format!(
                "path {:?} does not start with '/'",
                call.path_and_query
            )));
        }
        let uri: Uri = format!("http://{}{}", call.addr, call.path_and_query)
            .parse()
            .map_err(|err: http::uri::InvalidUri| bad_url(format!("invalid URL: {err}")))?;

        let mut builder = Request::builder().method(call.method).uri(uri);
        if call.probe {
            builder = builder.header(PROBE_HEADER, HeaderValue::from_static("1"));
        }
        if call.body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let mut request = builder
            .body(Full::new(call.body.unwrap_or_default()))
            .map_err(|err| bad_url(err.to_string()))?;
        // A request made inside a traced span carries its context: the node's span joins the
        // caller's trace. Nothing is added while tracing is off.
        farm_telemetry::inject(request.headers_mut());

        let addr = call.addr;
        let max_body = call.max_body;
        let exchange = async move {
            let start = Instant::now();
            let response = self.http.request(request).await.map_err(|err| {
                if err.is_connect() {
                    ClientError::Connect {
                        addr: addr.to_owned(),
                        message: chain(&err),
                    }
                } else {
                    ClientError::Io(chain(&err))
                }
            })?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut kept = Kept::new(max_body);
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|err| ClientError::Io(chain(&err)))?;
                if let Ok(data) = frame.into_data() {
                    kept.push(data);
                }
            }
            let latency = start.elapsed();
            Ok(kept.into_reply(status, latency))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }
}

/// The kept part of a body: the first chunk as is (the common case of a body in one
/// chunk is then copied nowhere), later ones copied together.
struct Kept {
    max: usize,
    first: Bytes,
    rest: Vec<u8>,
    total: u64,
    truncated: bool,
}

impl Kept {
    fn new(max: usize) -> Self {
        Self {
            max,
            first: Bytes::new(),
            rest: Vec::new(),
            total: 0,
            truncated: false,
        }
    }

    fn len(&self) -> usize {
        if self.rest.is_empty() {
            self.first.len()
        } else {
            self.rest.len()
        }
    }

    fn push(&mut self, data: Bytes) {
        self.total += data.len() as u64;
        let room = self.max - self.len();
        if data.len() > room {
            self.truncated = true;
        }
        let take = data.len().min(room);
        if take == 0 {
            return;
        }
        if self.first.is_empty() {
            self.first = data.slice(..take);
        } else {
            if self.rest.is_empty() {
                self.rest.extend_from_slice(&self.first);
            }
            self.rest.extend_from_slice(&data[..take]);
        }
    }

    fn into_reply(self, status: u16, latency: Duration) -> Reply {
        let body = if self.rest.is_empty() {
            self.first
        } else {
            Bytes::from(self.rest)
        };
        Reply {
            status,
            body,
            body_len: self.total,
            truncated: self.truncated,
            latency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(max: usize, chunks: &[&'static [u8]]) -> Reply {
        let mut kept = Kept::new(max);
        for chunk in chunks {
            kept.push(Bytes::from_static(chunk));
        }
        kept.into_reply(200, Duration::ZERO)
    }

    #[test]
    fn kept_body_is_cut_at_max() {
        let r = keep(10, &[b"hello", b" ", b"world"]);
        assert_eq!(&r.body[..], b"hello worl");
        assert_eq!(r.body_len, 11);
        assert!(r.truncated);

        let r = keep(100, &[b"hello"]);
        assert_eq!(&r.body[..], b"hello");
        assert!(!r.truncated);

        let r = keep(3, &[b"", b"hello", b"x"]);
        assert_eq!(&r.body[..], b"hel");
        assert_eq!(r.body_len, 6);
        assert!(r.truncated);

        let r = keep(0, &[b"x"]);
        assert!(r.body.is_empty() && r.truncated);
        assert!(!keep(0, &[]).truncated);
    }

    #[test]
    fn kinds_are_stable() {
        let kinds = [
            ClientError::Connect {
                addr: "a".into(),
                message: "m".into(),
            }
            .kind(),
            ClientError::Timeout(Duration::ZERO).kind(),
            ClientError::Io(String::new()).kind(),
            ClientError::Status(500).kind(),
            ClientError::Decode(String::new()).kind(),
        ];
        assert_eq!(kinds, ["connect", "timeout", "io", "status", "decode"]);
    }
}
