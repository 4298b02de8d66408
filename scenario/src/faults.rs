//! The `faults` list: when each fault starts and ends, which servers it hits, and what it
//! does, down to the fault profile the controller applies.

use std::time::Duration;

use farm_proto::limits::{
    DEFAULT_HANG_MS, MAX_ABORT_STATUSES, MAX_ABORT_WEIGHT, MAX_DURATION_SECONDS,
    MAX_FAULT_DELAY_MS, MAX_FAULT_RATE_PER_SECOND, MAX_FAULT_STATUS, MAX_HANG_MS,
    MAX_RETRY_AFTER_SECONDS, MAX_THROUGHPUT_BYTES_PER_SECOND, MIN_FAULT_STATUS,
};
use farm_proto::v1::{
    AbortFault, ConnectionFault, ConnectionFaultMode, FaultProfile, FaultWhen, HangFault,
    HealthFault, LatencyFault, PartitionFault, RateLimitFault, ReadinessFault, StatusWeight,
    ThroughputFault,
};

use crate::read::{self, Ctx, Fields};
use crate::scenario::{LoadInfo, read_path, read_servers};
use crate::units::format_duration;
use crate::yaml::Node;
use crate::{Fault, FaultAction, MAX_FAULTS, Selection};

/// What an SLO may say about a fault: its id and when it ends.
pub(crate) struct FaultRef {
    pub(crate) id: String,
    pub(crate) end: End,
}

/// When a fault ends, as a recovery sees it.
#[derive(Clone, Copy)]
pub(crate) enum End {
    /// At this time from the load's start (an instant fault: its instant).
    At(Duration),
    /// Only when the load ends: nothing to recover from.
    WithLoad,
    /// Not known: the fault had problems of its own.
    Unknown,
}

/// Every kind, in the order the documentation gives them.
const KINDS: &[&str] = &[
    "latency",
    "abort",
    "hang",
    "throughput",
    "close",
    "reset",
    "rate_limit",
    "health",
    "readiness",
    "partition",
    "kill",
    "stop",
    "restart",
    "pause",
];

/// Keys every fault takes.
const COMMON: &[&str] = &["id", "at", "for", "kind", "servers", "share"];

/// The keys of one kind, beyond the common ones.
fn kind_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "latency" => &[
            "percent",
            "path_prefix",
            "delay",
            "jitter",
            "p50",
            "p90",
            "p99",
        ],
        "abort" => &["percent", "path_prefix", "status", "statuses"],
        "hang" => &["percent", "path_prefix", "max"],
        "throughput" => &["percent", "path_prefix", "bytes_per_second"],
        "close" | "reset" => &["percent", "path_prefix"],
        "rate_limit" => &[
            "percent",
            "path_prefix",
            "requests_per_second",
            "status",
            "retry_after",
        ],
        // These two touch /health and /ready only, whatever the prefix: one would mislead.
        "health" => &["percent", "status"],
        "readiness" => &["percent"],
        _ => &[],
    }
}

/// Reads the list; the refs are `None` when a fault's id could not be told (then SLOs that
/// name faults are not judged against the list, to avoid a false "no such fault").
pub(crate) fn read(
    ctx: &mut Ctx,
    node: &Node,
    load: Option<&LoadInfo>,
) -> (Option<Vec<Fault>>, Option<Vec<FaultRef>>) {
    let Some(items) = read::list(
        ctx,
        node,
        "faults",
        MAX_FAULTS,
        "{ at: 5s, kind: kill, servers: [2] }",
    ) else {
        return (None, None);
    };
    let mut faults = Vec::new();
    let mut refs = Some(Vec::new());
    let mut ok = true;
    // (id, index) of the faults read so far: for duplicates.
    let mut ids: Vec<(String, usize)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("faults[{i}]");
        let read = read_fault(ctx, item, i, &path, load);
        if let Some((id, id_line, explicit)) = &read.id {
            if let Some((_, first)) = ids.iter().find(|(known, _)| known == id) {
                let message = if *explicit {
                    format!("fault id `{id}` is already used by faults[{first}]; ids are unique")
                } else {
                    format!(
                        "this fault's default id `{id}` is already used by faults[{first}]; \
                         give it an `id`"
                    )
                };
                ctx.report(*id_line, &format!("{path}.id"), message);
                ok = false;
            }
            ids.push((id.clone(), i));
            if let Some(refs) = &mut refs {
                refs.push(FaultRef {
                    id: id.clone(),
                    end: read.end,
                });
            }
        } else {
            refs = None;
        }
        match read.fault {
            Some(fault) => faults.push(fault),
            None => ok = false,
        }
    }
    if ok && let Some(load) = load {
        ok = no_overlaps(ctx, &faults, load.end);
    }
    (ok.then_some(faults), refs)
}

