//! The controller's TLS files as swarm secrets of the farm: `<prefix>-tls-cert`,
//! `<prefix>-tls-key` (the controller's task only) and `<prefix>-tls-ca` (every task: the
//! agents trust it). The engine hands each to the tasks that name it as a file under
//! `/run/secrets`, and never writes a key into a service's spec or environment.

use std::collections::HashMap;

use base64::Engine as _;
use bollard::Docker;
use bollard::models::{SecretSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets};
use bollard::query_parameters::ListSecretsOptionsBuilder;

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

    /// The secret's name for farm `prefix`.
    pub fn secret_name(self, prefix: &str) -> String {
        format!("{prefix}-{}", self.suffix())
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

/// Makes the farm's TLS secrets from `files` (each file's PEM), replacing those the farm
/// already has: a secret cannot change, and the farm's controller and servers that used the
/// old ones are gone by now.
pub async fn create(
    docker: &Docker,
    prefix: &str,
    files: &[(TlsFile, Vec<u8>)],
) -> Result<Vec<SecretRef>, SwarmError> {
    remove_all(docker, prefix).await?;
    let mut made = Vec::with_capacity(files.len());
    for (file, pem) in files {
        let name = file.secret_name(prefix);
        let created = docker
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
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                } => SwarmError::NameTaken {
                    kind: "secret",
                    name: name.clone(),
                },
                e => api(format!("create secret {name}"))(e),
            })?;
        made.push(SecretRef {
            file: *file,
            id: created.id,
            name,
        });
    }
    Ok(made)
}

/// The farm's secret for `file`, as the farm's `farm up` made it.
pub async fn find(docker: &Docker, prefix: &str, file: TlsFile) -> Result<SecretRef, SwarmError> {
    let name = file.secret_name(prefix);
    let secret = docker
        .inspect_secret(&name)
        .await
        .map_err(api(format!("inspect secret {name}")))?;
    Ok(SecretRef {
        file,
        id: secret.id.unwrap_or_default(),
        name,
    })
}

/// Removes every secret labelled as farm `prefix`'s; returns their names.
pub async fn remove_all(docker: &Docker, prefix: &str) -> Result<Vec<String>, SwarmError> {
    let secrets = docker
        .list_secrets(Some(
            ListSecretsOptionsBuilder::default()
                .filters(&farm_filter(prefix))
                .build(),
        ))
        .await
        .map_err(api("list secrets"))?;
    let mut removed = Vec::new();
    for secret in secrets {
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
