//! One subcommand per role: `farm controller`, `farm gateway`, `farm agent`, `farm node`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use farm_proto::limits;
use tokio::net::TcpListener;

use crate::signal::shutdown_token;

/// Default controller address.
pub(crate) const DEFAULT_CONTROLLER_LISTEN: &str = "127.0.0.1:50051";
/// Default controller URL for clients.
pub(crate) const DEFAULT_CONTROLLER_URL: &str = "http://127.0.0.1:50051";
/// Default gateway address (REST, /docs, /metrics, grpc-web).
pub(crate) const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:8000";

/// The farm's token and where the farm keeps its data, shared by `farm up`, `farm controller`
/// and `farm agent`.
#[derive(Debug, Args)]
pub(crate) struct FarmData {
    /// The farm's token (16 to 256 visible characters), which agents present to the
    /// controller. Without one, the controller generates a token once and keeps it in the
    /// data directory, where agents on this machine find it.
    #[arg(long, env = "FARM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where the farm keeps its token: `$XDG_DATA_HOME/farm` or `~/.local/share/farm` by
    /// default.
    #[arg(long, env = "FARM_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
}

/// Where the controller keeps the farm's history (`farm up`, `farm controller`).
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The farm's history: an SQLite file that keeps every load test and scenario run, the
    /// farm's events and its metrics across restarts. Default:
    /// `<data dir>/history/<farm>-<controller port>.sqlite` (the port it listens on, also
    /// when the kernel picked it), so that farms side by side keep theirs apart and a farm
    /// started again on its port finds its own.
    #[arg(long, env = "FARM_HISTORY", conflicts_with = "no_history")]
    history: Option<std::path::PathBuf>,
    /// Keep no history: runs are kept in memory only (the last 20 of each kind) and events
    /// and metric history are not kept.
    #[arg(long, env = "FARM_NO_HISTORY")]
    no_history: bool,
}

/// The history of swarm farm `prefix` in data directory `data_dir`.
pub(crate) fn swarm_history_file(data_dir: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    data_dir
        .join("history")
        .join(format!("swarm-{prefix}.sqlite"))
}

impl HistoryArgs {
    /// These settings as arguments of the controller's task of swarm farm `prefix`, which
    /// keeps its history in the farm's data directory, mounted into it: a file of its own,
    /// [`swarm_history_file`], whichever port the task listens on.
    pub(crate) fn swarm_task_args(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        if let Some(path) = &self.history {
            anyhow::bail!(
                "--history {}: a swarm farm keeps its history in its data directory (--data-dir), which its controller's task mounts",
                path.display()
            );
        }
        Ok(if self.no_history {
            vec!["--no-history".into()]
        } else {
            let in_task =
                std::path::Path::new(farm_controller::runtime::swarm::controller::DATA_DIR_IN_TASK);
            vec![format!(
                "--history={}",
                swarm_history_file(in_task, prefix).display()
            )]
        })
    }

    /// Opens the history, `farm` naming the farm in the default file name; a file that
    /// cannot be used is an error naming it and the cause.
    pub(crate) fn open(
        &self,
        data: &FarmData,
        farm: &str,
        controller_port: u16,
    ) -> anyhow::Result<Option<farm_history::History>> {
        if self.no_history {
            return Ok(None);
        }
        let path = self.history.clone().unwrap_or_else(|| {
            data.data_dir()
                .join("history")
                .join(format!("{farm}-{controller_port}.sqlite"))
        });
        let (history, interrupted) = farm_history::History::open(&path)?;
        if interrupted > 0 {
            eprintln!(
                "farm: history {}: {interrupted} run(s) were under way when the last controller stopped; kept as interrupted",
                path.display()
            );
        }
        Ok(Some(history))
    }
}

impl FarmData {
    /// Where the farm keeps its data.
    pub(crate) fn data_dir(&self) -> std::path::PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(crate::token::default_data_dir)
    }

    /// The token a controller checks agents against.
    pub(crate) fn controller_token(&self) -> anyhow::Result<farm_proto::auth::Token> {
        crate::token::for_controller(self.token.as_deref(), &self.data_dir())
    }

    /// The token a client presents, if it has one: the one given, or the farm's kept one.
    pub(crate) fn agent_token(&self) -> anyhow::Result<Option<farm_proto::auth::Token>> {
        crate::token::for_agent(self.token.as_deref(), &self.data_dir())
    }
}

