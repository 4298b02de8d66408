//! What a server's container is: the agent's command line, labels that mark it as the farm's,
//! a CPU and memory limit, a health check (the binary probes itself: a scratch image has no
//! curl), an `unless-stopped` restart policy, and its node port published on the host. A label
//! holds a fingerprint of all of it, so that a farm that starts again can tell a container it
//! would make the same way (and adopts it) from one made otherwise (which it makes again).

use std::collections::HashMap;
use std::net::SocketAddr;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};

use crate::runtime::AgentCommand;

use super::{
    DockerRuntimeConfig, HEALTH_INTERVAL_SECONDS, HEALTH_RETRIES, HEALTH_TIMEOUT_SECONDS,
    LABEL_FARM, LABEL_SERVER_ID, LABEL_SPEC, Making, NODE_PORT,
};

/// The container of server `id`, whose node is published on `address`.
pub(super) fn container_spec(
    config: &DockerRuntimeConfig,
    making: &Making,
    id: u32,
    address: SocketAddr,
) -> ContainerCreateBody {
    let port_key = format!("{NODE_PORT}/tcp");
    let seconds = |s: i64| s * 1_000_000_000;
    let mut body = ContainerCreateBody {
        image: Some(making.image.clone()),
        cmd: Some(
            AgentCommand {
                id,
                controller_url: making.controller_url.clone(),
                node_listen: format!("0.0.0.0:{NODE_PORT}"),
                node_advertise: Some(address.to_string()),
                runtime: "docker",
                exit_with_parent: false,
                allow_fault_headers: config.allow_fault_headers,
            }
            .args(),
        ),
        env: Some(crate::runtime::container_env(
            config.token.as_ref(),
            &making.trace_env,
        )),
        labels: Some(HashMap::from([
            (LABEL_FARM.to_string(), config.prefix.clone()),
            (LABEL_SERVER_ID.to_string(), id.to_string()),
        ])),
        exposed_ports: Some(vec![port_key.clone()]),
        healthcheck: Some(HealthConfig {
            test: Some(vec![
                "CMD".into(),
                "/farm".into(),
                "probe".into(),
                format!("127.0.0.1:{NODE_PORT}"),
            ]),
            interval: Some(seconds(HEALTH_INTERVAL_SECONDS)),
            timeout: Some(seconds(HEALTH_TIMEOUT_SECONDS)),
            retries: Some(HEALTH_RETRIES),
            start_period: Some(seconds(2)),
            start_interval: None,
        }),
        host_config: Some(HostConfig {
            nano_cpus: Some((config.cpus * 1e9) as i64),
            memory: Some(i64::try_from(config.memory_mb << 20).unwrap_or(i64::MAX)),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            port_bindings: Some(HashMap::from([(
                port_key,
                Some(vec![PortBinding {
                    host_ip: Some(address.ip().to_string()),
                    host_port: Some(address.port().to_string()),
                }]),
            )])),
            network_mode: Some(config.network_name()),
            ..HostConfig::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                config.network_name(),
                EndpointSettings {
                    aliases: Some(vec![format!("server-{id}")]),
                    ..EndpointSettings::default()
                },
            )])),
        }),
        ..ContainerCreateBody::default()
    };
    let fingerprint = fingerprint(&body);
    if let Some(labels) = body.labels.as_mut() {
        labels.insert(LABEL_SPEC.to_string(), fingerprint);
    }
    body
}

/// What makes two containers of a server the same: the image, the command line (controller,
/// id, addresses), the environment (the token among it), the limits, the published address,
/// the network and the health check. Hashed from plain values in a fixed order (the body's
/// maps iterate in no fixed order); the same binary gives the same hash in every process.
fn fingerprint(body: &ContainerCreateBody) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.image.hash(&mut hasher);
    body.cmd.hash(&mut hasher);
    body.env.hash(&mut hasher);
    if let Some(check) = &body.healthcheck {
        (&check.test, check.interval, check.timeout, check.retries).hash(&mut hasher);
    }
    if let Some(host) = &body.host_config {
        (host.nano_cpus, host.memory, &host.network_mode).hash(&mut hasher);
        let mut bindings: Vec<_> = host
            .port_bindings
            .iter()
            .flatten()
            .flat_map(|(port, to)| {
                to.iter()
                    .flatten()
                    .map(move |b| (port.clone(), b.host_ip.clone(), b.host_port.clone()))
            })
            .collect();
        bindings.sort();
        bindings.hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::PathBuf;

    use super::*;

    fn config() -> DockerRuntimeConfig {
        DockerRuntimeConfig {
            prefix: "farm".into(),
            binary: PathBuf::new(),
            controller_port: 50051,
            publish_host: IpAddr::from([127, 0, 0, 1]),
            base_port: 9000,
            cpus: 0.5,
            memory_mb: 64,
            concurrency: 1,
            token: None,
            allow_fault_headers: false,
        }
    }

    fn making_for(controller_url: &str) -> Making {
        Making {
            image: "farm-server:test".into(),
            controller_url: controller_url.into(),
            trace_env: Vec::new(),
        }
    }

    fn spec_label(config: &DockerRuntimeConfig, making: &Making, id: u32) -> String {
        let address = config.node_address(id).unwrap();
        let body = container_spec(config, making, id, address);
        body.labels.unwrap()[LABEL_SPEC].clone()
    }

    #[test]
    fn the_fingerprint_tells_a_container_made_the_same_way_from_one_made_otherwise() {
        let (config, making) = (config(), making_for("http://172.18.0.1:50051"));
        let first = spec_label(&config, &making, 1);
        assert_eq!(first, spec_label(&config, &making, 1), "stable");
        assert_ne!(first, spec_label(&config, &making, 2), "another server");
        let other_controller = making_for("http://172.18.0.1:50052");
        assert_ne!(first, spec_label(&config, &other_controller, 1));
        let mut limited = config.clone();
        limited.memory_mb = 128;
        assert_ne!(first, spec_label(&limited, &making, 1), "other limits");
        let mut published = config.clone();
        published.base_port = 9100;
        assert_ne!(first, spec_label(&published, &making, 1), "another port");
    }
}
