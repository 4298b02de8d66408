//! The top of the file: version, name, target, steady-state checks and the load. Faults and
//! SLOs need what the load says (its length, its phases), so they are read after it with
//! that in hand.

use std::time::Duration;

use farm_proto::limits::{
    MAX_CONCURRENCY, MAX_DURATION_SECONDS, MAX_RATE_PER_SECOND, MAX_SERVER_ID, MAX_SERVERS,
    MAX_TIMEOUT_MS, check_node_path,
};

use crate::read::{self, Ctx, Fields};
use crate::units::format_duration;
use crate::yaml::{Node, Value, shorten};
use crate::{
    Check, CheckKind, Load, MAX_CHECKS, MAX_PHASES, Model, Phase, Scenario, Selection, Servers,
    Target, VERSION, When, faults, slo,
};

/// What the rest of the file may rely on from a load that was read whole.
pub(crate) struct LoadInfo {
    /// The load's end: the phases' lengths added up.
    pub(crate) end: Duration,
    /// The phases' names, in order.
    pub(crate) phases: Vec<String>,
}

const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "seed",
    "target",
    "steady_state",
    "load",
    "faults",
    "slo",
    "abort",
];

/// Longest description, in bytes.
const MAX_DESCRIPTION: usize = 1024;

/// Reads the whole scenario; `None` when anything was wrong (the problems are in `ctx`).
pub(crate) fn read(ctx: &mut Ctx, root: &Node) -> Option<Scenario> {
    let top = Fields::of(ctx, root, "", 0, "`version: 1`")?;
    // The version first and alone: a file of another version is not judged by this one's
    // rules, which would only bury the one problem that matters under others.
    if let Some(node) = top.require(ctx, "version", "write `version: 1` at the top") {
        let version = read::text(ctx, node, "version", "the format version, 1")?;
        if crate::units::integer(version) != Some(i128::from(VERSION)) {
            ctx.report(
                node.line,
                "version",
                format!(
                    "this build reads version {VERSION} of the scenario format, got `{}`",
                    shorten(version)
                ),
            );
            return None;
        }
    }
    top.only(ctx, TOP_KEYS, "at the top of a scenario");

    let name = top
        .require(
            ctx,
            "name",
            "give the scenario a name, e.g. `name: kill-one`",
        )
        .and_then(|node| read::name(ctx, node, "name"));
    let description = match top.get("description") {
        None => Some(String::new()),
        Some(node) => read::text(ctx, node, "description", "a text").and_then(|text| {
            if text.len() > MAX_DESCRIPTION {
                ctx.report(
                    node.line,
                    "description",
                    format!(
                        "is {} bytes; at most {MAX_DESCRIPTION} are allowed",
                        text.len()
                    ),
                );
                return None;
            }
            Some(text.to_string())
        }),
    };
    let seed = match top.get("seed") {
        None => Some(None),
        Some(node) => read::integer(
            ctx,
            node,
            "seed",
            0,
            u64::MAX.into(),
            "a whole number from 0 to 2^64 - 1",
        )
        .map(|v| u64::try_from(v).ok()),
    };
    let target = match top.entry("target") {
        None => Some(default_target()),
        Some(entry) => read_target(ctx, &entry.value, entry.line),
    };
    let steady_state = match top.entry("steady_state") {
        None => Some(Vec::new()),
        Some(entry) => read_checks(ctx, &entry.value),
    };
    let load = top
        .require(ctx, "load", "give the load: `load: { phases: [...] }`")
        .and_then(|node| read_load(ctx, node, top.key_line("load").unwrap_or(0)));
    let info = load.as_ref().map(|load| LoadInfo {
        end: load.phases.iter().map(|p| p.duration).sum(),
        phases: load.phases.iter().map(|p| p.name.clone()).collect(),
    });
    let (faults, fault_refs) = match top.entry("faults") {
        None => (Some(Vec::new()), Some(Vec::new())),
        Some(entry) => faults::read(ctx, &entry.value, info.as_ref()),
    };
    let slo = match top.entry("slo") {
        None => Some(Vec::new()),
        Some(entry) => {
            slo::read_assertions(ctx, &entry.value, info.as_ref(), fault_refs.as_deref())
        }
    };
    let abort = match top.entry("abort") {
        None => Some(Vec::new()),
        Some(entry) => slo::read_abort_rules(ctx, &entry.value),
    };

    Some(Scenario {
        name: name?,
        description: description?,
        seed: seed?,
        target: target?,
        steady_state: steady_state?,
        load: load?,
        faults: faults?,
        slo: slo?,
        abort: abort?,
    })
}

