//! Metrics and bounds, and the lists built from them: `slo` (window and recovery
//! assertions) and `abort` (rules that end a run early). A bound is read in its metric's unit,
//! so that `lt: 1%` on latency or `lt: 300ms` on the error rate is refused where written.

use std::time::Duration;

use farm_proto::limits::MAX_RATE_PER_SECOND;

use crate::faults::{End, FaultRef};
use crate::read::{self, Ctx, Fields};
use crate::scenario::LoadInfo;
use crate::units::{self, format_duration, format_latency_ms, trim_float};
use crate::yaml::{Node, shorten};
use crate::{
    AbortRule, Assertion, AssertionKind, Bound, During, MAX_ABORT_RULES, MAX_ASSERTIONS, Metric,
    Op, Percentile,
};

/// Every metric, as the file names it.
const METRICS: &[(&str, Metric)] = &[
    ("error_rate", Metric::ErrorRate),
    ("throughput", Metric::Throughput),
    ("latency.p50", Metric::Latency(Percentile::P50)),
    ("latency.p90", Metric::Latency(Percentile::P90)),
    ("latency.p99", Metric::Latency(Percentile::P99)),
    ("latency.p999", Metric::Latency(Percentile::P999)),
    ("latency.max", Metric::Latency(Percentile::Max)),
    ("latency.mean", Metric::Latency(Percentile::Mean)),
];

/// Highest latency a bound may name, in milliseconds (an hour): more is a typo.
const MAX_LATENCY_BOUND_MS: f64 = 3_600_000.0;

/// Longest `within`, `stable_for` and abort `window`.
const MAX_WINDOW: Duration = Duration::from_secs(300);

/// The name of a metric in the file.
pub(crate) fn metric_name(metric: Metric) -> &'static str {
    METRICS
        .iter()
        .find(|(_, m)| *m == metric)
        .map_or("?", |(name, _)| name)
}

/// A bound as the file would write it: "< 300ms", "> 50%", "< 150 req/s".
pub(crate) fn format_bound(metric: Metric, bound: Bound) -> String {
    let op = match bound.op {
        Op::Lt => "<",
        Op::Gt => ">",
    };
    let value = match metric {
        Metric::ErrorRate => format!("{}%", trim_float(bound.value * 100.0)),
        Metric::Throughput => format!("{} req/s", trim_float(bound.value)),
        Metric::Latency(_) => format_latency_ms(bound.value),
    };
    format!("{} {op} {value}", metric_name(metric))
}

pub(crate) fn read_assertions(
    ctx: &mut Ctx,
    node: &Node,
    load: Option<&LoadInfo>,
    faults: Option<&[FaultRef]>,
) -> Option<Vec<Assertion>> {
    let items = read::list(
        ctx,
        node,
        "slo",
        MAX_ASSERTIONS,
        "{ metric: error_rate, lt: 1%, during: all }",
    )?;
    let mut assertions = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match read_assertion(ctx, item, &format!("slo[{i}]"), load, faults) {
            Some(assertion) => assertions.push(assertion),
            None => ok = false,
        }
    }
    ok.then_some(assertions)
}

fn read_assertion(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    load: Option<&LoadInfo>,
    faults: Option<&[FaultRef]>,
) -> Option<Assertion> {
    let fields = Fields::of(
        ctx,
        node,
        path,
        node.line,
        "`{ metric: error_rate, lt: 1%, during: all }`",
    )?;
    if fields.key_line("recover").is_some() {
        return read_recovery(ctx, &fields, node.line, load, faults);
    }
    fields.only(
        ctx,
        &["metric", "lt", "gt", "during"],
        "in an SLO (a recovery SLO starts with `recover`)",
    );
    let metric_bound = read_metric_bound(ctx, &fields);
    let during = match fields.get("during") {
        None => Some(During::All),
        Some(n) => read_during(ctx, n, &fields.field("during"), load),
    };
    let ((metric, bound), during) = (metric_bound?, during?);
    let name = match &during {
        During::All => "all",
        During::Phase(name) => name,
    };
    Some(Assertion {
        text: format!("{} during {name}", format_bound(metric, bound)),
        kind: AssertionKind::Window {
            metric,
            bound,
            during,
        },
        line: node.line,
    })
}

fn read_during(ctx: &mut Ctx, node: &Node, field: &str, load: Option<&LoadInfo>) -> Option<During> {
    let name = read::text(ctx, node, field, "a phase's name, or `all`")?;
    if name == "all" {
        return Some(During::All);
    }
    // Without a load read whole the phases are not known; the load's own problems say why.
    if let Some(load) = load
        && !load.phases.iter().any(|p| p == name)
    {
        ctx.report(
            node.line,
            field,
            format!(
                "no phase is named `{}`; the phases are {} (or `all`, the whole load)",
                shorten(name),
                load.phases.join(", ")
            ),
        );
        return None;
    }
    Some(During::Phase(name.to_string()))
}