/// Refuses two faults of one kind on shared servers at overlapping times: a server holds one
/// fault of each kind, so the later would replace the earlier, and the first to end would
/// clear both. True when there is none.
fn no_overlaps(ctx: &mut Ctx, faults: &[Fault], load_end: Duration) -> bool {
    let window = |f: &Fault| (f.at, f.duration.map_or(load_end, |d| f.at + d));
    let share_servers = |a: &Fault, b: &Fault| match (&a.servers.selection, &b.servers.selection) {
        (Selection::Ids(x), Selection::Ids(y)) => x.iter().any(|id| y.contains(id)),
        _ => true,
    };
    let mut ok = true;
    for (j, later) in faults.iter().enumerate() {
        let Some(kind) = later.action.profile_kind() else {
            continue;
        };
        let (start, end) = window(later);
        if let Some((i, earlier)) = faults[..j].iter().enumerate().find(|(_, earlier)| {
            let (s, e) = window(earlier);
            earlier.action.profile_kind() == Some(kind)
                && share_servers(earlier, later)
                && s < end
                && start < e
        }) {
            let (s, e) = window(earlier);
            ctx.report(
                later.line,
                &format!("faults[{j}].at"),
                format!(
                    "overlaps faults[{i}] (`{}`, {} on some of the same servers from {} to {}): \
                     a server holds one fault of that kind at a time, so the later would replace \
                     the earlier and the first to end would clear both",
                    earlier.id,
                    earlier.action.kind(),
                    format_duration(s),
                    format_duration(e)
                ),
            );
            ok = false;
        }
    }
    ok
}

/// What reading one fault gave: the fault when whole, and what SLOs need even when not.
struct Read {
    fault: Option<Fault>,
    /// Its id, the line that gives it, and whether the file wrote it.
    id: Option<(String, u32, bool)>,
    end: End,
}

fn read_fault(
    ctx: &mut Ctx,
    node: &Node,
    index: usize,
    path: &str,
    load: Option<&LoadInfo>,
) -> Read {
    let mut result = Read {
        fault: None,
        id: None,
        end: End::Unknown,
    };
    let Some(fields) = Fields::of(
        ctx,
        node,
        path,
        node.line,
        "`{ at: 5s, kind: kill, servers: [2] }`",
    ) else {
        return result;
    };
    let kind = fields
        .require(
            ctx,
            "kind",
            "give what goes wrong, e.g. `kind: kill` or `kind: latency`",
        )
        .and_then(|n| read::word(ctx, n, &fields.field("kind"), KINDS));
    if let Some(kind) = kind {
        let allowed: Vec<&str> = COMMON.iter().chain(kind_keys(kind)).copied().collect();
        fields.only(ctx, &allowed, &format!("in a {kind} fault"));
    }

    let id = match fields.entry("id") {
        Some(entry) => {
            read::name(ctx, &entry.value, &fields.field("id")).map(|id| (id, entry.line, true))
        }
        None => kind.map(|kind| (format!("{kind}-{}", index + 1), node.line, false)),
    };
    result.id = id.clone();

    let longest = Duration::from_secs(MAX_DURATION_SECONDS.into());
    let at = fields
        .require(
            ctx,
            "at",
            "give when it starts, from the load's start, e.g. `at: 5s`",
        )
        .and_then(|n| read::duration(ctx, n, &fields.field("at"), Duration::ZERO, longest));
    let duration = read_for(ctx, &fields, kind);

    // The fault must happen while the load runs: the runner ends every fault with the load.
    let mut timing_ok = true;
    if let (Some(load), Some(at)) = (load, at) {
        let end = load.end;
        if at >= end {
            let line = fields.key_line("at").unwrap_or(node.line);
            ctx.report(
                line,
                &fields.field("at"),
                format!(
                    "starts at {}, not before the load's end: the phases last {}",
                    format_duration(at),
                    format_duration(end)
                ),
            );
            timing_ok = false;
        } else if let Some(Some(length)) = duration
            && at + length > end
        {
            let line = fields.key_line("for").unwrap_or(node.line);
            ctx.report(
                line,
                &fields.field("for"),
                format!(
                    "the fault would end at {} ({} + {}), after the load's end at {}",
                    format_duration(at + length),
                    format_duration(at),
                    format_duration(length),
                    format_duration(end)
                ),
            );
            timing_ok = false;
        }
    }
    if let (Some(kind), Some(at), Some(duration)) = (kind, at, duration) {
        result.end = match duration {
            Some(length) => End::At(at + length),
            None if matches!(kind, "kill" | "restart") => End::At(at),
            None => End::WithLoad,
        };
    }

    let servers = fields
        .require(
            ctx,
            "servers",
            "give the servers it hits: `all` or a list such as [2, 3]",
        )
        .and_then(|n| read_servers(ctx, n, &fields.field("servers")));
    let share = match fields.get("share") {
        None => Some(None),
        Some(n) => read::percent(ctx, n, &fields.field("share"), false).map(Some),
    };
    let action = kind.and_then(|kind| read_action(ctx, &fields, kind));

    let (Some((id, _, _)), Some(at), Some(duration), Some(servers), Some(share), Some(action)) =
        (id, at, duration, servers, share, action)
    else {
        return result;
    };
    if timing_ok {
        result.fault = Some(Fault {
            id,
            at,
            duration,
            servers,
            share,
            action,
            line: node.line,
        });
    }
    result
}