fn default_target() -> Target {
    Target {
        servers: Servers {
            selection: Selection::All,
            line: 0,
        },
        path: "/".into(),
        method: "GET".into(),
        timeout: Duration::from_secs(2),
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "HEAD"];

fn read_target(ctx: &mut Ctx, node: &Node, line: u32) -> Option<Target> {
    let fields = Fields::of(
        ctx,
        node,
        "target",
        line,
        "`{ servers: all, path: /, method: GET, timeout: 2s }`",
    )?;
    fields.only(
        ctx,
        &["servers", "path", "method", "timeout"],
        "in `target`",
    );
    let mut target = default_target();
    let mut ok = true;
    if let Some(node) = fields.get("servers") {
        match read_servers(ctx, node, "target.servers") {
            Some(servers) => target.servers = servers,
            None => ok = false,
        }
    }
    if let Some(node) = fields.get("path") {
        match read_path(ctx, node, "target.path") {
            Some(path) => target.path = path,
            None => ok = false,
        }
    }
    if let Some(node) = fields.get("method") {
        let what = format!("an HTTP method: {}", METHODS.join(", "));
        match read::text(ctx, node, "target.method", &what) {
            // Methods are case-sensitive in HTTP, but nobody means `get` as another method.
            Some(text) if METHODS.contains(&text.to_ascii_uppercase().as_str()) => {
                target.method = text.to_ascii_uppercase();
            }
            Some(text) => {
                ctx.report(
                    node.line,
                    "target.method",
                    format!("expected {what}, got `{}`", shorten(text)),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(node) = fields.get("timeout") {
        let most = Duration::from_millis(MAX_TIMEOUT_MS.into());
        match read::duration(ctx, node, "target.timeout", Duration::from_millis(1), most) {
            Some(timeout) => target.timeout = timeout,
            None => ok = false,
        }
    }
    ok.then_some(target)
}

/// A path on the node (the target's, a fault's prefix): what the controller accepts.
pub(crate) fn read_path(ctx: &mut Ctx, node: &Node, field: &str) -> Option<String> {
    let text = read::text(ctx, node, field, "a path such as /data/4")?;
    let checked = if text.is_empty() {
        Err("the path is empty; write `/` for the root".to_string())
    } else {
        check_node_path(text, "the path")
    };
    match checked {
        Ok(()) => Some(text.to_string()),
        Err(message) => {
            ctx.report(node.line, field, message);
            None
        }
    }
}

/// `all` or a list of server ids.
pub(crate) fn read_servers(ctx: &mut Ctx, node: &Node, field: &str) -> Option<Servers> {
    let expected = "`all` or a list of server ids such as [1, 2]";
    let items = match &node.value {
        Value::Scalar { text, .. } if text == "all" => {
            return Some(Servers {
                selection: Selection::All,
                line: node.line,
            });
        }
        Value::Seq(items) => items,
        _ => {
            ctx.report(
                node.line,
                field,
                format!("expected {expected}, got {}", node.describe()),
            );
            return None;
        }
    };
    if items.is_empty() {
        ctx.report(
            node.line,
            field,
            format!("lists no server; write {expected}"),
        );
        return None;
    }
    if items.len() > MAX_SERVERS as usize {
        ctx.report(
            node.line,
            field,
            format!(
                "lists {} servers; at most {MAX_SERVERS} (a farm's most), or write `all`",
                items.len()
            ),
        );
        return None;
    }
    let mut ids = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        match read::uint(ctx, item, &item_field, 1, MAX_SERVER_ID, "a server id") {
            Some(id) if ids.contains(&id) => {
                ctx.report(
                    item.line,
                    &item_field,
                    format!("server {id} is listed twice"),
                );
                ok = false;
            }
            Some(id) => ids.push(id),
            None => ok = false,
        }
    }
    ok.then_some(Servers {
        selection: Selection::Ids(ids),
        line: node.line,
    })
}

fn read_checks(ctx: &mut Ctx, node: &Node) -> Option<Vec<Check>> {
    let items = read::list(
        ctx,
        node,
        "steady_state",
        MAX_CHECKS,
        "{ check: all_healthy, within: 10s }",
    )?;
    let mut checks = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match read_check(ctx, item, &format!("steady_state[{i}]")) {
            Some(check) => checks.push(check),
            None => ok = false,
        }
    }
    ok.then_some(checks)
}

/// Longest a steady-state check may wait for the farm.
const MAX_CHECK_WAIT: Duration = Duration::from_secs(300);

fn read_check(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Check> {
    let fields = Fields::of(
        ctx,
        node,
        path,
        node.line,
        "`{ check: all_healthy, within: 10s }`",
    )?;
    fields.only(
        ctx,
        &["check", "count", "when", "within"],
        "in a steady-state check",
    );
    let check = fields
        .require(
            ctx,
            "check",
            "give `check: all_healthy` or `check: min_healthy`",
        )
        .and_then(|n| {
            read::word(
                ctx,
                n,
                &fields.field("check"),
                &["all_healthy", "min_healthy"],
            )
        });
    let kind = match check {
        Some("all_healthy") => {
            if let Some(line) = fields.key_line("count") {
                ctx.report(
                    line,
                    &fields.field("count"),
                    "`count` belongs to `min_healthy`; `all_healthy` asks for every server",
                );
                None
            } else {
                Some(CheckKind::AllHealthy)
            }
        }
        Some(_) => fields
            .require(
                ctx,
                "count",
                "give how many servers must be healthy, e.g. `count: 5`",
            )
            .and_then(|n| {
                read::uint(
                    ctx,
                    n,
                    &fields.field("count"),
                    1,
                    MAX_SERVERS,
                    "a number of servers",
                )
            })
            .map(CheckKind::MinHealthy),
        None => None,
    };
    let when = match fields.get("when") {
        None => Some(When::Both),
        Some(n) => {
            read::word(ctx, n, &fields.field("when"), &["before", "after", "both"]).map(|w| match w
            {
                "before" => When::Before,
                "after" => When::After,
                _ => When::Both,
            })
        }
    };
    let within = match fields.get("within") {
        None => Some(Duration::from_secs(10)),
        Some(n) => read::duration(
            ctx,
            n,
            &fields.field("within"),
            Duration::ZERO,
            MAX_CHECK_WAIT,
        ),
    };
    let (kind, when, within) = (kind?, when?, within?);
    let text = match kind {
        CheckKind::AllHealthy => format!("all_healthy within {}", format_duration(within)),
        CheckKind::MinHealthy(n) => format!("min_healthy {n} within {}", format_duration(within)),
    };
    Some(Check {
        text,
        kind,
        when,
        within,
        line: node.line,
    })
}

fn read_load(ctx: &mut Ctx, node: &Node, line: u32) -> Option<Load> {
    let fields = Fields::of(
        ctx,
        node,
        "load",
        line,
        "`{ model: open, phases: [{ name: hold, for: 10s, rate: 50 }] }`",
    )?;
    fields.only(ctx, &["model", "concurrency", "phases"], "in `load`");
    let model = match fields.get("model") {
        None => Some(Model::Open),
        Some(n) => read::word(ctx, n, "load.model", &["open", "closed"]).map(|w| match w {
            "closed" => Model::Closed,
            _ => Model::Open,
        }),
    };
    let concurrency = match fields.get("concurrency") {
        None => Some(64),
        Some(n) => read::uint(
            ctx,
            n,
            "load.concurrency",
            1,
            MAX_CONCURRENCY,
            "a number of requests in flight",
        ),
    };
    let phases_node = fields.require(
        ctx,
        "phases",
        "give at least one phase, e.g. `phases: [{ name: hold, for: 10s, rate: 50 }]`",
    )?;
    let items = read::list(
        ctx,
        phases_node,
        "load.phases",
        MAX_PHASES,
        "{ name: hold, for: 10s, rate: 50 }",
    )?;
    if items.is_empty() {
        ctx.report(
            phases_node.line,
            "load.phases",
            "has no phase; give at least one, e.g. `- { name: hold, for: 10s, rate: 50 }`",
        );
        return None;
    }
    let mut phases = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("load.phases[{i}]");
        match read_phase(ctx, item, &path, model, concurrency) {
            Some((phase, name_line)) => {
                if let Some(first) = phases.iter().position(|p: &Phase| p.name == phase.name) {
                    ctx.report(
                        name_line,
                        &format!("{path}.name"),
                        format!(
                            "phase name `{}` is already used by load.phases[{first}]; \
                             phase names are unique",
                            phase.name
                        ),
                    );
                    ok = false;
                }
                phases.push(phase);
            }
            None => ok = false,
        }
    }
    let total: Duration = phases.iter().map(|p| p.duration).sum();
    let most = Duration::from_secs(MAX_DURATION_SECONDS.into());
    if total > most {
        ctx.report(
            fields.key_line("phases").unwrap_or(phases_node.line),
            "load.phases",
            format!(
                "the phases last {} together; a load lasts at most {}",
                format_duration(total),
                format_duration(most)
            ),
        );
        ok = false;
    }
    let (model, concurrency) = (model?, concurrency?);
    ok.then_some(Load {
        model,
        concurrency,
        phases,
    })
}

/// One phase, and the line of its name (for a duplicate). `model` and `concurrency` are
/// `None` when the load's own were wrong: then what depends on them is not judged.
fn read_phase(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    model: Option<Model>,
    concurrency: Option<u32>,
) -> Option<(Phase, u32)> {
    let fields = Fields::of(
        ctx,
        node,
        path,
        node.line,
        "`{ name: hold, for: 10s, rate: 50 }`",
    )?;
    fields.only(
        ctx,
        &["name", "for", "rate", "concurrency"],
        "in a load phase",
    );
    let name_line = fields.key_line("name").unwrap_or(node.line);
    let name = fields
        .require(ctx, "name", "give the phase a name, e.g. `name: hold`")
        .and_then(|n| {
            let field = fields.field("name");
            let name = read::name(ctx, n, &field)?;
            if name == "all" {
                ctx.report(
                    n.line,
                    &field,
                    "`all` names the whole load in `during`; call the phase something else",
                );
                return None;
            }
            Some(name)
        });
    let duration = fields
        .require(ctx, "for", "give how long the phase lasts, e.g. `for: 10s`")
        .and_then(|n| {
            read::duration(
                ctx,
                n,
                &fields.field("for"),
                Duration::from_millis(100),
                Duration::from_secs(MAX_DURATION_SECONDS.into()),
            )
        });
    let mut rate = Some((0.0, 0.0));
    let mut workers = Some(0);
    match model {
        Some(Model::Open) => {
            if let Some(line) = fields.key_line("concurrency") {
                ctx.report(
                    line,
                    &fields.field("concurrency"),
                    "a phase's `concurrency` belongs to the closed model; this load is open: \
                     give the phase a `rate`, or set `load.model: closed`",
                );
                workers = None;
            }
            rate = fields
                .require(
                    ctx,
                    "rate",
                    "the open model needs a rate: `rate: 50` or `rate: { from: 50, to: 400 }` \
                     (requests per second)",
                )
                .and_then(|n| read_rate(ctx, n, &fields.field("rate")));
        }
        Some(Model::Closed) => {
            if let Some(line) = fields.key_line("rate") {
                ctx.report(
                    line,
                    &fields.field("rate"),
                    "a `rate` belongs to the open model; this load is closed: give the phase \
                     `concurrency` (its workers), or set `load.model: open`",
                );
                rate = None;
            }
            workers = match (fields.get("concurrency"), concurrency) {
                (None, load) => load,
                (Some(n), Some(load)) => read::uint(
                    ctx,
                    n,
                    &fields.field("concurrency"),
                    1,
                    MAX_CONCURRENCY,
                    "a number of workers",
                )
                .and_then(|workers| {
                    if workers > load {
                        ctx.report(
                            n.line,
                            &fields.field("concurrency"),
                            format!(
                                "must be at most load.concurrency ({load}), got {workers}; \
                                 raise load.concurrency"
                            ),
                        );
                        return None;
                    }
                    Some(workers)
                }),
                (Some(_), None) => None,
            };
        }
        None => {}
    }
    let (rate_from, rate_to) = rate?;
    Some((
        Phase {
            name: name?,
            duration: duration?,
            rate_from,
            rate_to,
            concurrency: workers?,
            line: node.line,
        },
        name_line,
    ))
}

/// `rate: 50` or `rate: { from: 50, to: 400 }`.
fn read_rate(ctx: &mut Ctx, node: &Node, field: &str) -> Option<(f64, f64)> {
    let what = "a number of requests per second, or `{ from: 50, to: 400 }`";
    if let Value::Map(_) = node.value {
        let fields = Fields::of(ctx, node, field, node.line, "`{ from: 50, to: 400 }`")?;
        fields.only(ctx, &["from", "to"], "in a rate ramp");
        let mut end = |key: &str| {
            fields
                .require(ctx, key, "a ramp gives both `from` and `to`")
                .and_then(|n| {
                    read::number(
                        ctx,
                        n,
                        &fields.field(key),
                        0.0,
                        MAX_RATE_PER_SECOND,
                        "a number of requests per second",
                    )
                })
        };
        let (from, to) = (end("from"), end("to"));
        return Some((from?, to?));
    }
    let rate = read::number(ctx, node, field, 0.0, MAX_RATE_PER_SECOND, what)?;
    Some((rate, rate))
}
