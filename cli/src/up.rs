//! `farm up`: the controller, the gateway and N servers, as local processes (the default)
//! or Docker containers, until Ctrl-C or SIGTERM.
//!
//! Everything that can be checked is checked before anything starts: the flags, the
//! controller's port, every node port and the gateway's port. Then the controller and the
//! gateway serve, the runtime starts the servers, and `farm up` prints where everything is
//! and how long the farm took to turn healthy. On a signal it stops the servers first (each
//! agent stops its node), then the controller and the gateway, and exits with nothing left
//! behind.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use farm_controller::runtime::swarm::controller;
use farm_controller::runtime::swarm::secrets::TlsFile;
use farm_controller::runtime::{DockerRuntime, ProcessRuntime, ProcessRuntimeConfig, SwarmRuntime};
use farm_controller::status::Status;
use farm_controller::{Registry, Runtime};
use farm_proto::limits::{self, MAX_SERVERS};
use tokio_util::sync::CancellationToken;

use crate::docker::{self, DockerArgs};
use crate::roles::{
    DEFAULT_CONTROLLER_LISTEN, DEFAULT_GATEWAY_LISTEN, FarmData, GatewayOptions, bind,
};
use crate::signal::shutdown_signal;

/// A well-formed controller URL to check the gateway's other settings with before the
/// controller's real address is known.
const DEFAULT_CONTROLLER_URL_PLACEHOLDER: &str = "http://127.0.0.1:50051";

/// How long `farm up` waits for the farm to turn healthy before saying so.
const HEALTHY_WAIT: Duration = Duration::from_secs(30);

/// `farm up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Number of servers (1 to 1000).
    #[arg(long, short = 'n', env = "FARM_SERVERS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SERVERS)))]
    servers: u32,
    /// Address the controller's gRPC server listens on.
    #[arg(long, env = "FARM_CONTROLLER_LISTEN", default_value = DEFAULT_CONTROLLER_LISTEN)]
    listen: SocketAddr,
    /// Address the node apps listen on.
    #[arg(long, env = "FARM_NODE_HOST", default_value = "127.0.0.1")]
    node_host: IpAddr,
    /// Node N listens on this port plus N; 0 lets the kernel pick every node's port (process
    /// runtime), or each swarm node's engine pick it (swarm runtime).
    #[arg(long, env = "FARM_NODE_BASE_PORT", default_value_t = 8000)]
    node_base_port: u16,
    /// Sample interval of the agents, in milliseconds (100 to 60000). A farm of more than
    /// 250 servers per second of it samples less often: the interval doubles until the farm
    /// sends at most 250 samples a second.
    #[arg(long, env = "FARM_SAMPLE_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(i64::from(limits::MIN_SAMPLE_INTERVAL_MS)..=i64::from(limits::MAX_SAMPLE_INTERVAL_MS)))]
    sample_interval_ms: u32,
    /// Where the servers live: local processes, or Docker containers.
    #[arg(long, env = "FARM_RUNTIME", value_enum, default_value_t = RuntimeKind::Process)]
    runtime: RuntimeKind,
    #[command(flatten)]
    docker: DockerArgs,
    #[command(flatten)]
    swarm: crate::swarm::SwarmArgs,
    /// Address the gateway (REST, /docs, /metrics, grpc-web) listens on.
    #[arg(long, env = "FARM_GATEWAY_LISTEN", default_value = DEFAULT_GATEWAY_LISTEN)]
    gateway_listen: SocketAddr,
    /// Start no gateway (the farm is then reachable over gRPC only).
    #[arg(long)]
    no_gateway: bool,
    #[command(flatten)]
    gateway: GatewayOptions,
    /// Let requests ask the servers for faults in their headers (`x-farm-fault-delay-ms`,
    /// `-abort`, `-throughput`, `-percent`); without it those headers are ignored.
    #[arg(long, env = "FARM_ALLOW_FAULT_HEADERS")]
    allow_fault_headers: bool,
    #[command(flatten)]
    data: FarmData,
    #[command(flatten)]
    history: crate::roles::HistoryArgs,
    #[command(flatten)]
    tls: crate::roles::ServeTlsArgs,
    #[command(flatten)]
    trust: crate::roles::TrustArgs,
    #[command(flatten)]
    pub(crate) trace: crate::roles::TraceArgs,
}

