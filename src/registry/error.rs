//! Typed registry errors. Each displays as one line naming the registry,
//! reference or blob, keeps its cause as a `#[source]`, says through
//! [`RegistryError::is_retryable`] whether trying again later makes sense,
//! and through [`RegistryError::hint`] what the user can do about it.
//! Credentials never appear here: an error names where they came from
//! ([`CredentialSource`]), never what they are.

use super::auth::CredentialSource;
use super::credential_helper::HelperProblem;
use super::reference::{ReferenceError, DOCKER_HUB_REGISTRY};
use crate::image::digest::Digest;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    /// A connection failure that is none of the more specific ones below
    /// (a timeout, a reset).
    #[error("registry {registry} is unreachable")]
    Unreachable {
        registry: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("cannot resolve the host name of registry {registry}")]
    HostNotFound {
        registry: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("registry {registry} refused the connection")]
    ConnectionRefused {
        registry: String,
        #[source]
        source: reqwest::Error,
    },

    /// The TLS handshake got an HTTP answer: the registry speaks plain HTTP.
    #[error("registry {registry} answered the HTTPS handshake with plain HTTP")]
    PlainHttp {
        registry: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("the TLS certificate of registry {registry} is not accepted: {problem}")]
    Certificate {
        registry: String,
        problem: CertificateProblem,
        #[source]
        source: reqwest::Error,
    },

    #[error("registry {registry} denied access to {repository} (HTTP {status}) {credential}")]
    Unauthorized { registry: String, repository: String, status: u16, credential: CredentialSource },

    /// 404 with the registry's `NAME_UNKNOWN`: the repository itself is missing.
    #[error("repository {registry}/{repository} not found")]
    RepositoryUnknown { registry: String, repository: String },

    /// 404 with `MANIFEST_UNKNOWN` (or no code): the tag or digest is missing.
    #[error("manifest {reference} not found")]
    ManifestUnknown { reference: String },

    /// HTTP 429 (Docker Hub's carries the `TOOMANYREQUESTS` error code),
    /// after the retries that made sense.
    #[error("registry {registry} is rate-limiting requests (HTTP {status})")]
    RateLimited {
        registry: String,
        status: u16,
        /// The registry's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        #[source]
        detail: Option<ServerMessage>,
    },

    #[error("credential helper {program} failed for registry {registry}: {problem}")]
    CredentialHelper {
        registry: String,
        /// `docker-credential-<name>`.
        program: String,
        /// The Docker config file that names the helper.
        config: PathBuf,
        problem: HelperProblem,
    },

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

/// Why a registry's TLS certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateProblem {
    /// Self-signed, or signed by a CA that is not among the trusted roots.
    UnknownIssuer,
    /// Valid, but issued for other host names.
    WrongHost,
    Expired,
    NotYetValid,
    /// Revoked, bad signature, wrong usage, …: see the cause.
    Other,
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertificateProblem::UnknownIssuer => "it is self-signed or signed by an unknown authority",
            CertificateProblem::WrongHost => "it is issued for another host name",
            CertificateProblem::Expired => "it has expired",
            CertificateProblem::NotYetValid => "it is not valid yet",
            CertificateProblem::Other => "it is invalid",
        })
    }
}

/// One entry of a registry's JSON error body (`{"errors": [{"code", "message"}]}`),
/// kept as the cause of the error it explains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServerMessage {
    pub code: String,
    pub message: String,
}

impl ServerMessage {
    /// Every entry of an OCI error body; none when it is not one.
    pub fn parse_all(body: &[u8]) -> Vec<ServerMessage> {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<Item>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            code: Option<String>,
            message: Option<String>,
        }
        let Ok(body) = serde_json::from_slice::<Errors>(body) else {
            return Vec::new();
        };
        body.errors
            .into_iter()
            .map(|item| ServerMessage {
                code: item.code.unwrap_or_default(),
                message: item.message.unwrap_or_default().trim().to_string(),
            })
            .collect()
    }

    /// Whether any entry has `code` (compared case-insensitively: Docker
    /// Hub sends `TOOMANYREQUESTS`, its documentation says `toomanyrequests`).
    pub fn has_code(messages: &[ServerMessage], code: &str) -> bool {
        messages.iter().any(|message| message.code.eq_ignore_ascii_case(code))
    }
}

/// The error code Docker Hub (and registries copying it) send when rate-limiting.
pub const CODE_TOO_MANY_REQUESTS: &str = "TOOMANYREQUESTS";
/// The distribution spec's code for a repository the registry does not know.
pub const CODE_NAME_UNKNOWN: &str = "NAME_UNKNOWN";

fn status_suffix(status: Option<u16>) -> String {
    status.map_or(String::new(), |status| format!(" (HTTP {status})"))
}