/// The `for` key: `Some(None)` when left out and allowed to be, `None` on a problem.
fn read_for(ctx: &mut Ctx, fields: &Fields<'_>, kind: Option<&str>) -> Option<Option<Duration>> {
    let field = fields.field("for");
    let longest = Duration::from_secs(MAX_DURATION_SECONDS.into());
    let shortest = Duration::from_millis(1);
    match kind {
        Some("restart") => {
            if let Some(line) = fields.key_line("for") {
                ctx.report(
                    line,
                    &field,
                    "a restart happens at once and has no length; remove `for` \
                     (use `kind: stop` with `for` to keep a server down)",
                );
                return None;
            }
            Some(None)
        }
        Some("partition") => {
            let node = fields.require(
                ctx,
                "for",
                "a partition must heal: give its length, e.g. `for: 5s`",
            )?;
            read::duration(ctx, node, &field, shortest, longest).map(Some)
        }
        _ => match fields.get("for") {
            None => kind.map(|_| None),
            Some(node) => {
                let length = read::duration(ctx, node, &field, shortest, longest);
                // With the kind unknown the value's form is still checked, but no fault is made.
                kind.and(length).map(Some)
            }
        },
    }
}

/// The action of `kind`, reading its own keys.
fn read_action(ctx: &mut Ctx, fields: &Fields<'_>, kind: &str) -> Option<FaultAction> {
    match kind {
        "kill" => return Some(FaultAction::Kill),
        "stop" => return Some(FaultAction::Stop),
        "restart" => return Some(FaultAction::Restart),
        "pause" => return Some(FaultAction::Pause),
        "partition" => {
            return Some(FaultAction::Profile(FaultProfile {
                partition: Some(PartitionFault {
                    when: Some(FaultWhen::default()),
                }),
                ..FaultProfile::default()
            }));
        }
        _ => {}
    }
    let when = read_when(ctx, fields, kind);
    let mut profile = FaultProfile::default();
    let set = match kind {
        "latency" => read_latency(ctx, fields).map(|mut fault| {
            fault.when = when.clone();
            profile.latency = Some(fault);
        }),
        "abort" => read_abort_statuses(ctx, fields).map(|statuses| {
            profile.abort = Some(AbortFault {
                when: when.clone(),
                statuses,
            });
        }),
        "hang" => {
            let max = match fields.get("max") {
                None => Some(DEFAULT_HANG_MS),
                Some(n) => read::duration(
                    ctx,
                    n,
                    &fields.field("max"),
                    Duration::from_millis(1),
                    Duration::from_millis(MAX_HANG_MS.into()),
                )
                .map(millis),
            };
            max.map(|max_ms| {
                profile.hang = Some(HangFault {
                    when: when.clone(),
                    max_ms,
                });
            })
        }
        "throughput" => fields
            .require(
                ctx,
                "bytes_per_second",
                "give the drip's cap, e.g. `bytes_per_second: 1024`",
            )
            .and_then(|n| {
                read::uint(
                    ctx,
                    n,
                    &fields.field("bytes_per_second"),
                    1,
                    MAX_THROUGHPUT_BYTES_PER_SECOND,
                    "a number of bytes per second",
                )
            })
            .map(|bytes_per_second| {
                profile.throughput = Some(ThroughputFault {
                    when: when.clone(),
                    bytes_per_second,
                });
            }),
        "close" | "reset" => {
            let mode = if kind == "close" {
                ConnectionFaultMode::Close
            } else {
                ConnectionFaultMode::Reset
            };
            profile.connection = Some(ConnectionFault {
                when: when.clone(),
                mode: mode as i32,
            });
            Some(())
        }
        "rate_limit" => {
            let rate = fields
                .require(
                    ctx,
                    "requests_per_second",
                    "give the rate let through, e.g. `requests_per_second: 20`",
                )
                .and_then(|n| {
                    read::uint(
                        ctx,
                        n,
                        &fields.field("requests_per_second"),
                        1,
                        MAX_FAULT_RATE_PER_SECOND,
                        "a number of requests per second",
                    )
                });
            let status = read_status(ctx, fields, 429);
            let retry_after = match fields.get("retry_after") {
                None => Some(0),
                Some(n) => read::seconds(
                    ctx,
                    n,
                    &fields.field("retry_after"),
                    Duration::ZERO,
                    Duration::from_secs(MAX_RETRY_AFTER_SECONDS.into()),
                    "Retry-After is in seconds",
                )
                .map(|d| d.as_secs() as u32),
            };
            match (rate, status, retry_after) {
                (Some(requests_per_second), Some(status), Some(retry_after_seconds)) => {
                    profile.rate_limit = Some(RateLimitFault {
                        when: when.clone(),
                        requests_per_second,
                        status,
                        retry_after_seconds,
                    });
                    Some(())
                }
                _ => None,
            }
        }
        "health" => read_status(ctx, fields, 503).map(|status| {
            profile.health = Some(HealthFault {
                when: when.clone(),
                status,
            });
        }),
        "readiness" => {
            profile.readiness = Some(ReadinessFault { when: when.clone() });
            Some(())
        }
        _ => None,
    };
    // `when` is checked last so that its problems and the kind's are all reported.
    when?;
    set.map(|()| FaultAction::Profile(profile))
}

