//! Who and what a request may aim at: servers of this farm only, node paths only, methods
//! from a short list. Load tests, broadcasts, simulated loads and actions all validate here,
//! so the rules and their messages are the same everywhere.

use std::collections::BTreeSet;

use http::Method;

use farm_proto::limits::MAX_TARGETS;

use crate::error::{Error, Result};
use crate::registry::Registry;

/// A server a request goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its id.
    pub id: u32,
    /// Where its node listens.
    pub address: String,
}

/// The servers `ids` names (`field` in messages), or every server when `ids` is empty.
/// Unknown ids are refused all together, before anything is done.
pub fn resolve(registry: &Registry, ids: &[u32], field: &str) -> Result<Vec<Target>> {
    if ids.len() > MAX_TARGETS {
        return Err(Error::InvalidArgument(format!(
            "{field} lists {} servers; at most {MAX_TARGETS}",
            ids.len()
        )));
    }
    let wanted: BTreeSet<u32> = ids.iter().copied().collect();
    let targets: Vec<Target> = registry.read(|entries| {
        entries
            .filter(|e| wanted.is_empty() || wanted.contains(&e.id))
            .map(|e| Target {
                id: e.id,
                address: e.node_address.clone(),
            })
            .collect()
    });
    if targets.len() < wanted.len() {
        let known: BTreeSet<u32> = targets.iter().map(|t| t.id).collect();
        let unknown: Vec<String> = wanted.difference(&known).map(u32::to_string).collect();
        return Err(Error::NotFound(format!(
            "{field}: server {} is not part of this farm",
            unknown.join(", ")
        )));
    }
    if targets.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{field}: the farm has no servers"
        )));
    }
    Ok(targets)
}

/// An HTTP method a node request may use; empty means GET.
pub fn method(raw: &str, field: &str) -> Result<Method> {
    match raw.to_ascii_uppercase().as_str() {
        "" | "GET" => Ok(Method::GET),
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "DELETE" => Ok(Method::DELETE),
        "HEAD" => Ok(Method::HEAD),
        _ => Err(Error::InvalidArgument(format!(
            "{field} must be GET, POST, PUT, DELETE or HEAD, got {raw:?}"
        ))),
    }
}

/// A node path (with optional query); empty means "/". Never a URL: the host is always the
/// target server's.
pub fn path(raw: &str, field: &str) -> Result<String> {
    if raw.is_empty() {
        return Ok("/".into());
    }
    farm_proto::limits::check_node_path(raw, field).map_err(Error::InvalidArgument)?;
    raw.parse::<http::uri::PathAndQuery>()
        .map_err(|e| Error::InvalidArgument(format!("{field} is not a valid path: {e}")))?;
    Ok(raw.to_string())
}

/// A timeout in milliseconds within `1..=max`, or `default` for 0.
pub fn millis(raw: u32, default: u32, max: u32, field: &str) -> Result<std::time::Duration> {
    let ms = if raw == 0 { default } else { raw };
    if ms > max {
        return Err(Error::InvalidArgument(format!(
            "{field} must be at most {max} ms, got {raw}"
        )));
    }
    Ok(std::time::Duration::from_millis(u64::from(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_on_the_node() {
        assert_eq!(path("", "path").unwrap(), "/");
        assert_eq!(path("/data/4?x=1", "path").unwrap(), "/data/4?x=1");
        for bad in ["http://example.com/", "//evil/x", "data", "/a b", "/\u{e9}"] {
            let e = path(bad, "spec.path").unwrap_err();
            assert!(e.to_string().contains("spec.path"), "{bad}: {e}");
        }
        assert!(path(&format!("/{}", "a".repeat(300)), "path").is_err());
    }

    #[test]
    fn methods_are_a_short_list() {
        assert_eq!(method("", "m").unwrap(), Method::GET);
        assert_eq!(method("post", "m").unwrap(), Method::POST);
        assert!(
            method("CONNECT", "spec.method")
                .unwrap_err()
                .to_string()
                .contains("spec.method")
        );
    }

    #[test]
    fn unknown_targets_are_named() {
        let registry = Registry::new(std::time::Duration::from_secs(1));
        registry.expect(
            1,
            "server-1".into(),
            "127.0.0.1:8001".into(),
            "process".into(),
        );
        registry.expect(
            2,
            "server-2".into(),
            "127.0.0.1:8002".into(),
            "process".into(),
        );
        assert_eq!(resolve(&registry, &[], "ids").unwrap().len(), 2);
        assert_eq!(resolve(&registry, &[2, 2], "ids").unwrap().len(), 1);
        let e = resolve(&registry, &[2, 7, 9], "server_ids").unwrap_err();
        assert!(matches!(e, Error::NotFound(_)));
        assert!(e.to_string().contains("7, 9"), "{e}");
    }
}