/// `farm controller`.
#[derive(Debug, Args)]
pub(crate) struct ControllerArgs {
    /// Address the controller's gRPC server listens on.
    #[arg(long, env = "FARM_CONTROLLER_LISTEN", default_value = DEFAULT_CONTROLLER_LISTEN)]
    listen: SocketAddr,
    /// Sample interval of the agents, in milliseconds (100 to 60000). A farm of more than
    /// 250 servers per second of it samples less often: the interval doubles until the farm
    /// sends at most 250 samples a second.
    #[arg(long, env = "FARM_SAMPLE_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(i64::from(limits::MIN_SAMPLE_INTERVAL_MS)..=i64::from(limits::MAX_SAMPLE_INTERVAL_MS)))]
    sample_interval_ms: u32,
    /// Drive the containers labelled as this docker farm's through the Docker socket, as
    /// the controller of a `farm compose` farm does.
    #[arg(long, env = "FARM_DOCKER_FARM")]
    docker_farm: Option<String>,
    /// Most servers the farm may hold (1 to 1000); agents of further servers are refused.
    #[arg(long, env = "FARM_MAX_SERVERS", default_value_t = limits::MAX_SERVERS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(limits::MAX_SERVERS)))]
    max_servers: u32,
    #[command(flatten)]
    data: FarmData,
    #[command(flatten)]
    history: HistoryArgs,
    #[command(flatten)]
    tls: ServeTlsArgs,
    #[command(flatten)]
    pub(crate) trace: TraceArgs,
}

/// The gateway's settings, shared by `farm gateway` and `farm up`.
#[derive(Debug, Args)]
pub(crate) struct GatewayOptions {
    /// Web pages that may call the gateway besides its own dashboard and the dev server
    /// (http://localhost:3000): a comma-separated list of origins such as
    /// `https://farm.example`, or `*` for any page at all.
    #[arg(long, env = "FARM_CORS_ORIGINS", default_value = "")]
    cors_origins: farm_gateway::CorsOrigins,
    /// Host names requests may name besides IP addresses and localhost (comma-separated): a
    /// name that leads to the gateway; any other `Host` is refused (DNS rebinding).
    #[arg(long, env = "FARM_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Most connections the gateway holds at once (1 to 65536); past it a new connection is
    /// closed at once.
    #[arg(long, env = "FARM_GATEWAY_MAX_CONNECTIONS", default_value_t = limits::DEFAULT_MAX_CONNECTIONS,
          value_parser = parse_max_connections)]
    gateway_max_connections: usize,
    /// How long a gateway connection may take to send a request's head or sit idle between
    /// requests, in milliseconds (100 to 3600000).
    #[arg(long, env = "FARM_GATEWAY_IDLE_TIMEOUT_MS", default_value_t = limits::DEFAULT_IDLE_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(limits::MIN_IDLE_TIMEOUT_MS..=limits::MAX_IDLE_TIMEOUT_MS))]
    gateway_idle_timeout_ms: u64,
    /// Deadline of an ordinary REST request, in milliseconds (100 to 300000); past it the
    /// client gets a 504.
    #[arg(long, env = "FARM_GATEWAY_REQUEST_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(i64::from(limits::MIN_REST_REQUEST_TIMEOUT_MS)..=i64::from(limits::MAX_REST_REQUEST_TIMEOUT_MS)))]
    request_timeout_ms: u32,
    /// Longest load test `POST /api/load-test` runs, in seconds (1 to 3600): the HTTP
    /// request stays open for the whole run.
    #[arg(long, env = "FARM_GATEWAY_MAX_LOAD_TEST_SECONDS", default_value_t = limits::DEFAULT_MAX_REST_LOAD_TEST_SECONDS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(limits::MAX_DURATION_SECONDS)))]
    max_load_test_seconds: u32,
    /// Most servers the farm may hold (1 to 1000): `POST /api/scale` asks for no more, and
    /// in `farm up` the controller refuses agents past it.
    #[arg(long, env = "FARM_GATEWAY_MAX_SERVERS", default_value_t = limits::MAX_SERVERS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(limits::MAX_SERVERS)))]
    max_servers: u32,
}

