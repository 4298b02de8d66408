//! The simulated load: real CPU burnt and real memory held, for a bounded time.
//!
//! A load is meant to show up in every measurement the farm makes (`/proc`, cgroups,
//! `docker stats`), so nothing is faked:
//!
//! - CPU is burnt on dedicated OS threads, one per started 100 % share (250 % is two
//!   threads at 100 % and one at 50 %). Each runs a duty cycle: it spins for
//!   `share × 10 ms` of every 10 ms slice and sleeps the rest. The async runtime (a single
//!   thread) never runs this work, so the node keeps serving while loaded.
//! - Memory is a `Vec<u8>` with every byte written, so every page is resident, held by one
//!   more thread that sleeps until the load ends and then frees it. The start of a load
//!   waits (without blocking the runtime) until the memory is resident, so that a 202
//!   means the memory is there, and a failed allocation is reported instead of
//!   discovered.
//!
//! A load ends at its deadline, on `DELETE /simulate-load`, or when the node shuts down;
//! in each case one [`StopSignal`] wakes all its threads at once. At most one load runs at
//! a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use farm_node_api::api::{LoadRequest, LoadStatus};
use farm_proto::limits;

/// Length of one duty cycle of a burner thread.
const SLICE: Duration = Duration::from_millis(10);

/// Stack size of the load threads: they only spin, sleep and hold a `Vec`, so the default
/// 2 MiB would be reserve for nothing.
const THREAD_STACK: usize = 64 * 1024;

/// Checks a load request against the [`limits`], for a machine with `cores` cores.
/// The message names the offending field.
pub(crate) fn validate(request: &LoadRequest, cores: u32) -> Result<(), String> {
    let max_cpu = limits::MAX_LOAD_CPU_PERCENT_PER_CORE * f64::from(cores);
    let cpu = request.cpu_percent;
    if !cpu.is_finite() || !(0.0..=max_cpu).contains(&cpu) {
        return Err(format!(
            "cpu_percent must be between 0 and {max_cpu} (100 per core, {cores} cores), got {cpu}"
        ));
    }
    if request.memory_mb > limits::MAX_LOAD_MEMORY_MB {
        return Err(format!(
            "memory_mb must be between 0 and {}, got {}",
            limits::MAX_LOAD_MEMORY_MB,
            request.memory_mb
        ));
    }
    let duration = limits::MIN_LOAD_DURATION_SECONDS..=limits::MAX_LOAD_DURATION_SECONDS;
    if !duration.contains(&request.duration_seconds) {
        return Err(format!(
            "duration_seconds must be between {} and {}, got {}",
            duration.start(),
            duration.end(),
            request.duration_seconds
        ));
    }
    Ok(())
}

/// How the work of `cpu_percent` is split over burner threads: one share of at most 1.0
/// (a full core) per thread.
fn cpu_shares(cpu_percent: f64) -> impl Iterator<Item = f64> {
    let full = (cpu_percent / 100.0).floor() as usize;
    let rest = cpu_percent / 100.0 - full as f64;
    std::iter::repeat_n(1.0, full).chain((rest > 0.0).then_some(rest))
}

/// Why a load did not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// Another load is running; it is left alone.
    Busy(LoadStatus),
    /// The threads or the memory could not be had; nothing is left running.
    Resources(String),
}

