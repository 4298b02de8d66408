//! Every bound a client of the farm can hit, defined once.
//!
//! The node, the agent, the controller, the gateway and the command line all check requests
//! against these constants, and their messages format the constant rather than repeat a
//! number. The OpenAPI schema's ranges are built from them; the proto comments state the same
//! values for clients generated from the `.proto` files.
//!
//! A value past a bound is refused with a message naming the field, and nothing changes.

// ---- Defaults of fields left at 0 (proto) or out (REST) ---------------------------------

/// A load test's per-request timeout, in milliseconds.
pub const DEFAULT_LOAD_TIMEOUT_MS: u32 = 10_000;
/// A load test's concurrency.
pub const DEFAULT_CONCURRENCY: u32 = 10;
/// A broadcast's deadline, in milliseconds.
pub const DEFAULT_BROADCAST_TIMEOUT_MS: u32 = 5_000;
/// A health check's probe timeout, in milliseconds.
pub const DEFAULT_HEALTH_TIMEOUT_MS: u32 = 1_000;
/// A simulated load's duration, in seconds.
pub const DEFAULT_LOAD_DURATION_SECONDS: u32 = 10;

// ---- The farm --------------------------------------------------------------------------

/// Most servers a farm may have (`farm up --servers`, `Scale`, `POST /api/scale`).
pub const MAX_SERVERS: u32 = 1000;
/// Largest server id an agent may claim.
pub const MAX_SERVER_ID: u32 = 1_000_000;
/// Longest server name, in bytes: it is echoed in every `/` and `/metrics` answer.
pub const MAX_SERVER_NAME_LEN: usize = 64;
/// Longest name or address an agent may send in its hello, in bytes.
pub const MAX_HELLO_FIELD_LEN: usize = 256;
/// Shortest farm token, in characters.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest farm token, in characters.
pub const MAX_TOKEN_LEN: usize = 256;
/// Shortest sample interval an agent accepts, in milliseconds.
pub const MIN_SAMPLE_INTERVAL_MS: u32 = 100;
/// Longest sample interval an agent accepts, in milliseconds.
pub const MAX_SAMPLE_INTERVAL_MS: u32 = 60_000;

/// Shortest coalescing interval a `Watch` stream may ask for, in milliseconds.
pub const MIN_WATCH_INTERVAL_MS: u32 = 50;
/// Longest coalescing interval a `Watch` stream may ask for, in milliseconds.
pub const MAX_WATCH_INTERVAL_MS: u32 = 1000;

// ---- Requests that name servers and node paths -------------------------------------------

/// Most server ids one request may list.
pub const MAX_TARGETS: usize = 10_000;
/// Longest node path, query included, in bytes.
pub const MAX_PATH_LEN: usize = 256;
/// Longest health probe, in milliseconds.
pub const MAX_HEALTH_TIMEOUT_MS: u32 = 10_000;

// ---- Simulated load on a node ----------------------------------------------------------

/// Most CPU a simulated load may ask the controller for, in percent of one core (64 cores);
/// each node refuses more than [`MAX_LOAD_CPU_PERCENT_PER_CORE`] times its cores.
pub const MAX_LOAD_CPU_PERCENT: f64 = 6400.0;
/// Highest `cpu_percent` per available core on one node (`cpu_percent` is a percentage of
/// one core, so the node's bound is this times its cores).
pub const MAX_LOAD_CPU_PERCENT_PER_CORE: f64 = 100.0;
/// Largest `memory_mb` a simulated load may hold (1 GiB).
pub const MAX_LOAD_MEMORY_MB: u32 = 1024;
/// Shortest `duration_seconds` of a simulated load.
pub const MIN_LOAD_DURATION_SECONDS: u32 = 1;
/// Longest `duration_seconds` of a simulated load (5 minutes).
pub const MAX_LOAD_DURATION_SECONDS: u32 = 300;

// ---- The node's own routes -------------------------------------------------------------

/// Longest delay `/slow-endpoint` accepts for `delay_ms`, `min_ms` and `max_ms` (30 s).
pub const MAX_DELAY_MS: u64 = 30_000;
/// Largest payload `/data/{size_kb}` serves, in KiB (10 MiB).
pub const MAX_DATA_KB: u32 = 10 * 1024;
/// Largest request body a node reads (64 KiB): only `POST /simulate-load` has a body, and
/// it is a few dozen bytes.
pub const MAX_NODE_REQUEST_BODY_BYTES: usize = 64 * 1024;

// ---- Fault profiles --------------------------------------------------------------------