impl GatewayOptions {
    /// These settings as command-line arguments, for a `farm up` that runs elsewhere (the
    /// controller's task of a swarm farm).
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--cors-origins={}", self.cors_origins),
            format!("--gateway-max-connections={}", self.gateway_max_connections),
            format!("--gateway-idle-timeout-ms={}", self.gateway_idle_timeout_ms),
            format!("--request-timeout-ms={}", self.request_timeout_ms),
            format!("--max-load-test-seconds={}", self.max_load_test_seconds),
            format!("--max-servers={}", self.max_servers),
        ];
        if !self.allowed_hosts.is_empty() {
            args.push(format!("--allowed-hosts={}", self.allowed_hosts.join(",")));
        }
        args
    }

    /// Most servers the farm may hold.
    pub(crate) fn max_servers(&self) -> u32 {
        self.max_servers
    }

    /// The gateway's configuration for a controller at `controller_url`, listening on
    /// `listen`, with the farm's `token`, validated. Changes need the token when `listen` is
    /// beyond loopback.
    pub(crate) fn config(
        &self,
        controller_url: String,
        controller_ca: Option<Vec<u8>>,
        listen: SocketAddr,
        token: Option<farm_proto::auth::Token>,
    ) -> anyhow::Result<farm_gateway::Config> {
        let config = farm_gateway::Config {
            controller_url,
            controller_ca,
            cors_origins: self.cors_origins.clone(),
            request_timeout: Duration::from_millis(u64::from(self.request_timeout_ms)),
            max_load_test_seconds: self.max_load_test_seconds,
            max_servers: self.max_servers,
            token,
            require_token: !listen.ip().is_loopback(),
            allowed_hosts: self.allowed_hosts.clone(),
            max_connections: self.gateway_max_connections,
            idle_timeout: Duration::from_millis(self.gateway_idle_timeout_ms),
        };
        config.validate()?;
        Ok(config)
    }
}

/// `farm gateway`.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// Address the gateway (REST, /docs, /metrics, grpc-web) listens on.
    #[arg(long, env = "FARM_GATEWAY_LISTEN", default_value = DEFAULT_GATEWAY_LISTEN)]
    listen: SocketAddr,
    /// The controller's gRPC URL (it may start later: the gateway connects on demand).
    #[arg(long, env = "FARM_CONTROLLER", default_value = DEFAULT_CONTROLLER_URL)]
    controller: String,
    #[command(flatten)]
    options: GatewayOptions,
    #[command(flatten)]
    data: FarmData,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    pub(crate) trace: TraceArgs,
}

/// Where this process sends its traces.
#[derive(Debug, Clone, Args)]
pub(crate) struct TraceArgs {
    /// Export traces over OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317 (the
    /// standard OTEL_EXPORTER_OTLP_ENDPOINT does the same; OTEL_SERVICE_NAME and
    /// OTEL_RESOURCE_ATTRIBUTES are read too). Off when neither is given.
    #[arg(long, value_name = "URL")]
    pub(crate) otlp_endpoint: Option<String>,
}

/// TLS on the controller's gRPC port (`farm up`, `farm controller`).
#[derive(Debug, Args)]
pub(crate) struct ServeTlsArgs {
    /// Serve the controller's gRPC API over TLS with this certificate (PEM, leaf first). It
    /// must name every host agents and clients reach the controller by (127.0.0.1 for local
    /// agents; `<prefix>-controller` and the manager node's address for a swarm farm).
    #[arg(long, env = "FARM_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "FARM_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
}

impl ServeTlsArgs {
    /// The certificate's and the key's PEM, read; `None` without a certificate.
    pub(crate) fn read(&self) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |path: &std::path::Path, what: &str| {
            farm_proto::tls::read_pem(path, what).map_err(anyhow::Error::msg)
        };
        Ok(Some((read(cert, "--tls-cert")?, read(key, "--tls-key")?)))
    }

    /// The controller's TLS, checked; `None` without a certificate.
    pub(crate) fn config(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        self.read()?
            .map(|(cert, key)| {
                farm_proto::tls::server_config(&cert, &key).map_err(anyhow::Error::msg)
            })
            .transpose()
    }
}

/// The CA a client of an `https://` controller trusts (`farm agent`, `farm gateway`, and
/// `farm up` for its own agents and gateway).
#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// The CA certificates (PEM) that signed an `https://` controller's certificate: the only
    /// ones trusted. In `farm up`, the certificate itself by default (a self-signed one).
    #[arg(long, env = farm_proto::tls::CA_ENV)]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
}

impl TrustArgs {
    /// The CA certificates, read; `None` when none is given.
    pub(crate) fn read(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.tls_ca
            .as_deref()
            .map(|path| farm_proto::tls::read_pem(path, "--tls-ca").map_err(anyhow::Error::msg))
            .transpose()
    }
}

