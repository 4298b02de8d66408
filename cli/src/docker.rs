//! The docker side of the command line: `farm up --runtime docker` settings, `farm down`,
//! `farm compose`, and `farm probe` (the containers' health check: a scratch image has no
//! curl, so the binary probes itself).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use farm_controller::Registry;
use farm_controller::runtime::docker::{self, DockerRuntime, DockerRuntimeConfig};
use farm_proto::limits;

/// Settings of the docker runtime, shared by `farm up` and `farm compose`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DockerArgs {
    /// Names the farm's containers (`<prefix>-server-N`), network and labels.
    #[arg(long, env = "FARM_NAME_PREFIX", default_value = "farm", value_parser = parse_prefix)]
    pub(crate) name_prefix: String,
    /// CPU limit per server container, in cores (0.01 to 64).
    #[arg(long, default_value_t = 0.5, value_parser = parse_cpus)]
    pub(crate) cpus: f64,
    /// Memory limit per server container, in MiB (16 to 65536).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(limits::MIN_CONTAINER_MEMORY_MB..=limits::MAX_CONTAINER_MEMORY_MB))]
    pub(crate) memory_mb: u64,
    /// Containers created and started at once (1 to 64).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=i64::from(limits::MAX_DOCKER_CONCURRENCY)))]
    pub(crate) docker_concurrency: u16,
    /// The static farm binary to put in the image; this very binary by default.
    #[arg(long)]
    pub(crate) image_binary: Option<PathBuf>,
}

fn parse_prefix(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= limits::MAX_NAME_PREFIX_LEN
        && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(format!(
            "must be 1 to {} letters, digits, '-' or '_', starting with a letter or digit",
            limits::MAX_NAME_PREFIX_LEN
        ))
    }
}

fn parse_cpus(raw: &str) -> Result<f64, String> {
    let cpus: f64 = raw.parse().map_err(|e| format!("{e}"))?;
    let bounds = limits::MIN_CONTAINER_CPUS..=limits::MAX_CONTAINER_CPUS;
    if cpus.is_finite() && bounds.contains(&cpus) {
        Ok(cpus)
    } else {
        Err(format!(
            "{raw} is not in {}..={}",
            bounds.start(),
            bounds.end()
        ))
    }
}

impl DockerArgs {
    pub(crate) fn binary(&self) -> anyhow::Result<PathBuf> {
        match &self.image_binary {
            Some(path) => Ok(path.clone()),
            None => std::env::current_exe().context("cannot find the farm binary"),
        }
    }

    pub(crate) fn config(
        &self,
        controller_port: u16,
        publish_host: IpAddr,
        base_port: u16,
        token: Option<farm_proto::auth::Token>,
        allow_fault_headers: bool,
    ) -> anyhow::Result<DockerRuntimeConfig> {
        Ok(DockerRuntimeConfig {
            prefix: self.name_prefix.clone(),
            binary: self.binary()?,
            controller_port,
            publish_host,
            base_port,
            cpus: self.cpus,
            memory_mb: self.memory_mb,
            concurrency: usize::from(self.docker_concurrency),
            token,
            allow_fault_headers,
        })
    }
}

/// Makes everything the docker runtime needs before the controller starts: the engine
/// connection, the image and the network. Returns the runtime, not yet running servers,
/// and the address on the farm's network where the controller must also listen.
pub(crate) async fn prepare(
    config: DockerRuntimeConfig,
    registry: Registry,
) -> anyhow::Result<(DockerRuntime, SocketAddr)> {
    let engine = docker::connect().await?;
    let image = docker::ensure_image(&engine, &config.binary).await?;
    let gateway = docker::ensure_network(&engine, &config).await?;
    let listen = SocketAddr::new(gateway, config.controller_port);
    Ok((
        DockerRuntime::new(engine, config, registry, image, gateway),
        listen,
    ))
}

/// `farm down`.
#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// The farm to remove, by its name prefix.
    #[arg(long, env = "FARM_NAME_PREFIX", default_value = "farm", value_parser = parse_prefix)]
    name_prefix: String,
    /// Where the farm runs: Docker containers on this engine, or services of a swarm.
    #[arg(long, env = "FARM_RUNTIME", value_enum, default_value_t = DownRuntime::Docker)]
    runtime: DownRuntime,
    /// The API of a manager of the swarm (`--runtime swarm`).
    #[arg(
        long,
        env = "FARM_SWARM_MANAGER",
        default_value = "unix:///var/run/docker.sock"
    )]
    swarm_manager: String,
}

