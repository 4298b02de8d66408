//! The bounds of everything a client can ask a node for.
//!
//! Every size, duration and count that arrives in a request is checked against one of
//! these before anything happens; a value outside gets a 400 naming the field and
//! changes nothing. `farm-proto` mirrors the load bounds for the controller's API.

/// Largest `memory_mb` a simulated load may hold (1 GiB).
pub const MAX_LOAD_MEMORY_MB: u32 = 1024;

/// Shortest `duration_seconds` of a simulated load.
pub const MIN_LOAD_DURATION_SECONDS: u32 = 1;

/// Longest `duration_seconds` of a simulated load (5 minutes).
pub const MAX_LOAD_DURATION_SECONDS: u32 = 300;

/// Highest `cpu_percent` per available core (`cpu_percent` is a percentage of one core,
/// so the bound for the whole node is this times `std::thread::available_parallelism`).
pub const MAX_LOAD_CPU_PERCENT_PER_CORE: f64 = 100.0;

/// Longest delay `/slow-endpoint` accepts for `delay_ms`, `min_ms` and `max_ms` (30 s).
pub const MAX_DELAY_MS: u64 = 30_000;

/// Largest payload `/data/{size_kb}` serves, in KiB (10 MiB).
pub const MAX_DATA_KB: u32 = 10 * 1024;

/// Largest request body the node reads (64 KiB): only `POST /simulate-load` has a body,
/// and it is a few dozen bytes.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;
