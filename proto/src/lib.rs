//! The farm's contract, generated from `proto/farm/v1/*.proto`, the single source of truth.
//!
//! # Layout
//! - [`v1`]: the `farm.v1` package: the agent stream (`AgentService`) and the public farm API
//!   (`FarmService`), with tonic clients and servers for both.
//! - [`limits`]: every bound a client can hit, defined once and used by every crate.
//! - [`auth`]: the farm's token and how it travels (a bearer token).
//! - [`tls`]: TLS on the controller's gRPC port, for the controller and its clients.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, served by gRPC reflection so that
//!   `grpcurl` works without the proto files.
//!
//! Domain types live in the crates that use them; they convert from and to these messages at
//! their edges.

/// The `farm.v1` package.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("farm.v1");
}

/// The encoded `FileDescriptorSet` of every farm proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("farm_descriptor");

pub mod auth;
pub mod limits;
pub mod tls;

/// Milliseconds since the Unix epoch now: the clock of every `*_ms` time the contract carries
/// (samples, expiry times). A clock before the epoch reads as 0.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl v1::command::Action {
    /// The command's name, as traces and logs show it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SimulateLoad(_) => "simulate_load",
            Self::NodeAction(_) => "node_action",
            Self::SetSampleIntervalMs(_) => "set_sample_interval",
            Self::SetFaults(_) => "set_faults",
        }
    }
}

impl v1::FaultProfile {
    /// The kinds of fault it holds, in the contract's order (`latency`, `abort`, ...).
    pub fn kinds(&self) -> Vec<&'static str> {
        [
            ("latency", self.latency.is_some()),
            ("abort", self.abort.is_some()),
            ("hang", self.hang.is_some()),
            ("throughput", self.throughput.is_some()),
            ("connection", self.connection.is_some()),
            ("rate_limit", self.rate_limit.is_some()),
            ("health", self.health.is_some()),
            ("readiness", self.readiness.is_some()),
            ("partition", self.partition.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, set)| set.then_some(kind))
        .collect()
    }
}

impl v1::ScenarioState {
    /// The state in one lowercase word, as the CLI and the history say it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::Error => "error",
            Self::Unspecified => "unknown",
        }
    }
}

impl v1::RunLoadTestResponse {
    /// Where the run stands in one word: "running", "finished", or why it stopped early
    /// ("cancelled").
    pub fn state(&self) -> &str {
        match (self.done, self.stopped_reason.as_str()) {
            (false, _) => "running",
            (true, "") => "finished",
            (true, reason) => reason,
        }
    }
}

/// Where a server's node can be reached from this machine, from the `node_address` its agent
/// reported: `None` while it has no port yet (the kernel has not picked one); a node listening
/// on every interface is reached over loopback. What balancer configs and scrape targets name.
pub fn reachable_node_address(node_address: &str) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let mut address: SocketAddr = node_address.parse().ok()?;
    if address.port() == 0 {
        return None;
    }
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Some(address)
}
