//! The registry: every server the controller knows, what it last reported, and its status.
//!
//! One `std::sync::Mutex` guards the whole map; it is held only for short, synchronous updates
//! and never across an `.await`. Every change bumps a farm-wide version and stamps the entry
//! with it, so that a watcher can ask "what changed since version v" without diffing, and
//! wakes watchers through a `watch` channel.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use farm_proto::v1::{self as pb, AgentEvent, FaultProfile, MetricsSample};
use tokio::sync::watch;

use crate::agents::AgentLink;
use crate::status::{self, Observation, RuntimeState, Status};

/// Samples kept per server for its history.
pub const HISTORY_LEN: usize = 120;
/// Events kept per server.
pub const EVENTS_LEN: usize = 50;
/// How long a server no runtime owns stays in the farm after its agent left.
pub const UNOWNED_GRACE: Duration = Duration::from_secs(60);
/// Removals remembered for watchers that catch up with deltas; older ones force a snapshot.
const REMOVED_LEN: usize = 1024;
/// Samples a second the whole farm sends at most. Past it the agents sample less often (see
/// [`cadence`]): on a small machine a thousand agents sampling every second would keep it
/// busy with sampling alone, and the controller's own API would stop answering.
pub const FARM_SAMPLES_PER_SECOND: u32 = 250;

/// The interval at which each of `servers` agents samples: `base`, doubled until the farm
/// sends at most [`FARM_SAMPLES_PER_SECOND`] samples a second (and never past the bound of
/// an interval). Doubling, rather than a smooth curve, changes the interval at a few sizes
/// only, so that a farm that scales retunes its agents a few times, not at every server.
pub fn cadence(base: Duration, servers: usize) -> Duration {
    let longest = Duration::from_millis(u64::from(farm_proto::limits::MAX_SAMPLE_INTERVAL_MS));
    let mut interval = base;
    while interval < longest
        && servers as f64 > f64::from(FARM_SAMPLES_PER_SECOND) * interval.as_secs_f64()
    {
        interval = (interval * 2).min(longest);
    }
    interval
}

/// How old a sample of an agent that samples every `interval` may get: three missed samples,
/// and never under two seconds.
fn stale_bound(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(2))
}

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
    /// Where it runs, for a runtime that spreads servers over machines; empty otherwise.
    pub placement: String,
    /// What the runtime says of it while it does not run (why its task waits or was refused).
    runtime_note: Option<String>,
    /// Where the farm reaches its node when that is not where the agent says it listens: a
    /// swarm task's port, published on the machine that runs it. Taken over the agent's
    /// word as the node's address.
    published_address: Option<String>,
    /// Its agent's version, once it said hello.
    pub agent_version: String,
    /// The open agent stream, if any.
    pub link: Option<AgentLink>,
    /// The instance id of the agent that holds the stream.
    agent_instance: String,
    /// When the holding stream last said anything (its hello, a sample, an event).
    last_heard: Option<Instant>,
    /// The runtime has (re)started the server since the last hello: the next claim is the
    /// runtime's own agent and replaces whatever stream holds the server.
    vouched: bool,
    /// Where the runtime said the node is (`host:0` when the kernel picks the port); `None`
    /// for a server no runtime announced.
    announced_address: Option<String>,
    /// When the agent of a server no runtime announced left: such a server is dropped once
    /// it has been gone for the registry's grace.
    agent_left_at: Option<Instant>,
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
    /// Connections the node refused at its bound between the last two samples.
    pub connections_refused: u64,
    /// The interval its agent was told to sample at.
    sample_interval: Duration,
    /// How old a sample may get before the server is silent.
    pub stale_after: Duration,
    /// The server's faults, each with its expiry time.
    pub faults: FaultProfile,
    /// Raised at every change of `faults`, so that an agent can tell an older profile from a
    /// newer one. Starts from the clock (as the registry's versions do), above every version a
    /// controller before this one handed out.
    faults_version: u64,
    /// Whether the server's agent may hold faults this controller never set (its container
    /// outlived a controller that crashed): its next connection is handed the profile even
    /// when it is empty, which clears them.
    faults_unknown: bool,
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
        sample_interval: Duration,
    ) -> Self {
        Self {
            id,
            name,
            node_address,
            runtime,
            placement: String::new(),
            published_address: None,
            runtime_note: None,
            agent_version: String::new(),
            link: None,
            agent_instance: String::new(),
            last_heard: None,
            vouched: false,
            announced_address: None,
            agent_left_at: None,
            runtime_state: None,
            ever_connected: false,
            last_seen: None,
            last_seen_ms: 0,
            history: VecDeque::new(),
            events: VecDeque::new(),
            requests_per_second: 0.0,
            errors_per_second: 0.0,
            connections_refused: 0,
            sample_interval,
            stale_after: stale_bound(sample_interval),
            faults: FaultProfile::default(),
            faults_version: first_version(),
            faults_unknown: false,
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
            connections_refused: self.connections_refused,
            connections_open: latest.map_or(0, |s| s.connections_open),
            partitioned: self.faults.partition.is_some(),
            runtime_note: self.runtime_note.clone(),
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
            faults: (!crate::faults::is_empty(&self.faults)).then(|| self.faults.clone()),
            placement: self.placement.clone(),
        }
    }
}

