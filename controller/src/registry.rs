//! The registry: every server the controller knows, what it last reported, and its status.
//!
//! One `std::sync::Mutex` guards the whole map; it is held only for short, synchronous updates
//! and never across an `.await`. Every change bumps a farm-wide version and stamps the entry
//! with it, so that a watcher can ask "what changed since version v" without diffing, and
//! wakes watchers through a `watch` channel.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use farm_proto::v1::{self as pb, AgentEvent, MetricsSample};
use tokio::sync::watch;

use crate::agents::AgentLink;
use crate::status::{self, Observation, RuntimeState, Status};

/// Samples kept per server for its history.
pub const HISTORY_LEN: usize = 120;
/// Events kept per server.
pub const EVENTS_LEN: usize = 50;
/// Removals remembered for watchers that catch up with deltas; older ones force a snapshot.
const REMOVED_LEN: usize = 1024;

/// One server as the controller knows it.
#[derive(Debug, Clone)]
pub struct ServerEntry {
    /// Server id.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// Where its node app listens (host:port).
    pub node_address: String,
    /// Which runtime runs it.
    pub runtime: String,
    /// Its agent's version, once it said hello.
    pub agent_version: String,
    /// The open agent stream, if any.
    pub link: Option<AgentLink>,
    /// What the runtime last said of the server, for runtimes that report states.
    pub runtime_state: Option<RuntimeState>,
    /// Whether an agent ever connected for this server.
    pub ever_connected: bool,
    /// When the latest sample arrived.
    pub last_seen: Option<Instant>,
    /// The same, as milliseconds since the Unix epoch, for clients.
    pub last_seen_ms: u64,
    /// Recent samples, oldest first; the last is the latest.
    pub history: VecDeque<MetricsSample>,
    /// Recent events, oldest first.
    pub events: VecDeque<AgentEvent>,
    /// Requests per second from the last two samples.
    pub requests_per_second: f64,
    /// 5xx answers per second from the last two samples.
    pub errors_per_second: f64,
    /// How old a sample may get before the server is silent.
    pub stale_after: Duration,
    /// The current verdict.
    pub status: Status,
    /// Why.
    pub status_reason: String,
    /// Farm version at the entry's last change.
    pub version: u64,
}

impl ServerEntry {
    fn new(
        id: u32,
        name: String,
        node_address: String,
        runtime: String,
        stale_after: Duration,
    ) -> Self {
        Self {
            id,
            name,
            node_address,
            runtime,
            agent_version: String::new(),
            link: None,
            runtime_state: None,
            ever_connected: false,
            last_seen: None,
            last_seen_ms: 0,
            history: VecDeque::new(),
            events: VecDeque::new(),
            requests_per_second: 0.0,
            errors_per_second: 0.0,
            stale_after,
            status: Status::Starting,
            status_reason: "waiting for the agent".into(),
            version: 0,
        }
    }

    /// Whether `session` is the open stream; messages from a replaced stream are ignored.
    fn has_session(&self, session: u64) -> bool {
        self.link.as_ref().is_some_and(|l| l.session == session)
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<&MetricsSample> {
        self.history.back()
    }

    fn observe(&self, now: Instant) -> Observation {
        let latest = self.latest();
        Observation {
            runtime_state: self.runtime_state,
            connected: self.link.is_some(),
            ever_connected: self.ever_connected,
            sample_age: self.last_seen.map(|at| now.saturating_duration_since(at)),
            stale_after: self.stale_after,
            node_state: latest.and_then(|s| pb::NodeState::try_from(s.node_state).ok()),
            cpu_percent: latest.map_or(0.0, |s| s.cpu_percent),
            cpu_limit_cores: latest.map_or(0.0, |s| s.cpu_limit_cores),
            requests_per_second: self.requests_per_second,
            errors_per_second: self.errors_per_second,
        }
    }

    /// The entry as the public API shows it.
    pub fn to_proto(&self) -> pb::Server {
        pb::Server {
            id: self.id,
            name: self.name.clone(),
            status: pb::ServerStatus::from(self.status).into(),
            status_reason: self.status_reason.clone(),
            node_address: self.node_address.clone(),
            runtime: self.runtime.clone(),
            agent_version: self.agent_version.clone(),
            connected: self.link.is_some(),
            last_seen_ms: self.last_seen_ms,
            metrics: self.latest().cloned(),
            requests_per_second: self.requests_per_second,
            errors_per_second: self.errors_per_second,
        }
    }
}

/// What an agent says when it connects.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Server id.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// Where its node listens.
    pub node_address: String,
    /// Agent version.
    pub agent_version: String,
    /// Runtime that started it.
    pub runtime: String,
}

/// Where a registry's versions start: the clock in microseconds. The versions of a restarted
/// controller then start above every version the one before handed out (it would have had
/// to change its farm more than a million times a second to get ahead, or the wall clock
/// would have to step back across the restart), so a client that keeps an answer by its
/// version does not take the new farm for the old. Never 0, which callers use for "none".
fn first_version() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX / 2)
        })
        .max(1)
}

