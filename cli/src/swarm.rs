//! The swarm side of the command line: `farm up --runtime swarm` settings, the launch of a
//! swarm farm, and `farm down --runtime swarm`.
//!
//! `farm up --runtime swarm` does not run the controller itself. It puts the farm's image on
//! every engine, makes the farm's overlay network and starts the controller's service there
//! (`farm_controller::runtime::swarm::controller`), whose task runs `farm up` again in its
//! controller-task role: that one serves the controller and the gateway and drives the
//! servers' services. The `farm up` outside follows the controller's task, says where it is
//! reached, and removes the whole farm from the swarm on Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use clap::Args;
use farm_controller::Registry;
use farm_controller::runtime::swarm::controller::{self, ControllerService, ControllerTask};
use farm_controller::runtime::swarm::secrets::{self, TlsFile};
use farm_controller::runtime::swarm::{self, Docker, SwarmRuntime, SwarmRuntimeConfig};
use farm_proto::v1::{ListServersRequest, ServerStatus};

use crate::docker::DockerArgs;
use crate::signal::shutdown_signal;

/// The most engines a farm copies its image to besides the manager.
const MAX_ENGINES: usize = 64;
/// How long the controller's task may take to run and answer.
const CONTROLLER_WAIT: Duration = Duration::from_secs(60);
/// How long `farm up` waits for the servers to turn healthy once the controller answers.
const HEALTHY_WAIT: Duration = Duration::from_secs(120);
/// How often `farm up` looks at the controller's task and the servers while it waits.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How long the engine may keep saying why it does not start the controller's task before
/// `farm up` gives up.
const REFUSAL_PATIENCE: Duration = Duration::from_secs(10);
/// How many of its last lines `farm up` shows of a controller's task that failed to start.
const FAILED_LOG_LINES: u32 = 20;
/// How often `farm up` looks at the controller's task once the farm runs.
const FOLLOW_EVERY: Duration = Duration::from_secs(5);

/// Settings of the swarm runtime.
#[derive(Debug, Clone, Args)]
pub(crate) struct SwarmArgs {
    /// The API of a manager of the swarm on this machine (`unix:///path/to/docker.sock`): the
    /// controller's task runs on its node and mounts this socket.
    #[arg(
        long,
        env = "FARM_SWARM_MANAGER",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub(crate) swarm_manager: String,
    /// The API of another engine of the swarm, to copy the farm's image to (nothing is
    /// pulled); once per engine, at most 64.
    #[arg(
        long = "swarm-engine",
        env = "FARM_SWARM_ENGINES",
        value_delimiter = ','
    )]
    pub(crate) swarm_engines: Vec<String>,
    /// A placement constraint for every server (`node.labels.zone==a`); once per constraint.
    #[arg(long = "swarm-constraint")]
    pub(crate) swarm_constraints: Vec<String>,
    /// This `farm up` is the controller's task of a swarm farm whose image, by ID, is on
    /// every node already (the farm's own `farm up` starts it so).
    #[arg(long, hide = true, value_name = "IMAGE_ID")]
    pub(crate) swarm_controller_task: Option<String>,
}

/// What the controller's task needs besides the swarm settings to drive the servers.
pub(crate) struct SwarmFarm<'a> {
    pub(crate) docker: &'a DockerArgs,
    /// The farm's data directory in the task, where it keeps the farm's number of servers.
    pub(crate) data_dir: PathBuf,
    /// The CA's PEM when the controller serves TLS (its files are the farm's secrets).
    pub(crate) tls_ca: Option<Vec<u8>>,
    pub(crate) base_port: u16,
    pub(crate) token: farm_proto::auth::Token,
    pub(crate) allow_fault_headers: bool,
}

/// What `farm up --runtime swarm` needs to launch the farm.
pub(crate) struct SwarmLaunch<'a> {
    pub(crate) docker: &'a DockerArgs,
    pub(crate) servers: u32,
    pub(crate) base_port: u16,
    /// The port the controller's gRPC API is published on (0: the engine picks).
    pub(crate) grpc_port: u16,
    /// The port the gateway is published on (0: the engine picks), if the farm has one.
    pub(crate) gateway_port: Option<u16>,
    pub(crate) data_dir: PathBuf,
    pub(crate) token: farm_proto::auth::Token,
    /// The controller's TLS files with their PEM; none for plaintext.
    pub(crate) tls_files: Vec<(TlsFile, Vec<u8>)>,
    /// The CA's file, for `grpcurl`.
    pub(crate) tls_ca_path: Option<PathBuf>,
    /// `farm up`'s arguments for the controller's task, but for its image.
    pub(crate) task_args: Vec<String>,
}