/// A server's fault profile after a change, to hand to its agent (and runtime).
#[derive(Debug, Clone)]
pub struct FaultsHandoff {
    /// The server.
    pub id: u32,
    /// Its whole profile now.
    pub profile: FaultProfile,
    /// The profile's version.
    pub version: u64,
    /// The agent's open stream, if any.
    pub link: Option<AgentLink>,
    /// Whether the server was cut off from the network before the change.
    pub partitioned_before: bool,
}

impl FaultsHandoff {
    /// `entry`'s profile as it is now, to hand over.
    fn of(entry: &ServerEntry, partitioned_before: bool) -> Self {
        Self {
            id: entry.id,
            profile: entry.faults.clone(),
            version: entry.faults_version,
            link: entry.link.clone(),
            partitioned_before,
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
    /// The agent process's own random id: a stream from the same agent replaces the one
    /// before at once (a reconnect), where another agent's claim would be refused.
    pub instance: String,
}

/// Why the registry refused an agent's hello; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another agent holds the server with a stream that is alive.
    #[error(
        "server {0} is held by another agent's live stream; a second claim is taken only when the runtime started the server again or the holder has been silent past its bound"
    )]
    Held(u32),
    /// The node address is not one the farm expects for this server.
    #[error(
        "hello.node_address {given:?} is not where this farm runs server {id}'s node ({expected})"
    )]
    UnexpectedAddress {
        /// The server.
        id: u32,
        /// What the agent said.
        given: String,
        /// What the farm allows, in words.
        expected: String,
    },
    /// The farm is at its bound and the server is not one of it.
    #[error("the farm has {0} servers, its bound; server {1} is not one of them")]
    Full(u32, u32),
}

/// Makes every floating-point figure of `sample` finite and non-negative.
fn sanitize(sample: &mut MetricsSample) {
    for figure in [
        &mut sample.cpu_percent,
        &mut sample.node_cpu_percent,
        &mut sample.latency_p50_ms,
        &mut sample.latency_p99_ms,
        &mut sample.node_uptime_seconds,
        &mut sample.cpu_limit_cores,
    ] {
        if !figure.is_finite() || *figure < 0.0 {
            *figure = 0.0;
        }
    }
}

/// Where the farm expects a server's node, as its runtime announced it.
fn address_allowed(expected: &str, given: &str) -> bool {
    let host = |address: &str| address.rsplit_once(':').map(|(h, _)| h.to_string());
    match expected.rsplit_once(':') {
        // The kernel picks the port: the host must match.
        Some((_, "0")) => host(expected) == host(given),
        Some(_) => expected == given,
        None => false,
    }
}

