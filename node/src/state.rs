//! The state shared by the node's handlers: identity, request counters, the latency
//! window and histogram, the CPU gauge, the load slot and the faults.
//!
//! Everything a request updates is an atomic (the latency window and histogram too), so
//! recording a request takes no lock and allocates nothing.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::response::Response;
use http::{HeaderName, HeaderValue, Method};
use hyper::body::Body as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::connections::Connections;
use crate::faults::Faults;
use crate::load::Loads;
use crate::metrics::{self, LatencyWindow, Percentiles};
use crate::prometheus::{self, Histogram};
use farm_node_api::api::{HealthReply, NodeInfo, NodeMetrics, ReadyReply};
use farm_node_api::proc;
use farm_node_api::{PROBE_HEADER, SERVER_HEADER};
use farm_proto::limits;

/// How often the background sampler measures the node's CPU use.
const CPU_SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// How long `/metrics` reuses the latency percentiles it computed. Computing them copies and
/// sorts the whole window, which cost `/metrics` a third of its throughput against `/health`;
/// a figure 100 ms old describes "latency now" as well as a fresh one, and the agent samples
/// far less often.
const PERCENTILES_MAX_AGE: Duration = Duration::from_millis(100);

/// Everything the node's handlers share; cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    server_id: u32,
    name: String,
    started: Instant,
    /// `std::thread::available_parallelism`, read once: it bounds `cpu_percent`.
    cores: u32,
    /// The whole `/health` body, built once: the route is benchmarked and answered
    /// without serialising anything.
    health_body: Bytes,
    /// The whole `/ready` body when ready, built once for the same reason.
    ready_body: Bytes,
    /// The value of [`SERVER_HEADER`] on every answer, built once: each answer then costs a
    /// reference count, not a formatting of the id.
    server_header: HeaderValue,
    /// The `/data` payload, [`limits::MAX_DATA_KB`] KiB of zeros, sliced per request.
    zeros: Bytes,
    requests_total: AtomicU64,
    errors_total: AtomicU64,
    in_flight: AtomicU32,
    rx_bytes: AtomicU64,
    tx_bytes: AtomicU64,
    latencies: LatencyWindow,
    /// Every answer's latency by status class, since start, for `GET /metrics/prometheus`.
    histogram: Histogram,
    /// The last percentiles computed from `latencies`, and when.
    percentiles: Mutex<Option<(Instant, Percentiles)>>,
    /// The last CPU measurement, an `f64` stored as its bits.
    cpu_percent_bits: AtomicU64,
    /// The process's last `/proc` reading, refreshed with the CPU measurement: `GET /` and
    /// `GET /metrics` report it rather than read `/proc` for every request (a second-old
    /// reading is as good as a fresh one, and reading costs more than the rest of the answer).
    rss_bytes: AtomicU64,
    cpu_ticks: AtomicU64,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
    loads: Loads,
    /// Picks `/slow-endpoint` delays; seeded once from the OS (the `rand` features in use
    /// have no thread-local generator).
    rng: Mutex<SmallRng>,
    /// Cancelled when the node shuts down, to cut long sleeps short.
    closing: CancellationToken,
    /// The open connections and their bounds.
    connections: Arc<Connections>,
    /// What the node does wrong on purpose.
    faults: Faults,
}

impl AppState {
    /// Fresh state for the server described by `config`; uptime counts from now.
    pub fn new(config: &Config) -> Self {
        let process = proc::sample_self().unwrap_or_default();
        let health = HealthReply {
            status: "healthy".into(),
            server_id: config.server_id,
        };
        let health_body = serde_json::to_vec(&health)
            .map(Bytes::from)
            .unwrap_or_default();
        let ready = ReadyReply {
            ready: true,
            server_id: config.server_id,
        };
        let ready_body = serde_json::to_vec(&ready)
            .map(Bytes::from)
            .unwrap_or_default();
        let cores = std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        Self {
            inner: Arc::new(Shared {
                server_id: config.server_id,
                name: config.name.clone(),
                started: Instant::now(),
                cores,
                health_body,
                ready_body,
                server_header: HeaderValue::from(config.server_id),
                zeros: zeroed(limits::MAX_DATA_KB as usize * 1024),
                requests_total: AtomicU64::new(0),
                errors_total: AtomicU64::new(0),
                in_flight: AtomicU32::new(0),
                rx_bytes: AtomicU64::new(0),
                tx_bytes: AtomicU64::new(0),
                latencies: LatencyWindow::default(),
                histogram: Histogram::default(),
                percentiles: Mutex::new(None),
                cpu_percent_bits: AtomicU64::new(0.0f64.to_bits()),
                rss_bytes: AtomicU64::new(process.rss_bytes),
                cpu_ticks: AtomicU64::new(process.cpu_ticks),
                read_bytes: AtomicU64::new(process.read_bytes),
                write_bytes: AtomicU64::new(process.write_bytes),
                loads: Loads::default(),
                rng: Mutex::new(SmallRng::from_os_rng()),
                closing: CancellationToken::new(),
                connections: Arc::new(Connections::new(config.connections)),
                faults: Faults::new(config.allow_fault_headers),
            }),
        }
    }

