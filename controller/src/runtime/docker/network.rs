//! The farm's own bridge network, and `farm down`: everything labelled as a farm's is found
//! again by its labels and removed, and nothing else on the engine is touched.

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::Docker;
use bollard::errors::Error as ApiError;
use bollard::models::{
    EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
};
use tokio::task::JoinSet;

use super::{DockerError, DockerRuntimeConfig, LABEL_FARM, api};

/// The engine's filter for everything labelled as farm `prefix`'s (containers, networks,
/// swarm services).
pub(crate) fn farm_filter(prefix: &str) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([("label", vec![format!("{LABEL_FARM}={prefix}")])])
}

/// Creates the farm's network unless it exists; returns the host's address on it, which is
/// where containers reach the controller.
pub async fn ensure_network(
    docker: &Docker,
    config: &DockerRuntimeConfig,
) -> Result<IpAddr, DockerError> {
    let name = config.network_name();
    let existing = match docker.inspect_network(&name, None).await {
        Ok(network) => Some(network),
        Err(ApiError::DockerResponseServerError {
            status_code: 404, ..
        }) => None,
        Err(e) => return Err(api(format!("inspect network {name}"))(e)),
    };
    let network = match existing {
        Some(network) => {
            let ours = network
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_FARM))
                .is_some_and(|v| *v == config.prefix);
            if !ours {
                return Err(DockerError::NameTaken {
                    kind: "network",
                    name,
                });
            }
            network
        }
        None => {
            docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(HashMap::from([(
                        LABEL_FARM.to_string(),
                        config.prefix.clone(),
                    )])),
                    ..NetworkCreateRequest::default()
                })
                .await
                .map_err(api(format!("create network {name}")))?;
            docker
                .inspect_network(&name, None)
                .await
                .map_err(api(format!("inspect network {name}")))?
        }
    };
    network
        .ipam
        .and_then(|ipam| ipam.config)
        .into_iter()
        .flatten()
        .find_map(|c| c.gateway.and_then(|g| g.parse::<IpAddr>().ok()))
        .ok_or_else(|| DockerError::Binary(format!("network {name} has no IPv4 gateway")))
}

/// The subnets of the farm's network (none when it cannot be inspected): a front on them
/// is on the farm's own network.
pub(super) async fn subnets(
    docker: &Docker,
    config: &DockerRuntimeConfig,
) -> Vec<crate::loadtest::front::Network> {
    let name = config.network_name();
    let Ok(network) = docker.inspect_network(&name, None).await else {
        tracing::warn!(network = %name, "The farm's network cannot be inspected; a front must be on loopback.");
        return Vec::new();
    };
    network
        .ipam
        .and_then(|ipam| ipam.config)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let subnet = c.subnet?;
            let (address, prefix) = subnet.split_once('/')?;
            Some(crate::loadtest::front::Network {
                address: address.parse().ok()?,
                prefix: prefix.parse().ok()?,
            })
        })
        .collect()
}

/// Cuts server `id`'s container off the farm's network (`cut`: a partition fault), or joins it
/// again under its service name. The container keeps running; with no network left, neither
/// the controller, nor the other servers, nor the load engine (through its published port)
/// reach it, and its agent's stream drops. Joining a container already on the network, or
/// cutting one already off, is not an error.
pub(super) async fn partition(
    docker: &Docker,
    config: &DockerRuntimeConfig,
    id: u32,
    cut: bool,
) -> Result<String, DockerError> {
    let network = config.network_name();
    let container = config.container_name(id);
    let result = if cut {
        docker
            .disconnect_network(
                &network,
                NetworkDisconnectRequest {
                    container: container.clone(),
                    force: Some(true),
                },
            )
            .await
    } else {
        docker
            .connect_network(
                &network,
                NetworkConnectRequest {
                    container: container.clone(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(vec![crate::runtime::server_name(id)]),
                        ..EndpointSettings::default()
                    }),
                },
            )
            .await
    };
    let already =
        |message: &str| message.contains("already exists") || message.contains("is not connected");
    match result {
        Ok(()) => {}
        Err(ApiError::DockerResponseServerError { message, .. }) if already(&message) => {}
        Err(e) => {
            let what = if cut { "disconnect" } else { "connect" };
            return Err(api(format!("{what} {container} and network {network}"))(e));
        }
    }
    Ok(if cut {
        format!("cut {container} off network {network}")
    } else {
        format!("joined {container} to network {network} again")
    })
}

/// What `farm down` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Container names.
    pub containers: Vec<String>,
    /// Network names.
    pub networks: Vec<String>,
}

/// Removes every container and network labelled as farm `prefix`'s, and nothing else.
///
/// The network goes first, its containers disconnected: a farm that still runs makes a
/// vanished server's container again only while its network is there, so it does not fight
/// `farm down`. A network that cannot go yet (a container joined it meanwhile) is removed
/// again once the containers are gone.
pub async fn down(docker: &Docker, prefix: &str) -> Result<Removed, DockerError> {
    let filters = farm_filter(prefix);
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(api("list networks"))?;
    let mut removed = Removed::default();
    let mut left = Vec::new();
    for network in networks {
        let Some(name) = network.name else { continue };
        if remove_network_now(docker, &name).await {
            removed.networks.push(name);
        } else {
            left.push(name);
        }
    }

    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(api("list containers"))?;
    let mut removals = JoinSet::new();
    for container in containers {
        let Some(id) = container.id else { continue };
        let name = container
            .names
            .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()))
            .unwrap_or_else(|| id.clone());
        let docker = docker.clone();
        removals.spawn(async move {
            let result = docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
            (name, result)
        });
    }
    while let Some(Ok((name, result))) = removals.join_next().await {
        match result {
            Ok(())
            | Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                removed.containers.push(name);
            }
            Err(e) => return Err(api(format!("remove container {name}"))(e)),
        }
    }
    for name in left {
        match docker.remove_network(&name).await {
            Ok(())
            | Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                removed.networks.push(name);
            }
            Err(e) => return Err(api(format!("remove network {name}"))(e)),
        }
    }
    removed.containers.sort();
    removed.networks.sort();
    Ok(removed)
}

/// Disconnects every container from network `name` and removes it; false when it is still
/// there.
async fn remove_network_now(docker: &Docker, name: &str) -> bool {
    let attached = match docker.inspect_network(name, None).await {
        Ok(network) => network.containers.unwrap_or_default(),
        Err(ApiError::DockerResponseServerError {
            status_code: 404, ..
        }) => return true,
        Err(_) => return false,
    };
    let mut disconnects = JoinSet::new();
    for container in attached.into_keys() {
        let (docker, name) = (docker.clone(), name.to_string());
        disconnects.spawn(async move {
            // A container that is gone, or left already, needs nothing more.
            let _ = docker
                .disconnect_network(
                    &name,
                    NetworkDisconnectRequest {
                        container,
                        force: Some(true),
                    },
                )
                .await;
        });
    }
    disconnects.join_all().await;
    matches!(
        docker.remove_network(name).await,
        Ok(())
            | Err(ApiError::DockerResponseServerError {
                status_code: 404,
                ..
            })
    )
}