/// The runtimes whose farms outlive `farm up` and that `farm down` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DownRuntime {
    /// Docker containers.
    Docker,
    /// Services of a Docker Swarm.
    Swarm,
}

pub(crate) async fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    if args.runtime == DownRuntime::Swarm {
        return crate::swarm::down(&args.swarm_manager, &args.name_prefix).await;
    }
    let engine = docker::connect().await?;
    let removed = docker::down(&engine, &args.name_prefix).await?;
    println!(
        "farm: removed {} containers and {} networks of farm {:?}",
        removed.containers.len(),
        removed.networks.len(),
        args.name_prefix
    );
    Ok(ExitCode::SUCCESS)
}

/// `farm probe`.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The node to probe, host:port; its `/health` must answer 200.
    address: String,
    /// How long the probe may take, in milliseconds (1 to 60000).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=limits::MAX_PROBE_TIMEOUT_MS))]
    timeout_ms: u64,
}

pub(crate) async fn probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let client = farm_node_api::client::NodeClient::new();
    match client
        .health(&args.address, Duration::from_millis(args.timeout_ms))
        .await
    {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("farm: {}/health: {e}", args.address);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `farm compose`.
#[derive(Debug, Args)]
pub(crate) struct ComposeArgs {
    /// Number of servers (1 to 1000).
    #[arg(long, short = 'n', default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(limits::MAX_SERVERS)))]
    servers: u32,
    /// Folder to write docker-compose.yml, its Dockerfile and the binary into.
    #[arg(long, default_value = "compose")]
    output: PathBuf,
    /// Host port of the controller's gRPC API (0: the engine picks one; `docker-compose port`
    /// tells which).
    #[arg(long, default_value_t = 50051)]
    controller_port: u16,
    /// Host port of the gateway (REST, dashboard); 0 lets the engine pick.
    #[arg(long, default_value_t = 8000)]
    gateway_port: u16,
    /// Node N is published on this port plus N; 0 lets the engine pick each node's port.
    #[arg(long, default_value_t = 8000)]
    node_base_port: u16,
    /// Let requests ask the servers for faults in their headers (`x-farm-fault-delay-ms`,
    /// `-abort`, `-throughput`, `-percent`); without it those headers are ignored.
    #[arg(long, env = "FARM_ALLOW_FAULT_HEADERS")]
    allow_fault_headers: bool,
    #[command(flatten)]
    docker: DockerArgs,
}

/// The image a compose farm builds from its folder (`build: .`) and runs everywhere. Its tag
/// names the farm, not the binary, so that the compose file stays the same from one build to
/// the next; `up --build` puts a new binary into it.
fn compose_image(prefix: &str) -> String {
    format!("farm-server:compose-{prefix}")
}

/// The compose file for `args`: controller, gateway and every server, on one network, all
/// from the one image. The controller drives the server containers through the mounted
/// Docker socket.
fn compose_file(args: &ComposeArgs) -> anyhow::Result<String> {
    use std::fmt::Write;
    let prefix = &args.docker.name_prefix;
    let image = compose_image(prefix);
    // `127.0.0.1::PORT` publishes on a port the engine picks.
    let publish = |host_port: u32, port: u16| match host_port {
        0 => format!("127.0.0.1::{port}"),
        _ => format!("127.0.0.1:{host_port}:{port}"),
    };
    let last_port = u32::from(args.node_base_port) + args.servers;
    anyhow::ensure!(
        last_port <= 65_535,
        "--node-base-port {} leaves no port for server {}",
        args.node_base_port,
        args.servers
    );
    let mut yaml = String::new();
    writeln!(
        yaml,
        "# Written by `farm compose --servers {}`; regenerate rather than edit.",
        args.servers
    )?;
    // No paths here: the file reads the same wherever it was written.
    yaml.push_str(
        "# Start, in this folder: FARM_TOKEN=<the farm's token> docker-compose up -d --build\n",
    );
    yaml.push_str(
        "# (any 16 to 256 visible characters; the agents present it to the controller)\n",
    );
    yaml.push_str("# Stop, in this folder:  docker-compose down\n");
    // 2.4 is the last format whose cpus and mem_limit docker-compose 1.x applies without
    // --compatibility; docker compose v2 reads it as well.
    yaml.push_str("version: \"2.4\"\nservices:\n");
    write!(
        yaml,
        r#"  controller:
    build: .
    image: {image}
    command: ["controller", "--listen", "0.0.0.0:50051", "--docker-farm", "{prefix}"]
    environment: ["FARM_TOKEN=${{FARM_TOKEN:?set FARM_TOKEN to the farm's token, 16 to 256 visible characters}}", {trace_env}]
    volumes: ["/var/run/docker.sock:/var/run/docker.sock"]
    ports: ["{controller_port}"]
    restart: unless-stopped
  gateway:
    image: {image}
    command: ["gateway", "--listen", "0.0.0.0:8000", "--controller", "http://controller:50051"]
    environment: [{trace_env}]
    ports: ["{gateway_port}"]
    depends_on: [controller]
    restart: unless-stopped
"#,
        trace_env = TRACE_ENV,
        controller_port = publish(u32::from(args.controller_port), 50051),
        gateway_port = publish(u32::from(args.gateway_port), 8000),
    )?;
    for id in 1..=args.servers {
        let agent = farm_controller::runtime::AgentCommand {
            id,
            controller_url: "http://controller:50051".into(),
            node_listen: format!("0.0.0.0:{}", docker::NODE_PORT),
            node_advertise: Some(format!("server-{id}:{}", docker::NODE_PORT)),
            runtime: "docker",
            exit_with_parent: false,
            allow_fault_headers: args.allow_fault_headers,
        };
        write!(
            yaml,
            r#"  server-{id}:
    image: {image}
    container_name: {prefix}-server-{id}
    command: {command}
    environment: [FARM_TOKEN, {trace_env}]
    labels:
      {farm_label}: "{prefix}"
      {id_label}: "{id}"
    ports: ["{port}"]
    cpus: {cpus}
    mem_limit: {memory}m
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "/farm", "probe", "127.0.0.1:8000"]
      interval: {interval}s
      timeout: {timeout}s
      retries: {retries}
    depends_on: [controller]
"#,
            command = serde_json::to_string(&agent.args())?,
            farm_label = docker::LABEL_FARM,
            id_label = docker::LABEL_SERVER_ID,
            interval = docker::HEALTH_INTERVAL_SECONDS,
            timeout = docker::HEALTH_TIMEOUT_SECONDS,
            retries = docker::HEALTH_RETRIES,
            port = match args.node_base_port {
                0 => publish(0, docker::NODE_PORT),
                base => publish(u32::from(base) + id, docker::NODE_PORT),
            },
            cpus = args.docker.cpus,
            memory = args.docker.memory_mb,
            trace_env = TRACE_ENV,
        )?;
    }
    Ok(yaml)
}

/// The variables every compose service passes through from docker-compose's environment:
/// traces go to the collector they name when they are set, and nowhere otherwise. A
/// collector on the host must be given by an address the containers reach (not 127.0.0.1).
const TRACE_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_RESOURCE_ATTRIBUTES";

pub(crate) async fn compose(args: ComposeArgs) -> anyhow::Result<ExitCode> {
    let binary = args.docker.binary()?;
    let bytes =
        std::fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?;
    docker::check_static(&bytes, &binary)?;
    let yaml = compose_file(&args)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let write = |name: &str, content: &[u8]| {
        let path = args.output.join(name);
        std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))
    };
    write("docker-compose.yml", yaml.as_bytes())?;
    write("Dockerfile", docker::dockerfile().as_bytes())?;
    write("farm", &bytes)?;
    write(
        ".gitignore",
        b"# The binary is copied here by `farm compose`.\nfarm\n",
    )?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            args.output.join("farm"),
            std::fs::Permissions::from_mode(0o755),
        )?;
    }
    println!(
        "farm: wrote {dir}/docker-compose.yml ({} servers), {dir}/Dockerfile and {dir}/farm\nfarm: start it with: docker-compose -f {dir}/docker-compose.yml up -d --build",
        args.servers,
        dir = args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
