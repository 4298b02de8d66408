//! Reading typed values out of the tree, each problem with its line and field.
//!
//! Every reader takes the node and the field's path, and either returns the value or records
//! a problem and returns `None`; the caller goes on with the next field, so that one pass
//! finds every problem the structure allows finding.

use std::time::Duration;

use crate::Problem;
use crate::units::{self, DurationError};
use crate::yaml::{Entry, Node, Value, join, shorten};

/// The problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub(crate) problems: Vec<Problem>,
}

impl Ctx {
    /// Records a problem.
    pub(crate) fn report(&mut self, line: u32, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            field: field.to_string(),
            message: message.into(),
        });
    }
}

/// The keys of one mapping of the file, at a path.
pub(crate) struct Fields<'a> {
    entries: &'a [Entry],
    /// "faults[1]".
    pub(crate) path: String,
    /// Where a missing key is reported: the line of the mapping's own key (`load:`), the
    /// mapping's first line for an item of a list, 0 for the top of the file.
    pub(crate) line: u32,
}

impl<'a> Fields<'a> {
    /// `node` as a mapping, or a problem saying what `path` should be.
    pub(crate) fn of(
        ctx: &mut Ctx,
        node: &'a Node,
        path: &str,
        line: u32,
        example: &str,
    ) -> Option<Self> {
        match &node.value {
            Value::Map(entries) => Some(Self {
                entries,
                path: path.to_string(),
                line,
            }),
            _ => {
                ctx.report(
                    node.line,
                    path,
                    format!(
                        "expected a mapping such as {example}, got {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    /// Every key and value, in file order.
    pub(crate) fn entries(&self) -> &'a [Entry] {
        self.entries
    }

    /// The path of one key: "faults[1].servers".
    pub(crate) fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The entry of `key` when it is there with a value; an empty value counts as left out.
    pub(crate) fn entry(&self, key: &str) -> Option<&'a Entry> {
        self.entries
            .iter()
            .find(|e| e.key == key && !e.value.is_null())
    }

    /// The value of `key`, when given.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// The line of `key`, when written (even empty).
    pub(crate) fn key_line(&self, key: &str) -> Option<u32> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.line)
    }

    /// The value of a required key, or a problem: "missing" at the mapping, "has no value"
    /// at the key.
    pub(crate) fn require(&self, ctx: &mut Ctx, key: &str, hint: &str) -> Option<&'a Node> {
        if let Some(node) = self.get(key) {
            return Some(node);
        }
        match self.key_line(key) {
            Some(line) => ctx.report(line, &self.field(key), format!("has no value; {hint}")),
            None => ctx.report(self.line, &self.field(key), format!("missing; {hint}")),
        }
        None
    }

    /// Reports every key not in `allowed`, naming the closest allowed one when it is near.
    pub(crate) fn only(&self, ctx: &mut Ctx, allowed: &[&str], place: &str) {
        for entry in self.entries {
            if allowed.contains(&entry.key.as_str()) {
                continue;
            }
            let key = shorten(&entry.key);
            // Short keys are near everything: only one edit away counts for them.
            let reach = if entry.key.len() >= 5 { 2 } else { 1 };
            let near = allowed
                .iter()
                .map(|a| (edit_distance(a, &entry.key), *a))
                .filter(|(d, _)| *d <= reach)
                .min();
            let hint = near.map_or(String::new(), |(_, a)| format!(" (did you mean `{a}`?)"));
            let message = format!(
                "unknown key `{key}` {place}{hint}; expected one of {}",
                allowed.join(", ")
            );
            ctx.report(entry.line, &self.field(&entry.key), message);
        }
    }
}

/// The items of a list, or a problem.
pub(crate) fn list<'a>(
    ctx: &mut Ctx,
    node: &'a Node,
    field: &str,
    most: usize,
    example: &str,
) -> Option<&'a [Node]> {
    match &node.value {
        Value::Seq(items) if items.len() > most => {
            ctx.report(
                node.line,
                field,
                format!("has {} entries; at most {most} are allowed", items.len()),
            );
            None
        }
        Value::Seq(items) => Some(items),
        _ => {
            ctx.report(
                node.line,
                field,
                format!("expected a list (`- {example}`), got {}", node.describe()),
            );
            None
        }
    }
}

/// The text of a scalar.
pub(crate) fn text<'a>(ctx: &mut Ctx, node: &'a Node, field: &str, what: &str) -> Option<&'a str> {
    match node.scalar() {
        Some(text) => Some(text),
        None => {
            ctx.report(
                node.line,
                field,
                format!("expected {what}, got {}", node.describe()),
            );
            None
        }
    }
}

/// One of a few words.
pub(crate) fn word<'a>(
    ctx: &mut Ctx,
    node: &Node,
    field: &str,
    words: &[&'a str],
) -> Option<&'a str> {
    let what = format!("one of {}", words.join(", "));
    let text = text(ctx, node, field, &what)?;
    let found = words.iter().find(|w| **w == text).copied();
    if found.is_none() {
        ctx.report(
            node.line,
            field,
            format!("expected {what}, got `{}`", shorten(text)),
        );
    }
    found
}

