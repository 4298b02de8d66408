//! The server image: built here `FROM scratch` around the static `farm` binary (nothing can
//! be pulled), and tagged by the binary's content so that a new build makes a new image.

use std::hash::{Hash, Hasher};
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use tokio_stream::StreamExt;

use super::{DockerError, LABEL_FARM, NODE_PORT};

/// Whether the ELF file at `path` is statically linked: it has no program interpreter.
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP)
    })
}

/// The image tag for `binary`: the farm's version and a hash of the binary's content.
pub fn image_tag(binary: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    binary.hash(&mut hasher);
    format!(
        "farm-server:{}-{:016x}",
        env!("CARGO_PKG_VERSION"),
        hasher.finish()
    )
}

/// The server image's recipe: the static binary and nothing else.
pub fn dockerfile() -> String {
    format!(
        "FROM scratch\nCOPY farm /farm\nLABEL {LABEL_FARM}.image=\"true\"\nEXPOSE {NODE_PORT}\nENTRYPOINT [\"/farm\"]\n"
    )
}

/// Whether `bytes` can go into a `FROM scratch` image; the error says how to get one that can.
pub fn check_static(bytes: &[u8], path: &Path) -> Result<(), DockerError> {
    if is_static_elf(bytes) {
        return Ok(());
    }
    Err(DockerError::Binary(format!(
        "{} is dynamically linked; a FROM scratch image needs the static build this repository makes by default (`cargo build --release -p farm`, see .cargo/config.toml)",
        path.display()
    )))
}

/// The build context: a Dockerfile and the binary, as a tar archive in memory.
fn build_context(binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let dockerfile = dockerfile();
    let mut archive = tar::Builder::new(Vec::new());
    for (name, content, mode) in [
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("farm", binary, 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        archive.append_data(&mut header, name, content)?;
    }
    archive.into_inner()
}

/// Builds the server image for `binary` unless the engine has it; returns its tag.
pub async fn ensure_image(docker: &Docker, binary: &Path) -> Result<String, DockerError> {
    let bytes = std::fs::read(binary).map_err(|e| {
        DockerError::Binary(format!(
            "cannot read the farm binary {}: {e}",
            binary.display()
        ))
    })?;
    check_static(&bytes, binary)?;
    let tag = image_tag(&bytes);
    if docker.inspect_image(&tag).await.is_ok() {
        return Ok(tag);
    }
    tracing::info!(%tag, "Building the server image.");
    let context = build_context(&bytes).map_err(|e| DockerError::Build {
        tag: tag.clone(),
        message: e.to_string(),
    })?;
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .build();
    let mut build = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = build.next().await {
        let info = step.map_err(|e| DockerError::Build {
            tag: tag.clone(),
            message: e.to_string(),
        })?;
        if let Some(detail) = info.error_detail {
            return Err(DockerError::Build {
                tag,
                message: detail.message.unwrap_or_else(|| "unknown error".into()),
            });
        }
    }
    docker
        .inspect_image(&tag)
        .await
        .map_err(|e| DockerError::Build {
            tag: tag.clone(),
            message: format!("the engine reported success but has no image: {e}"),
        })?;
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_binaries_are_told_apart() {
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // The repository builds static binaries (.cargo/config.toml), tests included.
        assert!(is_static_elf(&this));
        let shell = std::fs::read("/bin/sh").unwrap();
        assert!(!is_static_elf(&shell));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    #[test]
    fn the_tag_follows_the_binary() {
        assert_eq!(image_tag(b"one"), image_tag(b"one"));
        assert_ne!(image_tag(b"one"), image_tag(b"two"));
        assert!(image_tag(b"one").starts_with("farm-server:"));
    }

    #[test]
    fn the_context_holds_the_dockerfile_and_the_binary() {
        let tar = build_context(b"\x7fELF...").unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "farm"]);
    }
}
