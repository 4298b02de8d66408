//! Helpers for the integration tests: real `farm` processes on free ports, a gRPC client,
//! bounded waits on conditions, and process discovery through `/proc`.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use farm_proto::v1::farm_service_client::FarmServiceClient;
use farm_proto::v1::{
    ListServersRequest, Server, ServerActionKind, ServerActionRequest, ServerStatus,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

/// The `farm` binary under test.
pub fn farm_bin() -> &'static str {
    env!("CARGO_BIN_EXE_farm")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A base port such that base+1 ..= base+n are all free now.
pub fn free_port_range(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + (rand_u16() % 30_000);
        let all_free = (1..=n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no free range of {n} ports found");
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    ((nanos ^ std::process::id().rotate_left(16)) % 65_521) as u16
}

/// Polls `check` every 10 ms until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A running `farm up`, stopped with SIGTERM when dropped.
pub struct Farm {
    pub child: Child,
    pub controller_port: u16,
    pub gateway_port: u16,
    pub base_port: u16,
    pub servers: u32,
}

impl Farm {
    /// Starts `farm up` with `servers` servers on free ports and waits until all are healthy.
    pub fn up(servers: u32) -> Farm {
        Self::up_with(servers, &[], Duration::from_secs(30))
    }

    /// Like [`Farm::up`], with extra arguments for `farm up`, waiting up to `limit` for the
    /// farm to turn healthy.
    pub fn up_with(servers: u32, extra: &[&str], limit: Duration) -> Farm {
        let controller_port = free_port();
        let gateway_port = free_port();
        let base_port = free_port_range(servers as u16);
        let child = Command::new(farm_bin())
            .args(["up", "--servers", &servers.to_string()])
            .args(["--listen", &format!("127.0.0.1:{controller_port}")])
            .args(["--gateway-listen", &format!("127.0.0.1:{gateway_port}")])
            .args(["--node-base-port", &base_port.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("farm up starts");
        let mut farm = Farm {
            child,
            controller_port,
            gateway_port,
            base_port,
            servers,
        };
        farm.wait_for_line("healthy in", limit);
        farm
    }

    /// Reads farm up's output until a line contains `needle`.
    fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        use std::io::{BufRead, BufReader};
        let stdout = self.child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let wanted = needle.to_string();
        // The thread keeps draining farm up's output after the line, so farm up never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.contains(&wanted) {
                    let _ = tx.send(line);
                }
            }
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("farm up did not print {needle:?} within {limit:?}"))
    }

    pub fn controller_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.controller_port)
    }

    /// The gateway's base URL (REST, /docs, /metrics, grpc-web).
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    /// The gateway's `host:port`.
    pub fn gateway_address(&self) -> String {
        format!("127.0.0.1:{}", self.gateway_port)
    }

    pub fn node_address(&self, id: u32) -> String {
        format!("127.0.0.1:{}", u32::from(self.base_port) + id)
    }

    pub async fn client(&self) -> FarmServiceClient<Channel> {
        connect(&self.controller_url()).await
    }

    /// Pids of this farm's agent and node processes.
    pub fn descendants(&self) -> Vec<u32> {
        let controller = format!("127.0.0.1:{}", self.controller_port);
        let mut pids = pids_with_arg(&controller);
        for id in 1..=self.servers {
            pids.extend(pids_with_arg(&self.node_address(id)));
        }
        pids.retain(|&p| p != self.child.id());
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Sends SIGTERM and waits (bounded) for farm up to exit; returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), Signal::SIGTERM);
        wait_exit(&mut self.child, Duration::from_secs(15))
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.child.id(), Signal::SIGTERM);
            let _ = wait_exit_opt(&mut self.child, Duration::from_secs(15));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `sig` to `pid`, ignoring a process that is already gone.
pub fn signal(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

/// Waits up to `limit` for `child` to exit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    wait_exit_opt(child, limit)
        .unwrap_or_else(|| panic!("process {} did not exit within {limit:?}", child.id()))
}

fn wait_exit_opt(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A gRPC client for the controller at `url`, retrying the connection for up to 10 s.
pub async fn connect(url: &str) -> FarmServiceClient<Channel> {
    let url = url.to_string();
    eventually(
        Duration::from_secs(10),
        "the controller to accept connections",
        || {
            let url = url.clone();
            async move { FarmServiceClient::connect(url).await.ok() }
        },
    )
    .await
}

/// Every server, in id order.
pub async fn servers(client: &mut FarmServiceClient<Channel>) -> Vec<Server> {
    client
        .list_servers(ListServersRequest::default())
        .await
        .expect("ListServers answers")
        .into_inner()
        .servers
}

/// Asks for `action` on server `id` and checks that it was carried out.
pub async fn act(client: &mut FarmServiceClient<Channel>, id: u32, action: ServerActionKind) {
    let outcomes = client
        .server_action(ServerActionRequest {
            server_ids: vec![id],
            action: action as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .outcomes;
    assert!(outcomes[0].ok, "{action:?}: {outcomes:?}");
}

/// Whether `server` has `status`.
pub fn is(server: &Server, status: ServerStatus) -> bool {
    server.status == status as i32
}

/// Pids of live processes one of whose arguments contains `needle` (zombies excluded).
pub fn pids_with_arg(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let dir = entry.path();
        if is_zombie(&dir) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let matches = cmdline
            .split(|&b| b == 0)
            .any(|arg| String::from_utf8_lossy(arg).contains(needle));
        if matches {
            pids.push(pid);
        }
    }
    pids
}

fn is_zombie(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// The pid of server `id`'s node process in `farm`.
pub fn node_pid(farm: &Farm, id: u32) -> Option<u32> {
    let address = farm.node_address(id);
    pids_with_arg(&address).into_iter().find(|&pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| c.split(|&b| b == 0).any(|a| a == b"node"))
            .unwrap_or(false)
    })
}

/// The pid of server `id`'s agent process in `farm`.
pub fn agent_pid(farm: &Farm, id: u32) -> Option<u32> {
    let address = farm.node_address(id);
    pids_with_arg(&address).into_iter().find(|&pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| c.split(|&b| b == 0).any(|a| a == b"agent"))
            .unwrap_or(false)
    })
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The body as JSON; panics (with the body) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, or "".
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// Asserts this is the gateway's JSON error with `status` and `code`; returns its message.
    pub fn expect_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        assert!(
            self.header("content-type").starts_with("application/json"),
            "{:?}",
            self.headers
        );
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["status"], status, "{body}");
        body["error"]["message"].as_str().unwrap().to_string()
    }
}

/// Sends one HTTP/1.1 request (30 s bound) and reads the answer whole.
pub async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let exchange = async {
        let response = client.request(request).await.expect("the gateway answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the body arrives").to_bytes();
        HttpReply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.to_vec(),
        }
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {url} did not answer within 30 s"))
}

/// `GET url`.
pub async fn get(url: &str) -> HttpReply {
    http("GET", url, &[], b"").await
}

/// `POST url` with a JSON body.
pub async fn post_json(url: &str, body: &str) -> HttpReply {
    http(
        "POST",
        url,
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await
}