/// Whether `text` is a name: 1 to 64 bytes of letters, digits, `.`, `_` and `-`; the
/// message says what is wrong.
pub(crate) fn check_name(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 64 {
        return Err(format!(
            "must be 1 to 64 bytes long, got {} bytes",
            text.len()
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{}` holds {bad:?}; a name takes letters, digits, `.`, `_` and `-` only",
            shorten(text)
        ));
    }
    Ok(())
}

/// A name (of the scenario, a phase, a fault).
pub(crate) fn name(ctx: &mut Ctx, node: &Node, field: &str) -> Option<String> {
    let text = text(ctx, node, field, "a name")?;
    match check_name(text) {
        Ok(()) => Some(text.to_string()),
        Err(message) => {
            ctx.report(node.line, field, message);
            None
        }
    }
}

/// A whole number from `lo` to `hi`.
pub(crate) fn integer(
    ctx: &mut Ctx,
    node: &Node,
    field: &str,
    lo: i128,
    hi: i128,
    what: &str,
) -> Option<i128> {
    let text = text(ctx, node, field, what)?;
    let Some(value) = units::integer(text) else {
        ctx.report(
            node.line,
            field,
            format!("expected {what}, got `{}`", shorten(text)),
        );
        return None;
    };
    if !(lo..=hi).contains(&value) {
        ctx.report(
            node.line,
            field,
            format!("must be {lo} to {hi}, got {value}"),
        );
        return None;
    }
    Some(value)
}

/// A whole number from `lo` to `hi` that fits a `u32`.
pub(crate) fn uint(
    ctx: &mut Ctx,
    node: &Node,
    field: &str,
    lo: u32,
    hi: u32,
    what: &str,
) -> Option<u32> {
    integer(ctx, node, field, lo.into(), hi.into(), what).and_then(|v| u32::try_from(v).ok())
}

/// A number from `lo` to `hi`.
pub(crate) fn number(
    ctx: &mut Ctx,
    node: &Node,
    field: &str,
    lo: f64,
    hi: f64,
    what: &str,
) -> Option<f64> {
    let text = text(ctx, node, field, what)?;
    let Some(value) = units::number(text) else {
        ctx.report(
            node.line,
            field,
            format!("expected {what}, got `{}`", shorten(text)),
        );
        return None;
    };
    if !(lo..=hi).contains(&value) {
        ctx.report(
            node.line,
            field,
            format!(
                "must be {} to {}, got {}",
                units::trim_float(lo),
                units::trim_float(hi),
                units::trim_float(value)
            ),
        );
        return None;
    }
    Some(value)
}

/// A share in percent: "30%" or 30. More than 0 unless `zero` allows it, at most 100.
pub(crate) fn percent(ctx: &mut Ctx, node: &Node, field: &str, zero: bool) -> Option<f64> {
    let what = "a percentage such as 30% (or a number 0 to 100)";
    let text = text(ctx, node, field, what)?;
    let Some(value) = units::percent_sign(text).or_else(|| units::number(text)) else {
        ctx.report(
            node.line,
            field,
            format!("expected {what}, got `{}`", shorten(text)),
        );
        return None;
    };
    let low_ok = if zero { value >= 0.0 } else { value > 0.0 };
    if !(low_ok && value <= 100.0) {
        let lo = if zero { "0%" } else { "more than 0%" };
        ctx.report(
            node.line,
            field,
            format!("must be {lo} to 100%, got {}%", units::trim_float(value)),
        );
        return None;
    }
    Some(value)
}

/// A duration from `lo` to `hi`, in whole milliseconds.
pub(crate) fn duration(
    ctx: &mut Ctx,
    node: &Node,
    field: &str,
    lo: Duration,
    hi: Duration,
) -> Option<Duration> {
    let what = "a duration such as 500ms, 2s or 1m30s";
    let text = text(ctx, node, field, what)?;
    let shown = shorten(text);
    let ms = match units::duration_ms(text) {
        Ok(ms) => ms,
        Err(DurationError::NoUnit) => {
            ctx.report(
                node.line,
                field,
                format!("`{shown}` has no unit; write a unit, e.g. 2s or 500ms"),
            );
            return None;
        }
        Err(DurationError::Malformed) => {
            ctx.report(node.line, field, format!("expected {what}, got `{shown}`"));
            return None;
        }
        Err(DurationError::TooLong) => {
            ctx.report(
                node.line,
                field,
                format!(
                    "must be {} to {}, got `{shown}`",
                    units::format_duration(lo),
                    units::format_duration(hi)
                ),
            );
            return None;
        }
    };
    let Some(value) = units::whole_ms(ms) else {
        ctx.report(
            node.line,
            field,
            format!("`{shown}` is finer than a millisecond; durations are whole milliseconds"),
        );
        return None;
    };
    if !(lo..=hi).contains(&value) {
        ctx.report(
            node.line,
            field,
            format!(
                "must be {} to {}, got {}",
                units::format_duration(lo),
                units::format_duration(hi),
                units::format_duration(value)
            ),
        );
        return None;
    }
    Some(value)
}

/// A duration of whole seconds from `lo` to `hi`.
pub(crate) fn seconds(
    ctx: &mut Ctx,
    node: &Node,
    field: &str,
    lo: Duration,
    hi: Duration,
    why: &str,
) -> Option<Duration> {
    let value = duration(ctx, node, field, lo, hi)?;
    if value.subsec_millis() != 0 {
        ctx.report(
            node.line,
            field,
            format!(
                "must be whole seconds ({why}), got {}",
                units::format_duration(value)
            ),
        );
        return None;
    }
    Some(value)
}

/// Levenshtein distance, for "did you mean": keys are short, so the plain table is enough.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_named() {
        assert_eq!(edit_distance("delay", "delya"), 2);
        assert_eq!(edit_distance("delay", "delay"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert!(check_name("kill-5.a_b").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }
}