/// The runtimes `farm up` can start servers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RuntimeKind {
    /// Local processes (needs nothing but this binary).
    Process,
    /// One Docker container per server (needs a Docker engine).
    Docker,
    /// One Docker Swarm service per server, spread over the swarm's nodes (needs a manager).
    Swarm,
}

/// A runtime as `farm up` holds it: the trait for the controller, the concrete type to start
/// the first servers.
enum Servers {
    Process(Arc<ProcessRuntime>),
    Docker(Arc<DockerRuntime>),
    Swarm(Arc<SwarmRuntime>),
}

impl Servers {
    fn runtime(&self) -> Arc<dyn Runtime> {
        match self {
            Servers::Process(r) => r.clone(),
            Servers::Docker(r) => r.clone(),
            Servers::Swarm(r) => r.clone(),
        }
    }

    async fn start(&self, servers: u32) -> anyhow::Result<()> {
        match self {
            Servers::Process(r) => Ok(r.start(1..=servers)?),
            Servers::Docker(r) => Ok(r.start_farm(servers).await?),
            Servers::Swarm(r) => Ok(r.start_farm(servers).await?),
        }
    }
}

impl UpArgs {
    /// The arguments of the controller's task of this swarm farm (but for its image): this
    /// farm's settings, the controller and the gateway listening on every address of the task
    /// on their fixed ports, published as `--listen` and `--gateway-listen` ask.
    fn swarm_task_args(&self, tls: bool) -> anyhow::Result<Vec<String>> {
        let any = |port: u16| SocketAddr::from(([0, 0, 0, 0], port)).to_string();
        let mut args: Vec<String> = vec![
            "up".into(),
            "--runtime=swarm".into(),
            format!("--servers={}", self.servers),
            format!("--listen={}", any(controller::GRPC_PORT)),
            format!("--node-base-port={}", self.node_base_port),
            format!("--sample-interval-ms={}", self.sample_interval_ms),
            format!("--name-prefix={}", self.docker.name_prefix),
            format!("--cpus={}", self.docker.cpus),
            format!("--memory-mb={}", self.docker.memory_mb),
            format!("--swarm-manager=unix://{}", controller::SOCKET_IN_TASK),
        ];
        if self.no_gateway {
            args.push("--no-gateway".into());
        } else {
            args.push(format!(
                "--gateway-listen={}",
                any(controller::GATEWAY_PORT)
            ));
            args.extend(self.gateway.args());
        }
        args.extend(
            self.swarm
                .swarm_constraints
                .iter()
                .map(|c| format!("--swarm-constraint={c}")),
        );
        if self.allow_fault_headers {
            args.push("--allow-fault-headers".into());
        }
        args.extend(self.history.swarm_task_args(&self.docker.name_prefix)?);
        if let Some(endpoint) = &self.trace.otlp_endpoint {
            args.push(format!("--otlp-endpoint={endpoint}"));
        }
        if tls {
            args.extend([
                format!("--tls-cert={}", TlsFile::Cert.path_in_task()),
                format!("--tls-key={}", TlsFile::Key.path_in_task()),
                format!("--tls-ca={}", TlsFile::Ca.path_in_task()),
            ]);
        }
        Ok(args)
    }
}

/// The controller's TLS as `farm up` sets it up: the server side, and the CA that its own
/// agents and gateway trust (`--tls-ca`, or the certificate itself).
struct FarmTls {
    server: tonic::transport::ServerTlsConfig,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// Absolute: agents read it from wherever they run.
    ca_path: PathBuf,
    ca_pem: Vec<u8>,
}

