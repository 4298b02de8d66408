//! Takes a server's metrics sample: CPU and memory of the node and agent processes from
//! `/proc`, request figures from the node's own `/metrics`.
//!
//! Memory is reported as what the server costs the machine: the proportional set size (PSS)
//! of its processes, which divides the pages of the one shared `farm` binary among every
//! process that maps it. The resident size (RSS), which counts those pages in full in each,
//! is reported beside it.
//!
//! In the process runtime a server is these two processes. In a container the server is the
//! container: its cgroup's CPU, memory, limits, pids and block I/O, and its network
//! namespace's traffic, replace the sums over the two processes.

use std::time::{Duration, Instant};

use farm_node_api::client::NodeClient;
use farm_node_api::proc::{self, CpuMeter};
use farm_proto::v1::{self as pb, MetricsSample};

use crate::cgroup::{self, Cgroup, CgroupSample};
use crate::supervisor::{NodeState, NodeStatus};

/// How long the node's `/metrics` may take before the sample goes without it.
const METRICS_TIMEOUT: Duration = Duration::from_millis(500);

pub(crate) use farm_proto::now_ms;

/// Remembers the previous readings that CPU percentages are computed against.
pub(crate) struct Sampler {
    client: NodeClient,
    node_address: String,
    node_cpu: CpuMeter,
    node_pid: Option<u32>,
    agent_cpu: CpuMeter,
    /// The container's cgroup, when the server is a container.
    container: Option<Cgroup>,
    /// The container's CPU use, from its cgroup's counter.
    container_cpu: CpuMeter,
}

impl Sampler {
    pub(crate) fn new(node_address: String, container: Option<Cgroup>) -> Self {
        Self {
            client: NodeClient::new(),
            node_address,
            node_cpu: CpuMeter::new(),
            node_pid: None,
            agent_cpu: CpuMeter::new(),
            container,
            container_cpu: CpuMeter::new(),
        }
    }

    /// The client used to reach the node, shared with the commands.
    pub(crate) fn client(&self) -> &NodeClient {
        &self.client
    }

    /// Where the node listens.
    pub(crate) fn node_address(&self) -> &str {
        &self.node_address
    }

    /// Takes one sample now.
    pub(crate) async fn sample(&mut self, node: &NodeStatus) -> MetricsSample {
        let mut sample = MetricsSample {
            timestamp_ms: now_ms(),
            node_state: node_state(node.state).into(),
            node_restarts: node.restarts,
            cpu_limit_cores: 0.0,
            ..MetricsSample::default()
        };

        let mut pids = 0;
        if let Ok(agent) = proc::sample_self() {
            sample.cpu_percent += self.agent_cpu.update(&agent, Instant::now()).unwrap_or(0.0);
            sample.memory_resident_bytes += agent.rss_bytes;
            sample.memory_bytes += proc::proportional_memory_self().unwrap_or(agent.rss_bytes);
            sample.disk_read_bytes += agent.read_bytes;
            sample.disk_write_bytes += agent.write_bytes;
            pids += 1;
        }
        if self.node_pid != node.pid {
            // A new process: its CPU time starts from zero again.
            self.node_cpu = CpuMeter::new();
            self.node_pid = node.pid;
        }
        if let Some(Ok(reading)) = node.pid.map(proc::sample) {
            let cpu = self
                .node_cpu
                .update(&reading, Instant::now())
                .unwrap_or(0.0);
            let proportional = node
                .pid
                .and_then(|pid| proc::proportional_memory(pid).ok())
                .unwrap_or(reading.rss_bytes);
            sample.node_cpu_percent = cpu;
            sample.node_memory_bytes = proportional;
            sample.cpu_percent += cpu;
            sample.memory_bytes += proportional;
            sample.memory_resident_bytes += reading.rss_bytes;
            sample.disk_read_bytes += reading.read_bytes;
            sample.disk_write_bytes += reading.write_bytes;
            pids += 1;
        }
        sample.pids = pids;
        if let Some(cgroup) = &self.container {
            match cgroup.sample() {
                Ok(c) => self.apply_container(&mut sample, &c),
                Err(e) => tracing::warn!(error = %e, "Cannot read the container's cgroup."),
            }
        }

        if node.pid.is_some()
            && node.state != NodeState::Paused
            && let Ok(m) = self
                .client
                .metrics(&self.node_address, METRICS_TIMEOUT)
                .await
        {
            sample.requests_total = m.requests_total;
            sample.connections_open = m.connections_open;
            sample.connections_refused_total = m.connections_refused_total;
            sample.errors_total = m.errors_total;
            sample.in_flight = m.in_flight;
            sample.latency_p50_ms = m.latency_p50_ms;
            sample.latency_p99_ms = m.latency_p99_ms;
            sample.node_uptime_seconds = m.uptime_seconds;
            if self.container.is_none() {
                // Outside a container there is no network of the server's own: count the
                // HTTP bytes the node served instead.
                sample.net_rx_bytes = m.http_rx_bytes;
                sample.net_tx_bytes = m.http_tx_bytes;
            }
            sample.simulating_load = m.simulated_load.is_some();
        }
        sample
    }
}

impl Sampler {
    /// Replaces the two-process figures with the container's own.
    fn apply_container(&mut self, sample: &mut MetricsSample, c: &CgroupSample) {
        if let Some(percent) = self
            .container_cpu
            .update_nanos(c.cpu_usage_ns, Instant::now())
        {
            sample.cpu_percent = percent;
        }
        sample.cpu_limit_cores = c.cpu_limit_cores.unwrap_or(0.0);
        sample.memory_bytes = c.memory_bytes;
        sample.memory_resident_bytes = 0;
        sample.memory_limit_bytes = c.memory_limit_bytes.unwrap_or(0);
        sample.pids = c.pids;
        sample.disk_read_bytes = c.read_bytes;
        sample.disk_write_bytes = c.write_bytes;
        (sample.net_rx_bytes, sample.net_tx_bytes) = cgroup::network_bytes();
    }
}

fn node_state(state: NodeState) -> pb::NodeState {
    match state {
        NodeState::Starting => pb::NodeState::Starting,
        NodeState::Running => pb::NodeState::Running,
        NodeState::Stopped => pb::NodeState::Stopped,
        NodeState::Crashed => pb::NodeState::Crashed,
        NodeState::Unhealthy => pb::NodeState::Unhealthy,
        NodeState::Paused => pb::NodeState::Paused,
    }
}
