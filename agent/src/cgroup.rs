//! A container's own resource figures, read from its cgroup: what `docker stats` shows,
//! measured from inside by the agent instead of polled from the engine per container.
//!
//! Both cgroup versions are read: v1 (one hierarchy per controller, as on this project's
//! machines) and v2 (the unified hierarchy most hosts have now). Memory is reported as the
//! working set, usage minus inactive file cache, which is what `docker stats` and cAdvisor
//! report. Parsers are pure functions over file contents, tested on literal text.

use std::io;
use std::path::{Path, PathBuf};

/// Which cgroup layout this process sees, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// v1: `root/<controller>/<file>`.
    V1 {
        /// Usually `/sys/fs/cgroup`.
        root: PathBuf,
    },
    /// v2: `dir/<file>`.
    V2 {
        /// Usually `/sys/fs/cgroup`.
        dir: PathBuf,
    },
}

/// One reading of a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupSample {
    /// CPU time used by every process of the cgroup, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Cores the cgroup may use (its CFS quota), `None` when unlimited.
    pub cpu_limit_cores: Option<f64>,
    /// Working set: usage minus inactive file cache, in bytes.
    pub memory_bytes: u64,
    /// Memory limit in bytes, `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Processes in the cgroup.
    pub pids: u32,
    /// Bytes read from block devices.
    pub read_bytes: u64,
    /// Bytes written to block devices.
    pub write_bytes: u64,
}

/// Limits at or above this are the kernel's way of saying "no limit" in v1.
const V1_UNLIMITED: u64 = 1 << 62;

impl Cgroup {
    /// The cgroup mounted at `/sys/fs/cgroup`, if any; inside a container it is the
    /// container's own.
    pub fn detect() -> Option<Self> {
        Self::detect_at(Path::new("/sys/fs/cgroup"))
    }

    fn detect_at(root: &Path) -> Option<Self> {
        if root.join("cgroup.controllers").exists() {
            Some(Cgroup::V2 {
                dir: root.to_path_buf(),
            })
        } else if root.join("cpuacct/cpuacct.usage").exists() {
            Some(Cgroup::V1 {
                root: root.to_path_buf(),
            })
        } else {
            None
        }
    }

    /// Reads every figure now. CPU and memory must be readable; the rest are 0 if not.
    pub fn sample(&self) -> io::Result<CgroupSample> {
        match self {
            Cgroup::V1 { root } => {
                let read = |file: &str| std::fs::read_to_string(root.join(file));
                let usage = parse_u64(&read("memory/memory.usage_in_bytes")?)?;
                let inactive = stat_field(
                    &read("memory/memory.stat").unwrap_or_default(),
                    "total_inactive_file",
                );
                let limit = parse_u64(&read("memory/memory.limit_in_bytes")?)?;
                let (read_bytes, write_bytes) = parse_v1_blkio(
                    &read("blkio/blkio.throttle.io_service_bytes").unwrap_or_default(),
                );
                Ok(CgroupSample {
                    cpu_usage_ns: parse_u64(&read("cpuacct/cpuacct.usage")?)?,
                    cpu_limit_cores: v1_quota(
                        &read("cpu/cpu.cfs_quota_us").unwrap_or_default(),
                        &read("cpu/cpu.cfs_period_us").unwrap_or_default(),
                    ),
                    memory_bytes: usage.saturating_sub(inactive),
                    memory_limit_bytes: (limit < V1_UNLIMITED).then_some(limit),
                    pids: read("pids/pids.current")
                        .ok()
                        .and_then(|s| parse_u64(&s).ok())
                        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
                    read_bytes,
                    write_bytes,
                })
            }
            Cgroup::V2 { dir } => {
                let read = |file: &str| std::fs::read_to_string(dir.join(file));
                let usage = parse_u64(&read("memory.current")?)?;
                let inactive =
                    stat_field(&read("memory.stat").unwrap_or_default(), "inactive_file");
                let (read_bytes, write_bytes) = parse_v2_io(&read("io.stat").unwrap_or_default());
                Ok(CgroupSample {
                    cpu_usage_ns: stat_field(&read("cpu.stat")?, "usage_usec") * 1000,
                    cpu_limit_cores: v2_quota(&read("cpu.max").unwrap_or_default()),
                    memory_bytes: usage.saturating_sub(inactive),
                    memory_limit_bytes: read("memory.max").ok().and_then(|s| parse_u64(&s).ok()),
                    pids: read("pids.current")
                        .ok()
                        .and_then(|s| parse_u64(&s).ok())
                        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
                    read_bytes,
                    write_bytes,
                })
            }
        }
    }
}

