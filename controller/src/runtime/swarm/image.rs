//! The server image on every engine of the swarm, without a registry: built on the manager
//! (the docker runtime's `FROM scratch` image around the static binary) and copied to each
//! other engine through the engine API (`docker save` | `docker load`), which keeps the image
//! ID. Services name the image by that ID.

use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::ImportImageOptionsBuilder;
use tokio_stream::StreamExt;

use super::SwarmError;

/// Makes the server image for `binary` on `manager` and on every engine of `others` that
/// lacks it; returns its ID (`sha256:...`).
pub async fn spread_image(
    manager: &Docker,
    others: &[Docker],
    binary: &Path,
) -> Result<String, SwarmError> {
    let tag = crate::runtime::docker::ensure_image(manager, binary)
        .await
        .map_err(|e| SwarmError::Image(e.to_string()))?;
    let id = manager
        .inspect_image(&tag)
        .await
        .ok()
        .and_then(|image| image.id)
        .ok_or_else(|| SwarmError::Image(format!("the manager has no image {tag}")))?;
    for (n, engine) in others.iter().enumerate() {
        if engine.inspect_image(&id).await.is_ok() {
            continue;
        }
        tracing::info!(%tag, engine = n + 1, "Copying the server image to an engine of the swarm.");
        // By tag, so that the copy keeps its name too.
        let tar = manager.export_image(&tag);
        let mut load = engine.import_image_stream(
            ImportImageOptionsBuilder::default().quiet(true).build(),
            tar,
            None,
        );
        while let Some(step) = load.next().await {
            step.map_err(|e| SwarmError::Image(format!("copying {tag} to engine {}: {e}", n + 1)))?;
        }
        let copied = engine
            .inspect_image(&id)
            .await
            .ok()
            .and_then(|image| image.id);
        if copied.as_deref() != Some(id.as_str()) {
            return Err(SwarmError::Image(format!(
                "engine {} loaded {tag} but has no image {id}",
                n + 1
            )));
        }
    }
    Ok(id)
}
