//! Real load balancers (Debian's haproxy, nginx and caddy) in front of a test farm, for
//! the tests that check `farm lb config`: generating a config with the real `farm` binary,
//! starting the balancer on a free port, waiting until it answers through to a node,
//! counting which server answered each request, haproxy's `show stat`, and `--watch` as a
//! child process. Everything a [`Balancer`] or a [`Watcher`] starts is stopped, and every
//! directory removed, when it is dropped, also when a test panics.
//!
//! ```ignore
//! let balancer = Balancer::start(Kind::Haproxy, &farm, &[]).await;
//! let spread = spread(balancer.listen, "/", 2_000, 4).await;
//! spread.assert_even(1..=10, 0.05);
//! let stats = balancer.show_stat().await; // haproxy only
//! let watcher = balancer.watch(&farm, &[]).await;
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{Farm, children_of, farm_bin, low_port, signal, unique_dir, wait_exit_opt};

/// How many ports [`Balancer::start`] tries before it gives up: each is free when picked, but
/// another test may bind it first.
const PORT_ATTEMPTS: usize = 5;
/// How long a balancer may take to answer after it starts.
const START_LIMIT: Duration = Duration::from_secs(20);
/// How long one request through a balancer may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// How long a stopped balancer or watcher may take to exit before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Which balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Haproxy,
    Nginx,
    Caddy,
}

impl Kind {
    /// The name `farm lb config` takes, which is also the program's.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Haproxy => "haproxy",
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
        }
    }

    /// The config's file name.
    fn file_name(self) -> &'static str {
        match self {
            Kind::Haproxy => "haproxy.cfg",
            Kind::Nginx => "nginx.conf",
            Kind::Caddy => "Caddyfile",
        }
    }
}

/// The path of `program`, or a panic that says how to install it: a test that needs a
/// balancer fails without it, never passes silently.
pub fn require(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed; this test needs it: \
             apt-get install -y --no-install-recommends haproxy nginx caddy (.ci/run does)"
        )
    })
}

/// Runs `farm lb config KIND` against `farm` with `args` and returns what it did.
pub fn generate(farm: &Farm, kind: Kind, args: &[&str]) -> Output {
    Command::new(farm_bin())
        .args([
            "lb",
            "config",
            kind.name(),
            "--controller",
            &farm.controller_url(),
        ])
        .args(args)
        .env_remove("FARM_CONTROLLER")
        .stdin(Stdio::null())
        .output()
        .expect("farm lb config runs")
}

/// Runs `program args`, asserting that it succeeds; returns its stdout and stderr together.
pub fn run_ok(program: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run: {e}", program.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}): {said}",
        program.display(),
        output.status
    );
    said
}

