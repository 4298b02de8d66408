//! Reading a process's resource use from `/proc`.
//!
//! The node reports its own CPU, memory and disk I/O, and the agent measures the
//! processes it runs the same way, so both use [`sample`]. Only Linux `/proc` is
//! supported: that is where the farm runs.
//!
//! Two assumptions keep this free of `libc` (and of `unsafe`):
//!
//! - CPU times in `/proc/PID/stat` are in clock ticks of [`CLK_TCK`] = 100 Hz, the value
//!   of `sysconf(_SC_CLK_TCK)` on every Linux architecture the farm runs on (the kernel
//!   exports `USER_HZ`, fixed at 100 on x86 and arm).
//! - Resident memory comes from `VmRSS` in `/proc/PID/status`, which the kernel gives in
//!   KiB, so the page size does not matter.

use std::io;
use std::time::{Duration, Instant};

/// Clock ticks per second of the CPU times in `/proc/PID/stat` (`USER_HZ`).
pub const CLK_TCK: u64 = 100;

/// One reading of a process's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessSample {
    /// User plus system CPU time consumed so far, in clock ticks of [`CLK_TCK`] Hz.
    pub cpu_ticks: u64,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
    /// Bytes read from storage so far (`read_bytes` of `/proc/PID/io`); 0 when that file
    /// is unreadable, as it is for other users' processes.
    pub read_bytes: u64,
    /// Bytes written to storage so far (`write_bytes` of `/proc/PID/io`); 0 when
    /// unreadable.
    pub write_bytes: u64,
    /// Number of threads.
    pub threads: u32,
}

impl ProcessSample {
    /// The CPU time consumed so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_ticks as f64 / CLK_TCK as f64
    }
}

/// Samples process `pid`.
///
/// Fails if the process does not exist (any more) or its `stat`/`status` files cannot be
/// parsed; a missing or unreadable `io` file only zeroes the I/O counters.
pub fn sample(pid: u32) -> io::Result<ProcessSample> {
    sample_dir(&format!("/proc/{pid}"))
}

/// Samples the calling process.
pub fn sample_self() -> io::Result<ProcessSample> {
    sample_dir("/proc/self")
}

fn sample_dir(dir: &str) -> io::Result<ProcessSample> {
    let stat = parse_stat(&std::fs::read_to_string(format!("{dir}/stat"))?)?;
    let rss_bytes = parse_status_rss(&std::fs::read_to_string(format!("{dir}/status"))?)?;
    let (read_bytes, write_bytes) = std::fs::read_to_string(format!("{dir}/io"))
        .ok()
        .map(|text| parse_io(&text))
        .unwrap_or_default();
    Ok(ProcessSample {
        cpu_ticks: stat.cpu_ticks,
        rss_bytes,
        read_bytes,
        write_bytes,
        threads: stat.threads,
    })
}

/// The shortest window a CPU reading is computed over. A sample taken sooner after the last
/// one (an agent samples at once when its node changes state) repeats the last reading:
/// CPU time advances in 10 ms ticks, so over a window of a few milliseconds one tick reads as
/// hundreds of percent, and a server that just started looked overloaded.
pub const MIN_CPU_WINDOW: Duration = Duration::from_millis(250);

/// Turns successive readings of a CPU time counter (a process's, or a container's) into CPU
/// use in percent of one core.
///
/// Feed it a reading and the instant it was taken, regularly; each call after the first
/// returns the use since the reading it is measured against, which moves on once
/// [`MIN_CPU_WINDOW`] has passed. With 100 Hz ticks a window of 1 s resolves about 1 %.
#[derive(Debug, Clone, Default)]
pub struct CpuMeter {
    /// The CPU time counted, in nanoseconds, and when, that the next reading is measured
    /// against.
    since: Option<(u64, Instant)>,
    /// The last use computed, repeated for readings within the shortest window.
    last_percent: Option<f64>,
}

impl CpuMeter {
    /// A meter with no reading yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a process's `sample`, taken at `at`, and returns its CPU use since the reading
    /// it is measured against: `None` for the first one, the last use again within
    /// [`MIN_CPU_WINDOW`] of it.
    pub fn update(&mut self, sample: &ProcessSample, at: Instant) -> Option<f64> {
        self.update_nanos(ticks_to_nanos(sample.cpu_ticks), at)
    }