impl RegistryError {
    /// Whether the same call may succeed later without anything changing on
    /// our side (network trouble, server errors, rate limits).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. }
            | RegistryError::Transfer { .. }
            | RegistryError::ConnectionRefused { .. }
            | RegistryError::RateLimited { .. } => true,
            RegistryError::UnexpectedStatus { status, .. } => crate::plumbing::retry::retryable_status(*status),
            RegistryError::BlobUpload { status, .. } => status.is_none_or(crate::plumbing::retry::retryable_status),
            RegistryError::ManifestRejected { status, .. } => crate::plumbing::retry::retryable_status(*status),
            // A corrupted download can be a transient proxy fault.
            RegistryError::DigestMismatch { .. } => true,
            RegistryError::Token { .. } => false,
            RegistryError::Reference(_)
            | RegistryError::HostNotFound { .. }
            | RegistryError::PlainHttp { .. }
            | RegistryError::Certificate { .. }
            | RegistryError::CredentialHelper { .. }
            | RegistryError::RepositoryUnknown { .. }
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
        Some(match self {
            RegistryError::Unreachable { registry, .. } => {
                format!("check that {registry} is up and that this machine can reach it (proxy, firewall)")
            }
            RegistryError::HostNotFound { registry, .. } => format!(
                "check the spelling of `{}` in the image reference, and this machine's DNS",
                host_of(registry)
            ),
            RegistryError::ConnectionRefused { registry, .. } => {
                format!("nothing listens on {registry}: start the registry, or check the port in the image reference")
            }
            RegistryError::PlainHttp { registry, .. } => {
                format!("if {registry} is meant to be used over plain HTTP, pass `--insecure-registry {registry}`")
            }
            RegistryError::Certificate { registry, problem, .. } => match problem {
                CertificateProblem::UnknownIssuer => format!(
                    "if {registry} uses a private CA, point {} at a PEM file holding that CA's certificate",
                    super::client::ENV_SSL_CERT_FILE
                ),
                CertificateProblem::WrongHost => format!(
                    "reach the registry by a name its certificate lists, or reissue the certificate with `{}` as a subjectAltName",
                    host_of(registry)
                ),
                CertificateProblem::Expired | CertificateProblem::NotYetValid => format!(
                    "renew the certificate of {registry}, and check this machine's clock"
                ),
                CertificateProblem::Other => format!("check the certificate {registry} presents"),
            },
            RegistryError::Unauthorized { registry, status, credential, .. } => {
                credential.hint(registry, *status == 403)
            }
            RegistryError::RepositoryUnknown { registry, repository } => {
                if registry == DOCKER_HUB_REGISTRY && !repository.contains('/') {
                    format!("check the repository name `{repository}`")
                } else {
                    format!(
                        "check the repository path `{repository}`: {registry} has nothing under that name (a private repository may also need a login)"
                    )
                }
            }
            RegistryError::ManifestUnknown { reference } => format!(
                "check the tag or digest; `skopeo list-tags docker://{}` lists the tags",
                without_tag_or_digest(reference)
            ),
            RegistryError::RateLimited { registry, retry_after, .. } => {
                let wait = match retry_after {
                    Some(after) => format!("wait {} (the registry's Retry-After) and try again", human_duration(*after)),
                    None => "wait a while and try again".to_string(),
                };
                if registry == DOCKER_HUB_REGISTRY {
                    format!("{wait}; Docker Hub allows more pulls after `docker login`, or mirror the image to your own registry")
                } else {
                    wait
                }
            }
            RegistryError::CredentialHelper { registry, program, config, problem } => {
                problem.hint(registry, program, config)
            }
            RegistryError::NoPlatform { wanted, .. } => format!("choose a base image published for {wanted}"),
            error if error.is_retryable() => "this may be temporary: try again".to_string(),
            _ => return None,
        })
    }
}

impl crate::plumbing::errors::Hint for RegistryError {
    fn hint(&self) -> Option<String> {
        RegistryError::hint(self)
    }
}

/// `host[:port]` → `host` (IPv6 brackets kept).
fn host_of(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':') => host,
        _ => registry,
    }
}

fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 120 {
        format!("{} min", seconds.div_ceil(60))
    } else {
        format!("{seconds} s")
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

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_bodies_and_codes() {
        let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}"#;
        let messages = ServerMessage::parse_all(body);
        assert!(ServerMessage::has_code(&messages, CODE_NAME_UNKNOWN));
        assert!(!ServerMessage::has_code(&messages, CODE_TOO_MANY_REQUESTS));
        assert_eq!(messages[0].to_string(), "NAME_UNKNOWN: repository name not known to registry");
        assert!(ServerMessage::parse_all(b"<html>").is_empty());
        assert!(ServerMessage::has_code(
            &ServerMessage::parse_all(br#"{"errors":[{"code":"toomanyrequests","message":"m"}]}"#),
            CODE_TOO_MANY_REQUESTS
        ));
    }

    #[test]
    fn docker_hub_rate_limit_hint_suggests_login() {
        let error = RegistryError::RateLimited {
            registry: DOCKER_HUB_REGISTRY.into(),
            status: 429,
            retry_after: None,
            detail: None,
        };
        assert_eq!(
            error.hint().unwrap(),
            "wait a while and try again; Docker Hub allows more pulls after `docker login`, or mirror the image to your own registry"
        );
    }

    #[test]
    fn host_of_strips_the_port_only() {
        assert_eq!(host_of("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(host_of("ghcr.io"), "ghcr.io");
        assert_eq!(host_of("[::1]:5000"), "[::1]");
        assert_eq!(human_duration(Duration::from_secs(90)), "90 s");
        assert_eq!(human_duration(Duration::from_secs(3600)), "60 min");
    }
}
