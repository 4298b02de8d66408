//! The connections a node holds, bounded: at most [`ConnectionLimits::max_connections`] at
//! once (a connection past it is closed as soon as it is accepted, and counted as refused),
//! and none idle for longer than [`ConnectionLimits::idle_timeout`].
//!
//! Idle means no request in flight and none arriving: a client that sits on a keep-alive
//! connection, or one that sends its request so slowly that it never completes (slowloris),
//! is cut. A response is in flight until its body has been written, so a response a client
//! reads slowly, or one slowed on purpose, is never cut.
//!
//! The request path pays two relaxed atomic increments per request (start and end) and one
//! reference count; no timer is armed per request. One sweeper task looks at every
//! connection a few times per timeout instead.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use farm_proto::limits;
use http_body::{Body, Frame, SizeHint};
use tokio_util::sync::CancellationToken;

/// How many connections a node holds and for how long they may sit idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long a connection may go without a request in flight or arriving.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: limits::DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Duration::from_millis(limits::DEFAULT_IDLE_TIMEOUT_MS),
        }
    }
}

/// One connection's activity: a counter that is odd while a request is in flight (it goes
/// up at the start of each request and when its response has been written).
#[derive(Debug, Default)]
pub(crate) struct Activity(AtomicU64);

impl Activity {
    /// A request arrived (its head has been read).
    pub(crate) fn begin(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A response body that ends its request's activity once written (or dropped).
pub(crate) struct Tracked<B> {
    inner: B,
    activity: Arc<Activity>,
}

impl<B> Tracked<B> {
    pub(crate) fn new(inner: B, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.activity.end();
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the sweeper knows of one connection.
struct Watched {
    activity: Arc<Activity>,
    close: CancellationToken,
    last_value: u64,
    unchanged_since: Instant,
}

/// Every open connection, and the counts `/metrics` reports.
pub(crate) struct Connections {
    limits: ConnectionLimits,
    open: AtomicUsize,
    refused: AtomicU64,
    next_id: AtomicU64,
    watched: Mutex<HashMap<u64, Watched>>,
}

/// A connection's place in [`Connections`], given back when dropped.
pub(crate) struct Admitted {
    connections: Arc<Connections>,
    id: u64,
    /// The connection's activity, for its requests.
    pub(crate) activity: Arc<Activity>,
    /// Cancelled when the sweeper cuts the connection (or the node shuts down).
    pub(crate) close: CancellationToken,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
        lock(&self.connections.watched).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("limits", &self.limits)
            .field("open", &self.open())
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

impl Connections {
    pub(crate) fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            watched: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a new connection, or `None` (counted as refused) when the node is at its bound.
    /// Its close token is a child of `shutdown`.
    pub(crate) fn admit(self: &Arc<Self>, shutdown: &CancellationToken) -> Option<Admitted> {
        let max = self.limits.max_connections;
        if self.open.fetch_add(1, Ordering::Relaxed) >= max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::default());
        let close = shutdown.child_token();
        lock(&self.watched).insert(
            id,
            Watched {
                activity: activity.clone(),
                close: close.clone(),
                last_value: 0,
                unchanged_since: Instant::now(),
            },
        );
        Some(Admitted {
            connections: self.clone(),
            id,
            activity,
            close,
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused at the bound since the node started.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Cuts the connections that have been idle past the timeout, until `stop`.
    pub(crate) async fn sweep(self: Arc<Self>, stop: CancellationToken) {
        let timeout = self.limits.idle_timeout;
        let mut tick = tokio::time::interval((timeout / 4).max(Duration::from_millis(25)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            for watched in lock(&self.watched).values_mut() {
                let value = watched.activity.value();
                if value != watched.last_value || value % 2 == 1 {
                    // A request arrived or is in flight.
                    watched.last_value = value;
                    watched.unchanged_since = now;
                } else if now.duration_since(watched.unchanged_since) >= timeout {
                    watched.close.cancel();
                }
            }
        }
    }
}
