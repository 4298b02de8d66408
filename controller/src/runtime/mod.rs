//! Runtimes: where the farm's servers live. Each one starts servers, keeps them alive (its
//! restart policy) and removes them all on shutdown. `process` (local processes) is the
//! default; the docker runtime joins it behind the same shape.

pub mod process;

pub use process::{ProcessRuntime, ProcessRuntimeConfig};

/// The name of server `id`.
pub fn server_name(id: u32) -> String {
    format!("server-{id}")
}
