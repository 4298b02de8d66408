//! The farm's overlay network, and `farm down` for a swarm farm: everything labelled as a
//! farm's is found again by its labels and removed, and nothing else on the swarm is touched.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as ApiError;
use bollard::models::{NetworkCreateRequest, Service, Task};
use bollard::query_parameters::{
    ListNetworksOptionsBuilder, ListServicesOptions, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder,
};

use super::{LABEL_FARM, LABEL_SERVER_ID, SwarmError, api};
use crate::runtime::docker::farm_filter;

/// How long `down` waits for the removed services' tasks to stop before it removes the
/// network they are attached to.
pub(super) const TASKS_GONE_WITHIN: Duration = Duration::from_secs(30);

/// Whether `labels` name farm `prefix` as their owner.
pub(super) fn is_ours(labels: Option<&HashMap<String, String>>, prefix: &str) -> bool {
    labels
        .and_then(|l| l.get(LABEL_FARM))
        .is_some_and(|v| v == prefix)
}

fn not_found(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Creates the farm's attachable overlay network unless it exists.
pub async fn ensure_network(docker: &Docker, prefix: &str) -> Result<(), SwarmError> {
    let name = super::network_name(prefix);
    match docker.inspect_network(&name, None).await {
        Ok(network) if is_ours(network.labels.as_ref(), prefix) => return Ok(()),
        Ok(_) => {
            return Err(SwarmError::NameTaken {
                kind: "network",
                name,
            });
        }
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(api(format!("inspect network {name}"))(e)),
    }
    docker
        .create_network(NetworkCreateRequest {
            name: name.clone(),
            driver: Some("overlay".into()),
            // Attachable: tools and test agents may join it as plain containers.
            attachable: Some(true),
            labels: Some(HashMap::from([(
                LABEL_FARM.to_string(),
                prefix.to_string(),
            )])),
            ..Default::default()
        })
        .await
        .map_err(api(format!("create network {name}")))?;
    Ok(())
}

/// Every service labelled as farm `prefix`'s.
pub(super) async fn farm_services(
    docker: &Docker,
    prefix: &str,
) -> Result<Vec<Service>, SwarmError> {
    docker
        .list_services(Some(
            ListServicesOptionsBuilder::default()
                .filters(&farm_filter(prefix))
                .build(),
        ))
        .await
        .map_err(api("list services"))
}

/// Every task of a service labelled as farm `prefix`'s (the engine matches a task by its
/// service's labels).
pub(super) async fn farm_tasks(docker: &Docker, prefix: &str) -> Result<Vec<Task>, SwarmError> {
    docker
        .list_tasks(Some(
            ListTasksOptionsBuilder::default()
                .filters(&farm_filter(prefix))
                .build(),
        ))
        .await
        .map_err(api("list tasks"))
}

/// The server id a service of the farm carries in its [`LABEL_SERVER_ID`].
pub(super) fn server_id(service: &Service) -> Option<u32> {
    service
        .spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(LABEL_SERVER_ID)?
        .parse()
        .ok()
}

/// Removes service `name`; one already gone counts as removed.
pub(super) async fn remove_service(docker: &Docker, name: &str) -> Result<(), SwarmError> {
    match docker.delete_service(name).await {
        Ok(()) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(api(format!("remove service {name}"))(e)),
    }
}

/// Removes services of farm `prefix` left with names in `wanted` (a farm that crashed);
/// refuses when a name belongs to a service that is not this farm's. One listing of the
/// swarm's services, however many names.
pub(super) async fn clear_services(
    docker: &Docker,
    prefix: &str,
    wanted: &HashSet<String>,
) -> Result<(), SwarmError> {
    let services = docker
        .list_services(None::<ListServicesOptions>)
        .await
        .map_err(api("list services"))?;
    for spec in services.into_iter().filter_map(|s| s.spec) {
        let Some(name) = spec.name.filter(|n| wanted.contains(n)) else {
            continue;
        };
        if !is_ours(spec.labels.as_ref(), prefix) {
            return Err(SwarmError::NameTaken {
                kind: "service",
                name,
            });
        }
        remove_service(docker, &name).await?;
    }
    Ok(())
}

/// Removes the services of farm `prefix` that `which` picks, and waits up to `within` for
/// their tasks to stop. Returns the services removed.
pub(super) async fn remove_services(
    docker: &Docker,
    prefix: &str,
    which: impl Fn(&Service) -> bool,
    within: Duration,
) -> Result<Vec<Service>, SwarmError> {
    let mut removed = Vec::new();
    for service in farm_services(docker, prefix).await? {
        if !which(&service) {
            continue;
        }
        let Some(name) = service.spec.as_ref().and_then(|s| s.name.clone()) else {
            continue;
        };
        remove_service(docker, &name).await?;
        removed.push(service);
    }
    let deadline = tokio::time::Instant::now() + within;
    let removed_ids: Vec<&String> = removed.iter().filter_map(|s| s.id.as_ref()).collect();
    while !removed_ids.is_empty() && tokio::time::Instant::now() < deadline {
        // Matched by service here: a filter by service fails once the service is gone.
        let tasks = farm_tasks(docker, prefix).await?;
        if !tasks.iter().any(|t| {
            t.service_id
                .as_ref()
                .is_some_and(|s| removed_ids.contains(&s))
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(removed)
}

/// The name of a service.
pub(super) fn service_name_of(service: &Service) -> String {
    service
        .spec
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_default()
}

/// What `down` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Service names.
    pub services: Vec<String>,
    /// Network names.
    pub networks: Vec<String>,
    /// Secret names.
    pub secrets: Vec<String>,
}

/// Removes every service, secret and network labelled as farm `prefix`'s, and nothing else. The
/// controller's service goes first, its task let stop, so that it drives nothing while the
/// rest goes: the servers' services next, then the secrets, and the network once every task has
/// stopped (a network with tasks attached cannot be removed), at most [`TASKS_GONE_WITHIN`]
/// later.
pub async fn down(docker: &Docker, prefix: &str) -> Result<Removed, SwarmError> {
    let mut services = remove_services(
        docker,
        prefix,
        super::controller::is_controller,
        super::controller::STOP_GRACE + TASKS_GONE_WITHIN,
    )
    .await?;
    services.extend(remove_services(docker, prefix, |_| true, TASKS_GONE_WITHIN).await?);
    let mut removed = Removed {
        services: services.iter().map(service_name_of).collect(),
        networks: Vec::new(),
        secrets: Vec::new(),
    };
    // The network goes even when a secret does not; the secret's error is said after.
    let secrets = super::secrets::remove_all(docker, prefix).await;
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&farm_filter(prefix))
                .build(),
        ))
        .await
        .map_err(api("list networks"))?;
    for network in networks {
        let Some(name) = network.name else { continue };
        let mut attempt = 0;
        loop {
            match docker.remove_network(&name).await {
                Ok(()) => break,
                Err(e) if not_found(&e) => break,
                // The engine lets an overlay go a moment after its last task's endpoint.
                Err(_) if attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(api(format!("remove network {name}"))(e)),
            }
        }
        removed.networks.push(name);
    }
    removed.secrets = secrets?;
    removed.services.sort();
    removed.networks.sort();
    removed.secrets.sort();
    Ok(removed)
}