impl SwarmArgs {
    /// The manager's socket path on this machine.
    fn manager_socket(&self) -> anyhow::Result<PathBuf> {
        let path = self
            .swarm_manager
            .strip_prefix("unix://")
            .unwrap_or(&self.swarm_manager);
        if !path.starts_with('/') {
            bail!(
                "--swarm-manager {}: give the manager's socket on this machine, as unix:///path",
                self.swarm_manager
            );
        }
        Ok(PathBuf::from(path))
    }

    /// The runtime of the controller's task: the servers' services on the swarm its socket
    /// manages, from the image and on the network the farm's `farm up` made.
    pub(crate) async fn runtime(
        &self,
        image_id: &str,
        farm: SwarmFarm<'_>,
        registry: Registry,
    ) -> anyhow::Result<SwarmRuntime> {
        let manager = swarm::connect(&self.swarm_manager).await?;
        swarm::check_manager(&manager, &self.swarm_manager).await?;
        let prefix = farm.docker.name_prefix.clone();
        let tls_ca = match &farm.tls_ca {
            Some(pem) => Some(secrets::find(&manager, &prefix, TlsFile::Ca, pem).await?),
            None => None,
        };
        let config = SwarmRuntimeConfig {
            controller_url: controller::url_on_network(&prefix, tls_ca.is_some()),
            servers_file: Some(servers_file(&farm.data_dir, &prefix)),
            tls_ca,
            prefix,
            image_id: image_id.to_string(),
            base_port: farm.base_port,
            cpus: farm.docker.cpus,
            memory_mb: farm.docker.memory_mb,
            constraints: self.swarm_constraints.clone(),
            token: Some(farm.token),
            allow_fault_headers: farm.allow_fault_headers,
            trace_env: farm_telemetry::child_env(None),
        };
        Ok(SwarmRuntime::new(manager, config, registry))
    }

    /// `farm up --runtime swarm`: the image on every engine, the farm's network, the
    /// controller's service; then follows it until a signal, and removes the farm.
    pub(crate) async fn launch(&self, farm: SwarmLaunch<'_>) -> anyhow::Result<ExitCode> {
        if self.swarm_engines.len() > MAX_ENGINES {
            bail!(
                "--swarm-engine is given {} times; at most {MAX_ENGINES}",
                self.swarm_engines.len()
            );
        }
        let socket = self.manager_socket()?;
        let prefix = farm.docker.name_prefix.clone();
        // Made here, as the user who runs farm up, before the controller's task (root) writes
        // into them.
        let history_dir = crate::roles::swarm_history_file(&farm.data_dir, &prefix);
        if let Some(dir) = history_dir.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // The engine mounts it by its absolute path.
        let data_dir = farm.data_dir.canonicalize()?;
        let servers_file = servers_file(&data_dir, &prefix);
        swarm::write_servers(&servers_file, farm.servers)
            .with_context(|| format!("cannot write {}", servers_file.display()))?;
        let manager = swarm::connect(&self.swarm_manager).await?;
        swarm::check_manager(&manager, &self.swarm_manager).await?;
        // A signal from here on, even while the image is copied, removes what was made.
        let outcome = tokio::select! {
            outcome = self.prepare_and_run(&manager, farm, data_dir, socket) => outcome,
            () = shutdown_signal() => Ok(()),
        };
        if let Err(e) = &outcome {
            eprintln!("farm: error: {e:#}");
        }
        println!("farm: stopping the farm's services");
        match swarm::down(&manager, &prefix).await {
            Ok(removed) => println!("farm: removed {}; stopped", removed_text(&removed)),
            Err(e) => eprintln!(
                "farm: could not remove the farm from the swarm ({e}); `farm down --runtime swarm --name-prefix {prefix}` removes it"
            ),
        }
        // The error is said above, before the farm goes.
        Ok(match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        })
    }

    /// The image on every engine, the network, the controller's service; then follows it.
    async fn prepare_and_run(
        &self,
        manager: &Docker,
        farm: SwarmLaunch<'_>,
        data_dir: PathBuf,
        manager_socket: PathBuf,
    ) -> anyhow::Result<()> {
        let prefix = farm.docker.name_prefix.clone();
        let mut others = Vec::with_capacity(self.swarm_engines.len());
        for address in &self.swarm_engines {
            others.push(swarm::connect(address).await?);
        }
        let unreached = swarm::nodes_beyond(manager, &others).await?;
        if !unreached.is_empty() {
            eprintln!(
                "farm: warning: the farm's image goes only to the manager and the --swarm-engine engines, and nothing is pulled, so tasks placed on {} will fail; give their engines with --swarm-engine, or keep servers off them with --swarm-constraint",
                unreached.join(", ")
            );
        }
        let image_id = swarm::spread_image(manager, &others, &farm.docker.binary()?).await?;
        swarm::ensure_network(manager, &prefix).await?;
        let mut args = farm.task_args;
        args.extend(["--swarm-controller-task".into(), image_id.clone()]);
        let mut env = farm_controller::runtime::container_env(
            Some(&farm.token),
            &farm_telemetry::child_env(None),
        );
        env.push(format!("FARM_DATA_DIR={}", controller::DATA_DIR_IN_TASK));
        if let Ok(filter) = std::env::var("RUST_LOG") {
            env.push(format!("RUST_LOG={filter}"));
        }
        let trust = Trust {
            ca: farm
                .tls_files
                .iter()
                .find(|(file, _)| *file == TlsFile::Ca)
                .map(|(_, pem)| pem.clone()),
            ca_path: farm.tls_ca_path,
        };
        let service = ControllerService {
            prefix,
            image_id,
            args,
            env,
            manager_socket,
            data_dir,
            grpc_port: farm.grpc_port,
            gateway_port: farm.gateway_port,
            tls_files: farm.tls_files,
        };
        run(manager, &service, &trust, farm.servers, farm.base_port).await
    }
}

