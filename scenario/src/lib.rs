//! `farm-scenario`: scenario files, read and checked offline. A scenario is a YAML file
//! that says what load to send to the farm, which faults to inject when, and what the run
//! must meet (SLOs), abort on, and find before and after (steady-state checks); the format is
//! described for users in `docs/scenarios.md`, and `scenarios/` holds examples.
//!
//! [`parse`] turns the text into a [`Scenario`] whose every value is checked against the
//! farm's bounds (`farm_proto::limits`) and whose defaults are filled in, or into every
//! [`Problem`] found, each naming its line and field ("line 12: faults[1].at: …"), so that a
//! file can be fixed in one go before anything runs. What needs a live farm (do the servers
//! exist, does the farm run Docker) is [`Scenario::check_servers`]. Running a scenario is the
//! controller's business; this crate knows no network and no runtime.
//!
//! # Layout
//! - `model`: the public types of a scenario ([`Scenario`], [`Fault`], [`Assertion`], …),
//!   [`Bound::holds`] and [`Scenario::check_servers`].
//! - `yaml` (private): YAML text to a small tree whose nodes carry their lines, refusing
//!   anchors, aliases, tags, duplicate keys and second documents.
//! - `read` (private): typed values out of that tree (durations, percentages, names,
//!   numbers in range), each problem with its line and field; unknown keys.
//! - `units` (private): the spelling of durations ("1m30s"), percentages and numbers, read
//!   and written back for normalised texts.
//! - `scenario` (private): the top of the file, `target`, `steady_state` and `load`.
//! - `faults` (private): the `faults` list, down to the proto fault profiles.
//! - `slo` (private): metrics and bounds; the `slo` and `abort` lists.

mod faults;
mod model;
mod read;
mod scenario;
mod slo;
mod units;
mod yaml;

pub use model::{
    AbortRule, Assertion, AssertionKind, Bound, Check, CheckKind, During, Fault, FaultAction, Load,
    Metric, Model, Op, Percentile, Phase, Scenario, Selection, Servers, Target, When,
};

/// Most bytes a scenario file may have.
pub const MAX_SOURCE_BYTES: usize = farm_proto::limits::MAX_SCENARIO_SOURCE_BYTES;
/// Most load phases.
pub const MAX_PHASES: usize = farm_proto::limits::MAX_LOAD_PHASES;
/// Most faults.
pub const MAX_FAULTS: usize = 64;
/// Most SLO assertions.
pub const MAX_ASSERTIONS: usize = 64;
/// Most abort rules.
pub const MAX_ABORT_RULES: usize = 16;
/// Most steady-state checks.
pub const MAX_CHECKS: usize = 16;
/// The format version this build reads.
pub const VERSION: u32 = 1;

/// One thing wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line, from 1; 0 for the whole file (too large, a required top-level key missing).
    pub line: u32,
    /// The field's path, e.g. "faults[1].servers"; empty when no field is to blame (a YAML
    /// syntax error outside any value).
    pub field: String,
    /// What is wrong, and where it helps, what to write instead.
    pub message: String,
}

impl std::fmt::Display for Problem {
    /// "line 12: faults[1].servers: server 99 is not in the farm"; without the line part for
    /// line 0 and without the field part for an empty field.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line != 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Parses and validates `source` offline. Every problem found (not just the first, where the
/// structure allows going on), in file order.
pub fn parse(source: &str) -> Result<Scenario, Vec<Problem>> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(vec![Problem {
            line: 0,
            field: String::new(),
            message: format!(
                "the file is {} bytes; a scenario file may have at most {MAX_SOURCE_BYTES}",
                source.len()
            ),
        }]);
    }
    // Some Windows editors start UTF-8 files with a byte order mark; the YAML parser would
    // read it as part of the first key.
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let (root, problems) = yaml::load(source)?;
    let mut ctx = read::Ctx { problems };
    let scenario = match root {
        Some(root) if !root.is_null() => scenario::read(&mut ctx, &root),
        _ => {
            ctx.report(
                0,
                "",
                "the file is empty; a scenario starts with `version: 1`",
            );
            None
        }
    };
    let mut problems = ctx.problems;
    // Readers go section by section; the user reads the file top down. The sort is stable,
    // so problems on one line keep the order they were found in.
    problems.sort_by_key(|p| p.line);
    problems.dedup();
    match scenario {
        Some(scenario) if problems.is_empty() => Ok(scenario),
        _ if !problems.is_empty() => Err(problems),
        // Every reader that gives up records why; this only guards against one that forgot.
        _ => Err(vec![Problem {
            line: 0,
            field: String::new(),
            message: "the scenario could not be read (an unreported problem: please report \
                      this as a bug)"
                .into(),
        }]),
    }
}

#[cfg(test)]
mod tests;
