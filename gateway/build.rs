//! Embeds the built dashboard (`web/dist`, made by `npm --prefix web run build`) into the
//! gateway, so that one static `farm` binary serves it at `/`.
//!
//! When `web/dist` does not exist (a clean checkout, or a build that does not care about the
//! dashboard), nothing is embedded and the build still works: `/` then tells a browser how
//! to build the dashboard. Every file is pulled in with `include_bytes!`, so no crate is
//! needed and cargo tracks each file; the folder itself is watched for files that come or go.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let web = manifest.join("..").join("web");
    let dist = web.join("dist");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("dashboard.rs");

    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        println!("cargo::rerun-if-changed={}", dist.display());
        collect(&dist, &dist, &mut files);
        files.sort();
    } else {
        // Watching web/ (a few thousand files once node_modules is there) notices the
        // moment `npm run build` creates dist; watching the missing dist itself would make
        // cargo rebuild the gateway on every build.
        println!("cargo::rerun-if-changed={}", web.display());
    }

    let mut code = String::from(
        "/// The files of `web/dist` when the gateway was built: (URL path, contents).\n\
         pub(crate) static EMBEDDED: &[(&str, &[u8])] = &[\n",
    );
    for (url, path) in &files {
        let _ = writeln!(code, "    ({url:?}, include_bytes!({:?})),", path.display());
    }
    code.push_str("];\n");
    std::fs::write(&out, code).expect("OUT_DIR is writable");
}

/// Every regular file under `dir`, as (`/relative/url/path`, absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect(root, &path, files);
        } else if kind.is_file() {
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let url = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let absolute = path.canonicalize().unwrap_or(path);
            files.push((format!("/{url}"), absolute));
        }
    }
}