/// `percent` and `path_prefix`, into the profile's `FaultWhen`; the runner fills in
/// `duration_seconds` and `seed`.
fn read_when(ctx: &mut Ctx, fields: &Fields<'_>, kind: &str) -> Option<FaultWhen> {
    let percent = match fields.get("percent") {
        None => Some(None),
        Some(n) => read::percent(ctx, n, &fields.field("percent"), true).map(Some),
    };
    let path_prefix = match fields.get("path_prefix") {
        Some(n) if kind_keys(kind).contains(&"path_prefix") => {
            read_path(ctx, n, &fields.field("path_prefix"))
        }
        _ => Some(String::new()),
    };
    Some(FaultWhen {
        percent: percent?,
        path_prefix: path_prefix?,
        ..FaultWhen::default()
    })
}

fn read_latency(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<LatencyFault> {
    let most = Duration::from_millis(MAX_FAULT_DELAY_MS.into());
    let mut delay = |key: &str| {
        fields.get(key).map(|n| {
            read::duration(ctx, n, &fields.field(key), Duration::ZERO, most)
                .map(|d| (millis(d), n.line))
        })
    };
    let (fixed_delay, jitter) = (delay("delay"), delay("jitter"));
    let (p50, p90, p99) = (delay("p50"), delay("p90"), delay("p99"));
    let shape = [("p50", p50), ("p90", p90), ("p99", p99)];
    let fixed = fixed_delay.is_some() || jitter.is_some();
    let first_shape = shape.iter().find(|(_, v)| v.is_some()).map(|(key, _)| *key);
    match (fixed, first_shape) {
        (true, Some(key)) => {
            ctx.report(
                fields.key_line(key).unwrap_or(fields.line),
                &fields.field(key),
                "a latency fault takes `delay` (and `jitter`) or the shape `p50`, `p90`, `p99`, \
                 not both",
            );
            None
        }
        (false, None) => {
            ctx.report(
                fields.line,
                &fields.field("delay"),
                "missing; give `delay` (and optionally `jitter`), or the shape `p50`, `p90`, `p99`",
            );
            None
        }
        (true, None) => {
            let Some(fixed_delay) = fixed_delay else {
                ctx.report(
                    fields.line,
                    &fields.field("delay"),
                    "missing; `jitter` varies a `delay`: give `delay` too (it may be 0ms)",
                );
                return None;
            };
            let (delay_ms, _) = fixed_delay?;
            let jitter_ms = match jitter {
                None => 0,
                Some(jitter) => jitter?.0,
            };
            Some(LatencyFault {
                delay_ms,
                jitter_ms,
                ..LatencyFault::default()
            })
        }
        (false, Some(_)) => {
            let mut values = Vec::new();
            let mut ok = true;
            for (key, value) in shape {
                match value {
                    Some(Some(v)) => values.push((key, v)),
                    Some(None) => ok = false,
                    None => {
                        ctx.report(
                            fields.line,
                            &fields.field(key),
                            "missing; the shape needs all of `p50`, `p90` and `p99`",
                        );
                        ok = false;
                    }
                }
            }
            if !ok {
                return None;
            }
            for pair in values.windows(2) {
                let ((low_key, (low, _)), (high_key, (high, line))) = (pair[0], pair[1]);
                if high < low {
                    ctx.report(
                        line,
                        &fields.field(high_key),
                        format!(
                            "{high_key} ({high}ms) is below {low_key} ({low}ms); the shape must \
                             not decrease"
                        ),
                    );
                    ok = false;
                }
            }
            ok.then(|| LatencyFault {
                p50_ms: values[0].1.0,
                p90_ms: values[1].1.0,
                p99_ms: values[2].1.0,
                ..LatencyFault::default()
            })
        }
    }
}

/// `status: 503` or `statuses: { 503: 3, 500: 1 }`.
fn read_abort_statuses(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<Vec<StatusWeight>> {
    let Some(node) = fields.get("statuses") else {
        return read_status(ctx, fields, 503)
            .map(|status| vec![StatusWeight { status, weight: 1 }]);
    };
    if let Some(line) = fields.key_line("status") {
        ctx.report(
            line,
            &fields.field("status"),
            "give `status` (one code) or `statuses` (codes and weights), not both",
        );
        return None;
    }
    let path = fields.field("statuses");
    let mix = Fields::of(ctx, node, &path, node.line, "`{ 503: 3, 500: 1 }`")?;
    let entries = mix.entries();
    if entries.is_empty() || entries.len() > MAX_ABORT_STATUSES {
        ctx.report(
            node.line,
            &path,
            format!(
                "holds {} status codes; give 1 to {MAX_ABORT_STATUSES}",
                entries.len()
            ),
        );
        return None;
    }
    let mut statuses = Vec::new();
    let mut ok = true;
    for entry in entries {
        let field = mix.field(&entry.key);
        let status = match crate::units::integer(&entry.key) {
            Some(code)
                if (i128::from(MIN_FAULT_STATUS)..=i128::from(MAX_FAULT_STATUS))
                    .contains(&code) =>
            {
                Some(code as u32)
            }
            _ => {
                ctx.report(
                    entry.line,
                    &field,
                    format!(
                        "`{}` is not a status code {MIN_FAULT_STATUS} to {MAX_FAULT_STATUS}",
                        crate::yaml::shorten(&entry.key)
                    ),
                );
                None
            }
        };
        let weight = read::uint(
            ctx,
            &entry.value,
            &field,
            1,
            MAX_ABORT_WEIGHT,
            "a weight (a whole number)",
        );
        match (status, weight) {
            (Some(status), Some(weight)) => statuses.push(StatusWeight { status, weight }),
            _ => ok = false,
        }
    }
    ok.then_some(statuses)
}

/// The `status` key, 400 to 599, or `default`.
fn read_status(ctx: &mut Ctx, fields: &Fields<'_>, default: u32) -> Option<u32> {
    match fields.get("status") {
        None => Some(default),
        Some(n) => read::uint(
            ctx,
            n,
            &fields.field("status"),
            MIN_FAULT_STATUS.into(),
            MAX_FAULT_STATUS.into(),
            "an HTTP status code",
        ),
    }
}

/// Whole milliseconds as the profile carries them; every bound checked fits a `u32`.
fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