fn read_recovery(
    ctx: &mut Ctx,
    fields: &Fields<'_>,
    line: u32,
    load: Option<&LoadInfo>,
    faults: Option<&[FaultRef]>,
) -> Option<Assertion> {
    fields.only(
        ctx,
        &["recover", "metric", "lt", "gt", "within", "stable_for"],
        "in a recovery SLO",
    );
    let fault_field = fields.field("recover");
    let fault_node = fields.require(ctx, "recover", "give the id of the fault to recover from");
    let fault = fault_node.and_then(|n| read::text(ctx, n, &fault_field, "a fault's id"));
    let fault_line = fault_node.map_or(line, |n| n.line);
    let end = match (fault, faults) {
        (Some(id), Some(faults)) => match faults.iter().find(|f| f.id == id) {
            None => {
                let known: Vec<&str> = faults.iter().map(|f| f.id.as_str()).collect();
                let known = if known.is_empty() {
                    "the file has no faults".to_string()
                } else {
                    format!("the faults are {}", known.join(", "))
                };
                ctx.report(
                    fault_line,
                    &fault_field,
                    format!("no fault has the id `{}`; {known}", shorten(id)),
                );
                None
            }
            Some(found) => match found.end {
                End::WithLoad => {
                    ctx.report(
                        fault_line,
                        &fault_field,
                        format!(
                            "fault `{id}` lasts until the load ends (it has no `for`), so \
                             there is no recovery to judge; give it `for`"
                        ),
                    );
                    None
                }
                End::At(end) => Some(Some(end)),
                End::Unknown => Some(None),
            },
        },
        (Some(_), None) => Some(None),
        (None, _) => None,
    };
    let metric_bound = read_metric_bound(ctx, fields);
    let mut window = |key: &str, default: u64| match fields.get(key) {
        None => Some(Duration::from_secs(default)),
        Some(n) => read::seconds(
            ctx,
            n,
            &fields.field(key),
            Duration::from_secs(1),
            MAX_WINDOW,
            "recoveries are judged on the per-second timeline",
        ),
    };
    let (within, stable_for) = (window("within", 10), window("stable_for", 3));
    let (fault, end, (metric, bound), within, stable_for) =
        (fault?, end?, metric_bound?, within?, stable_for?);
    // The recovery must have room to be seen before the load (and the measuring) ends.
    if let (Some(end), Some(load)) = (end, load)
        && end + stable_for > load.end
    {
        let line = fields.key_line("stable_for").unwrap_or(line);
        ctx.report(
            line,
            &fields.field("stable_for"),
            format!(
                "fault `{fault}` ends at {} and the load at {}: too little time to hold for {}",
                format_duration(end),
                format_duration(load.end),
                format_duration(stable_for)
            ),
        );
        return None;
    }
    Some(Assertion {
        text: format!(
            "recover from {fault}: {} within {} for {}",
            format_bound(metric, bound),
            format_duration(within),
            format_duration(stable_for)
        ),
        kind: AssertionKind::Recovery {
            fault: fault.to_string(),
            metric,
            bound,
            within,
            stable_for,
        },
        line,
    })
}

pub(crate) fn read_abort_rules(ctx: &mut Ctx, node: &Node) -> Option<Vec<AbortRule>> {
    let items = read::list(
        ctx,
        node,
        "abort",
        MAX_ABORT_RULES,
        "{ metric: error_rate, gt: 50%, window: 5s }",
    )?;
    let mut rules = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match read_abort_rule(ctx, item, &format!("abort[{i}]")) {
            Some(rule) => rules.push(rule),
            None => ok = false,
        }
    }
    ok.then_some(rules)
}

fn read_abort_rule(ctx: &mut Ctx, node: &Node, path: &str) -> Option<AbortRule> {
    let fields = Fields::of(
        ctx,
        node,
        path,
        node.line,
        "`{ metric: error_rate, gt: 50%, window: 5s }`",
    )?;
    fields.only(ctx, &["metric", "lt", "gt", "window"], "in an abort rule");
    let metric_bound = read_metric_bound(ctx, &fields);
    let window = match fields.get("window") {
        None => Some(Duration::from_secs(5)),
        Some(n) => read::seconds(
            ctx,
            n,
            &fields.field("window"),
            Duration::from_secs(1),
            MAX_WINDOW,
            "abort rules are judged on the per-second timeline",
        ),
    };
    let ((metric, bound), window) = (metric_bound?, window?);
    Some(AbortRule {
        text: format!(
            "{} for {}",
            format_bound(metric, bound),
            format_duration(window)
        ),
        metric,
        bound,
        window,
        line: node.line,
    })
}