/// Tells a load's threads to stop, waking the sleeping ones at once.
#[derive(Debug, Default)]
struct StopSignal {
    /// Mirrors the flag under `lock`, so that spinning threads can check it for free.
    stopped: AtomicBool,
    lock: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        *self.lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Sleeps until `until` or until stopped; returns whether it was stopped.
    fn sleep_until(&self, until: Instant) -> bool {
        let mut stopped = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *stopped {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The load that is running. Dropping it stops its threads.
#[derive(Debug)]
struct ActiveLoad {
    id: u64,
    request: LoadRequest,
    deadline: Instant,
    stop: Arc<StopSignal>,
}

impl ActiveLoad {
    fn is_over(&self, now: Instant) -> bool {
        now >= self.deadline || self.stop.is_stopped()
    }

    fn status(&self, now: Instant) -> LoadStatus {
        status_of(&self.request, self.deadline, now)
    }
}

fn status_of(request: &LoadRequest, deadline: Instant, now: Instant) -> LoadStatus {
    LoadStatus {
        cpu_percent: request.cpu_percent,
        memory_mb: request.memory_mb,
        duration_seconds: request.duration_seconds,
        remaining_seconds: deadline.saturating_duration_since(now).as_secs_f64(),
    }
}

impl Drop for ActiveLoad {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

#[derive(Debug, Default)]
struct Slot {
    active: Option<ActiveLoad>,
    next_id: u64,
}

impl Slot {
    /// The running load, forgetting one that has ended by itself.
    fn current(&mut self, now: Instant) -> Option<&ActiveLoad> {
        if self.active.as_ref().is_some_and(|load| load.is_over(now)) {
            self.active = None;
        }
        self.active.as_ref()
    }
}

/// The node's single load slot.
#[derive(Debug, Default)]
pub(crate) struct Loads {
    slot: Mutex<Slot>,
}

impl Loads {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The load running now, if any.
    pub(crate) fn current(&self) -> Option<LoadStatus> {
        let now = Instant::now();
        self.slot().current(now).map(|load| load.status(now))
    }

    /// Starts a load for an already [validated](validate) `request`.
    ///
    /// Returns once the CPU threads run and the memory is resident.
    pub(crate) async fn start(&self, request: LoadRequest) -> Result<LoadStatus, StartError> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(u64::from(request.duration_seconds));
        let stop = Arc::new(StopSignal::default());
        let id = {
            let mut slot = self.slot();
            if let Some(active) = slot.current(started) {
                return Err(StartError::Busy(active.status(started)));
            }
            // Claim the slot before doing anything slow, so a concurrent request is
            // turned away rather than starting a second load.
            slot.next_id += 1;
            let id = slot.next_id;
            slot.active = Some(ActiveLoad {
                id,
                request,
                deadline,
                stop: Arc::clone(&stop),
            });
            id
        };

        if let Err(err) = spawn_threads(&request, deadline, &stop).await {
            self.abandon(id);
            return Err(StartError::Resources(err));
        }
        let now = Instant::now();
        match self.slot().current(now) {
            Some(load) if load.id == id => Ok(load.status(now)),
            // Stopped (DELETE, shutdown) while the memory was being filled: report what
            // was accepted, with nothing left to run.
            _ => Ok(LoadStatus {
                remaining_seconds: 0.0,
                ..status_of(&request, deadline, now)
            }),
        }
    }

    /// Stops the load that was started as `id`, if it is still the one in the slot.
    fn abandon(&self, id: u64) {
        let mut slot = self.slot();
        if slot.active.as_ref().is_some_and(|load| load.id == id) {
            slot.active = None;
        }
    }

    /// Stops the running load, returning what it was (with the time it had left).
    pub(crate) fn stop(&self) -> Option<LoadStatus> {
        let now = Instant::now();
        let mut slot = self.slot();
        slot.current(now)?;
        let load = slot.active.take()?;
        drop(slot);
        // Dropping the load signals its threads (outside the lock: it takes another).
        Some(load.status(now))
    }
}

/// Starts the threads of a load; returns once they run and its memory is resident.
async fn spawn_threads(
    request: &LoadRequest,
    deadline: Instant,
    stop: &Arc<StopSignal>,
) -> Result<(), String> {
    for (index, share) in cpu_shares(request.cpu_percent).enumerate() {
        let stop = Arc::clone(stop);
        std::thread::Builder::new()
            .name(format!("farm-load-cpu-{index}"))
            .stack_size(THREAD_STACK)
            .spawn(move || burn(share, deadline, &stop))
            .map_err(|err| format!("cannot start a CPU load thread: {err}"))?;
    }
    if request.memory_mb == 0 {
        return Ok(());
    }
    let bytes = request.memory_mb as usize * 1024 * 1024;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let holder_stop = Arc::clone(stop);
    std::thread::Builder::new()
        .name("farm-load-memory".into())
        .stack_size(THREAD_STACK)
        .spawn(move || hold_memory(bytes, deadline, &holder_stop, ready_tx))
        .map_err(|err| format!("cannot start the memory load thread: {err}"))?;
    match ready_rx.await {
        Ok(result) => result,
        Err(_) => Err("the memory load thread ended early".into()),
    }
}

/// A burner thread: spins `share` of every [`SLICE`] until the deadline or a stop.
fn burn(share: f64, deadline: Instant, stop: &StopSignal) {
    let busy = SLICE.mul_f64(share.clamp(0.0, 1.0));
    loop {
        let slice_start = Instant::now();
        if slice_start >= deadline || stop.is_stopped() {
            return;
        }
        let busy_end = slice_start + busy;
        while Instant::now() < busy_end {
            std::hint::spin_loop();
        }
        if stop.sleep_until((slice_start + SLICE).min(deadline)) {
            return;
        }
    }
}

/// The memory thread: makes `bytes` resident, reports, then holds them until the load
/// ends.
fn hold_memory(
    bytes: usize,
    deadline: Instant,
    stop: &StopSignal,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let mut memory: Vec<u8> = Vec::new();
    if let Err(err) = memory.try_reserve_exact(bytes) {
        let _ = ready.send(Err(format!("cannot allocate {bytes} bytes: {err}")));
        return;
    }
    // Write every byte, not zeros from a fresh mapping: untouched pages would not be
    // resident, and the load would not show up.
    memory.resize(bytes, 0xA5);
    // The receiver is gone if the request was dropped; the load runs anyway.
    let _ = ready.send(Ok(()));
    stop.sleep_until(deadline);
    drop(memory);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_bounds_name_the_field() {
        let ok = LoadRequest::default();
        assert_eq!(validate(&ok, 2), Ok(()));
        let max = LoadRequest {
            cpu_percent: 200.0,
            memory_mb: 1024,
            duration_seconds: 300,
        };
        assert_eq!(validate(&max, 2), Ok(()));

        let cases = [
            (
                LoadRequest {
                    cpu_percent: 200.1,
                    ..ok
                },
                "cpu_percent",
            ),
            (
                LoadRequest {
                    cpu_percent: -1.0,
                    ..ok
                },
                "cpu_percent",
            ),
            (
                LoadRequest {
                    cpu_percent: f64::NAN,
                    ..ok
                },
                "cpu_percent",
            ),
            (
                LoadRequest {
                    memory_mb: 1025,
                    ..ok
                },
                "memory_mb",
            ),
            (
                LoadRequest {
                    duration_seconds: 0,
                    ..ok
                },
                "duration_seconds",
            ),
            (
                LoadRequest {
                    duration_seconds: 301,
                    ..ok
                },
                "duration_seconds",
            ),
        ];
        for (request, field) in cases {
            let err = validate(&request, 2).unwrap_err();
            assert!(err.starts_with(field), "{request:?}: {err}");
        }
    }

    #[test]
    fn cpu_is_split_into_full_cores_and_a_rest() {
        let shares = |p| cpu_shares(p).collect::<Vec<_>>();
        assert_eq!(shares(0.0), Vec::<f64>::new());
        assert_eq!(shares(100.0), vec![1.0]);
        assert_eq!(shares(250.0), vec![1.0, 1.0, 0.5]);
        let small = shares(30.0);
        assert_eq!(small.len(), 1);
        assert!((small[0] - 0.3).abs() < 1e-12);
    }

    #[test]
    fn stop_wakes_a_sleeper_at_once() {
        let stop = Arc::new(StopSignal::default());
        let sleeper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || stop.sleep_until(Instant::now() + Duration::from_secs(60)))
        };
        stop.stop();
        // A join that returns at all proves the wake-up: otherwise it takes a minute.
        assert!(sleeper.join().unwrap());
        assert!(!StopSignal::default().sleep_until(Instant::now()));
    }
}