    /// Like [`CpuMeter::update`], for a counter of CPU time in nanoseconds (a cgroup's
    /// `usage_usec` or `cpuacct.usage`, scaled).
    pub fn update_nanos(&mut self, cpu_nanos: u64, at: Instant) -> Option<f64> {
        let Some((before, then)) = self.since else {
            self.since = Some((cpu_nanos, at));
            return None;
        };
        let elapsed = at.checked_duration_since(then).unwrap_or_default();
        if elapsed < MIN_CPU_WINDOW {
            return self.last_percent;
        }
        self.since = Some((cpu_nanos, at));
        // A counter that went backwards (a different process) gives 0.
        let percent = 100.0 * cpu_nanos.saturating_sub(before) as f64 / elapsed.as_nanos() as f64;
        self.last_percent = Some(percent);
        self.last_percent
    }
}

fn ticks_to_nanos(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000_000 / CLK_TCK)
}

/// The fields of `/proc/PID/stat` this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    cpu_ticks: u64,
    threads: u32,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Parses `/proc/PID/stat`.
///
/// The second field, `comm`, is the executable name in parentheses and may itself hold
/// spaces and parentheses (`(my (odd) name)`), so the fields are counted from the *last*
/// `)`. After it come field 3 (`state`) onwards, space separated; `utime` and `stime`
/// are fields 14 and 15, `num_threads` field 20 (see `proc(5)`).
fn parse_stat(text: &str) -> io::Result<Stat> {
    let close = text
        .rfind(')')
        .ok_or_else(|| invalid("stat: no ')' after comm"))?;
    let mut fields = text[close + 1..].split_ascii_whitespace();
    // `nth` consumes, so each index is relative to the previous position.
    let mut field = |n: usize, name: &str| -> io::Result<u64> {
        fields
            .nth(n)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| invalid(name))
    };
    let utime = field(14 - 3, "stat: utime")?;
    let stime = field(0, "stat: stime")?;
    let threads = field(20 - 16, "stat: num_threads")?;
    Ok(Stat {
        cpu_ticks: utime + stime,
        threads: u32::try_from(threads).map_err(|_| invalid("stat: num_threads"))?,
    })
}

/// Parses the `VmRSS:  1234 kB` line of `/proc/PID/status` into bytes. Kernel threads
/// and zombies have no such line: their resident memory is 0.
fn parse_status_rss(text: &str) -> io::Result<u64> {
    parse_kib_line(text, "VmRSS:", "status")
}

/// The proportional memory of process `pid` (its PSS, from `/proc/PID/smaps_rollup`), in
/// bytes: each resident page divided by the number of processes that map it.
///
/// This is what a process costs the machine. A farm's agents and nodes all run one binary
/// and share its pages; resident sizes count those pages again in every process, while the
/// proportional sizes of all of them add up to what the machine spends. Reading it walks the
/// process's page tables: cheap enough once a sample, too dear on every request.
pub fn proportional_memory(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    parse_kib_line(&text, "Pss:", "smaps_rollup")
}

/// The proportional memory of the calling process; see [`proportional_memory`].
pub fn proportional_memory_self() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    parse_kib_line(&text, "Pss:", "smaps_rollup")
}

/// The value of the `key` line (`Key:   1234 kB`) of a `/proc` file, in bytes; 0 when the
/// file has no such line.
fn parse_kib_line(text: &str, key: &str, file: &str) -> io::Result<u64> {
    let Some(line) = text.lines().find(|l| l.starts_with(key)) else {
        return Ok(0);
    };
    let mut parts = line[key.len()..].split_ascii_whitespace();
    let kib = parts
        .next()
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| invalid(&format!("{file}: {key}")))?;
    match parts.next() {
        Some("kB") => Ok(kib.saturating_mul(1024)),
        _ => Err(invalid(&format!("{file}: {key} unit"))),
    }
}