    /// The node's open connections.
    pub(crate) fn connections(&self) -> &Arc<Connections> {
        &self.inner.connections
    }

    /// The node's faults.
    pub(crate) fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// The server's id.
    pub(crate) fn server_id(&self) -> u32 {
        self.inner.server_id
    }

    /// Starts shutting down: stops the simulated load and wakes every `/slow-endpoint`
    /// sleeper (they answer 503). [`crate::run`] calls it when its token fires; whoever
    /// serves [`crate::app`] another way should too.
    pub fn close(&self) {
        self.inner.closing.cancel();
        self.inner.loads.stop();
    }

    /// A snapshot of the node's metrics, as `GET /metrics` reports them.
    pub fn metrics(&self) -> NodeMetrics {
        let s = &self.inner;
        let latency = self.percentiles();
        NodeMetrics {
            server_id: s.server_id,
            name: s.name.clone(),
            uptime_seconds: self.uptime().as_secs_f64(),
            requests_total: s.requests_total.load(Ordering::Relaxed),
            errors_total: s.errors_total.load(Ordering::Relaxed),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            latency_p50_ms: latency.p50_ms,
            latency_p90_ms: latency.p90_ms,
            latency_p99_ms: latency.p99_ms,
            latency_max_ms: latency.max_ms,
            cpu_percent: self.cpu_percent(),
            memory_rss_bytes: s.rss_bytes.load(Ordering::Relaxed),
            connections_open: u32::try_from(s.connections.open()).unwrap_or(u32::MAX),
            connections_refused_total: s.connections.refused(),
            disk_read_bytes: s.read_bytes.load(Ordering::Relaxed),
            disk_write_bytes: s.write_bytes.load(Ordering::Relaxed),
            http_rx_bytes: s.rx_bytes.load(Ordering::Relaxed),
            http_tx_bytes: s.tx_bytes.load(Ordering::Relaxed),
            simulated_load: s.loads.current(),
            faults_active: s.faults.active(),
        }
    }

    /// The node's metrics in the Prometheus text format, as `GET /metrics/prometheus` serves
    /// them.
    pub fn prometheus(&self) -> String {
        let s = &self.inner;
        let snapshot = prometheus::Snapshot {
            requests_total: s.requests_total.load(Ordering::Relaxed),
            errors_total: s.errors_total.load(Ordering::Relaxed),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            rx_bytes: s.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: s.tx_bytes.load(Ordering::Relaxed),
            connections_open: s.connections.open(),
            connections_refused: s.connections.refused(),
            uptime: self.uptime(),
            cpu_percent: self.cpu_percent(),
            cpu_seconds: s.cpu_ticks.load(Ordering::Relaxed) as f64 / proc::CLK_TCK as f64,
            rss_bytes: s.rss_bytes.load(Ordering::Relaxed),
            disk_read_bytes: s.read_bytes.load(Ordering::Relaxed),
            disk_write_bytes: s.write_bytes.load(Ordering::Relaxed),
            load: s.loads.current(),
            faults_active: s.faults.active(),
        };
        prometheus::render(&snapshot, &s.histogram)
    }

    /// The latency percentiles, computed at most every [`PERCENTILES_MAX_AGE`].
    fn percentiles(&self) -> Percentiles {
        let now = Instant::now();
        let mut cached = self
            .inner
            .percentiles
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((at, percentiles)) = *cached
            && now.saturating_duration_since(at) < PERCENTILES_MAX_AGE
        {
            return percentiles;
        }
        let (mut micros, len) = self.inner.latencies.snapshot();
        let percentiles = metrics::percentiles(&mut micros, len);
        *cached = Some((now, percentiles));
        percentiles
    }

    /// The body of `GET /`.
    pub(crate) fn info(&self) -> NodeInfo {
        let s = &self.inner;
        NodeInfo {
            server_id: s.server_id,
            name: s.name.clone(),
            uptime_seconds: self.uptime().as_secs_f64(),
            requests_total: s.requests_total.load(Ordering::Relaxed),
            cpu_percent: self.cpu_percent(),
            memory_rss_bytes: s.rss_bytes.load(Ordering::Relaxed),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    fn cpu_percent(&self) -> f64 {
        f64::from_bits(self.inner.cpu_percent_bits.load(Ordering::Relaxed))
    }

    pub(crate) fn health_body(&self) -> Bytes {
        self.inner.health_body.clone()
    }

    pub(crate) fn ready_body(&self) -> Bytes {
        self.inner.ready_body.clone()
    }

    /// Names this node's server on `response` ([`SERVER_HEADER`]).
    #[inline]
    pub(crate) fn sign(&self, response: &mut Response) {
        response
            .headers_mut()
            .insert(&SERVER, self.inner.server_header.clone());
    }

    /// A uniformly random value in `low..=high` (`high` is raised to `low` if below).
    pub(crate) fn random_between(&self, low: u64, high: u64) -> u64 {
        self.inner
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random_range(low..=high.max(low))
    }

    pub(crate) fn zeros(&self) -> &Bytes {
        &self.inner.zeros
    }

    pub(crate) fn cores(&self) -> u32 {
        self.inner.cores
    }

    pub(crate) fn loads(&self) -> &Loads {
        &self.inner.loads
    }

    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }

    /// Counts a request that has arrived; the returned guard keeps it in flight until
    /// it is finished, or dropped (the client went away).
    pub(crate) fn begin_request(&self, arrival: Arrival) -> RequestGuard<'_> {
        let s = &self.inner;
        s.requests_total.fetch_add(1, Ordering::Relaxed);
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        s.rx_bytes.fetch_add(arrival.rx_bytes, Ordering::Relaxed);
        RequestGuard { shared: s, arrival }
    }
}