/// The server ids a config names (`server-N`, as every kind names its servers).
pub fn servers_named(config: &str) -> BTreeSet<u32> {
    config
        .match_indices("server-")
        .filter_map(|(at, found)| {
            let digits: String = config[at + found.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// A balancer in front of a farm, in a directory of its own: the config `farm lb config`
/// wrote, its run directory beside it, and its standard error.
pub struct Balancer {
    pub kind: Kind,
    /// Holds everything below; removed on drop.
    pub dir: PathBuf,
    pub config: PathBuf,
    /// `farm lb config`'s default, beside the config.
    pub run_dir: PathBuf,
    pub listen: SocketAddr,
    /// The arguments the config was generated with, which [`Balancer::watch`] repeats.
    args: Vec<String>,
    child: Child,
}

impl Balancer {
    /// Generates a config for `farm` (with `extra` arguments for `farm lb config`) on a free
    /// port, checks it with the balancer's own checker, starts the balancer in the
    /// foreground and waits until a request through it reaches a node. A port another
    /// program took in between is retried with another one.
    pub async fn start(kind: Kind, farm: &Farm, extra: &[&str]) -> Balancer {
        let program = require(kind.name());
        assert_ne!(
            kind,
            Kind::Caddy,
            "the tests run caddy through `caddy validate` only"
        );
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            // A directory per attempt: a failed attempt's is removed with it.
            let dir = unique_dir(&format!("lb-{}", kind.name()));
            let config = dir.join(kind.file_name());
            let run_dir = dir.join(format!("{}.run", kind.file_name()));
            let listen: SocketAddr = ([127, 0, 0, 1], low_port()).into();
            let mut args: Vec<String> = vec![
                "--out".into(),
                config.display().to_string(),
                "--listen".into(),
                listen.to_string(),
            ];
            args.extend(extra.iter().map(|a| a.to_string()));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = generate(farm, kind, &refs);
            assert!(
                output.status.success(),
                "farm lb config {} {refs:?}: {}",
                kind.name(),
                String::from_utf8_lossy(&output.stderr)
            );
            let config_text = config.display().to_string();
            let checker: &[&str] = match kind {
                Kind::Haproxy => &["-c", "-f", &config_text],
                Kind::Nginx => &["-t", "-c", &config_text],
                Kind::Caddy => unreachable!(),
            };
            run_ok(&program, checker, &[]);
            let stderr = std::fs::File::create(dir.join("balancer.stderr")).unwrap();
            let mut command = Command::new(&program);
            match kind {
                Kind::Haproxy => command.args(["-W", "-f", &config_text]),
                // In the foreground, so that the child is the master and its pid the one in
                // the pid file.
                Kind::Nginx => command.args(["-c", &config_text, "-g", "daemon off;"]),
                Kind::Caddy => unreachable!(),
            };
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("{} does not start: {e}", kind.name()));
            let mut balancer = Balancer {
                kind,
                dir,
                config,
                run_dir,
                listen,
                args,
                child,
            };
            match balancer.wait_answering().await {
                Ok(()) => return balancer,
                Err(said) if said.contains("in use") || said.contains("cannot bind") => {
                    failures.push(format!("{listen}: {said}"));
                }
                Err(said) => panic!("{} did not start on {listen}: {said}", kind.name()),
            }
        }
        panic!(
            "{} found no free port in {PORT_ATTEMPTS} attempts: {failures:#?}",
            kind.name()
        );
    }

    /// Waits until a request through the balancer is answered by a node; `Err` with what
    /// the balancer said when it exits first.
    async fn wait_answering(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status}): {}", self.log()));
            }
            if let Ok(answer) = get_close(self.listen, "/").await
                && answer.server.is_some()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no node answered through it within {START_LIMIT:?}: {}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The balancer's master process: the child the test started.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pid in the balancer's pid file (the master's), if it holds one.
    pub fn pid_file_pid(&self) -> Option<u32> {
        let name = match self.kind {
            Kind::Haproxy => "haproxy.pid",
            Kind::Nginx => "nginx.pid",
            Kind::Caddy => "caddy.pid",
        };
        std::fs::read_to_string(self.run_dir.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The master's worker processes now.
    pub fn workers(&self) -> BTreeSet<u32> {
        children_of(&[self.child.id()]).into_iter().collect()
    }

    /// Waits until a reload has finished: workers run, and none of `before` is left. Until
    /// then the old workers may still take connections, on the old config.
    pub async fn wait_for_new_workers(&self, before: &BTreeSet<u32>, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.workers();
            if !now.is_empty() && now.is_disjoint(before) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} still runs workers {now:?} {limit:?} after the reload (before it: {before:?}): {}",
                self.kind.name(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the master still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The config as it is now.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap_or_default()
    }

    /// What the balancer wrote on its standard error (haproxy's log goes there too), and
    /// nginx's error log.
    pub fn log(&self) -> String {
        let mut text =
            std::fs::read_to_string(self.dir.join("balancer.stderr")).unwrap_or_default();
        if let Ok(errors) = std::fs::read_to_string(self.run_dir.join("error.log")) {
            text.push_str(&errors);
        }
        text
    }

    /// `farm lb config --watch` with the arguments this config was made with, plus `extra`;
    /// returns once it follows the farm.
    pub async fn watch(&self, farm: &Farm, extra: &[&str]) -> Watcher {
        let log = self.dir.join("watch.log");
        let child = Command::new(farm_bin())
            .args([
                "lb",
                "config",
                self.kind.name(),
                "--controller",
                &farm.controller_url(),
            ])
            .args(&self.args)
            .arg("--watch")
            .args(extra)
            .env_remove("FARM_CONTROLLER")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("farm lb config --watch starts");
        let mut watcher = Watcher { child, log };
        let deadline = Instant::now() + START_LIMIT;
        while !watcher.log_text().contains("watching the farm") {
            if let Ok(Some(status)) = watcher.child.try_wait() {
                panic!("the watch ended ({status}): {}", watcher.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the watch did not start within {START_LIMIT:?}: {}",
                watcher.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        watcher
    }

    /// haproxy's `show stat` from its admin socket, one row per frontend, backend and server.
    pub async fn show_stat(&self) -> Vec<StatRow> {
        self.try_show_stat().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The rows of the farm's servers in `show stat`, by server id.
    pub async fn server_stats(&self) -> BTreeMap<u32, StatRow> {
        servers_of(self.show_stat().await)
    }

    /// Like [`Balancer::server_stats`], `None` while the socket does not answer (a reload
    /// binds it anew).
    pub async fn try_server_stats(&self) -> Option<BTreeMap<u32, StatRow>> {
        self.try_show_stat().await.ok().map(servers_of)
    }

    async fn try_show_stat(&self) -> Result<Vec<StatRow>, String> {
        assert_eq!(self.kind, Kind::Haproxy, "show stat is haproxy's");
        let text = self.try_admin("show stat").await?;
        let mut lines = text.lines();
        let header = lines
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .ok_or_else(|| format!("show stat answered without its header: {text:?}"))?;
        let columns: Vec<&str> = header.split(',').collect();
        Ok(lines
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                StatRow(
                    columns
                        .iter()
                        .zip(line.split(','))
                        .map(|(c, v)| (c.to_string(), v.to_string()))
                        .collect(),
                )
            })
            .collect())
    }

    /// One command on haproxy's admin socket (`show stat`, `show info`, `disable server
    /// farm_servers/server-3`, ...), and its whole answer.
    pub async fn admin(&self, command: &str) -> String {
        self.try_admin(command)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_admin(&self, command: &str) -> Result<String, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = self.run_dir.join("haproxy.sock");
        let exchange = async {
            let mut stream = tokio::net::UnixStream::connect(&socket).await?;
            stream.write_all(format!("{command}\n").as_bytes()).await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        tokio::time::timeout(REQUEST_LIMIT, exchange)
            .await
            .map_err(|_| {
                format!(
                    "{command:?} on {} took over {REQUEST_LIMIT:?}",
                    socket.display()
                )
            })?
            .map_err(|e| format!("{command:?} on {}: {e}", socket.display()))
    }

    /// Stops the master (SIGTERM, then SIGKILL after [`STOP_LIMIT`]); it stops its workers.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), Signal::SIGTERM);
            if wait_exit_opt(&mut self.child, STOP_LIMIT).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The rows of the farm's servers (`server-N`), by id.
fn servers_of(rows: Vec<StatRow>) -> BTreeMap<u32, StatRow> {
    rows.into_iter()
        .filter_map(|row| {
            let id = row.get("svname").strip_prefix("server-")?.parse().ok()?;
            Some((id, row))
        })
        .collect()
}

/// One row of haproxy's `show stat`, by column name.
#[derive(Debug, Clone)]
pub struct StatRow(pub HashMap<String, String>);

impl StatRow {
    /// A column's value, "" when absent.
    pub fn get(&self, column: &str) -> &str {
        self.0.get(column).map_or("", String::as_str)
    }

    /// A numeric column (`stot`, `chkfail`, `hrsp_5xx`, ...), 0 when empty.
    pub fn number(&self, column: &str) -> u64 {
        self.get(column).parse().unwrap_or(0)
    }
}

/// A running `farm lb config --watch`, stopped with SIGTERM when dropped.
pub struct Watcher {
    child: Child,
    log: PathBuf,
}

impl Watcher {
    /// What the watch logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as Ctrl-C would; returns how it exited.
    pub fn stop(&mut self) -> ExitStatus {
        signal(self.child.id(), Signal::SIGTERM);
        wait_exit_opt(&mut self.child, STOP_LIMIT).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!("the watch did not end within {STOP_LIMIT:?} of SIGTERM")
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), Signal::SIGTERM);
            if wait_exit_opt(&mut self.child, STOP_LIMIT).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// One answer through a balancer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The `x-farm-server` header: which server answered.
    pub server: Option<u32>,
}

/// `GET path` on a connection of its own (`Connection: close`), so that every request is
/// balanced on its own, not pinned to a kept-alive connection.
pub async fn get_close(address: SocketAddr, path: &str) -> Result<Answer, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(REQUEST_LIMIT, exchange)
        .await
        .map_err(|_| format!("no answer within {REQUEST_LIMIT:?}"))??;
    let text = String::from_utf8_lossy(&answer);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", &text[..text.len().min(200)]))?;
    let server = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-farm-server")
            .then(|| value.trim().parse().ok())?
    });
    Ok(Answer { status, server })
}

/// How `total` requests spread over the servers.
#[derive(Debug, Default)]
pub struct Spread {
    /// Answers with status 200, by the server that answered.
    pub by_server: BTreeMap<u32, u64>,
    /// Requests that failed, or were answered with another status or without the header.
    pub failed: u64,
    /// The first few failures, for the message.
    pub failures: Vec<String>,
    pub total: u64,
}

impl Spread {
    /// Panics unless every request was answered by one of `servers`, each with a share
    /// within `tolerance` (0.05: ±5 %) of an equal one.
    pub fn assert_even(&self, servers: impl IntoIterator<Item = u32>, tolerance: f64) {
        let servers: BTreeSet<u32> = servers.into_iter().collect();
        assert_eq!(
            self.failed, 0,
            "failed requests: {:?} ({self})",
            self.failures
        );
        let strangers: Vec<u32> = self
            .by_server
            .keys()
            .filter(|id| !servers.contains(id))
            .copied()
            .collect();
        assert!(
            strangers.is_empty(),
            "servers {strangers:?} are not expected ({self})"
        );
        let equal = self.total as f64 / servers.len() as f64;
        for id in &servers {
            let got = self.by_server.get(id).copied().unwrap_or(0) as f64;
            assert!(
                (got - equal).abs() <= equal * tolerance,
                "server {id} got {got} requests, {:+.1} % off an equal share of {equal:.0} \
                 (allowed ±{:.0} %): {self}",
                (got / equal - 1.0) * 100.0,
                tolerance * 100.0
            );
        }
    }

    /// Whether each of `servers` answered at least once.
    pub fn reaches(&self, servers: impl IntoIterator<Item = u32>) -> bool {
        servers
            .into_iter()
            .all(|id| self.by_server.get(&id).is_some_and(|&n| n > 0))
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests, {} failed;", self.total, self.failed)?;
        for (id, count) in &self.by_server {
            write!(f, " {id}:{count}")?;
        }
        Ok(())
    }
}

/// Sends `total` `GET path` requests through the balancer at `address`, from `clients`
/// concurrent clients, each request on a connection of its own, and counts who answered.
pub async fn spread(address: SocketAddr, path: &str, total: u64, clients: u64) -> Spread {
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let path = path.to_string();
        // Client c sends requests c, c + clients, c + 2 × clients, ...: `total` in all.
        let mine = (total + clients - 1 - client) / clients;
        tasks.spawn(async move {
            let mut spread = Spread::default();
            for _ in 0..mine {
                spread.total += 1;
                match get_close(address, &path).await {
                    Ok(Answer {
                        status: 200,
                        server: Some(id),
                    }) => *spread.by_server.entry(id).or_default() += 1,
                    other => {
                        spread.failed += 1;
                        if spread.failures.len() < 5 {
                            spread.failures.push(format!("{other:?}"));
                        }
                    }
                }
            }
            spread
        });
    }
    let mut all = Spread::default();
    while let Some(part) = tasks.join_next().await {
        let part = part.expect("a client task does not panic");
        all.total += part.total;
        all.failed += part.failed;
        for (id, count) in part.by_server {
            *all.by_server.entry(id).or_default() += count;
        }
        all.failures.extend(
            part.failures
                .into_iter()
                .take(5 - all.failures.len().min(5)),
        );
    }
    all
}

/// A directory of its own for a test, removed when dropped, also when the test panics.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(what: &str) -> ScratchDir {
        ScratchDir(unique_dir(what))
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
