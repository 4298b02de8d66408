//! What a server's container is: the agent's command line, labels that mark it as the farm's,
//! a CPU and memory limit, a health check (the binary probes itself: a scratch image has no
//! curl), an `unless-stopped` restart policy, and its node port published on the host.

use std::collections::HashMap;
use std::net::SocketAddr;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};

use crate::runtime::AgentCommand;

use super::{
    DockerRuntimeConfig, HEALTH_INTERVAL_SECONDS, HEALTH_RETRIES, HEALTH_TIMEOUT_SECONDS,
    LABEL_FARM, LABEL_SERVER_ID, Making, NODE_PORT,
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
    ContainerCreateBody {
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
        env: Some(
            config
                .token
                .iter()
                .map(|token| format!("{}={}", farm_proto::auth::TOKEN_ENV, token.as_str()))
                .chain(making.trace_env.iter().map(|(k, v)| format!("{k}={v}")))
                .collect(),
        ),
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
    }
}