/// [`PROBE_HEADER`], ready for lookups without parsing the name each time.
static PROBE: HeaderName = HeaderName::from_static(PROBE_HEADER);

/// [`SERVER_HEADER`], likewise.
static SERVER: HeaderName = HeaderName::from_static(SERVER_HEADER);

/// What the counters need to know about a request, read when it arrives.
///
/// Reading it up front lets the connection service drop a `/health` request before
/// answering, which hands hyper its read buffer back for the next request instead of
/// making it allocate a new one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    start: Instant,
    rx_bytes: u64,
    head: bool,
}

impl Arrival {
    /// The arrival of `request`, or `None` for a probe, which is not counted.
    pub(crate) fn of<B: hyper::body::Body>(request: &http::Request<B>) -> Option<Self> {
        if request.headers().contains_key(&PROBE) {
            return None;
        }
        Some(Self {
            start: Instant::now(),
            rx_bytes: request.body().size_hint().lower(),
            head: request.method() == Method::HEAD,
        })
    }
}

/// `len` zero bytes that cost no resident memory.
///
/// A zeroed allocation this large, made at start, is a fresh anonymous mapping from the
/// kernel (glibc's `calloc` maps anything above its mmap threshold, 128 KiB at start,
/// directly and skips the memset), already zero and never written here; reading it maps
/// the kernel's shared zero page, which is not counted in the process's RSS. (A `static`
/// array of zeros would not do: being immutable it lands in `.rodata`, 10 MiB of the
/// binary's file, resident once read.)
fn zeroed(len: usize) -> Bytes {
    Bytes::from(vec![0u8; len])
}

/// One counted request in flight.
#[derive(Debug)]
pub(crate) struct RequestGuard<'a> {
    shared: &'a Shared,
    arrival: Arrival,
}

impl RequestGuard<'_> {
    /// Records the answer: its status (5xx is an error), its body size from the declared
    /// length (none for `HEAD`), and the latency until the response head was ready, in the
    /// percentile window and in the histogram.
    pub(crate) fn finish(self, response: &Response) {
        let s = self.shared;
        if response.status().is_server_error() {
            s.errors_total.fetch_add(1, Ordering::Relaxed);
        }
        if !self.arrival.head {
            let tx = response.body().size_hint().lower();
            s.tx_bytes.fetch_add(tx, Ordering::Relaxed);
        }
        let latency = self.arrival.start.elapsed();
        s.latencies.record(latency);
        s.histogram.record(response.status(), latency);
        // Dropping the guard takes the request out of flight.
    }
}

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves a request with `serve`, counting it if it has an `arrival` (it is not a
/// probe). A request whose client leaves before the answer leaves flight without a
/// latency.
pub(crate) async fn counted(
    state: &AppState,
    arrival: Option<Arrival>,
    serve: impl Future<Output = Response>,
) -> Response {
    let guard = arrival.map(|arrival| state.begin_request(arrival));
    let response = serve.await;
    if let Some(guard) = guard {
        guard.finish(&response);
    }
    response
}

/// Measures the node's CPU use every second until `stop` fires, for `cpu_percent`, and keeps
/// the memory and I/O figures of the same reading.
///
/// A window of one second is what "CPU now" means on a dashboard refreshed every second,
/// and reading `/proc/self/stat` once a second costs nothing.
pub(crate) async fn sample_cpu(state: AppState, stop: CancellationToken) {
    let mut meter = proc::CpuMeter::new();
    let mut tick = tokio::time::interval(CPU_SAMPLE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // An unreadable /proc (it should not happen) keeps the last figures.
        let Ok(sample) = proc::sample_self() else {
            continue;
        };
        let figures = &state.inner;
        figures.rss_bytes.store(sample.rss_bytes, Ordering::Relaxed);
        figures.cpu_ticks.store(sample.cpu_ticks, Ordering::Relaxed);
        figures
            .read_bytes
            .store(sample.read_bytes, Ordering::Relaxed);
        figures
            .write_bytes
            .store(sample.write_bytes, Ordering::Relaxed);
        if let Some(percent) = meter.update(&sample, Instant::now()) {
            state
                .inner
                .cpu_percent_bits
                .store(percent.to_bits(), Ordering::Relaxed);
        }
    }
}
