//! The controller's TLS files as swarm secrets of the farm: `<prefix>-tls-cert-<hash>`,
//! `<prefix>-tls-key-<hash>` (the controller's task only) and `<prefix>-tls-ca-<hash>` (every
//! task: the agents trust it). The engine hands each to the tasks that name it as a file under
//! `/run/secrets`, and never writes a key into a service's spec or environment.
//!
//! A secret cannot change, and one that a task uses cannot go; so each is named by a hash of
//! its content: the same files give the same secrets (a farm started again changes no task),
//! and new files give new ones beside the old, which go with the farm.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use bollard::Docker;
use bollard::models::{
    Secret, SecretSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets,
};
use bollard::query_parameters::ListSecretsOptionsBuilder;

use super::network::is_ours;
use super::{LABEL_FARM, SwarmError, api};
use crate::runtime::docker::farm_filter;

/// Where a task finds the secrets it is given.
const SECRETS_DIR: &str = "/run/secrets";

/// One of the farm's TLS files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The controller's certificate (chain).
    Cert,
    /// The certificate's private key.
    Key,
    /// The CA certificates agents and the gateway trust.
    Ca,
}

impl TlsFile {
    fn suffix(self) -> &'static str {
        match self {
            Self::Cert => "tls-cert",
            Self::Key => "tls-key",
            Self::Ca => "tls-ca",
        }
    }

    /// The secret's name for farm `prefix` and content `pem`.
    pub fn secret_name(self, prefix: &str, pem: &[u8]) -> String {
        // Outside `farm up` and the controller's task run the same binary: the same hash.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        pem.hash(&mut hasher);
        format!("{prefix}-{}-{:016x}", self.suffix(), hasher.finish())
    }

    /// Where a task that is given it reads it.
    pub fn path_in_task(self) -> String {
        format!("{SECRETS_DIR}/farm-{}", self.suffix())
    }
}

/// A secret as a task names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Which file it is.
    pub file: TlsFile,
    /// The engine's id of the secret.
    pub id: String,
    /// Its name.
    pub name: String,
}

impl SecretRef {
    /// The reference a task spec carries: the secret, readable by root only, at
    /// [`TlsFile::path_in_task`].
    pub(super) fn for_task(&self) -> TaskSpecContainerSpecSecrets {
        TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(format!("farm-{}", self.file.suffix())),
                uid: Some("0".into()),
                gid: Some("0".into()),
                mode: Some(0o400),
            }),
            secret_id: Some(self.id.clone()),
            secret_name: Some(self.name.clone()),
        }
    }
}

/// Makes the farm's TLS secrets from `files` (each file's PEM), or finds them made already.
/// The farm's other TLS secrets (of files it had before) go where no task uses them any more.
pub async fn create(
    docker: &Docker,
    prefix: &str,
    files: &[(TlsFile, Vec<u8>)],
) -> Result<Vec<SecretRef>, SwarmError> {
    let mut made = Vec::with_capacity(files.len());
    for (file, pem) in files {
        let name = file.secret_name(prefix, pem);
        let id = match docker.inspect_secret(&name).await {
            Ok(secret) if is_ours(secret.spec.as_ref().and_then(|s| s.labels.as_ref()), prefix) => {
                secret.id.unwrap_or_default()
            }
            Ok(_) => {
                return Err(SwarmError::NameTaken {
                    kind: "secret",
                    name,
                });
            }
            Err(_) => {
                docker
                    .create_secret(SecretSpec {
                        name: Some(name.clone()),
                        labels: Some(HashMap::from([(
                            LABEL_FARM.to_string(),
                            prefix.to_string(),
                        )])),
                        data: Some(base64::engine::general_purpose::STANDARD.encode(pem)),
                        ..Default::default()
                    })
                    .await
                    .map_err(api(format!("create secret {name}")))?
                    .id
            }
        };
        made.push(SecretRef {
            file: *file,
            id,
            name,
        });
    }
    for secret in farm_secrets(docker, prefix).await? {
        let name = secret.spec.and_then(|s| s.name).unwrap_or_default();
        if let Some(id) = secret.id
            && !made.iter().any(|m| m.id == id)
            && let Err(error) = docker.delete_secret(&id).await
        {
            // Still used by a task of the farm's; it goes with the farm.
            tracing::debug!(%error, name, "Kept an old secret of the farm.");
        }
    }
    Ok(made)
}

/// The farm's secret for `file` of content `pem`, as the farm's `farm up` made it.
pub async fn find(
    docker: &Docker,
    prefix: &str,
    file: TlsFile,
    pem: &[u8],
) -> Result<SecretRef, SwarmError> {
    let name = file.secret_name(prefix, pem);
    let secret = docker
        .inspect_secret(&name)
        .await
        .map_err(api(format!("inspect secret {name}")))?;
    let id = secret
        .id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| SwarmError::Secret(format!("the engine gave {name} no id")))?;
    Ok(SecretRef { file, id, name })
}

/// Every secret labelled as farm `prefix`'s.
async fn farm_secrets(docker: &Docker, prefix: &str) -> Result<Vec<Secret>, SwarmError> {
    docker
        .list_secrets(Some(
            ListSecretsOptionsBuilder::default()
                .filters(&farm_filter(prefix))
                .build(),
        ))
        .await
        .map_err(api("list secrets"))
}

/// Removes every secret labelled as farm `prefix`'s; returns their names.
pub async fn remove_all(docker: &Docker, prefix: &str) -> Result<Vec<String>, SwarmError> {
    let mut removed = Vec::new();
    for secret in farm_secrets(docker, prefix).await? {
        let (Some(id), name) = (secret.id, secret.spec.and_then(|s| s.name)) else {
            continue;
        };
        let name = name.unwrap_or_else(|| id.clone());
        docker
            .delete_secret(&id)
            .await
            .map_err(api(format!("remove secret {name}")))?;
        removed.push(name);
    }
    Ok(removed)
}