/// Parses `read_bytes` and `write_bytes` from `/proc/PID/io`; missing lines count as 0.
fn parse_io(text: &str) -> (u64, u64) {
    let mut read = 0;
    let mut write = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().parse::<u64>().unwrap_or(0);
        match key {
            "read_bytes" => read = value,
            "write_bytes" => write = value,
            _ => {}
        }
    }
    (read, write)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from a `current_thread` node, with a `comm` that would break naive
    /// whitespace splitting.
    const STAT: &str = "4242 (farm (node) x) S 1 4242 4242 0 -1 4194560 1337 0 0 0 \
                        250 75 0 0 20 0 3 0 123456 12345678 1500 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17642 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_counts_fields_after_the_last_paren() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat.cpu_ticks, 325);
        assert_eq!(stat.threads, 3);
    }

    #[test]
    fn stat_rejects_garbage() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("1 (x) S 1 2").is_err());
        assert!(parse_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 ab 75 0 0 20 0 3").is_err());
    }

    #[test]
    fn status_rss_in_bytes() {
        let text = "Name:\tfarm\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t2\n";
        assert_eq!(parse_status_rss(text).unwrap(), 5120 * 1024);
        assert_eq!(parse_status_rss("Name:\tkthreadd\n").unwrap(), 0);
        assert!(parse_status_rss("VmRSS:\t12 MB\n").is_err());
        assert!(parse_status_rss("VmRSS:\tlots kB\n").is_err());
    }

    #[test]
    fn proportional_memory_of_a_real_process() {
        // A real smaps_rollup line layout: the Rss line comes before Pss and must not match.
        let text = "55d0c0000000-7ffd00000000 ---p 00000000 00:00 0  [rollup]\n\
                    Rss:                7424 kB\nPss:                1180 kB\n\
                    Pss_Anon:            900 kB\n";
        assert_eq!(
            parse_kib_line(text, "Pss:", "smaps_rollup").unwrap(),
            1180 * 1024
        );
        let own = proportional_memory_self().unwrap();
        assert!(own > 0, "PSS {own}");
        // Against the resident size of the same snapshot: `VmRSS` in /proc/PID/status is kept
        // in per-thread batches and may lag the page tables by a few pages, so a PSS read a
        // moment earlier can exceed it.
        let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
        let (pss, rss) = (
            parse_kib_line(&rollup, "Pss:", "smaps_rollup").unwrap(),
            parse_kib_line(&rollup, "Rss:", "smaps_rollup").unwrap(),
        );
        assert!(pss > 0 && pss <= rss, "PSS {pss} within RSS {rss}");
    }

    #[test]
    fn io_counters() {
        let text = "rchar: 100\nwchar: 200\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\n\
                    write_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io(text), (4096, 8192));
        assert_eq!(parse_io(""), (0, 0));
    }

    #[test]
    fn meter_turns_ticks_into_percent_of_one_core() {
        let start = Instant::now();
        let mut meter = CpuMeter::new();
        let at = |ticks| ProcessSample {
            cpu_ticks: ticks,
            ..ProcessSample::default()
        };
        assert_eq!(meter.update(&at(1000), start), None);
        // 150 ticks = 1.5 s of CPU in 1 s of wall time: one and a half cores.
        let p = meter
            .update(&at(1150), start + Duration::from_secs(1))
            .unwrap();
        assert!((p - 150.0).abs() < 1e-9, "{p}");
        // Within the shortest window (no time at all, or a few milliseconds) the last use
        // is repeated, rather than one tick read as hundreds of percent.
        for later in [Duration::ZERO, Duration::from_millis(3)] {
            let again = meter
                .update(&at(1151), start + Duration::from_secs(1) + later)
                .unwrap();
            assert!((again - 150.0).abs() < 1e-9, "{again}");
        }
        // Past it, measured from the last reading it moved on from: 50 ticks in 0.5 s.
        let p = meter
            .update(&at(1200), start + Duration::from_millis(1500))
            .unwrap();
        assert!((p - 100.0).abs() < 1e-9, "{p}");
        // A container's counter in nanoseconds: half a core.
        let mut container = CpuMeter::new();
        assert_eq!(container.update_nanos(5_000_000_000, start), None);
        let p = container
            .update_nanos(5_500_000_000, start + Duration::from_secs(1))
            .unwrap();
        assert!((p - 50.0).abs() < 1e-9, "{p}");
        // A counter that went backwards (another process) reads as 0.
        let p = meter
            .update(&at(5), start + Duration::from_secs(2))
            .unwrap();
        assert_eq!(p, 0.0);
    }

    #[test]
    fn sample_self_reads_this_process() {
        let s = sample_self().unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.threads >= 1);
        assert!(sample(std::process::id()).unwrap().cpu_ticks >= s.cpu_ticks);
        assert!(sample(u32::MAX).is_err());
    }
}
