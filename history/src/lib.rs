//! The farm's history: every load test and scenario run, the farm's events, and its metrics
//! downsampled, in an embedded SQLite database (WAL mode) that outlives the controller.
//!
//! One file per farm, in the farm's data directory. The schema is versioned
//! (`PRAGMA user_version`, migrations from any older version in [`MIGRATIONS`]) and marked as
//! the farm's (`PRAGMA application_id`), so that a damaged file, another program's database
//! or one written by a newer farm is refused at start with the cause named, and never reset.
//!
//! Every kind of record is bounded, the oldest dropped first: [`MAX_RUNS`] runs,
//! [`MAX_EVENTS`] events, metric points at one a second for [`FINE_KEPT_SECONDS`] and one a
//! minute for [`COARSE_KEPT_SECONDS`] (per server and for the farm, so at most
//! `MAX_SERVERS + 1` series).
//!
//! Calls block on the database for about a millisecond; async callers run them on the
//! blocking pool.
//!
//! # Layout
//! - `lib.rs`: [`History`]: open (checks and migrations), runs, events, metrics, upkeep.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use farm_proto::v1::{FarmEvent, MetricPoint, RunKind, RunSummary};
use rusqlite::{Connection, OptionalExtension, params};

/// Runs kept (load tests and scenario runs together).
pub const MAX_RUNS: u64 = 1000;
/// Events kept.
pub const MAX_EVENTS: u64 = 100_000;
/// How long one-second metric points are kept.
pub const FINE_KEPT_SECONDS: u64 = 3600;
/// How long one-minute metric points are kept (a week).
pub const COARSE_KEPT_SECONDS: u64 = 7 * 24 * 3600;
/// Longest span one metric query may ask for (a week).
pub const MAX_SPAN_MS: u64 = COARSE_KEPT_SECONDS * 1000;
/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;
/// Marks a database as a farm history ("FARM").
const APPLICATION_ID: i64 = 0x4641_524d;
/// SQLite's page cache for the history, in KiB.
const PAGE_CACHE_KIB: i64 = 512;

/// Each step brings the schema from the version before it (index + 1) to the next.
const MIGRATIONS: &[&str] = &[
    // 1: runs, events and metric points.
    "CREATE TABLE runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL UNIQUE,
        kind INTEGER NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER NOT NULL,
        summary BLOB NOT NULL,
        report BLOB NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        server_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX events_by_server ON events (server_id, seq);
    CREATE TABLE points (
        server_id INTEGER NOT NULL,
        resolution INTEGER NOT NULL,
        at_s INTEGER NOT NULL,
        cpu_percent REAL NOT NULL,
        memory_bytes INTEGER NOT NULL,
        requests_per_second REAL NOT NULL,
        errors_per_second REAL NOT NULL,
        healthy REAL NOT NULL,
        PRIMARY KEY (server_id, resolution, at_s)
    ) WITHOUT ROWID;",
];

/// Why the history could not be opened: each names the file and the cause; nothing was
/// changed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory or the file cannot be made or opened.
    #[error("cannot open the farm's history at {path}: {source}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The file is not a SQLite database, or not the farm's, or damaged.
    #[error(
        "{path} is not a farm history that can be read ({cause}); move it aside or give another file with --history"
    )]
    NotAHistory {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        cause: String,
    },
    /// A newer farm wrote it.
    #[error(
        "{path} was written by a newer farm (schema {found}; this build reads up to {SCHEMA_VERSION}); it was left as it is"
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
    },
}

/// Why a read or write failed after opening.
#[derive(Debug, thiserror::Error)]
#[error("the farm's history: {0}")]
pub struct Error(#[from] rusqlite::Error);

/// Shorthand for the history's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One run as stored: its line and its whole report (the protobuf encoding of a
/// `RunLoadTestResponse` or a `ScenarioReport`, as `summary.kind` says).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    /// The run in a line.
    pub summary: RunSummary,
    /// The run's report, encoded.
    pub report: Vec<u8>,
}

/// An event not yet stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The server; 0 for the farm.
    pub server_id: u32,
    /// What (see `FarmEvent.kind`).
    pub kind: String,
    /// In words.
    pub detail: String,
}

/// One second's metrics of a server (or of the farm: server 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The server; 0 for the farm.
    pub server_id: u32,
    /// CPU, percent of one core.
    pub cpu_percent: f64,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Errors per second.
    pub errors_per_second: f64,
    /// Healthy servers (a server: 1 or 0).
    pub healthy: f64,
}