/// `metric` and one of `lt` / `gt`, the bound in the metric's unit.
fn read_metric_bound(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<(Metric, Bound)> {
    let names: Vec<&str> = METRICS.iter().map(|(name, _)| *name).collect();
    let metric = fields
        .require(ctx, "metric", "give the figure, e.g. `metric: error_rate`")
        .and_then(|n| read::word(ctx, n, &fields.field("metric"), &names))
        .and_then(|name| METRICS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m));
    let (lt, gt) = (fields.get("lt"), fields.get("gt"));
    let (op, node, key) = match (lt, gt) {
        (Some(n), None) => (Op::Lt, n, "lt"),
        (None, Some(n)) => (Op::Gt, n, "gt"),
        (Some(_), Some(n)) => {
            ctx.report(
                n.line,
                &fields.field("gt"),
                "give `lt` (below) or `gt` (above), not both",
            );
            return None;
        }
        (None, None) => {
            let line = fields
                .key_line("lt")
                .or(fields.key_line("gt"))
                .unwrap_or(fields.line);
            ctx.report(
                line,
                &fields.field("lt"),
                "missing; give the bound: `lt: X` (below) or `gt: X` (above)",
            );
            return None;
        }
    };
    let metric = metric?;
    let field = fields.field(key);
    let value = read_bound_value(ctx, node, &field, metric)?;
    let never = match (metric, op) {
        (_, Op::Lt) if value <= 0.0 => Some("no figure is below 0"),
        (Metric::ErrorRate, Op::Gt) if value >= 1.0 => Some("no error rate is above 100%"),
        _ => None,
    };
    if let Some(why) = never {
        ctx.report(
            node.line,
            &field,
            format!("this bound can never be met: {why}"),
        );
        return None;
    }
    Some((metric, Bound { op, value }))
}

/// A bound's value in `metric`'s unit.
fn read_bound_value(ctx: &mut Ctx, node: &Node, field: &str, metric: Metric) -> Option<f64> {
    let name = metric_name(metric);
    let text = read::text(ctx, node, field, "a bound")?;
    let shown = shorten(text);
    let percent = units::percent_sign(text);
    let number = units::number(text);
    let duration = units::duration_ms(text).ok();
    let (value, lo, hi, unit) = match metric {
        Metric::ErrorRate => match (percent, number) {
            (Some(p), _) => (p / 100.0, 0.0, 1.0, "0% to 100%".to_string()),
            (None, Some(ratio)) if ratio > 1.0 => {
                ctx.report(
                    node.line,
                    field,
                    format!(
                        "{name} as a number is a ratio 0 to 1, got {shown}; write {shown}% for a \
                         percentage"
                    ),
                );
                return None;
            }
            (None, Some(ratio)) => (ratio, 0.0, 1.0, "0% to 100%".to_string()),
            (None, None) => {
                let why = if duration.is_some() {
                    "not a duration".to_string()
                } else {
                    format!("got `{shown}`")
                };
                ctx.report(
                    node.line,
                    field,
                    format!("{name} takes a percentage such as 1% or a ratio such as 0.01, {why}"),
                );
                return None;
            }
        },
        Metric::Latency(_) => match (number, duration) {
            (Some(ms), _) | (None, Some(ms)) => {
                (ms, 0.0, MAX_LATENCY_BOUND_MS, "0ms to 1h".to_string())
            }
            (None, None) => {
                let why = if percent.is_some() {
                    "not a percentage".to_string()
                } else {
                    format!("got `{shown}`")
                };
                ctx.report(
                    node.line,
                    field,
                    format!(
                        "{name} takes a duration such as 300ms or 1.5s, or a number of \
                         milliseconds, {why}"
                    ),
                );
                return None;
            }
        },
        Metric::Throughput => match number {
            Some(rate) => (
                rate,
                0.0,
                MAX_RATE_PER_SECOND,
                format!("0 to {} req/s", trim_float(MAX_RATE_PER_SECOND)),
            ),
            None => {
                let why = if percent.is_some() {
                    "not a percentage".to_string()
                } else if duration.is_some() {
                    "not a duration".to_string()
                } else {
                    format!("got `{shown}`")
                };
                ctx.report(
                    node.line,
                    field,
                    format!("{name} takes a number of requests per second, {why}"),
                );
                return None;
            }
        },
    };
    if !(lo..=hi).contains(&value) {
        ctx.report(node.line, field, format!("must be {unit}, got `{shown}`"));
        return None;
    }
    Some(value)
}
