//! Compiles `proto/farm/v1/*.proto` with protox (pure Rust, no protoc needed) and generates
//! the tonic client and server code, plus the encoded descriptor set that gRPC reflection serves.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/farm/v1/agent.proto",
        "proto/farm/v1/farm.proto",
        "proto/farm/v1/faults.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("farm_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    // compile_fds does not emit this itself.
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