impl FarmTls {
    /// Each file read once and checked; `None` without `--tls-cert`.
    fn new(args: &UpArgs) -> anyhow::Result<Option<Self>> {
        let Some((cert_pem, key_pem)) = args.tls.read()? else {
            if args.trust.tls_ca.is_some() {
                bail!(
                    "--tls-ca is the CA of the controller's own certificate: give --tls-cert and --tls-key with it"
                );
            }
            return Ok(None);
        };
        let server =
            farm_proto::tls::server_config(&cert_pem, &key_pem).map_err(anyhow::Error::msg)?;
        let (ca_path, ca_pem) = match &args.trust.tls_ca {
            Some(ca) => (
                std::path::absolute(ca).with_context(|| format!("--tls-ca {}", ca.display()))?,
                args.trust.read()?.unwrap_or_default(),
            ),
            // A self-signed certificate is its own CA.
            None => {
                let cert = args
                    .tls
                    .tls_cert
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""));
                (
                    std::path::absolute(cert)
                        .with_context(|| format!("--tls-cert {}", cert.display()))?,
                    cert_pem.clone(),
                )
            }
        };
        Ok(Some(Self {
            server,
            cert_pem,
            key_pem,
            ca_path,
            ca_pem,
        }))
    }

    /// The three files as the swarm's secrets carry them.
    fn swarm_files(&self) -> Vec<(TlsFile, Vec<u8>)> {
        vec![
            (TlsFile::Cert, self.cert_pem.clone()),
            (TlsFile::Key, self.key_pem.clone()),
            (TlsFile::Ca, self.ca_pem.clone()),
        ]
    }
}

