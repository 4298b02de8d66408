//! Writes the farm into its history ([`farm_history`]) once a second: every server's metrics
//! and the farm's, and the events found by comparing the registry with a second before (a
//! server added or removed, a status changed, an agent linked or gone, faults set or
//! cleared). Changes that come and go within a second are not seen. Once a minute the
//! history sums its seconds into minutes and drops what is past keeping.
//!
//! Runs are written by their engines ([`crate::loadtest`], [`crate::scenario`]) when they
//! start and end; [`write`] is how anything here writes without blocking the runtime.

use std::collections::BTreeMap;
use std::time::Duration;

use farm_history::{History, NewEvent, Sample};
use farm_proto::now_ms;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::status::Status;

/// How often the farm is written.
const EVERY: Duration = Duration::from_secs(1);
/// How often the history's upkeep runs.
const UPKEEP_EVERY: Duration = Duration::from_secs(60);

/// Runs `work` on the history on the blocking pool; a failure is logged, the farm goes on.
pub(crate) fn write(
    history: &History,
    what: &'static str,
    work: impl FnOnce(&History) -> farm_history::Result<()> + Send + 'static,
) {
    let history = history.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(error) = work(&history) {
            tracing::warn!(%error, what, "Could not write the farm's history.");
        }
    });
}

/// What a server looked like at the last look.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: Status,
    reason: String,
    linked: bool,
    faults: Vec<&'static str>,
}

/// The events between two looks at the farm, at `at_ms`.
fn changes(before: &BTreeMap<u32, Seen>, now: &BTreeMap<u32, Seen>, at_ms: u64) -> Vec<NewEvent> {
    let event = |server_id: u32, kind: &str, detail: String| NewEvent {
        at_ms,
        server_id,
        kind: kind.to_string(),
        detail,
    };
    let mut events = Vec::new();
    for (&id, seen) in now {
        let Some(was) = before.get(&id) else {
            // First seen: its state then, faults included (they may have been set within the
            // second before the first look).
            events.push(event(id, "added", seen.status.as_str().to_string()));
            if !seen.faults.is_empty() {
                events.push(event(id, "fault_set", seen.faults.join(", ")));
            }
            continue;
        };
        if was.status != seen.status {
            events.push(event(
                id,
                "status",
                format!(
                    "{} -> {}{}",
                    was.status.as_str(),
                    seen.status.as_str(),
                    if seen.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", seen.reason)
                    }
                ),
            ));
        }
        if was.linked != seen.linked {
            let kind = if seen.linked {
                "agent_connected"
            } else {
                "agent_disconnected"
            };
            events.push(event(id, kind, String::new()));
        }
        let set: Vec<&str> = seen
            .faults
            .iter()
            .filter(|k| !was.faults.contains(k))
            .copied()
            .collect();
        let cleared: Vec<&str> = was
            .faults
            .iter()
            .filter(|k| !seen.faults.contains(k))
            .copied()
            .collect();
        if !set.is_empty() {
            events.push(event(id, "fault_set", set.join(", ")));
        }
        if !cleared.is_empty() {
            events.push(event(id, "fault_cleared", cleared.join(", ")));
        }
    }
    for &id in before.keys().filter(|id| !now.contains_key(id)) {
        events.push(event(id, "removed", String::new()));
    }
    events
}

/// Writes the farm in `registry` to `history` every second until `shutdown`.
pub(crate) async fn run(registry: Registry, history: History, shutdown: CancellationToken) {
    let mut before: BTreeMap<u32, Seen> = BTreeMap::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_upkeep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let at_ms = now_ms();
        let (now, samples) = registry.read(|entries| {
            let entries: Vec<_> = entries.collect();
            let farm = crate::aggregate::farm_metrics(entries.iter().copied(), at_ms);
            let mut samples = vec![Sample {
                server_id: 0,
                cpu_percent: farm.cpu_percent_total,
                memory_bytes: farm.memory_bytes_total,
                requests_per_second: farm.requests_per_second,
                errors_per_second: farm.errors_per_second,
                healthy: f64::from(farm.healthy),
            }];
            let mut now = BTreeMap::new();
            for e in entries {
                let latest = e.latest();
                samples.push(Sample {
                    server_id: e.id,
                    cpu_percent: latest.map_or(0.0, |s| s.cpu_percent),
                    memory_bytes: latest.map_or(0, |s| s.memory_bytes),
                    requests_per_second: e.requests_per_second,
                    errors_per_second: e.errors_per_second,
                    healthy: f64::from(u8::from(e.status == Status::Healthy)),
                });
                now.insert(
                    e.id,
                    Seen {
                        status: e.status,
                        reason: e.status_reason.clone(),
                        linked: e.link.is_some(),
                        faults: e.faults.kinds(),
                    },
                );
            }
            (now, samples)
        });
        let events = changes(&before, &now, at_ms);
        before = now;
        let upkeep = last_upkeep.elapsed() >= UPKEEP_EVERY;
        if upkeep {
            last_upkeep = tokio::time::Instant::now();
        }
        let history = history.clone();
        // One write at a time, in order: the next second waits for this one.
        let written = tokio::task::spawn_blocking(move || {
            history.add_events(&events)?;
            history.add_samples(at_ms / 1000, &samples)?;
            if upkeep {
                history.upkeep(at_ms / 1000)?;
            }
            Ok::<(), farm_history::Error>(())
        })
        .await;
        if let Ok(Err(error)) = written {
            tracing::warn!(%error, "Could not write the farm's history.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(status: Status, linked: bool, faults: &[&'static str]) -> Seen {
        Seen {
            status,
            reason: String::new(),
            linked,
            faults: faults.to_vec(),
        }
    }

    #[test]
    fn changes_between_two_looks_become_events() {
        let before = BTreeMap::from([
            (1, seen(Status::Healthy, true, &[])),
            (2, seen(Status::Healthy, true, &["latency"])),
        ]);
        let now = BTreeMap::from([
            (1, seen(Status::Unreachable, false, &["abort"])),
            (3, seen(Status::Starting, false, &["hang"])),
        ]);
        let kinds: Vec<(u32, String, String)> = changes(&before, &now, 7)
            .into_iter()
            .map(|e| (e.server_id, e.kind, e.detail))
            .collect();
        assert_eq!(
            kinds,
            [
                (1, "status".into(), "healthy -> unreachable".into()),
                (1, "agent_disconnected".into(), String::new()),
                (1, "fault_set".into(), "abort".into()),
                (3, "added".into(), "starting".into()),
                (3, "fault_set".into(), "hang".into()),
                (2, "removed".into(), String::new()),
            ]
        );
    }
}
