//! Helpers for the integration tests: real `farm` processes on free ports, a gRPC client,
//! bounded waits on conditions, and process discovery through `/proc`; [`balancer`] puts
//! real load balancers in front of a farm; [`otlp`] is a trace collector.
#![allow(dead_code, unreachable_pub)]

pub mod balancer;
pub mod otlp;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use farm_proto::v1::farm_service_client::FarmServiceClient;
use farm_proto::v1::{
    ListServersRequest, LoadTestResult, LoadTestSpec, RunLoadTestRequest, Server, ServerActionKind,
    ServerActionRequest, ServerStatus,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

/// The `farm` binary under test.
pub fn farm_bin() -> &'static str {
    env!("CARGO_BIN_EXE_farm")
}

/// A base port for a program that cannot report the ports it got (the docker runtime
/// publishes node N on base+N): below the kernel's ephemeral range (32768-60999), so that no
/// outgoing connection can take one, with base+1 ..= base+n free now. Another test may still
/// bind one first; callers retry on "not free".
pub fn low_port_range(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 10_000 + (rand_u16() % (32_000 - 10_000 - n));
        let all_free = (1..=n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no free range of {n} ports found below 32768");
}

/// One port below the kernel's ephemeral range that is free now, for a program that must
/// come back on the same port (a restarted controller) or cannot report the port it got.
pub fn low_port() -> u16 {
    low_port_range(1) + 1
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.finish() as u16
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

/// A running `farm up`, stopped with SIGTERM when dropped. Every port it binds is one the
/// kernel picked; the addresses are read from its banner, and the nodes' from the farm.
pub struct Farm {
    pub child: Child,
    /// The controller's `host:port`.
    pub controller: String,
    /// The gateway's `host:port` (empty with `--no-gateway`).
    pub gateway: String,
    pub servers: u32,
    /// The farm's own data directory (its token), removed with the farm.
    pub data_dir: std::path::PathBuf,
}

impl Farm {
    /// Starts `farm up` with `servers` servers on free ports and waits until all are healthy.
    pub fn up(servers: u32) -> Farm {
        Self::up_with(servers, &[], Duration::from_secs(30))
    }

    /// Like [`Farm::up`], with extra arguments for `farm up`, waiting up to `limit` for the
    /// farm to turn healthy. The controller, the gateway and every node listen on loopback
    /// on ports the kernel picks, unless `extra` says otherwise.
    pub fn up_with(servers: u32, extra: &[&str], limit: Duration) -> Farm {
        Self::try_up(servers, extra, limit).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Farm::up_with`]; an error carries what `farm up` said when it failed to start.
    pub fn try_up(servers: u32, extra: &[&str], limit: Duration) -> Result<Farm, String> {
        Self::start(servers, extra, &[], limit)
    }

    /// Like [`Farm::try_up`], with `env` set for `farm up` and every process it starts.
    pub fn start(
        servers: u32,
        extra: &[&str],
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Result<Farm, String> {
        // A farm started again after a crash is given its data directory; others get their own.
        // Either way the directory goes when the `Farm` is dropped.
        let data_dir = env
            .iter()
            .find(|(name, _)| *name == "FARM_DATA_DIR")
            .map_or_else(|| unique_dir("farm-data"), |(_, dir)| dir.into());
        let mut command = Command::new(farm_bin());
        command
            .envs(env.iter().copied())
            .env("FARM_DATA_DIR", &data_dir)
            .env_remove("FARM_TOKEN")
            .args(["up", "--servers", &servers.to_string()]);
        for (flag, default) in [
            ("--listen", "127.0.0.1:0"),
            ("--gateway-listen", "127.0.0.1:0"),
            ("--node-base-port", "0"),
        ] {
            if !extra.contains(&flag) {
                command.args([flag, default]);
            }
        }
        let child = command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("farm up starts");
        let mut farm = Farm {
            child,
            controller: String::new(),
            gateway: String::new(),
            servers,
            data_dir,
        };
        farm.read_banner(limit)?;
        Ok(farm)
    }

    /// Reads farm up's output until the farm is healthy, learning the controller's and the
    /// gateway's addresses on the way.
    fn read_banner(&mut self, limit: Duration) -> Result<(), String> {
        use std::io::{BufRead, BufReader, Read};
        let stdout = self.child.stdout.take().expect("stdout is piped");
        let mut stderr = self.child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // The threads keep draining farm up's output after the banner, so farm up never
        // blocks on a full pipe; stderr is passed on to the test's own.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        let (err_tx, err_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                eprint!("{}", String::from_utf8_lossy(&chunk[..n]));
                kept.extend_from_slice(&chunk[..n]);
            }
            let _ = err_tx.send(String::from_utf8_lossy(&kept).into_owned());
        });
        let deadline = Instant::now() + limit;
        let url_after = |line: &str, label: &str| {
            line.strip_prefix(label)?
                .split_whitespace()
                .next()?
                .split_once("://")
                .map(|(_, address)| address.to_string())
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(address) = url_after(&line, "farm: controller") {
                        self.controller = address;
                    } else if let Some(address) = url_after(&line, "farm: gateway") {
                        self.gateway = address;
                    } else if line.contains("healthy in") {
                        return Ok(());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let said = err_rx
                        .recv_timeout(Duration::from_secs(5))
                        .unwrap_or_default();
                    let _ = self.child.wait();
                    return Err(format!("farm up ended before the farm was healthy: {said}"));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("farm up did not turn healthy within {limit:?}"));
                }
            }
        }
    }

    pub fn controller_url(&self) -> String {
        format!("http://{}", self.controller)
    }

    /// The farm's token, as `farm up` made and kept it.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("token"))
            .expect("farm up keeps its token in its data directory")
    }

    /// `message` as a gRPC request that carries the farm's token.
    pub fn authorized<T>(&self, message: T) -> tonic::Request<T> {
        authorized(message, &self.token())
    }

    /// The gateway's base URL (REST, /docs, /metrics, grpc-web).
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway)
    }

    /// The gateway's `host:port`.
    pub fn gateway_address(&self) -> String {
        self.gateway.clone()
    }

    /// Where server `id`'s node listens now, as the farm reports it.
    pub async fn node_address(&self, id: u32) -> String {
        let mut client = self.client().await;
        servers(&mut client)
            .await
            .into_iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("server {id} is not in the farm"))
            .node_address
    }

    pub async fn client(&self) -> FarmServiceClient<Channel> {
        connect(&self.controller_url()).await
    }

    /// Agent streams the controller has refused so far.
    pub async fn refused_streams(&self) -> u64 {
        self.client()
            .await
            .get_metrics(farm_proto::v1::GetMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .metrics
            .unwrap()
            .agent_streams_refused
    }

    /// Pids of this farm's agent processes (they name this farm's controller).
    pub fn agents(&self) -> Vec<u32> {
        let mut pids = pids_with_arg(&self.controller_url());
        pids.retain(|&p| p != self.child.id());
        pids
    }

    /// Pids of this farm's agent and node processes.
    pub fn descendants(&self) -> Vec<u32> {
        let agents = self.agents();
        let mut pids = children_of(&agents);
        pids.extend(agents);
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
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.child.id(), Signal::SIGTERM);
            let _ = wait_exit_opt(&mut self.child, Duration::from_secs(15));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A new, empty directory under the system's temporary one.
pub fn unique_dir(what: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("{what}-{}-{:04x}", std::process::id(), rand_u16()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `message` as a gRPC request that carries `token` as its bearer token.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    request
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

/// A CA and a certificate it signed for a test's controller, made with the `openssl` CLI in a
/// directory of their own, removed with the value.
pub struct TestCa {
    pub dir: std::path::PathBuf,
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl TestCa {
    /// A new CA, and a server certificate it signed that names `names` (`DNS:host`,
    /// `IP:10.0.0.1`), valid for a day.
    pub fn new(names: &[&str]) -> TestCa {
        let dir = unique_dir("farm-tls");
        let path = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("the openssl CLI runs (Debian: apt-get install openssl)");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509", "-days", "1", "-subj", "/CN=farm test CA"];
        args.extend(ec);
        args.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(&args);
        let mut args = vec!["req", "-subj", "/CN=farm controller"];
        args.extend(ec);
        args.extend(["-keyout", "key.pem", "-out", "cert.csr"]);
        openssl(&args);
        std::fs::write(
            path("ext.cnf"),
            format!(
                "basicConstraints=critical,CA:FALSE\nsubjectAltName={}\n",
                names.join(",")
            ),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "cert.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ]);
        TestCa {
            ca: path("ca.pem"),
            cert: path("cert.pem"),
            key: path("key.pem"),
            dir,
        }
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
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

/// Runs a load test of `spec` on the controller's engine and returns its final result.
pub async fn run_to_end(
    client: &mut FarmServiceClient<Channel>,
    spec: LoadTestSpec,
) -> LoadTestResult {
    use tokio_stream::StreamExt;
    let mut stream = client
        .run_load_test(RunLoadTestRequest { spec: Some(spec) })
        .await
        .expect("the load test starts")
        .into_inner();
    loop {
        let message = stream.next().await.expect("a final message").unwrap();
        if message.done {
            return message.result.unwrap();
        }
    }
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
    act_with(client, id, action, None).await;
}

/// Like [`act`], with the farm's `token` for a controller that listens beyond loopback.
pub async fn act_with(
    client: &mut FarmServiceClient<Channel>,
    id: u32,
    action: ServerActionKind,
    token: Option<&str>,
) {
    let message = ServerActionRequest {
        server_ids: vec![id],
        action: action as i32,
    };
    let request = match token {
        Some(token) => authorized(message, token),
        None => tonic::Request::new(message),
    };
    let outcomes = client
        .server_action(request)
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

/// Whether `pid` is a live process (not a zombie).
pub fn is_alive(pid: u32) -> bool {
    !is_zombie(Path::new(&format!("/proc/{pid}")))
}

/// Live processes whose parent is one of `parents`.
pub fn children_of(parents: &[u32]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| !is_zombie(Path::new(&format!("/proc/{pid}"))))
        .filter(|pid| parent_of(*pid).is_some_and(|ppid| parents.contains(&ppid)))
        .collect()
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The command-line arguments of `pid`.
fn args_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The pid of server `id`'s agent process in `farm`.
pub fn agent_pid(farm: &Farm, id: u32) -> Option<u32> {
    let id = id.to_string();
    farm.agents().into_iter().find(|&pid| {
        args_of(pid)
            .windows(2)
            .any(|w| w[0] == "--id" && w[1] == id)
    })
}

/// The pid of server `id`'s node process in `farm`: its agent's child.
pub fn node_pid(farm: &Farm, id: u32) -> Option<u32> {
    let agent = agent_pid(farm, id)?;
    children_of(&[agent])
        .into_iter()
        .find(|&pid| args_of(pid).get(1).is_some_and(|a| a == "node"))
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