/// Longest delay, jitter or latency percentile of a latency fault, in milliseconds (60 s).
pub const MAX_FAULT_DELAY_MS: u32 = 60_000;
/// Longest a hang fault holds a request, in milliseconds (10 minutes).
pub const MAX_HANG_MS: u32 = 600_000;
/// How long a hang fault holds a request when its `max_ms` is left at 0, in milliseconds.
pub const DEFAULT_HANG_MS: u32 = 60_000;
/// Fastest drip of a throughput fault, in bytes per second (1 GiB/s).
pub const MAX_THROUGHPUT_BYTES_PER_SECOND: u32 = 1 << 30;
/// Highest rate a rate-limit fault lets through, in requests per second.
pub const MAX_FAULT_RATE_PER_SECOND: u32 = 1_000_000;
/// Longest `Retry-After` a rate-limit fault sends, in seconds.
pub const MAX_RETRY_AFTER_SECONDS: u32 = 3600;
/// Most status codes in an abort fault's mix.
pub const MAX_ABORT_STATUSES: usize = 16;
/// Highest weight of one status code in an abort fault's mix.
pub const MAX_ABORT_WEIGHT: u32 = 1000;
/// Lowest status code a fault may answer (abort, rate limit, health).
pub const MIN_FAULT_STATUS: u16 = 400;
/// Highest status code a fault may answer.
pub const MAX_FAULT_STATUS: u16 = 599;
/// Longest a fault may last before it clears itself, in seconds (one day); 0 is until cleared.
pub const MAX_FAULT_DURATION_SECONDS: u32 = 86_400;
/// Longest path prefix that scopes a fault, in bytes.
pub const MAX_FAULT_PATH_PREFIX_LEN: usize = MAX_PATH_LEN;

// ---- Connections to a node or the gateway ----------------------------------------------

/// Most connections a node or the gateway holds at once by default; past it a new
/// connection is closed at once (and counted as refused).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Highest `--max-connections`.
pub const MAX_MAX_CONNECTIONS: usize = 65_536;
/// How long a connection may sit without a request in flight or arriving by default, in
/// milliseconds; a request sent so slowly that it never completes counts as idle.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Shortest `--idle-timeout-ms`.
pub const MIN_IDLE_TIMEOUT_MS: u64 = 100;
/// Longest `--idle-timeout-ms` (one hour).
pub const MAX_IDLE_TIMEOUT_MS: u64 = 3_600_000;

// ---- Load tests ------------------------------------------------------------------------

/// Most concurrent load-test workers.
pub const MAX_CONCURRENCY: u32 = 1000;
/// Most requests in one load test.
pub const MAX_TOTAL_REQUESTS: u64 = 10_000_000;
/// Highest open-model rate, in requests per second.
pub const MAX_RATE_PER_SECOND: f64 = 1_000_000.0;
/// Longest load test, in seconds.
pub const MAX_DURATION_SECONDS: u32 = 3600;
/// Longest per-request timeout of a load test, in milliseconds.
pub const MAX_TIMEOUT_MS: u32 = 60_000;
/// Most load tests started with `StartLoadTest` (`POST /api/load-tests`) running at once.
pub const MAX_DETACHED_LOAD_TESTS: usize = 4;
/// Longest load-test id the API looks up, in bytes.
pub const MAX_RUN_ID_LEN: usize = 64;
/// Most phases of one load test (or scenario).
pub const MAX_LOAD_PHASES: usize = 32;
/// Longest phase name, in bytes (visible ASCII).
pub const MAX_PHASE_NAME_LEN: usize = 64;
/// Shortest phase, in milliseconds.
pub const MIN_PHASE_MS: u32 = 100;
/// Runs on one page of `ListRuns`: by default, and at most.
pub const DEFAULT_RUNS_PAGE_SIZE: u32 = 20;
/// See [`DEFAULT_RUNS_PAGE_SIZE`].
pub const MAX_RUNS_PAGE_SIZE: u32 = 100;
/// Longest `ListRuns` page token, in bytes.
pub const MAX_PAGE_TOKEN_LEN: usize = 64;
/// Events in one `ListEvents` answer: by default, and at most.
pub const DEFAULT_EVENTS_LIMIT: u32 = 100;
/// See [`DEFAULT_EVENTS_LIMIT`].
pub const MAX_EVENTS_LIMIT: u32 = 1000;
/// Largest scenario file, in bytes.
pub const MAX_SCENARIO_SOURCE_BYTES: usize = 65_536;
/// Longest load test `POST /api/load-test` holds its HTTP request open for by default, in
/// seconds; `--max-load-test-seconds` sets it from 1 to [`MAX_DURATION_SECONDS`].
pub const DEFAULT_MAX_REST_LOAD_TEST_SECONDS: u32 = 300;

// ---- Load tests through a front (a load balancer) -----------------------------------------

/// Longest `front_url`, in bytes.
pub const MAX_FRONT_URL_LEN: usize = 256;
/// Most `weights` entries of a run through a front (one per server at most).
pub const MAX_BACKEND_WEIGHTS: usize = MAX_SERVERS as usize;
/// Largest weight of one server.
pub const MAX_BACKEND_WEIGHT: u32 = 256;
/// Most server-seconds a run's share timeline keeps (one per server that answered in a
/// second); past it the timeline stops and says so.
pub const MAX_SHARE_TIMELINE_CELLS: usize = 200_000;
/// Longest a failover drill keeps its server down, in milliseconds (an hour).
pub const MAX_FAILOVER_DOWN_MS: u32 = 3_600_000;

// ---- Broadcast -------------------------------------------------------------------------

