//! `farm-node-api`: the node's HTTP API as its clients see it.
//!
//! The agent, the controller, the gateway and the node itself all speak to or as a node; this
//! crate is what they share, so that none of them depends on the node server to do so.
//!
//! # Layout
//! - [`api`]: the JSON bodies of every route, `/metrics` ([`api::NodeMetrics`]) included,
//!   shared by the server and its clients so both sides agree on the wire format.
//! - [`client`]: [`NodeClient`](client::NodeClient), the typed HTTP client for a node: probes
//!   that leave the node's counters alone, and ordinary requests that count.
//! - [`faults`]: the fault profile an agent hands its node over the node's standard input.
//! - [`proc`]: reading a process's CPU time, memory and I/O from `/proc`, the same way in the
//!   node (its own figures) and in the agent (the processes it runs).
//!
//! The bounds of what a client may ask a node for are part of the farm's contract and live in
//! `farm_proto::limits`.

pub mod api;
pub mod client;
pub mod faults;
pub mod proc;

/// Requests carrying this header (any value) are probes: the agent scraping `/metrics`
/// and the controller checking `/health` every second. They are served normally but left
/// out of every counter (requests, errors, latencies, in-flight, bytes), so that watching a
/// node does not change what is watched.
pub const PROBE_HEADER: &str = "x-farm-probe";

/// Every answer a node sends carries this header, its server's id in decimal (`x-farm-server:
/// 7`): whatever stands in front of the farm, a load balancer most of all, can then be
/// attributed, request by request, to the server that answered. Only the answers hyper
/// writes on its own, to a request it cannot parse, go without it.
pub const SERVER_HEADER: &str = "x-farm-server";
