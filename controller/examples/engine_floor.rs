//! The Docker engine's own floor for a farm: create and start N containers of the farm's
//! image that do nothing but idle (a bare node app: no agent, no health check), through the
//! same API calls (`create`, then `start`) at the same concurrency as the docker runtime
//! uses, with the same engine-side setup (a user bridge network, CPU and memory limits, the
//! node port published on loopback), and report the wall time. What the farm takes beyond
//! this is its own doing. `bench/docker.sh` runs it beside `farm up --runtime docker`.
//!
//! Usage: `engine_floor IMAGE COUNT CONCURRENCY BASE_PORT` (removes what it made afterwards).

use std::sync::Arc;
use std::time::Instant;

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use tokio::task::JoinSet;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, image, count, concurrency, base_port] = args.as_slice() else {
        return Err("usage: engine_floor IMAGE COUNT CONCURRENCY BASE_PORT".into());
    };
    let count: u32 = count.parse()?;
    let base_port: u32 = base_port.parse()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.parse()?));
    let docker = farm_controller::runtime::docker::connect().await?;
    let prefix = format!("floor-{}", std::process::id());
    let network = format!("{prefix}-net");
    docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".into()),
            ..NetworkCreateRequest::default()
        })
        .await?;

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 1..=count {
        let (docker, slots, image, network) = (
            docker.clone(),
            slots.clone(),
            image.clone(),
            network.clone(),
        );
        let name = format!("{prefix}-{i}");
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            let body = ContainerCreateBody {
                image: Some(image),
                cmd: Some(vec![
                    "node".into(),
                    "--id".into(),
                    i.to_string(),
                    "--listen".into(),
                    "0.0.0.0:8000".into(),
                ]),
                exposed_ports: Some(vec!["8000/tcp".into()]),
                host_config: Some(HostConfig {
                    nano_cpus: Some(500_000_000),
                    memory: Some(256 << 20),
                    network_mode: Some(network),
                    port_bindings: Some(HashMap::from([(
                        "8000/tcp".to_string(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some((base_port + i).to_string()),
                        }]),
                    )])),
                    ..HostConfig::default()
                }),
                ..ContainerCreateBody::default()
            };
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            docker.create_container(Some(options), body).await?;
            docker.start_container(&name, None).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    let mut failures = 0;
    while let Some(done) = tasks.join_next().await {
        if !matches!(done, Ok(Ok(()))) {
            failures += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "engine floor: {count} containers created and started in {:.2} s ({failures} failures)",
        elapsed.as_secs_f64()
    );

    let mut removals = JoinSet::new();
    for i in 1..=count {
        let (docker, name) = (docker.clone(), format!("{prefix}-{i}"));
        removals.spawn(async move {
            let _ = docker
                .remove_container(
                    &name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
        });
    }
    while removals.join_next().await.is_some() {}
    docker.remove_network(&network).await?;
    Ok(())
}