fn parse_u64(text: &str) -> io::Result<u64> {
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{text:?}: {e}")))
}

/// The value of `key` in a `key value` per line file (memory.stat, cpu.stat); 0 if absent.
fn stat_field(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

fn v1_quota(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: i64 = period.trim().parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

fn v2_quota(max: &str) -> Option<f64> {
    let (quota, period) = max.trim().split_once(' ')?;
    let quota: f64 = quota.parse().ok()?;
    let period: f64 = period.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

/// Sums `Read` and `Write` over every device of v1 `blkio.throttle.io_service_bytes`.
fn parse_v1_blkio(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0, 0);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_device), Some(op), Some(value)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let value: u64 = value.parse().unwrap_or(0);
        match op {
            "Read" => read += value,
            "Write" => write += value,
            _ => {}
        }
    }
    (read, write)
}

/// Sums `rbytes` and `wbytes` over every device of v2 `io.stat`.
fn parse_v2_io(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0, 0);
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            read += v.parse().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            write += v.parse().unwrap_or(0);
        }
    }
    (read, write)
}

/// Bytes received and sent on every interface but loopback, from `/proc/net/dev` of this
/// process's network namespace (inside a container, the container's own interfaces).
pub fn network_bytes() -> (u64, u64) {
    std::fs::read_to_string("/proc/net/dev")
        .map(|text| parse_net_dev(&text))
        .unwrap_or_default()
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = counters
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        if fields.len() >= 9 {
            rx += fields[0];
            tx += fields[8];
        }
    }
    (rx, tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_files_parse() {
        assert_eq!(v1_quota("50000\n", "100000\n"), Some(0.5));
        assert_eq!(v1_quota("-1\n", "100000\n"), None);
        let blkio = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:16 Read 1000\n8:0 Total 12288\nTotal 13288\n";
        assert_eq!(parse_v1_blkio(blkio), (5096, 8192));
        let stat = "cache 1000\nrss 2000\ntotal_inactive_file 300\n";
        assert_eq!(stat_field(stat, "total_inactive_file"), 300);
        assert_eq!(stat_field(stat, "missing"), 0);
    }

    #[test]
    fn v2_files_parse() {
        assert_eq!(v2_quota("50000 100000\n"), Some(0.5));
        assert_eq!(v2_quota("max 100000\n"), None);
        let io = "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=5 wbytes=6 rios=1 wios=1\n";
        assert_eq!(parse_v2_io(io), (105, 206));
        assert_eq!(
            stat_field("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            1500
        );
    }

    #[test]
    fn net_dev_skips_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  eth0:  5000      50    0    0    0     0          0         0     7000      70    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), (5000, 7000));
    }

    #[test]
    fn a_fake_v1_tree_is_read() {
        let root = std::env::temp_dir().join(format!("farm-cgroup-test-{}", std::process::id()));
        for (file, content) in [
            ("cpuacct/cpuacct.usage", "2000000000\n"),
            ("cpu/cpu.cfs_quota_us", "50000\n"),
            ("cpu/cpu.cfs_period_us", "100000\n"),
            ("memory/memory.usage_in_bytes", "10485760\n"),
            ("memory/memory.limit_in_bytes", "268435456\n"),
            ("memory/memory.stat", "total_inactive_file 1048576\n"),
            ("pids/pids.current", "3\n"),
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let cgroup = Cgroup::detect_at(&root).expect("a v1 layout");
        let s = cgroup.sample().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(s.cpu_usage_ns, 2_000_000_000);
        assert_eq!(s.cpu_limit_cores, Some(0.5));
        assert_eq!(s.memory_bytes, 9 << 20);
        assert_eq!(s.memory_limit_bytes, Some(256 << 20));
        assert_eq!(s.pids, 3);
    }
}