/// Where an agent no runtime announced may say its node is: on this machine's loopback, or
/// (a compose farm) on the farm network under its service name `server-N`.
fn unannounced_address_allowed(id: u32, given: &str) -> bool {
    let Some((host, _)) = given.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host == format!("server-{id}")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
    /// The interval agents sample at in a small farm; see [`cadence`].
    base_sample_interval: Duration,
    /// Most servers the farm may hold; a hello for a new server past it is refused.
    max_servers: u32,
    /// How long a server no runtime owns stays after its agent left.
    unowned_grace: Duration,
    /// Agent streams refused since start.
    refused_agents: Arc<std::sync::atomic::AtomicU64>,
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
    /// An empty registry for agents that sample every `base_sample_interval` while the farm
    /// is small enough (see [`cadence`]).
    pub fn new(base_sample_interval: Duration) -> Self {
        let version = first_version();
        let (changed, _) = watch::channel(version);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                version,
                ..Inner::default()
            })),
            changed: Arc::new(changed),
            base_sample_interval,
            max_servers: farm_proto::limits::MAX_SERVERS,
            unowned_grace: UNOWNED_GRACE,
            refused_agents: Arc::default(),
        }
    }

    /// The same registry, dropping a server no runtime owns `grace` after its agent left.
    pub fn with_unowned_grace(mut self, grace: Duration) -> Self {
        self.unowned_grace = grace;
        self
    }

    /// Most servers the farm may hold.
    pub fn max_servers(&self) -> u32 {
        self.max_servers
    }

    /// The same registry, holding at most `max_servers` servers.
    pub fn with_max_servers(mut self, max_servers: u32) -> Self {
        self.max_servers = max_servers;
        self
    }

    /// Counts an agent stream the controller refused.
    pub fn count_refused_agent(&self) {
        self.refused_agents
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Agent streams refused since start.
    pub fn refused_agents(&self) -> u64 {
        self.refused_agents
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The interval an agent that connects now is told to sample at: see [`cadence`].
    pub fn sample_interval(&self) -> Duration {
        cadence(self.base_sample_interval, self.lock().servers.len())
    }

    /// Connected servers whose agent samples at another interval than the farm's size now
    /// calls for, each with that interval: the caller tells each agent, and calls
    /// [`Self::retuned`] once the agent took it. Until then a server's silence bound covers
    /// both intervals, so that no server looks silent while its agent changes pace.
    pub fn retune(&self) -> Vec<(u32, AgentLink, Duration)> {
        let mut inner = self.lock();
        let wanted = cadence(self.base_sample_interval, inner.servers.len());
        inner
            .servers
            .values_mut()
            .filter(|entry| entry.sample_interval != wanted)
            .filter_map(|entry| {
                let link = entry.link.clone()?;
                entry.stale_after = stale_bound(entry.sample_interval.max(wanted));
                entry.sample_interval = wanted;
                Some((entry.id, link, wanted))
            })
            .collect()
    }

    /// The agent of server `id`, on stream `session`, now samples every `interval`.
    pub fn retuned(&self, id: u32, session: u64, interval: Duration) {
        if let Some(entry) = self.lock().servers.get_mut(&id)
            && entry.has_session(session)
            && entry.sample_interval == interval
        {
            entry.stale_after = stale_bound(interval);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `update` on entry `id` (if present), re-evaluates its status and, when `update`
    /// says something changed or the status did, stamps a new version and wakes watchers.
    fn update<R>(&self, id: u32, update: impl FnOnce(&mut ServerEntry) -> (bool, R)) -> Option<R> {
        let mut inner = self.lock();
        let before = inner.version;
        let result = Self::update_locked(&mut inner, id, update);
        let after = inner.version;
        drop(inner);
        if after != before {
            self.changed.send_replace(after);
        }
        result
    }

    /// [`Self::update`] under a lock the caller holds; the caller wakes the watchers.
    fn update_locked<R>(
        inner: &mut Inner,
        id: u32,
        update: impl FnOnce(&mut ServerEntry) -> (bool, R),
    ) -> Option<R> {
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
        }
        Some(result)
    }

    /// Adds a server a runtime has started (or is about to), so it shows as starting. The
    /// runtime vouches for the agent it starts, whose node is at `node_address` (`host:0`
    /// when the kernel picks the port).
    pub fn expect(&self, id: u32, name: String, node_address: String, runtime: String) {
        let mut inner = self.lock();
        let interval = cadence(self.base_sample_interval, inner.servers.len() + 1);
        inner.version += 1;
        let version = inner.version;
        let announced_address = Some(node_address.clone());
        let entry = inner
            .servers
            .entry(id)
            .or_insert_with(|| ServerEntry::new(id, name, node_address, runtime, interval));
        entry.announced_address = announced_address;
        entry.vouched = true;
        entry.agent_left_at = None;
        entry.version = version;
        drop(inner);
        self.changed.send_replace(version);
    }

    /// The runtime started server `id` again (its agent process, or its container): the next
    /// claim on it is that agent's, and replaces whatever stream holds it.
    pub fn vouch(&self, id: u32) {
        if let Some(entry) = self.lock().servers.get_mut(&id) {
            entry.vouched = true;
        }
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

    /// Records an agent's hello, unless the farm refuses it (see [`Refusal`]). A server is
    /// owned by the live stream that holds it: a new stream takes it over only from the same
    /// agent (a reconnect), when the runtime vouched for the new agent, or when the holder has
    /// said nothing for longer than its stale bound; the old stream is closed then. The agent
    /// was told to sample every `sample_interval`. Returns the session number that later
    /// calls from this stream must carry. The claim is judged and recorded under one lock, so
    /// that of two hellos for one server at once only one can win.
    pub fn connect(
        &self,
        registration: Registration,
        link: AgentLink,
        sample_interval: Duration,
    ) -> Result<u64, Refusal> {
        let session = link.session;
        let id = registration.id;
        let mut inner = self.lock();
        match inner.servers.get(&id) {
            Some(entry) => self.admit(entry, &registration)?,
            None => {
                let count = u32::try_from(inner.servers.len()).unwrap_or(u32::MAX);
                if count >= self.max_servers {
                    return Err(Refusal::Full(self.max_servers, id));
                }
                if !unannounced_address_allowed(id, &registration.node_address) {
                    return Err(Refusal::UnexpectedAddress {
                        id,
                        given: registration.node_address,
                        expected: "loopback, or server-N on a compose farm's network".into(),
                    });
                }
                // An agent no runtime announced (started by hand): its server joins the farm.
                let entry = ServerEntry::new(
                    id,
                    registration.name.clone(),
                    registration.node_address.clone(),
                    registration.runtime.clone(),
                    sample_interval,
                );
                inner.servers.insert(id, entry);
            }
        }
        let replaced = Self::update_locked(&mut inner, id, |entry| {
            let replaced = entry.link.replace(link);
            entry.name = registration.name;
            entry.node_address = entry
                .published_address
                .clone()
                .unwrap_or(registration.node_address);
            entry.agent_version = registration.agent_version;
            entry.agent_instance = registration.instance;
            if !registration.runtime.is_empty() {
                entry.runtime = registration.runtime;
            }
            entry.ever_connected = true;
            entry.vouched = false;
            entry.last_heard = Some(Instant::now());
            entry.agent_left_at = None;
            entry.sample_interval = sample_interval;
            entry.stale_after = stale_bound(sample_interval);
            (true, replaced)
        });
        let version = inner.version;
        drop(inner);
        self.changed.send_replace(version);
        if let Some(Some(old)) = replaced {
            old.close("another stream of this server's agent replaced this one");
        }
        Ok(session)
    }

    /// Whether `registration` may take `entry`, as [`Self::connect`] says.
    fn admit(&self, entry: &ServerEntry, registration: &Registration) -> Result<(), Refusal> {
        if let Some(expected) = &entry.announced_address
            && !address_allowed(expected, &registration.node_address)
        {
            return Err(Refusal::UnexpectedAddress {
                id: entry.id,
                given: registration.node_address.clone(),
                expected: expected.clone(),
            });
        }
        if entry.link.is_none() || entry.vouched {
            return Ok(());
        }
        let same_agent =
            !registration.instance.is_empty() && registration.instance == entry.agent_instance;
        let silent = entry
            .last_heard
            .is_none_or(|at| at.elapsed() > entry.stale_after);
        if same_agent || silent {
            Ok(())
        } else {
            Err(Refusal::Held(entry.id))
        }
    }

    /// Forgets the stream `session` of server `id`, unless a newer one replaced it.
    pub fn disconnect(&self, id: u32, session: u64) {
        self.update(id, |entry| {
            let current = entry.has_session(session);
            if current {
                entry.link = None;
                if entry.announced_address.is_none() {
                    entry.agent_left_at = Some(Instant::now());
                }
            }
            (current, ())
        });
    }

    /// Records a sample from stream `session` of server `id`. Figures that cannot be true
    /// (not finite, or negative) are recorded as 0, so that one agent cannot break the farm's
    /// sums.
    pub fn record_sample(&self, id: u32, session: u64, mut sample: MetricsSample) {
        sanitize(&mut sample);
        self.update(id, |entry| {
            if !entry.has_session(session) {
                return (false, ());
            }
            entry.connections_refused = entry.latest().map_or(0, |previous| {
                // A node restart resets its counter; a lower count is a new start.
                sample
                    .connections_refused_total
                    .saturating_sub(previous.connections_refused_total)
            });
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
            entry.last_heard = entry.last_seen;
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
            entry.last_heard = Some(Instant::now());
            if entry.events.len() >= EVENTS_LEN {
                entry.events.pop_front();
            }
            entry.events.push_back(event);
            (true, ())
        });
    }

    /// Changes server `id`'s fault profile with `change`; `None` when there is no such server.
    pub fn change_faults(
        &self,
        id: u32,
        change: impl FnOnce(&mut FaultProfile),
    ) -> Option<FaultsHandoff> {
        self.update(id, |entry| {
            let partitioned_before = entry.faults.partition.is_some();
            let before = entry.faults.clone();
            change(&mut entry.faults);
            let changed = entry.faults != before;
            if changed {
                entry.faults_version += 1;
            }
            (changed, FaultsHandoff::of(entry, partitioned_before))
        })
    }

    /// Server `id`'s fault profile, to hand to an agent that just connected; `None` when it
    /// has none (or there is no such server), unless its agent may hold faults of a controller
    /// before this one.
    pub fn faults_handoff(&self, id: u32) -> Option<FaultsHandoff> {
        let mut inner = self.lock();
        let entry = inner.servers.get_mut(&id)?;
        let unknown = std::mem::take(&mut entry.faults_unknown);
        (unknown || !crate::faults::is_empty(&entry.faults))
            .then(|| FaultsHandoff::of(entry, entry.faults.partition.is_some()))
    }

    /// Server `id` was adopted from a controller that crashed: its agent may hold faults that
    /// this controller does not know. Returns its profile to hand over now when its agent is
    /// connected already; otherwise its next connection is handed the profile.
    pub fn faults_unknown(&self, id: u32) -> Option<FaultsHandoff> {
        let mut inner = self.lock();
        let entry = inner.servers.get_mut(&id)?;
        if entry.link.is_some() {
            return Some(FaultsHandoff::of(entry, entry.faults.partition.is_some()));
        }
        entry.faults_unknown = true;
        None
    }

    /// Drops every fault whose time has passed at `now_ms` (the nodes drop them on their own
    /// at the same time); returns the servers whose partition ended, for the runtime to heal.
    pub fn expire_faults(&self, now_ms: u64) -> Vec<u32> {
        let mut healed = Vec::new();
        for id in self.ids() {
            let ended = self.update(id, |entry| {
                let (expired, partition) = crate::faults::expire(&mut entry.faults, now_ms);
                if expired {
                    entry.faults_version += 1;
                }
                (expired, partition)
            });
            if ended == Some(true) {
                healed.push(id);
            }
        }
        healed
    }

    /// Says where server `id` runs now (a runtime that spreads servers over machines): the
    /// machine, and the address its node is published on there, which becomes the node's
    /// address for the farm.
    pub fn set_placement(&self, id: u32, placement: String, published_address: String) {
        self.update(id, |entry| {
            let changed = entry.placement != placement || entry.node_address != published_address;
            entry.placement = placement;
            entry.node_address.clone_from(&published_address);
            entry.published_address = Some(published_address);
            (changed, ())
        });
    }

    /// Records why server `id` does not run, as its runtime says (`None` once it runs).
    pub fn set_runtime_note(&self, id: u32, note: Option<String>) {
        self.update(id, |entry| {
            let changed = entry.runtime_note != note;
            entry.runtime_note = note;
            (changed, ())
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
    /// Servers no runtime owns whose agent has been gone for their grace ([`UNOWNED_GRACE`] by
    /// default) leave the farm
    /// here (their ids are returned), so that invented or abandoned servers do not fill it.
    pub fn sweep(&self) -> Vec<u32> {
        let gone: Vec<u32> = self.read(|entries| {
            entries
                .filter(|e| {
                    e.agent_left_at
                        .is_some_and(|at| at.elapsed() > self.unowned_grace)
                })
                .map(|e| e.id)
                .collect()
        });
        for &id in &gone {
            self.remove(id);
        }
        for id in self.ids() {
            self.update(id, |_| (false, ()));
        }
        gone
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

    const SECOND: Duration = Duration::from_secs(1);

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

    fn hello(id: u32, node_address: &str, instance: &str) -> Registration {
        Registration {
            id,
            name: format!("server-{id}"),
            node_address: node_address.into(),
            agent_version: "test".into(),
            runtime: "process".into(),
            instance: instance.into(),
        }
    }

    #[test]
    fn a_live_stream_keeps_its_server_until_the_runtime_vouches_for_another() {
        let registry = Registry::new(Duration::from_secs(1));
        registry.expect(1, "server-1".into(), "127.0.0.1:0".into(), "process".into());
        let (first, mut first_rx) = AgentLink::detached();
        registry
            .connect(hello(1, "127.0.0.1:4001", "a"), first, SECOND)
            .unwrap();

        let (second, _) = AgentLink::detached();
        let refused = registry.connect(hello(1, "127.0.0.1:4001", "b"), second, SECOND);
        assert_eq!(refused, Err(Refusal::Held(1)));

        // The same agent reconnecting takes its server back at once.
        let (again, _) = AgentLink::detached();
        registry
            .connect(hello(1, "127.0.0.1:4001", "a"), again, SECOND)
            .unwrap();
        assert!(matches!(first_rx.try_recv(), Ok(Err(s)) if s.code() == tonic::Code::Aborted));

        // The runtime started the server again: its new agent takes over.
        registry.vouch(1);
        let (restarted, _) = AgentLink::detached();
        registry
            .connect(hello(1, "127.0.0.1:4002", "c"), restarted, SECOND)
            .unwrap();
        assert_eq!(registry.get(1).unwrap().node_address, "127.0.0.1:4002");
    }

    #[test]
    fn a_node_address_must_be_where_the_farm_runs_the_server() {
        let registry = Registry::new(Duration::from_secs(1));
        registry.expect(1, "server-1".into(), "127.0.0.1:0".into(), "process".into());
        registry.expect(
            2,
            "server-2".into(),
            "127.0.0.1:8002".into(),
            "docker".into(),
        );
        let claim = |id, address: &str| {
            let (link, _) = AgentLink::detached();
            registry.connect(hello(id, address, &format!("{id}{address}")), link, SECOND)
        };
        assert!(matches!(
            claim(1, "10.0.0.1:80"),
            Err(Refusal::UnexpectedAddress { .. })
        ));
        assert!(matches!(
            claim(2, "127.0.0.1:8003"),
            Err(Refusal::UnexpectedAddress { .. })
        ));
        assert!(matches!(
            claim(9, "192.168.1.1:22"),
            Err(Refusal::UnexpectedAddress { .. })
        ));
        assert!(claim(1, "127.0.0.1:4567").is_ok());
        assert!(claim(2, "127.0.0.1:8002").is_ok());
        assert!(claim(9, "127.0.0.1:9").is_ok());
        assert!(claim(10, "server-10:8000").is_ok());
        assert!(claim(11, "[::1]:8000").is_ok());
    }

    #[test]
    fn a_full_farm_refuses_new_servers_but_not_its_own() {
        let registry = Registry::new(Duration::from_secs(1)).with_max_servers(2);
        registry.expect(1, "server-1".into(), "127.0.0.1:0".into(), "process".into());
        registry.expect(2, "server-2".into(), "127.0.0.1:0".into(), "process".into());
        let (link, _) = AgentLink::detached();
        let refused = registry.connect(hello(3, "127.0.0.1:9", "x"), link, SECOND);
        assert_eq!(refused, Err(Refusal::Full(2, 3)));
        let (link, _) = AgentLink::detached();
        assert!(
            registry
                .connect(hello(2, "127.0.0.1:9", "y"), link, SECOND)
                .is_ok()
        );
        assert_eq!(registry.ids(), [1, 2]);
    }

    #[test]
    fn servers_nobody_owns_leave_after_their_grace() {
        let registry =
            Registry::new(Duration::from_secs(1)).with_unowned_grace(Duration::from_millis(20));
        registry.expect(1, "server-1".into(), "127.0.0.1:0".into(), "process".into());
        let (own, _) = AgentLink::detached();
        let own_session = own.session;
        registry
            .connect(hello(1, "127.0.0.1:9", "a"), own, SECOND)
            .unwrap();
        let (stray, _) = AgentLink::detached();
        let stray_session = stray.session;
        registry
            .connect(hello(7, "127.0.0.1:9", "b"), stray, SECOND)
            .unwrap();
        registry.disconnect(1, own_session);
        registry.disconnect(7, stray_session);
        assert!(registry.sweep().is_empty(), "not before the grace");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(registry.sweep(), [7]);
        assert_eq!(registry.ids(), [1], "a runtime's server stays");
    }

    #[test]
    fn a_growing_farm_samples_less_often_in_few_steps() {
        assert_eq!(cadence(SECOND, 50), SECOND);
        assert_eq!(cadence(SECOND, 250), SECOND);
        assert_eq!(cadence(SECOND, 251), 2 * SECOND);
        assert_eq!(cadence(SECOND, 1000), 4 * SECOND);
        assert_eq!(
            cadence(Duration::from_millis(100), 1000),
            Duration::from_millis(6400)
        );
        assert_eq!(
            cadence(Duration::from_secs(60), 1_000_000),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn retuned_agents_keep_the_longer_silence_bound_until_they_take_the_new_pace() {
        let registry = Registry::new(SECOND);
        let (link, _rx) = AgentLink::detached();
        let session = registry
            .connect(hello(1, "127.0.0.1:9", "a"), link, SECOND)
            .unwrap();
        assert!(
            registry.retune().is_empty(),
            "one server samples at the base"
        );
        for id in 2..=300 {
            registry.expect(
                id,
                format!("server-{id}"),
                "127.0.0.1:0".into(),
                "process".into(),
            );
        }
        let retuned = registry.retune();
        assert_eq!(retuned.len(), 1, "only connected agents are told");
        assert_eq!((retuned[0].0, retuned[0].2), (1, 2 * SECOND));
        assert_eq!(registry.sample_interval(), 2 * SECOND);
        assert!(registry.retune().is_empty(), "told once");
        assert_eq!(registry.get(1).unwrap().stale_after, 6 * SECOND);

        for id in 2..=300 {
            registry.remove(id);
        }
        assert_eq!(registry.retune().len(), 1);
        assert_eq!(
            registry.get(1).unwrap().stale_after,
            6 * SECOND,
            "the agent may still sample every 2 s"
        );
        registry.retuned(1, session, SECOND);
        assert_eq!(registry.get(1).unwrap().stale_after, 3 * SECOND);
    }

    #[test]
    fn impossible_figures_are_recorded_as_zero() {
        let registry = Registry::new(Duration::from_secs(1));
        let (link, _) = AgentLink::detached();
        let session = registry
            .connect(hello(4, "127.0.0.1:9", "a"), link, SECOND)
            .unwrap();
        registry.record_sample(
            4,
            session,
            MetricsSample {
                cpu_percent: f64::NAN,
                latency_p99_ms: f64::INFINITY,
                latency_p50_ms: -3.0,
                memory_bytes: u64::MAX,
                ..MetricsSample::default()
            },
        );
        let entry = registry.get(4).unwrap();
        let sample = entry.latest().unwrap();
        assert_eq!(
            (
                sample.cpu_percent,
                sample.latency_p99_ms,
                sample.latency_p50_ms
            ),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(sample.memory_bytes, u64::MAX);
    }
}
