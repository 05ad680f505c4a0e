//! Typed registry errors. Each displays as one line naming the registry,
//! reference or blob, keeps its cause as a `#[source]`, and says through
//! [`RegistryError::is_retryable`] whether trying again later makes sense.

use super::reference::ReferenceError;
use crate::image::digest::Digest;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    #[error("registry {registry} is unreachable")]
    Unreachable {
        registry: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("registry {registry} refused access (HTTP {status}); check the credentials for it")]
    Unauthorized { registry: String, status: u16 },

    #[error("manifest {reference} not found")]
    ManifestUnknown { reference: String },

    #[error("blob {digest} not found in {registry}/{repository}")]
    BlobUnknown { registry: String, repository: String, digest: Digest },

    #[error("{reference} has no {wanted} image; available: {}", available.join(", "))]
    NoPlatform { reference: String, wanted: String, available: Vec<String> },

    #[error("content of {what} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },

    #[error("upload of blob {digest} to {registry}/{repository} failed{}", status_suffix(*status))]
    BlobUpload {
        registry: String,
        repository: String,
        digest: Digest,
        status: Option<u16>,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    #[error("blob file `{}` holds {actual} bytes but its descriptor says {expected}", path.display())]
    BlobSizeMismatch { path: PathBuf, expected: u64, actual: u64 },

    #[error("registry rejected manifest {reference} (HTTP {status}): {detail}")]
    ManifestRejected { reference: String, status: u16, detail: String },

    #[error("manifest {reference} is not usable: {detail}")]
    InvalidManifest { reference: String, detail: String },

    #[error("registry {registry} answered {method} {path} with HTTP {status}")]
    UnexpectedStatus { registry: String, method: String, path: String, status: u16 },

    #[error("transfer from or to registry {registry} was cut off")]
    Transfer {
        registry: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("token service of registry {registry} failed: {detail}")]
    Token { registry: String, detail: String },

    #[error("failed to access `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn status_suffix(status: Option<u16>) -> String {
    status.map_or(String::new(), |status| format!(" (HTTP {status})"))
}

impl RegistryError {
    /// Whether the same call may succeed later without anything changing on
    /// our side (network trouble, server errors, rate limits).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Transfer { .. } => true,
            RegistryError::UnexpectedStatus { status, .. } => is_retryable_status(*status),
            RegistryError::BlobUpload { status, .. } => status.is_none_or(is_retryable_status),
            RegistryError::ManifestRejected { status, .. } => is_retryable_status(*status),
            // A corrupted download can be a transient proxy fault.
            RegistryError::DigestMismatch { .. } => true,
            RegistryError::Token { .. } => false,
            RegistryError::Reference(_)
            | RegistryError::Unauthorized { .. }
            | RegistryError::ManifestUnknown { .. }
            | RegistryError::BlobUnknown { .. }
            | RegistryError::NoPlatform { .. }
            | RegistryError::InvalidManifest { .. }
            | RegistryError::BlobSizeMismatch { .. }
            | RegistryError::Io { .. } => false,
        }
    }

    /// A next step for the user, printed as `hint: …` under the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Unreachable { registry, .. } => Some(format!(
                "check that {registry} is up and reachable; a registry served over plain HTTP must be listed as insecure"
            )),
            RegistryError::Unauthorized { registry, .. } => Some(format!(
                "set IMGBAKE_REGISTRY_USERNAME and IMGBAKE_REGISTRY_PASSWORD, or run `docker login {registry}`"
            )),
            RegistryError::ManifestUnknown { reference } => Some(format!(
                "check the tag or digest; `skopeo list-tags docker://{}` lists the tags",
                without_tag_or_digest(reference)
            )),
            RegistryError::NoPlatform { wanted, .. } => Some(format!(
                "choose a base image published for {wanted}"
            )),
            error if error.is_retryable() => Some("this may be temporary: try again".to_string()),
            _ => None,
        }
    }
}

/// `host/repo:tag@sha256:…` → `host/repo`.
fn without_tag_or_digest(reference: &str) -> &str {
    let name = reference.split_once('@').map_or(reference, |(name, _)| name);
    match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => name,
    }
}

pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