/// A page of runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunPage {
    /// Newest first.
    pub runs: Vec<RunSummary>,
    /// The next page's token, if there are older runs.
    pub next: Option<String>,
    /// Runs of the kind asked for.
    pub total: u64,
}

/// The farm's history, shared by every part of the controller.
#[derive(Clone)]
pub struct History {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("path", &self.path).finish()
    }
}

fn i(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn u(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl History {
    /// Opens (or makes) the history at `path`: checks that it is a farm history of a schema
    /// this build reads, brings an older schema up to date, and marks the runs that were
    /// running when the last controller stopped as interrupted. Returns the history and how
    /// many runs it marked.
    pub fn open(path: &Path) -> Result<(Self, u64), OpenError> {
        let unusable = |source: Box<dyn std::error::Error + Send + Sync>| OpenError::Unusable {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| unusable(e.into()))?;
        }
        let not_a_history = |cause: String| OpenError::NotAHistory {
            path: path.to_path_buf(),
            cause,
        };
        let mut connection = Connection::open(path).map_err(|e| unusable(e.into()))?;
        // A file that is not a database fails its first read.
        let (application_id, version): (i64, i64) = connection
            .query_row("PRAGMA application_id", [], |row| row.get(0))
            .and_then(|id| {
                connection
                    .query_row("PRAGMA user_version", [], |row| row.get(0))
                    .map(|v| (id, v))
            })
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::CannotOpen
                        || f.code == rusqlite::ErrorCode::ReadOnly
                        || f.code == rusqlite::ErrorCode::PermissionDenied =>
                {
                    unusable(e.into())
                }
                e => not_a_history(e.to_string()),
            })?;
        let tables: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(|e| not_a_history(e.to_string()))?;
        if application_id != APPLICATION_ID && (application_id != 0 || tables > 0) {
            return Err(not_a_history(format!(
                "it is a SQLite database of another program (application id {application_id:#x})"
            )));
        }
        if version > SCHEMA_VERSION {
            return Err(OpenError::Newer {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let check: String = connection
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| not_a_history(e.to_string()))?;
        if check != "ok" {
            return Err(not_a_history(format!("its integrity check says: {check}")));
        }
        // WAL: readers never wait for the writer; NORMAL survives a crash of the process.
        // The page cache is bounded below SQLite's 2 MiB default: the farm writes far more
        // than it reads back, and the cache would otherwise fill slowly as the file grows,
        // so the controller's memory took half an hour to level off.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| connection.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|()| connection.pragma_update(None, "cache_size", -PAGE_CACHE_KIB))
            .map_err(|e| unusable(e.into()))?;
        let migrate = |connection: &mut Connection| -> rusqlite::Result<()> {
            let transaction = connection.transaction()?;
            for (step, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                transaction.execute_batch(sql)?;
                transaction.pragma_update(None, "user_version", step as i64 + 1)?;
            }
            transaction.pragma_update(None, "application_id", APPLICATION_ID)?;
            transaction.commit()
        };
        migrate(&mut connection).map_err(|e| unusable(e.into()))?;
        let interrupted = connection
            .execute(
                "UPDATE runs SET state = 'interrupted' WHERE state = 'running'",
                [],
            )
            .map_err(|e| unusable(e.into()))?;
        Ok((
            Self {
                connection: Arc::new(Mutex::new(connection)),
                path: path.to_path_buf(),
            },
            interrupted as u64,
        ))
    }

    /// The file it lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f(&mut connection)?)
    }

    /// Stores a run, or its newer report; the oldest runs past [`MAX_RUNS`] are dropped.
    pub fn put_run(&self, summary: &RunSummary, report: &[u8]) -> Result<()> {
        use prost::Message;
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (run_id, kind, name, state, started_at_ms, ended_at_ms, summary, report)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (run_id) DO UPDATE SET state = ?4, ended_at_ms = ?6, summary = ?7, report = ?8",
                params![
                    summary.run_id,
                    summary.kind,
                    summary.name,
                    summary.state,
                    i(summary.started_at_ms),
                    i(summary.ended_at_ms),
                    summary.encode_to_vec(),
                    report
                ],
            )?;
            c.execute(
                "DELETE FROM runs WHERE seq <= (SELECT max(seq) FROM runs) - ?1",
                params![i(MAX_RUNS)],
            )?;
            Ok(())
        })
    }

    /// A page of runs, newest first: `page_size` of them, older than `token` (a previous
    /// page's), of `kind` (unspecified: both). `None` for a token this history never gave.
    pub fn runs(&self, page_size: u32, token: &str, kind: RunKind) -> Result<Option<RunPage>> {
        let before = if token.is_empty() {
            i64::MAX
        } else {
            match token.parse::<i64>() {
                Ok(seq) if seq > 0 => seq,
                _ => return Ok(None),
            }
        };
        let kind = kind as i32;
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT seq, summary, state FROM runs WHERE seq < ?1 AND (?2 = 0 OR kind = ?2)
                 ORDER BY seq DESC LIMIT ?3",
            )?;
            let rows: Vec<(i64, Vec<u8>, String)> = statement
                .query_map(params![before, kind, i64::from(page_size) + 1], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let total: i64 = c.query_row(
                "SELECT count(*) FROM runs WHERE ?1 = 0 OR kind = ?1",
                params![kind],
                |row| row.get(0),
            )?;
            let more = rows.len() > page_size as usize;
            let rows = &rows[..rows.len().min(page_size as usize)];
            Ok(Some(RunPage {
                runs: rows
                    .iter()
                    .filter_map(|(_, summary, state)| decode_summary(summary, state))
                    .collect(),
                next: more
                    .then(|| rows.last().map(|(seq, _, _)| seq.to_string()))
                    .flatten(),
                total: u(total),
            }))
        })
    }

    /// One run by id.
    pub fn run(&self, run_id: &str) -> Result<Option<StoredRun>> {
        self.with(|c| {
            c.query_row(
                "SELECT summary, report, state FROM runs WHERE run_id = ?1",
                params![run_id],
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()
        })
        .map(|found| {
            found.and_then(|(summary, report, state)| {
                Some(StoredRun {
                    summary: decode_summary(&summary, &state)?,
                    report,
                })
            })
        })
    }

    /// The highest number N of the runs whose ids read `{prefix}N`: new ids go on from it.
    pub fn last_run_number(&self, prefix: &str) -> Result<u64> {
        self.with(|c| {
            let mut statement = c.prepare_cached("SELECT run_id FROM runs WHERE run_id LIKE ?1")?;
            let ids: Vec<String> = statement
                .query_map(params![format!("{prefix}%")], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(ids
                .iter()
                .filter_map(|id| id.strip_prefix(prefix)?.parse::<u64>().ok())
                .max()
                .unwrap_or(0))
        })
    }

    /// Stores `events` in order; the oldest past [`MAX_EVENTS`] are dropped.
    pub fn add_events(&self, events: &[NewEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let transaction = c.transaction()?;
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO events (at_ms, server_id, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for e in events {
                    insert.execute(params![i(e.at_ms), e.server_id, e.kind, e.detail])?;
                }
            }
            transaction.execute(
                "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?1",
                params![i(MAX_EVENTS)],
            )?;
            transaction.commit()
        })
    }

    /// Events, oldest first: after `after_seq`, or the newest `limit` when `newest`; of one
    /// server when `server_id` is given. Also the newest event's number.
    pub fn events(
        &self,
        after_seq: u64,
        limit: u32,
        server_id: Option<u32>,
        newest: bool,
    ) -> Result<(Vec<FarmEvent>, u64)> {
        self.with(|c| {
            let server = server_id.map_or(-1, i64::from);
            let sql = if newest {
                "SELECT * FROM (SELECT seq, at_ms, server_id, kind, detail FROM events
                   WHERE (?2 < 0 OR server_id = ?2) ORDER BY seq DESC LIMIT ?3)
                 ORDER BY seq"
            } else {
                "SELECT seq, at_ms, server_id, kind, detail FROM events
                 WHERE seq > ?1 AND (?2 < 0 OR server_id = ?2) ORDER BY seq LIMIT ?3"
            };
            let mut statement = c.prepare_cached(sql)?;
            let events = statement
                .query_map(params![i(after_seq), server, limit], |row| {
                    Ok(FarmEvent {
                        seq: u(row.get(0)?),
                        at_ms: u(row.get(1)?),
                        server_id: row.get(2)?,
                        kind: row.get(3)?,
                        detail: row.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let last: Option<i64> =
                c.query_row("SELECT max(seq) FROM events", [], |row| row.get(0))?;
            Ok((events, u(last.unwrap_or(0))))
        })
    }

    /// Stores one second's metrics, `at_s` seconds since the Unix epoch.
    pub fn add_samples(&self, at_s: u64, samples: &[Sample]) -> Result<()> {
        self.with(|c| {
            let transaction = c.transaction()?;
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT OR REPLACE INTO points VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for s in samples {
                    insert.execute(params![
                        s.server_id,
                        i(at_s),
                        s.cpu_percent,
                        i(s.memory_bytes),
                        s.requests_per_second,
                        s.errors_per_second,
                        s.healthy
                    ])?;
                }
            }
            transaction.commit()
        })
    }

    /// Upkeep at `now_s`: every whole minute of one-second points not yet summed becomes one
    /// one-minute point (their means), and points past their keeping time are dropped.
    pub fn upkeep(&self, now_s: u64) -> Result<()> {
        let minute_start = now_s / 60 * 60;
        self.with(|c| {
            let transaction = c.transaction()?;
            let done: Option<i64> = transaction.query_row(
                "SELECT max(at_s) FROM points WHERE resolution = 60",
                [],
                |row| row.get(0),
            )?;
            let from = done.map_or(0, |d| d + 60);
            transaction.execute(
                "INSERT OR REPLACE INTO points
                 SELECT server_id, 60, at_s / 60 * 60, avg(cpu_percent), CAST(avg(memory_bytes) AS INTEGER),
                        avg(requests_per_second), avg(errors_per_second), avg(healthy)
                 FROM points WHERE resolution = 1 AND at_s >= ?1 AND at_s < ?2
                 GROUP BY server_id, at_s / 60",
                params![from, i(minute_start)],
            )?;
            transaction.execute(
                "DELETE FROM points WHERE resolution = 1 AND at_s < ?1",
                params![i(now_s.saturating_sub(FINE_KEPT_SECONDS))],
            )?;
            transaction.execute(
                "DELETE FROM points WHERE resolution = 60 AND at_s < ?1",
                params![i(now_s.saturating_sub(COARSE_KEPT_SECONDS))],
            )?;
            transaction.commit()
        })
    }

    /// The metrics of `server_id` (0: the farm) from `from_ms` to `to_ms`: one-second points
    /// when the span starts within the last hour of `now_ms`, else one-minute points.
    /// Returns the points and their resolution in seconds.
    pub fn points(
        &self,
        server_id: u32,
        from_ms: u64,
        to_ms: u64,
        now_ms: u64,
    ) -> Result<(Vec<MetricPoint>, u32)> {
        let fine = from_ms / 1000 >= (now_ms / 1000).saturating_sub(FINE_KEPT_SECONDS);
        let resolution: u32 = if fine { 1 } else { 60 };
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT at_s, cpu_percent, memory_bytes, requests_per_second, errors_per_second, healthy
                 FROM points WHERE server_id = ?1 AND resolution = ?2 AND at_s >= ?3 AND at_s <= ?4
                 ORDER BY at_s",
            )?;
            let points = statement
                .query_map(
                    params![
                        server_id,
                        resolution,
                        i(from_ms / 1000 / u64::from(resolution) * u64::from(resolution)),
                        i(to_ms / 1000)
                    ],
                    |row| {
                        Ok(MetricPoint {
                            at_ms: u(row.get(0)?) * 1000,
                            cpu_percent: row.get(1)?,
                            memory_bytes: u(row.get(2)?),
                            requests_per_second: row.get(3)?,
                            errors_per_second: row.get(4)?,
                            healthy: row.get(5)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((points, resolution))
        })
    }
}

/// A stored line, with its state as the table says: a run found running at start was marked
/// interrupted there.
fn decode_summary(summary: &[u8], state: &str) -> Option<RunSummary> {
    use prost::Message;
    let mut summary = RunSummary::decode(summary).ok()?;
    summary.state = state.to_string();
    Some(summary)
}

/// A load test's or scenario's line, for [`History::put_run`].
#[allow(clippy::too_many_arguments)]
pub fn summary(
    run_id: &str,
    kind: RunKind,
    name: String,
    state: &str,
    started_at_ms: u64,
    ended_at_ms: u64,
    result: Option<&farm_proto::v1::LoadTestResult>,
    verdicts: (u32, u32),
) -> RunSummary {
    RunSummary {
        run_id: run_id.to_string(),
        kind: kind as i32,
        name,
        state: state.to_string(),
        started_at_ms,
        ended_at_ms,
        requests: result.map_or(0, |r| r.requests),
        failures: result.map_or(0, |r| r.failures),
        requests_per_second: result.map_or(0.0, |r| r.requests_per_second),
        latency: Some(result.and_then(|r| r.latency).unwrap_or_default()),
        verdicts_passed: verdicts.0,
        verdicts_total: verdicts.1,
    }
}

#[cfg(test)]
mod tests;
