//! `compose/` in the repository holds what `farm compose` writes for the default farm, so that
//! people can start a compose farm from a checkout; this test fails when it is stale.

use std::process::Command;

/// The files `farm compose` writes that the repository keeps (the binary it copies is not
/// kept: `compose/.gitignore` says so).
const KEPT: [&str; 3] = ["docker-compose.yml", "Dockerfile", ".gitignore"];

#[test]
fn the_compose_folder_is_what_farm_compose_writes() {
    let out = std::env::temp_dir().join(format!("farm-compose-check-{}", std::process::id()));
    let written = Command::new(env!("CARGO_BIN_EXE_farm"))
        .args(["compose", "--output", out.to_str().unwrap()])
        .output()
        .expect("farm compose runs");
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose");
    let mut stale = Vec::new();
    for name in KEPT {
        let fresh = std::fs::read_to_string(out.join(name)).unwrap();
        let kept = std::fs::read_to_string(committed.join(name)).unwrap_or_default();
        if fresh != kept {
            stale.push(name);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        stale.is_empty(),
        "compose/{stale:?} differ from what `farm compose` writes now: run \
         `cargo run -p farm -- compose` at the repository root and commit compose/"
    );
}