/// Largest request body a broadcast may carry, in bytes.
pub const MAX_BROADCAST_BODY_BYTES: usize = 64 * 1024;
/// Longest broadcast body in characters through REST, where the body is a JSON string:
/// 16384 characters are at most 64 KiB in UTF-8.
pub const MAX_BROADCAST_BODY_CHARS: usize = MAX_BROADCAST_BODY_BYTES / 4;
/// Largest slice of each answer's body a broadcast returns, in bytes.
pub const MAX_BROADCAST_REPLY_BYTES: usize = 4 * 1024;
/// Longest broadcast deadline, in milliseconds.
pub const MAX_BROADCAST_TIMEOUT_MS: u32 = 30_000;

// ---- The docker runtime ----------------------------------------------------------------

/// Longest name prefix of a docker farm (`--name-prefix`), in bytes.
pub const MAX_NAME_PREFIX_LEN: usize = 40;
/// Smallest CPU limit of a server container, in cores.
pub const MIN_CONTAINER_CPUS: f64 = 0.01;
/// Largest CPU limit of a server container, in cores.
pub const MAX_CONTAINER_CPUS: f64 = 64.0;
/// Smallest memory limit of a server container, in MiB.
pub const MIN_CONTAINER_MEMORY_MB: u64 = 16;
/// Largest memory limit of a server container, in MiB (64 GiB).
pub const MAX_CONTAINER_MEMORY_MB: u64 = 65_536;
/// Most containers created and started at once.
pub const MAX_DOCKER_CONCURRENCY: u16 = 64;
/// Longest `farm probe` a container's health check may take, in milliseconds.
pub const MAX_PROBE_TIMEOUT_MS: u64 = 60_000;

// ---- The gateway -----------------------------------------------------------------------

/// Largest request body the REST API reads (256 KiB); a larger one gets a JSON 413. The
/// biggest legitimate body, a broadcast, carries at most [`MAX_BROADCAST_BODY_BYTES`].
pub const MAX_REST_BODY_BYTES: usize = 256 * 1024;
/// Shortest deadline of an ordinary REST request, in milliseconds.
pub const MIN_REST_REQUEST_TIMEOUT_MS: u32 = 100;
/// Longest deadline of an ordinary REST request, in milliseconds.
pub const MAX_REST_REQUEST_TIMEOUT_MS: u32 = 300_000;

/// The characters a node path may hold (RFC 3986 `pchar`, `/` and `?`), as a regular
/// expression for schemas: a path on the node, starting with a single `/`, never a URL.
pub const NODE_PATH_PATTERN: &str =
    r"^/([A-Za-z0-9._~!$&'()*+,;=:@%?-][A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$";

/// Checks a node path (with optional query) as every request that names one must be: at most
/// [`MAX_PATH_LEN`] bytes matching [`NODE_PATH_PATTERN`], so never a URL (the host is always
/// the target server's). Empty means `/`. The error names `field`.
pub fn check_node_path(raw: &str, field: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Ok(());
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(format!("{field} is longer than {MAX_PATH_LEN} bytes"));
    }
    let allowed = |c: u8, first: bool| {
        c.is_ascii_alphanumeric() || b"._~!$&'()*+,;=:@%?-".contains(&c) || (!first && c == b'/')
    };
    let bytes = raw.as_bytes();
    let matches = bytes[0] == b'/'
        && bytes
            .iter()
            .skip(1)
            .enumerate()
            .all(|(i, &c)| allowed(c, i == 0));
    if !matches {
        return Err(format!(
            "{field} must be a path on the node starting with a single \"/\" \
             (letters, digits and -._~!$&'()*+,;=:@%/? only; percent-encode the rest), got {raw:?}"
        ));
    }
    Ok(())
}

// Bounds that depend on each other, checked when the crate is built.
const _: () = {
    assert!(MAX_BROADCAST_BODY_CHARS * 4 <= MAX_BROADCAST_BODY_BYTES);
    assert!(MAX_BROADCAST_BODY_BYTES < MAX_REST_BODY_BYTES);
    assert!(DEFAULT_MAX_REST_LOAD_TEST_SECONDS <= MAX_DURATION_SECONDS);
    assert!(MAX_SERVERS <= MAX_SERVER_ID);
    assert!(MIN_REST_REQUEST_TIMEOUT_MS <= MAX_REST_REQUEST_TIMEOUT_MS);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_paths_stay_on_the_node() {
        assert!(check_node_path("", "path").is_ok());
        assert!(check_node_path("/data/4?x=1", "path").is_ok());
        for good in ["/", "/health", "/data/4?x=1&y=%20", "/a/b/c", "/?q"] {
            assert!(check_node_path(good, "p").is_ok(), "{good}");
        }
        for bad in [
            "http://example.com/",
            "//evil/x",
            "data",
            "/a b",
            "/\u{e9}",
            "/a\n",
            "/<x>",
        ] {
            let e = check_node_path(bad, "spec.path").unwrap_err();
            assert!(e.contains("spec.path"), "{bad}: {e}");
        }
        assert!(check_node_path(&format!("/{}", "a".repeat(MAX_PATH_LEN)), "path").is_err());
    }
}
