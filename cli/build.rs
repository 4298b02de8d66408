//! Hands the linker the function order in `farm.order` for release builds of `farm`.
//!
//! Agents and nodes are two processes per server running this one binary; the order puts the
//! code each of them runs in one contiguous stretch, so each maps a fraction of the text it
//! would otherwise (see `scripts/order-file`, which writes the file). The order changes where
//! functions sit, never what they do; names the build no longer has are skipped.

use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=farm.order");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let order =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("farm.order");
    if release && linux && order.exists() {
        println!(
            "cargo::rustc-link-arg-bin=farm=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo::rustc-link-arg-bin=farm=-Wl,--no-warn-symbol-ordering");
    }
}
