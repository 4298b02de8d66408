//! The swarm side of the command line: `farm up --runtime swarm` settings, and `farm down
//! --runtime swarm`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use farm_controller::Registry;
use farm_controller::runtime::swarm::{self, SwarmRuntime, SwarmRuntimeConfig};

use crate::docker::DockerArgs;

/// The most engines a farm copies its image to besides the manager.
const MAX_ENGINES: usize = 64;

/// Settings of the swarm runtime.
#[derive(Debug, Clone, Args)]
pub(crate) struct SwarmArgs {
    /// The API of a manager of the swarm (`unix:///path/to/docker.sock`).
    #[arg(
        long,
        env = "FARM_SWARM_MANAGER",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub(crate) swarm_manager: String,
    /// The API of another engine of the swarm, to copy the server image to (nothing is
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
}

/// What the swarm runtime needs besides its own settings.
pub(crate) struct SwarmFarm<'a> {
    pub(crate) docker: &'a DockerArgs,
    pub(crate) controller: SocketAddr,
    pub(crate) base_port: u16,
    pub(crate) token: farm_proto::auth::Token,
    pub(crate) allow_fault_headers: bool,
}

impl SwarmArgs {
    /// Makes everything the swarm runtime needs before the controller starts: the manager's
    /// connection, the image on every engine and the overlay network. Returns the runtime,
    /// not yet running servers.
    pub(crate) async fn prepare(
        &self,
        farm: SwarmFarm<'_>,
        registry: Registry,
    ) -> anyhow::Result<SwarmRuntime> {
        if farm.controller.ip().is_loopback() || farm.controller.ip().is_unspecified() {
            bail!(
                "the swarm's tasks cannot reach a controller on {}: give --listen an address of this machine that the swarm's nodes reach",
                farm.controller
            );
        }
        if self.swarm_engines.len() > MAX_ENGINES {
            bail!(
                "--swarm-engine is given {} times; at most {MAX_ENGINES}",
                self.swarm_engines.len()
            );
        }
        let manager = swarm::connect(&self.swarm_manager).await?;
        swarm::check_manager(&manager, &self.swarm_manager).await?;
        let mut others = Vec::with_capacity(self.swarm_engines.len());
        for address in &self.swarm_engines {
            others.push(swarm::connect(address).await?);
        }
        let unreached = swarm::nodes_beyond(&manager, &others).await?;
        if !unreached.is_empty() {
            eprintln!(
                "farm: warning: the server image goes only to the manager and the --swarm-engine engines, and nothing is pulled, so tasks placed on {} will fail; give their engines with --swarm-engine, or keep servers off them with --swarm-constraint",
                unreached.join(", ")
            );
        }
        let binary = farm.docker.binary()?;
        let image_id = swarm::spread_image(&manager, &others, &binary).await?;
        let config = SwarmRuntimeConfig {
            prefix: farm.docker.name_prefix.clone(),
            image_id,
            controller_url: format!("http://{}", farm.controller),
            base_port: farm.base_port,
            cpus: farm.docker.cpus,
            memory_mb: farm.docker.memory_mb,
            constraints: self.swarm_constraints.clone(),
            token: Some(farm.token),
            allow_fault_headers: farm.allow_fault_headers,
            trace_env: farm_telemetry::child_env(Some(farm.controller.ip())),
        };
        swarm::ensure_network(&manager, &config).await?;
        Ok(SwarmRuntime::new(manager, config, registry))
    }
}

/// `farm down --runtime swarm`: removes farm `prefix`'s services and network from the swarm
/// that `manager` manages.
pub(crate) async fn down(manager: &str, prefix: &str) -> anyhow::Result<ExitCode> {
    let docker = swarm::connect(manager).await?;
    swarm::check_manager(&docker, manager).await?;
    let removed = swarm::down(&docker, prefix).await?;
    println!(
        "farm: removed {} services and {} networks of farm {prefix:?}",
        removed.services.len(),
        removed.networks.len(),
    );
    Ok(ExitCode::SUCCESS)
}