/// Where swarm farm `prefix` keeps its number of servers in data directory `data_dir`.
fn servers_file(data_dir: &std::path::Path, prefix: &str) -> PathBuf {
    data_dir.join("swarm").join(format!("{prefix}.servers"))
}

/// What `farm up` outside the swarm trusts for a controller that serves TLS.
struct Trust {
    /// The CA certificates (PEM).
    ca: Option<Vec<u8>>,
    /// Their file, for `grpcurl`.
    ca_path: Option<PathBuf>,
}

/// What `down` removed, in words.
fn removed_text(removed: &swarm::Removed) -> String {
    format!(
        "{} services, {} secrets and {} networks",
        removed.services.len(),
        removed.secrets.len(),
        removed.networks.len()
    )
}

/// Starts the controller's service and follows it: says where it is, how long the servers took
/// to turn healthy, and what becomes of its task, until a signal (which the caller waits for)
/// or an error.
async fn run(
    manager: &Docker,
    service: &ControllerService,
    trust: &Trust,
    servers: u32,
    base_port: u16,
) -> anyhow::Result<()> {
    let started = Instant::now();
    controller::start(manager, service).await?;
    let published = wait_running(manager, &service.prefix).await?;
    let tls = trust.ca.is_some();
    let scheme = if tls { "https" } else { "http" };
    let grpc_url = format!("{scheme}://{}", published.grpc);
    println!(
        "farm: controller  {grpc_url}   (grpcurl {} {} list; agents reach it as {})",
        crate::up::grpcurl_trust(trust.ca_path.as_deref()),
        published.grpc,
        controller::url_on_network(&service.prefix, tls)
    );
    if let Some(gateway) = published.gateway {
        let url = format!("http://{gateway}");
        println!(
            "farm: gateway     {url}   (REST {url}/api/servers, docs {url}/docs, metrics {url}/metrics)"
        );
    }
    println!(
        "farm: {} published on every address of the manager's node; changes need the farm's token",
        if published.gateway.is_some() {
            "both are"
        } else {
            "it is"
        }
    );
    println!(
        "farm: servers     {servers} as swarm services {}-server-N, {}",
        nodes_text(base_port, servers),
        service.prefix
    );
    if wait_healthy(&grpc_url, trust.ca.as_deref(), servers).await {
        println!(
            "farm: all {servers} servers healthy in {:.2} s; Ctrl-C stops the farm",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "farm: not every server turned healthy within {} s; see `farm health --controller {grpc_url}`; Ctrl-C stops the farm",
            HEALTHY_WAIT.as_secs()
        );
    }
    follow(manager, &service.prefix, scheme, published).await
}