/// `farm agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Server id (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(limits::MAX_SERVER_ID)))]
    id: u32,
    /// Server name; `server-N` by default.
    #[arg(long)]
    name: Option<String>,
    /// The controller's gRPC URL.
    #[arg(long, env = "FARM_CONTROLLER", default_value = DEFAULT_CONTROLLER_URL)]
    controller: String,
    /// Where the node app listens; port 0 lets the kernel pick one, which the agent then
    /// holds for the node and reports to the controller.
    #[arg(long)]
    node_listen: SocketAddr,
    /// How the controller reaches the node (host:port); the listen address by default.
    #[arg(long)]
    node_advertise: Option<String>,
    /// The runtime that started this agent, told to the controller.
    #[arg(long, default_value = "")]
    runtime: String,
    /// Sample interval until the controller sets one, in milliseconds (100 to 60000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(i64::from(limits::MIN_SAMPLE_INTERVAL_MS)..=i64::from(limits::MAX_SAMPLE_INTERVAL_MS)))]
    sample_interval_ms: u32,
    /// Exit when the parent process dies (set by the process runtime).
    #[arg(long)]
    exit_with_parent: bool,
    /// Let requests ask the node for faults in their headers.
    #[arg(long)]
    allow_fault_headers: bool,
    #[command(flatten)]
    data: FarmData,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    pub(crate) trace: TraceArgs,
}

/// `farm node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Server id (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    id: u32,
    /// Server name; `server-N` by default.
    #[arg(long)]
    name: Option<String>,
    /// Address to listen on; port 0 lets the kernel pick one. The address is printed as
    /// `farm node: listening on ADDR` once bound.
    #[arg(long)]
    listen: SocketAddr,
    /// Bind with `SO_REUSEPORT`, to share the port with the agent that holds it for this node.
    #[arg(long)]
    reuse_port: bool,
    /// Most connections the node holds at once (1 to 65536); past it a new connection is
    /// closed at once and counted as refused, and the farm shows the server degraded. Set
    /// it in `farm up`'s environment to reach every node.
    #[arg(long, env = "FARM_NODE_MAX_CONNECTIONS", default_value_t = limits::DEFAULT_MAX_CONNECTIONS,
          value_parser = parse_max_connections)]
    max_connections: usize,
    /// How long a connection may sit without a request in flight or arriving, in
    /// milliseconds (100 to 3600000); a request sent too slowly to complete counts as idle.
    #[arg(long, env = "FARM_NODE_IDLE_TIMEOUT_MS", default_value_t = limits::DEFAULT_IDLE_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(limits::MIN_IDLE_TIMEOUT_MS..=limits::MAX_IDLE_TIMEOUT_MS))]
    idle_timeout_ms: u64,
    /// Read fault profiles from this channel; the only one is `stdin`: one JSON profile per
    /// line, each replacing the whole profile (`{}` clears it), from the agent's pipe. Without
    /// it the node never reads its standard input.
    #[arg(long, value_name = "CHANNEL", value_parser = ["stdin"])]
    fault_channel: Option<String>,
    /// Let requests ask for faults with the x-farm-fault-delay-ms, x-farm-fault-abort,
    /// x-farm-fault-throughput and x-farm-fault-percent headers; without it they are ignored.
    /// `farm up --allow-fault-headers` passes it to every node through their agents.
    #[arg(long)]
    allow_fault_headers: bool,
    /// Exit when the parent process (the agent) dies.
    #[arg(long)]
    exit_with_parent: bool,
    #[command(flatten)]
    pub(crate) trace: TraceArgs,
}

/// Binds `address` for `what`, with a message that says what to do when it is taken.
pub(crate) async fn bind(
    address: SocketAddr,
    what: &str,
    flag: &str,
) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address} for the {what} (is another farm running? choose another with {flag})")
    })
}

/// `message` as a request that carries `token`, when there is one.
pub(crate) fn with_token<T>(
    message: T,
    token: Option<&farm_proto::auth::Token>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        token.authorize(&mut request);
    }
    request
}

/// A connection bound from 1 to [`limits::MAX_MAX_CONNECTIONS`].
fn parse_max_connections(raw: &str) -> Result<usize, String> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=limits::MAX_MAX_CONNECTIONS).contains(n))
        .ok_or_else(|| format!("{raw} is not in 1..={}", limits::MAX_MAX_CONNECTIONS))
}

