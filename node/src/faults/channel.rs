//! The private channel a node's fault profile arrives by: one JSON [`FaultProfile`] per line,
//! each replacing the whole profile.
//!
//! The lines are read by a thread of their own rather than a task: tokio reads standard input
//! with a blocking read it cannot cancel, on a pool thread the runtime waits for when it shuts
//! down, so a node whose agent keeps the pipe open would never exit. A plain thread blocked on
//! the pipe ends with the process. It is the only thread besides those of a simulated load,
//! and it sleeps in `read` between lines.

use std::io::{self, BufRead, BufReader, Read};

use farm_node_api::faults::FaultProfile;

use crate::AppState;

/// Longest line read, in bytes; a longer one is skipped. The largest valid profile is a few
/// KiB (sixteen statuses, eight path prefixes).
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// Reads profiles from `reader` on a thread of its own until end of file, applying each to
/// `state`'s faults. End of file keeps the profile in force.
pub(crate) fn spawn(reader: impl Read + Send + 'static, state: AppState) -> io::Result<()> {
    std::thread::Builder::new()
        .name("fault-channel".into())
        // Parsing a profile needs little stack; the default 2 MiB is address space only,
        // but say what the thread needs.
        .stack_size(256 * 1024)
        .spawn(move || read(reader, &state))
        .map(drop)
}

fn read(reader: impl Read, state: &AppState) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => {
                tracing::info!("fault channel closed; the fault profile stays as it is");
                return;
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::warn!(%err, "cannot read the fault channel; the fault profile stays as it is");
                return;
            }
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            tracing::warn!(
                max_bytes = MAX_LINE_BYTES,
                "fault profile line too long; ignored"
            );
            if reader.skip_until(b'\n').is_err() {
                return;
            }
            continue;
        }
        apply(state, &line);
    }
}

/// Applies one line: a valid profile replaces the current one; anything else is logged,
/// naming the field, and changes nothing. Blank lines are skipped.
fn apply(state: &AppState, line: &[u8]) {
    if line.trim_ascii().is_empty() {
        return;
    }
    match parse(line) {
        Ok(profile) => {
            state.faults().replace(&profile);
            tracing::info!(active = ?state.faults().active(), "fault profile set");
        }
        Err(error) => tracing::warn!(%error, "fault profile line ignored"),
    }
}

/// A profile from one line, checked against its bounds.
pub(crate) fn parse(line: &[u8]) -> Result<FaultProfile, String> {
    let profile: FaultProfile = serde_json::from_slice(line).map_err(|err| err.to_string())?;
    profile.validate()?;
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_or_name_what_is_wrong() {
        assert!(parse(b"{}").unwrap().is_empty());
        assert!(parse(b"{}\n").unwrap().is_empty());
        let abort =
            br#"{"abort":{"when":{"percent":30,"seed":1},"statuses":[{"status":503,"weight":1}]}}"#;
        assert!(parse(abort).unwrap().abort.is_some());
        let bad = br#"{"abort":{"when":{"percent":300,"seed":1},"statuses":[{"status":503,"weight":1}]}}"#;
        let error = parse(bad).unwrap_err();
        assert!(
            error.starts_with("abort.") && error.contains("percent"),
            "{error}"
        );
        assert!(parse(br#"{"lag":{}}"#).unwrap_err().contains("lag"));
        assert!(parse(b"garbage").is_err());
    }
}