/// Where a swarm farm's `servers` nodes listen, as the banner says it.
pub(crate) fn nodes_text(base_port: u16, servers: u32) -> String {
    if base_port == 0 {
        "nodes on ports the engines pick (`farm status` lists them)".to_string()
    } else {
        format!(
            "nodes on ports {} .. {} of the swarm node that runs each",
            u32::from(base_port) + 1,
            u32::from(base_port) + servers
        )
    }
}

/// Waits until the controller's task runs and its ports are published.
async fn wait_running(manager: &Docker, prefix: &str) -> anyhow::Result<controller::Published> {
    let deadline = Instant::now() + CONTROLLER_WAIT;
    let mut refused_since = None;
    loop {
        let said = match controller::look(manager, prefix).await? {
            ControllerTask::Running(published) => return Ok(published),
            ControllerTask::NotRunning { said, failed: true } => {
                let log = controller::last_log_lines(manager, prefix, FAILED_LOG_LINES).await;
                bail!(
                    "the controller's task failed; the engine says: {}{}",
                    said.as_deref().unwrap_or("nothing"),
                    if log.trim().is_empty() {
                        String::new()
                    } else {
                        format!("; it wrote:\n{}", log.trim_end())
                    }
                );
            }
            ControllerTask::NotRunning { said, .. } => said,
        };
        // The engine says why it cannot place or start the task (a port in use, no node
        // that fits); said for a while, it does not pass.
        match &said {
            Some(reason) => {
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() > REFUSAL_PATIENCE {
                    bail!("the engine does not start the controller's task: {reason}");
                }
            }
            None => refused_since = None,
        }
        if Instant::now() > deadline {
            bail!(
                "the controller's task did not run within {} s; the engine says: {}",
                CONTROLLER_WAIT.as_secs(),
                said.as_deref().unwrap_or("nothing")
            );
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Waits until the controller at `url` reports `servers` healthy servers; false after
/// [`HEALTHY_WAIT`].
async fn wait_healthy(url: &str, ca: Option<&[u8]>, servers: u32) -> bool {
    let deadline = Instant::now() + HEALTHY_WAIT;
    let mut client = None;
    while Instant::now() < deadline {
        // The task runs before its controller listens: not answering yet is no error. Once
        // connected, the one channel serves every look.
        if client.is_none() {
            client = crate::report::connect_trusting(url, ca).await.ok();
        }
        if let Some(connected) = client.as_mut()
            && let Ok(reply) = connected.list_servers(ListServersRequest::default()).await
        {
            let healthy = reply
                .into_inner()
                .servers
                .iter()
                .filter(|s| s.status == ServerStatus::Healthy as i32)
                .count();
            if healthy >= servers as usize {
                return true;
            }
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    false
}

/// Follows the controller's task until a signal ends `farm up`: says when it stops running
/// and where it runs again (the engine restarts it after a failure).
async fn follow(
    manager: &Docker,
    prefix: &str,
    scheme: &str,
    mut published: controller::Published,
) -> anyhow::Result<()> {
    let mut running = true;
    let mut answering = true;
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let look = controller::look(manager, prefix).await;
        if look.is_ok() != answering {
            answering = look.is_ok();
            match &look {
                Ok(_) => println!("farm: the swarm's manager answers again"),
                Err(e) => println!("farm: cannot look at the controller's task: {e}"),
            }
        }
        match look {
            Ok(ControllerTask::Running(now)) => {
                if !running || now != published {
                    println!(
                        "farm: the controller runs again, its API on {scheme}://{}{}",
                        now.grpc,
                        now.gateway
                            .map(|g| format!(", its gateway on http://{g}"))
                            .unwrap_or_default()
                    );
                }
                running = true;
                published = now;
            }
            Ok(ControllerTask::NotRunning { said, .. }) if running => {
                println!(
                    "farm: the controller's task does not run ({}); the engine starts another",
                    said.as_deref().unwrap_or("the engine says nothing")
                );
                running = false;
            }
            Ok(ControllerTask::NotRunning { .. }) | Err(_) => {}
        }
    }
}

/// `farm down --runtime swarm`: removes farm `prefix`'s services, secrets and network from the swarm
/// that `manager` manages.
pub(crate) async fn down(manager: &str, prefix: &str) -> anyhow::Result<ExitCode> {
    let docker = swarm::connect(manager).await?;
    swarm::check_manager(&docker, manager).await?;
    let removed = swarm::down(&docker, prefix).await?;
    println!(
        "farm: removed {} of farm {prefix:?}",
        removed_text(&removed)
    );
    Ok(ExitCode::SUCCESS)
}