/// The farm's servers; cheap to clone, shared by every service of the controller.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<watch::Sender<u64>>,
    sample_interval: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    servers: BTreeMap<u32, ServerEntry>,
    version: u64,
    /// (version, id) of recent removals, oldest first.
    removed: VecDeque<(u64, u32)>,
    /// Watchers behind this version cannot be brought up to date with deltas.
    removed_floor: u64,
}

/// The changes since a version: what a watcher needs to catch up.
#[derive(Debug, Clone)]
pub struct Changes {
    /// Whether `servers` is the whole farm (the watcher was too far behind for a delta).
    pub full: bool,
    /// Changed servers, or all of them when `full`.
    pub servers: Vec<pb::Server>,
    /// Servers removed since.
    pub removed: Vec<u32>,
    /// The version this brings the watcher to.
    pub version: u64,
}

impl Registry {
    /// An empty registry for agents that sample every `sample_interval`.
    pub fn new(sample_interval: Duration) -> Self {
        let version = first_version();
        let (changed, _) = watch::channel(version);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                version,
                ..Inner::default()
            })),
            changed: Arc::new(changed),
            sample_interval,
        }
    }

    /// The interval agents are told to sample at.
    pub fn sample_interval(&self) -> Duration {
        self.sample_interval
    }

    /// How old a sample may get: three missed samples, and never under two seconds.
    fn stale_after(&self) -> Duration {
        (self.sample_interval * 3).max(Duration::from_secs(2))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `update` on entry `id` (if present), re-evaluates its status and, when `update`
    /// says something changed or the status did, stamps a new version and wakes watchers.
    fn update<R>(&self, id: u32, update: impl FnOnce(&mut ServerEntry) -> (bool, R)) -> Option<R> {
        let mut inner = self.lock();
        let next = inner.version + 1;
        let entry = inner.servers.get_mut(&id)?;
        let (changed, result) = update(entry);
        let (status, reason) = status::evaluate(&entry.observe(Instant::now()));
        let status_changed = status != entry.status || reason != entry.status_reason;
        entry.status = status;
        entry.status_reason = reason;
        if changed || status_changed {
            entry.version = next;
            inner.version = next;
            drop(inner);
            self.changed.send_replace(next);
        }
        Some(result)
    }

    /// Adds a server a runtime has started (or is about to), so it shows as starting.
    pub fn expect(&self, id: u32, name: String, node_address: String, runtime: String) {
        let stale_after = self.stale_after();
        let mut inner = self.lock();
        inner.version += 1;
        let version = inner.version;
        let entry = inner
            .servers
            .entry(id)
            .or_insert_with(|| ServerEntry::new(id, name, node_address, runtime, stale_after));
        entry.version = version;
        drop(inner);
        self.changed.send_replace(version);
    }

    /// Removes a server from the farm.
    pub fn remove(&self, id: u32) -> bool {
        let mut inner = self.lock();
        if inner.servers.remove(&id).is_none() {
            return false;
        }
        inner.version += 1;
        let version = inner.version;
        inner.removed.push_back((version, id));
        if inner.removed.len() > REMOVED_LEN
            && let Some((dropped, _)) = inner.removed.pop_front()
        {
            inner.removed_floor = dropped;
        }
        drop(inner);
        self.changed.send_replace(version);
        true
    }

    /// Records an agent's hello; a newer stream for the same server replaces the older one.
    /// Returns the session number that later calls from this stream must carry.
    pub fn connect(&self, registration: Registration, link: AgentLink) -> u64 {
        let session = link.session;
        let known = self.lock().servers.contains_key(&registration.id);
        if !known {
            // An agent no runtime announced (started by hand): its server appears first, at a
            // version of its own like every change, and then takes the hello below.
            self.expect(
                registration.id,
                registration.name.clone(),
                registration.node_address.clone(),
                registration.runtime.clone(),
            );
        }
        self.update(registration.id, |entry| {
            entry.name = registration.name;
            entry.node_address = registration.node_address;
            entry.agent_version = registration.agent_version;
            if !registration.runtime.is_empty() {
                entry.runtime = registration.runtime;
            }
            entry.link = Some(link);
            entry.ever_connected = true;
            (true, ())
        });
        session
    }

    /// Forgets the stream `session` of server `id`, unless a newer one replaced it.
    pub fn disconnect(&self, id: u32, session: u64) {
        self.update(id, |entry| {
            let current = entry.has_session(session);
            if current {
                entry.link = None;
            }
            (current, ())
        });
    }

    /// Records a sample from stream `session` of server `id`.
    pub fn record_sample(&self, id: u32, session: u64, sample: MetricsSample) {
        self.update(id, |entry| {
            if !entry.has_session(session) {
                return (false, ());
            }
            if let Some(previous) = entry.latest() {
                let seconds =
                    sample.timestamp_ms.saturating_sub(previous.timestamp_ms) as f64 / 1000.0;
                if seconds > 0.0 {
                    // A node restart resets its counters; count from zero then.
                    let requests = sample
                        .requests_total
                        .checked_sub(previous.requests_total)
                        .unwrap_or(sample.requests_total);
                    let errors = sample
                        .errors_total
                        .checked_sub(previous.errors_total)
                        .unwrap_or(sample.errors_total);
                    entry.requests_per_second = requests as f64 / seconds;
                    entry.errors_per_second = errors as f64 / seconds;
                }
            }
            entry.last_seen = Some(Instant::now());
            entry.last_seen_ms = sample.timestamp_ms;
            if entry.history.len() >= HISTORY_LEN {
                entry.history.pop_front();
            }
            entry.history.push_back(sample);
            (true, ())
        });
    }

    /// Records an event from stream `session` of server `id`.
    pub fn record_event(&self, id: u32, session: u64, event: AgentEvent) {
        self.update(id, |entry| {
            if !entry.has_session(session) {
                return (false, ());
            }
            if entry.events.len() >= EVENTS_LEN {
                entry.events.pop_front();
            }
            entry.events.push_back(event);
            (true, ())
        });
    }

    /// Records what the runtime says of server `id`.
    pub fn set_runtime_state(&self, id: u32, state: RuntimeState) {
        self.update(id, |entry| {
            let changed = entry.runtime_state != Some(state);
            entry.runtime_state = Some(state);
            (changed, ())
        });
    }

    /// Re-evaluates every status against the clock: samples go stale without any message
    /// arriving, so something has to look.
    pub fn sweep(&self) {
        for id in self.ids() {
            self.update(id, |_| (false, ()));
        }
    }

    /// A copy of one entry.
    pub fn get(&self, id: u32) -> Option<ServerEntry> {
        self.lock().servers.get(&id).cloned()
    }

    /// Runs `f` over every entry, in id order, under the lock; `f` must be quick.
    pub fn read<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &ServerEntry>) -> R) -> R {
        let inner = self.lock();
        f(&mut inner.servers.values())
    }

    /// The farm's version and, unless it is still `known`, `f` over every entry as in
    /// [`Self::read`]; both under one lock, so the result is exactly that version's.
    pub fn read_unless_at<R>(
        &self,
        known: u64,
        f: impl FnOnce(&mut dyn Iterator<Item = &ServerEntry>) -> R,
    ) -> (u64, Option<R>) {
        let inner = self.lock();
        let read = (inner.version != known).then(|| f(&mut inner.servers.values()));
        (inner.version, read)
    }

    /// The ids of every server, in order.
    pub fn ids(&self) -> Vec<u32> {
        self.lock().servers.keys().copied().collect()
    }

    /// The open stream of server `id`, if any.
    pub fn link(&self, id: u32) -> Option<AgentLink> {
        self.lock().servers.get(&id).and_then(|e| e.link.clone())
    }

    /// The farm's current version.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What changed after `since`; everything when `since` is 0 or too far behind.
    pub fn changes_since(&self, since: u64) -> Changes {
        let inner = self.lock();
        let full = since == 0 || since < inner.removed_floor;
        let servers = inner
            .servers
            .values()
            .filter(|e| full || e.version > since)
            .map(ServerEntry::to_proto)
            .collect();
        let removed = if full {
            Vec::new()
        } else {
            inner
                .removed
                .iter()
                .filter(|(v, _)| *v > since)
                .map(|(_, id)| *id)
                .collect()
        };
        Changes {
            full,
            servers,
            removed,
            version: inner.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_registry_starts_above_every_version_of_an_earlier_one() {
        let earlier = Registry::new(Duration::from_secs(1));
        for id in 1..=100 {
            earlier.expect(id, format!("server-{id}"), String::new(), "process".into());
        }
        std::thread::sleep(Duration::from_millis(1));
        let later = Registry::new(Duration::from_secs(1));
        assert!(
            later.version() > earlier.version(),
            "{} after {}",
            later.version(),
            earlier.version()
        );
    }

    #[test]
    fn a_read_at_the_current_version_is_skipped_and_any_change_makes_it_run() {
        let registry = Registry::new(Duration::from_secs(1));
        registry.expect(1, "server-1".into(), String::new(), "process".into());
        let count = |entries: &mut dyn Iterator<Item = &ServerEntry>| entries.count();
        let (version, read) = registry.read_unless_at(0, count);
        assert_eq!(read, Some(1));
        assert_eq!(registry.read_unless_at(version, count), (version, None));
        registry.set_runtime_state(1, RuntimeState::Stopped);
        let (later, read) = registry.read_unless_at(version, count);
        assert!(later > version);
        assert_eq!(read, Some(1));
    }
}
