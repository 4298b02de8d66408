//! The farm's contract, generated from `proto/farm/v1/*.proto`, the single source of truth.
//!
//! # Layout
//! - [`v1`]: the `farm.v1` package: the agent stream (`AgentService`) and the public farm API
//!   (`FarmService`), with tonic clients and servers for both.
//! - [`limits`]: every bound a client can hit, defined once and used by every crate.
//! - [`auth`]: the farm's token and how it travels (a bearer token).
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
