//! The crates meet only where ARCHITECTURE.md says they may: checked over `cargo metadata`,
//! every kind of dependency (normal, dev and build) included.
//!
//! Each farm crate has an allow-list of the farm crates it may depend on. A crate that is not
//! listed fails the test too, so that a new crate gets its place in ARCHITECTURE.md and here.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Every farm crate and the farm crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    // The contract and the small shared crates depend on no farm crate.
    ("farm-proto", &[]),
    ("farm-backoff", &[]),
    ("farm-telemetry", &[]),
    // The allocator's trim: the one unsafe call, kept apart.
    ("farm-trim", &[]),
    // Scenario files: read offline by the CLI, run by the controller.
    ("farm-scenario", &["farm-proto"]),
    // The farm's history: written and read by the controller, opened by the binary.
    ("farm-history", &["farm-proto"]),
    // The node's client carries the caller's trace context.
    ("farm-node-api", &["farm-proto", "farm-telemetry"]),
    // The node server: the contract's bounds and its own API types.
    (
        "farm-node",
        &["farm-proto", "farm-node-api", "farm-telemetry"],
    ),
    // The agent and the controller meet only on the wire: neither depends on the other.
    (
        "farm-agent",
        &[
            "farm-proto",
            "farm-node-api",
            "farm-backoff",
            "farm-telemetry",
        ],
    ),
    (
        "farm-controller",
        &[
            "farm-proto",
            "farm-node-api",
            "farm-backoff",
            "farm-telemetry",
            "farm-scenario",
            "farm-history",
        ],
    ),
    // The gateway is a client of the controller's gRPC API and nothing else.
    ("farm-gateway", &["farm-proto", "farm-telemetry"]),
    // The binary ties every role together.
    (
        "farm",
        &[
            "farm-proto",
            "farm-backoff",
            "farm-telemetry",
            "farm-node-api",
            "farm-node",
            "farm-agent",
            "farm-controller",
            "farm-trim",
            "farm-gateway",
            "farm-scenario",
            "farm-history",
        ],
    ),
];

/// Every workspace member and the workspace members it depends on, of any kind.
fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .args(["--manifest-path", manifest])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("a package list");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|package| {
            let depends_on = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|name| members.contains(name))
                .collect();
            (package["name"].as_str().unwrap().to_string(), depends_on)
        })
        .collect()
}

#[test]
fn crates_depend_only_on_what_the_architecture_allows() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(name, deps)| (*name, deps.iter().copied().collect()))
        .collect();
    let mut wrong = Vec::new();
    for (name, depends_on) in workspace_dependencies() {
        let Some(may) = allowed.get(name.as_str()) else {
            wrong.push(format!(
                "{name} is a new crate: give it its place in ARCHITECTURE.md and in ALLOWED"
            ));
            continue;
        };
        for dependency in depends_on {
            if !may.contains(dependency.as_str()) {
                wrong.push(format!(
                    "{name} depends on {dependency}, which ARCHITECTURE.md does not allow"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_allowed_crate_exists() {
    let members = workspace_dependencies();
    for (name, _) in ALLOWED {
        assert!(
            members.contains_key(*name),
            "{name} is in ALLOWED but not in the workspace"
        );
    }
}