/// Says so when `what` listens beyond loopback, with the address it really has: anyone who
/// reaches it may read the farm, and changes need the farm's token.
pub(crate) fn warn_beyond_loopback(what: &str, address: SocketAddr) {
    if address.ip().is_loopback() {
        return;
    }
    let reach = if address.ip().is_unspecified() {
        "every interface of this machine"
    } else {
        "a network address"
    };
    eprintln!(
        "farm: warning: the {what} listens on {address} ({reach}): anyone who reaches it can read the farm, and changes need the farm's token"
    );
}

/// Binds `address` with `SO_REUSEPORT` (and `SO_REUSEADDR`, as `TcpListener::bind` does), so
/// that a node listens on the port its agent holds.
fn bind_reusing_port(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

pub(crate) async fn controller(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let token = args.data.controller_token()?;
    let listener = bind(args.listen, "controller", "--listen").await?;
    let history = args.history.open(
        &args.data,
        args.docker_farm.as_deref().unwrap_or("farm"),
        listener.local_addr()?.port(),
    )?;
    warn_beyond_loopback("controller", listener.local_addr()?);
    let registry =
        farm_controller::Registry::new(Duration::from_millis(u64::from(args.sample_interval_ms)))
            .with_max_servers(args.max_servers);
    let runtime: Option<std::sync::Arc<dyn farm_controller::Runtime>> = match args.docker_farm {
        Some(prefix) => {
            let engine = farm_controller::runtime::docker::connect().await?;
            let adopted =
                farm_controller::runtime::DockerRuntime::adopt(engine, prefix, registry.clone())
                    .await?;
            Some(std::sync::Arc::new(adopted))
        }
        None => None,
    };
    eprintln!("farm: controller listening on {}", listener.local_addr()?);
    farm_controller::serve(
        vec![listener],
        registry,
        runtime.clone(),
        farm_controller::Access {
            token: Some(token),
            guard_changes: !args.listen.ip().is_loopback(),
            tls: args.tls.config()?,
        },
        history,
        shutdown_token(),
    )
    .await?;
    if let Some(runtime) = runtime {
        runtime.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let config = args.options.config(
        args.controller,
        args.trust.read()?,
        args.listen,
        args.data.agent_token()?,
    )?;
    let listener = bind(args.listen, "gateway", "--listen").await?;
    warn_beyond_loopback("gateway", listener.local_addr()?);
    let url = format!("http://{}", listener.local_addr()?);
    eprintln!(
        "farm: gateway listening on {url} (REST {url}/api/servers, docs {url}/docs, metrics {url}/metrics; controller {})",
        config.controller_url
    );
    farm_gateway::serve(listener, config, shutdown_token()).await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown_token();
    if args.exit_with_parent {
        tokio::spawn(farm_node::exit_with_parent(shutdown.clone()));
    }
    let name = args.name.unwrap_or_else(|| format!("server-{}", args.id));
    let binary = std::env::current_exe().context("cannot find the farm binary to run the node")?;
    // The agent adds where the node listens.
    let mut node_command = vec![
        binary.to_string_lossy().into_owned(),
        "node".into(),
        "--id".into(),
        args.id.to_string(),
        "--name".into(),
        name.clone(),
        "--exit-with-parent".into(),
    ];
    if args.allow_fault_headers {
        node_command.push("--allow-fault-headers".into());
    }
    let config = farm_agent::Config {
        server_id: args.id,
        name,
        controller_url: args.controller,
        node_listen: args.node_listen,
        node_advertise: args.node_advertise,
        node_command,
        runtime: args.runtime,
        sample_interval: Duration::from_millis(u64::from(args.sample_interval_ms)),
        token: args.data.agent_token()?,
        tls_ca: args.trust.read()?,
    };
    farm_agent::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown_token();
    if args.exit_with_parent {
        tokio::spawn(farm_node::exit_with_parent(shutdown.clone()));
    }
    let listener = if args.reuse_port {
        bind_reusing_port(args.listen)
            .with_context(|| format!("cannot listen on {} for the node app", args.listen))?
    } else {
        bind(args.listen, "node app", "--listen").await?
    };
    println!("farm node: listening on {}", listener.local_addr()?);
    let config = farm_node::Config {
        connections: farm_node::connections::ConnectionLimits {
            max_connections: args.max_connections,
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        },
        server_id: args.id,
        name: args.name.unwrap_or_else(|| format!("server-{}", args.id)),
        // The parser admits only "stdin".
        fault_channel: args.fault_channel.map(|_| farm_node::FaultChannel::Stdin),
        allow_fault_headers: args.allow_fault_headers,
    };
    farm_node::run(config, listener, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
