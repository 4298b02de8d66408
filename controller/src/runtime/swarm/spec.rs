//! What a server's service is: one replica of the agent and its node, on the farm's overlay
//! under the alias `server-N`, its node port published in host mode, CPU and memory limits,
//! placement constraints when given, and the engine's restart policy.

use std::collections::HashMap;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, Limit, NetworkAttachmentConfig, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use crate::runtime::AgentCommand;

use super::{LABEL_FARM, LABEL_SERVER_ID, NODE_PORT, SwarmRuntimeConfig};

/// Nanoseconds in a second, the unit of the swarm's durations.
const SECOND_NS: i64 = 1_000_000_000;

/// A replicated service's mode with `replicas` tasks.
pub(super) fn replicated(replicas: i64) -> ServiceSpecMode {
    ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated {
            replicas: Some(replicas),
        }),
        ..Default::default()
    }
}

/// A server task's environment: the farm's token, the trace exporter's settings, and where
/// the CA it trusts is.
fn env(config: &SwarmRuntimeConfig) -> Vec<String> {
    let mut env = crate::runtime::container_env(config.token.as_ref(), &config.trace_env);
    if let Some(ca) = &config.tls_ca {
        env.push(format!(
            "{}={}",
            farm_proto::tls::CA_ENV,
            ca.file.path_in_task()
        ));
    }
    env
}

/// The service of server `id`.
pub(super) fn service_spec(config: &SwarmRuntimeConfig, id: u32) -> ServiceSpec {
    let labels = HashMap::from([
        (LABEL_FARM.to_string(), config.prefix.clone()),
        (LABEL_SERVER_ID.to_string(), id.to_string()),
    ]);
    // Checked when the server was started.
    let published = config.published_port(id).ok().flatten().map(i64::from);
    ServiceSpec {
        name: Some(config.service_name(id)),
        labels: Some(labels.clone()),
        mode: Some(replicated(1)),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                // By ID: a worker never tries to pull an image named by its ID.
                image: Some(config.image_id.clone()),
                labels: Some(labels),
                args: Some(
                    AgentCommand {
                        id,
                        controller_url: config.controller_url.clone(),
                        node_listen: format!("0.0.0.0:{NODE_PORT}"),
                        node_advertise: Some(SwarmRuntimeConfig::node_address(id)),
                        runtime: "swarm",
                        exit_with_parent: false,
                        allow_fault_headers: config.allow_fault_headers,
                    }
                    .args(),
                ),
                env: Some(env(config)),
                secrets: config.tls_ca.as_ref().map(|ca| vec![ca.for_task()]),
                stop_grace_period: Some(2 * SECOND_NS),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: Some((config.cpus * 1e9) as i64),
                    memory_bytes: Some(i64::try_from(config.memory_mb << 20).unwrap_or(i64::MAX)),
                    pids: None,
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(SECOND_NS / 4),
                max_attempts: None,
                window: None,
            }),
            // No spread preference: a one-replica service has nothing to spread, and the
            // scheduler already puts each new task on the node with the fewest tasks.
            placement: (!config.constraints.is_empty()).then(|| TaskSpecPlacement {
                constraints: Some(config.constraints.clone()),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(config.network_name()),
                aliases: Some(vec![crate::runtime::server_name(id)]),
                driver_opts: None,
            }]),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            // No IPVS here: no virtual IP, and ports published on the node that runs the task.
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(vec![EndpointPortConfig {
                name: None,
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(i64::from(NODE_PORT)),
                published_port: published,
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            }]),
        }),
        ..Default::default()
    }
}