pub(crate) async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let token = args.data.controller_token()?;
    if args.swarm.swarm_controller_task.is_some() && args.runtime != RuntimeKind::Swarm {
        bail!("--swarm-controller-task is for --runtime swarm");
    }
    let tls = FarmTls::new(&args)?;
    if tls.is_some() && args.runtime == RuntimeKind::Docker {
        bail!(
            "--tls-cert is for the process and swarm runtimes; the docker runtime's agents reach the controller in plaintext over the farm's own network"
        );
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let runtime_config = ProcessRuntimeConfig {
        binary: std::env::current_exe().context("cannot find the farm binary")?,
        controller_url: String::new(),
        node_host: args.node_host,
        base_port: args.node_base_port,
        token: Some(token.clone()),
        allow_fault_headers: args.allow_fault_headers,
        trace_env: farm_telemetry::child_env(None),
        tls_ca: tls.as_ref().map(|t| t.ca_path.clone()),
    };
    if args.node_base_port == 0 && args.runtime == RuntimeKind::Docker {
        bail!(
            "--node-base-port 0 is for the process and swarm runtimes; the docker runtime publishes node N on a port of its own: choose a base port"
        );
    }
    if runtime_config.node_address(args.servers).is_none() {
        bail!(
            "--node-base-port {} leaves no port for server {}: ports stop at 65535",
            args.node_base_port,
            args.servers
        );
    }
    // The gateway's settings are checked before anything binds; its URL to the controller
    // is known once the controller's port is.
    args.gateway.config(
        DEFAULT_CONTROLLER_URL_PLACEHOLDER.into(),
        None,
        args.gateway_listen,
        Some(token.clone()),
    )?;
    if args.runtime == RuntimeKind::Swarm && args.swarm.swarm_controller_task.is_none() {
        // The farm's own controller runs as a service of the swarm; this process launches it.
        return args
            .swarm
            .launch(crate::swarm::SwarmLaunch {
                docker: &args.docker,
                servers: args.servers,
                base_port: args.node_base_port,
                grpc_port: args.listen.port(),
                gateway_port: (!args.no_gateway).then_some(args.gateway_listen.port()),
                data_dir: args.data.data_dir(),
                token,
                tls_files: tls.as_ref().map(FarmTls::swarm_files).unwrap_or_default(),
                tls_ca_path: tls.as_ref().map(|t| t.ca_path.clone()),
                task_args: args.swarm_task_args(tls.is_some())?,
            })
            .await;
    }

    let listener = bind(args.listen, "controller", "--listen").await?;
    let controller_addr = listener.local_addr()?;
    let history = args.history.open(
        &args.data,
        match args.runtime {
            RuntimeKind::Process => "farm",
            RuntimeKind::Docker | RuntimeKind::Swarm => &args.docker.name_prefix,
        },
        controller_addr.port(),
    )?;
    let mut listeners = vec![listener];
    let gateway_listener = if args.no_gateway {
        None
    } else {
        if args.runtime == RuntimeKind::Process {
            // Node ports first, so that a taken node port is reported as such.
            runtime_config.check_ports(1..=args.servers)?;
        }
        Some(bind(args.gateway_listen, "gateway", "--gateway-listen").await?)
    };
    let registry = Registry::new(Duration::from_millis(u64::from(args.sample_interval_ms)))
        .with_max_servers(args.gateway.max_servers());

    let connect_host = if controller_addr.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        controller_addr.ip()
    };
    let controller_url = format!(
        "{scheme}://{}",
        SocketAddr::new(connect_host, controller_addr.port())
    );
    let servers = match args.runtime {
        RuntimeKind::Process => {
            runtime_config.check_ports(1..=args.servers)?;
            Servers::Process(Arc::new(ProcessRuntime::new(
                ProcessRuntimeConfig {
                    controller_url: controller_url.clone(),
                    ..runtime_config.clone()
                },
                registry.clone(),
            )))
        }
        RuntimeKind::Docker => {
            let config = args.docker.config(
                controller_addr.port(),
                args.node_host,
                args.node_base_port,
                Some(token.clone()),
                args.allow_fault_headers,
            )?;
            let (runtime, network_listen) = docker::prepare(config, registry.clone()).await?;
            // Containers reach the controller on the farm network's gateway, the host's
            // address on that bridge; people keep using the loopback address.
            if !controller_addr.ip().is_unspecified() {
                listeners.push(
                    bind(network_listen, "controller (farm network side)", "--listen").await?,
                );
            }
            Servers::Docker(Arc::new(runtime))
        }
        RuntimeKind::Swarm => {
            let image_id = args
                .swarm
                .swarm_controller_task
                .as_deref()
                .context("a swarm farm's servers need the farm's image")?;
            let farm = crate::swarm::SwarmFarm {
                docker: &args.docker,
                data_dir: args.data.data_dir(),
                tls_ca: tls.as_ref().map(|t| t.ca_pem.clone()),
                base_port: args.node_base_port,
                token: token.clone(),
                allow_fault_headers: args.allow_fault_headers,
            };
            Servers::Swarm(Arc::new(
                args.swarm.runtime(image_id, farm, registry.clone()).await?,
            ))
        }
    };
    let runtime = servers.runtime();
    let controller_shutdown = CancellationToken::new();
    let controller = tokio::spawn(farm_controller::serve(
        listeners,
        registry.clone(),
        Some(runtime.clone()),
        farm_controller::Access {
            token: Some(token.clone()),
            guard_changes: !args.listen.ip().is_loopback(),
            tls: tls.as_ref().map(|t| t.server.clone()),
        },
        history,
        controller_shutdown.clone(),
    ));
    let gateway = match gateway_listener {
        Some(gateway_listener) => {
            let gateway_addr = gateway_listener.local_addr()?;
            // The controller's task of a swarm farm reaches itself by its name on the
            // farm's network, which its certificate names.
            let url = if args.runtime == RuntimeKind::Swarm {
                controller::url_on_network(&args.docker.name_prefix, tls.is_some())
            } else {
                controller_url.clone()
            };
            let config = args.gateway.config(
                url,
                tls.as_ref().map(|t| t.ca_pem.clone()),
                gateway_addr,
                Some(token.clone()),
            )?;
            let task = tokio::spawn(farm_gateway::serve(
                gateway_listener,
                config,
                controller_shutdown.clone(),
            ));
            Some((gateway_addr, task))
        }
        None => None,
    };
    let started = Instant::now();
    if let Err(e) = servers.start(args.servers).await {
        // Nothing half made: whatever was started goes again.
        runtime.shutdown().await;
        controller_shutdown.cancel();
        return Err(e);
    }

    let nodes = if args.runtime == RuntimeKind::Swarm {
        crate::swarm::nodes_text(args.node_base_port, args.servers)
    } else if args.node_base_port == 0 {
        "nodes on ports the kernel picks (`farm status` lists them)".to_string()
    } else {
        let first = runtime_config.node_address(1).expect("checked above");
        let last = runtime_config
            .node_address(args.servers)
            .expect("checked above");
        format!("nodes on http://{first} .. http://{last}")
    };
    println!(
        "farm: controller  {controller_url}   (grpcurl {} {} list)",
        grpcurl_trust(tls.as_ref().map(|t| t.ca_path.as_path())),
        SocketAddr::new(connect_host, controller_addr.port())
    );
    crate::roles::warn_beyond_loopback("controller", controller_addr);
    let place = match args.runtime {
        RuntimeKind::Process => "local processes".to_string(),
        RuntimeKind::Docker => format!("Docker containers {}-server-N", args.docker.name_prefix),
        RuntimeKind::Swarm => format!("swarm services {}-server-N", args.docker.name_prefix),
    };
    if let Some((addr, _)) = &gateway {
        let host = if addr.ip().is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            addr.ip()
        };
        let url = format!("http://{}", SocketAddr::new(host, addr.port()));
        println!(
            "farm: gateway     {url}   (REST {url}/api/servers, docs {url}/docs, metrics {url}/metrics)"
        );
        crate::roles::warn_beyond_loopback("gateway", *addr);
    }
    println!("farm: servers     {} as {place}, {nodes}", args.servers);

    tokio::select! {
        _ = shutdown_signal() => {
            println!("farm: stopping before the farm turned healthy");
        }
        healthy = wait_healthy(&registry, args.servers) => {
            if healthy {
                println!("farm: all {} servers healthy in {:.2} s; Ctrl-C stops the farm", args.servers, started.elapsed().as_secs_f64());
            } else {
                println!("farm: not every server turned healthy within {} s; see `farm health`; Ctrl-C stops the farm", HEALTHY_WAIT.as_secs());
            }
            shutdown_signal().await;
        }
    }

    println!("farm: stopping {} servers", args.servers);
    runtime.shutdown().await;
    controller_shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(5), controller).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("farm: controller ended with an error: {e}"),
        Ok(Err(e)) => eprintln!("farm: controller task failed: {e}"),
        Err(_) => eprintln!("farm: controller did not stop within 5 s"),
    }
    if let Some((_, task)) = gateway {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("farm: gateway ended with an error: {e}"),
            Ok(Err(e)) => eprintln!("farm: gateway task failed: {e}"),
            Err(_) => eprintln!("farm: gateway did not stop within 5 s"),
        }
    }
    println!("farm: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The `grpcurl` flag that lets it reach the controller: `-plaintext`, or `-cacert` with the
/// CA for a controller that serves TLS.
pub(crate) fn grpcurl_trust(ca: Option<&std::path::Path>) -> String {
    match ca {
        Some(ca) => format!("-cacert {}", ca.display()),
        None => "-plaintext".into(),
    }
}

/// Waits until `servers` servers are healthy; false after [`HEALTHY_WAIT`].
async fn wait_healthy(registry: &Registry, servers: u32) -> bool {
    let mut changes = registry.subscribe();
    let deadline = tokio::time::Instant::now() + HEALTHY_WAIT;
    loop {
        let healthy =
            registry.read(|entries| entries.filter(|e| e.status == Status::Healthy).count());
        if healthy >= servers as usize {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return false,
            changed = changes.changed() => if changed.is_err() { return false },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `farm up`'s arguments alone.
    #[derive(Debug, Parser)]
    struct Up {
        #[command(flatten)]
        up: UpArgs,
    }

    fn parse(args: &[&str]) -> UpArgs {
        Up::try_parse_from(std::iter::once("farm").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"))
            .up
    }

    #[test]
    fn the_controller_task_gets_every_setting_of_the_farm() {
        let outside = parse(&[
            "--runtime=swarm",
            "--servers=7",
            "--node-base-port=9000",
            "--sample-interval-ms=500",
            "--name-prefix=p1",
            "--cpus=0.25",
            "--memory-mb=64",
            "--swarm-constraint=node.labels.zone==a",
            "--swarm-constraint=node.role==worker",
            "--allow-fault-headers",
            "--otlp-endpoint=http://collector:4317",
            "--cors-origins=https://a.example,https://b.example",
            "--allowed-hosts=farm.example,x.example",
            "--gateway-max-connections=77",
            "--gateway-idle-timeout-ms=1234",
            "--request-timeout-ms=2345",
            "--max-load-test-seconds=99",
            "--max-servers=123",
        ]);
        let task_args = outside.swarm_task_args(true).unwrap();
        assert_eq!(task_args[0], "up");
        let rest: Vec<&str> = task_args[1..].iter().map(String::as_str).collect();
        let inside = parse(&rest);

        assert_eq!(inside.runtime, RuntimeKind::Swarm);
        assert_eq!(inside.servers, 7);
        assert_eq!(inside.node_base_port, 9000);
        assert_eq!(inside.sample_interval_ms, 500);
        assert_eq!(inside.docker.name_prefix, "p1");
        assert_eq!(inside.docker.cpus, 0.25);
        assert_eq!(inside.docker.memory_mb, 64);
        assert_eq!(
            inside.swarm.swarm_constraints,
            outside.swarm.swarm_constraints
        );
        assert!(inside.allow_fault_headers);
        assert_eq!(inside.trace.otlp_endpoint, outside.trace.otlp_endpoint);
        assert_eq!(
            format!("{:?}", inside.gateway),
            format!("{:?}", outside.gateway)
        );
        assert_eq!(inside.listen, SocketAddr::from(([0, 0, 0, 0], 50051)));
        assert_eq!(
            inside.gateway_listen,
            SocketAddr::from(([0, 0, 0, 0], 8000))
        );
        assert_eq!(
            inside.swarm.swarm_manager,
            format!("unix://{}", controller::SOCKET_IN_TASK)
        );
        assert_eq!(
            inside.tls.tls_cert.as_deref(),
            Some(std::path::Path::new(&TlsFile::Cert.path_in_task()))
        );
        assert_eq!(
            inside.tls.tls_key.as_deref(),
            Some(std::path::Path::new(&TlsFile::Key.path_in_task()))
        );
        assert_eq!(
            inside.trust.tls_ca.as_deref(),
            Some(std::path::Path::new(&TlsFile::Ca.path_in_task()))
        );
        // The history is a file of its own in the mounted data directory.
        assert!(
            format!("{:?}", inside.history).contains("/data/history/swarm-p1.sqlite"),
            "{:?}",
            inside.history
        );
    }

    #[test]
    fn the_controller_task_keeps_no_history_when_told_and_refuses_a_file_of_its_own() {
        let outside = parse(&["--runtime=swarm", "--no-gateway", "--no-history"]);
        let task_args = outside.swarm_task_args(false).unwrap();
        assert!(task_args.contains(&"--no-history".to_string()));
        assert!(task_args.contains(&"--no-gateway".to_string()));
        assert!(!task_args.iter().any(|a| a.starts_with("--tls")));
        let given = parse(&["--runtime=swarm", "--history=/tmp/h.sqlite"]);
        let refused = given.swarm_task_args(false).unwrap_err().to_string();
        assert!(refused.contains("--history"), "{refused}");
    }
}
