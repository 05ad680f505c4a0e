//! Image references: `host[:port]/path[:tag][@sha256:…]`, with Docker Hub's
//! defaults (`debian:bookworm-slim` is `registry-1.docker.io/library/debian:bookworm-slim`).

use crate::image::digest::Digest;
use std::fmt;
use std::str::FromStr;

/// The host that serves Docker Hub's registry API (`docker.io` is only a name).
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed image reference. `registry` is the host (and port) the API is
/// served on; `repository` is the path under `/v2/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{reference}` is not a valid image reference: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

impl Reference {
    /// The same image by digest (what a lock file records).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { digest: Some(digest), ..self.clone() }
    }

    /// What to put after `/manifests/`: the digest when pinned, else the tag.
    pub fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Reference, ReferenceError> {
        let fail = |reason: &str| ReferenceError { reference: text.to_string(), reason: reason.to_string() };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.chars().any(|c| c.is_whitespace()) {
            return Err(fail("it contains whitespace"));
        }
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest
                    .parse::<Digest>()
                    .map_err(|_| fail("the part after `@` must be `sha256:` and 64 hex digits"))?;
                (rest, Some(digest))
            }
            None => (text, None),
        };
        // A tag is after the last `:` of the last path component (a `:` before
        // a `/` is a port).
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (&name_and_tag[..split], Some(name_and_tag[split + 1..].to_string()))
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = &tag {
            if !valid_tag(tag) {
                return Err(fail(
                    "a tag is 1 to 128 characters of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB_REGISTRY.to_string(), name.to_string()),
        };
        if registry.is_empty() || registry.ends_with(':') {
            return Err(fail("the registry host is empty"));
        }
        let registry = match registry.as_str() {
            "docker.io" | "index.docker.io" => DOCKER_HUB_REGISTRY.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_repository(&repository) {
            return Err(fail(
                "a repository path is lowercase letters and digits separated by `/`, `.`, `_`, `__` or `-`",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference { registry, repository, tag, digest })
    }
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphanumeric() || first == '_' => {}
        _ => return false,
    }
    tag.len() <= 128 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.split('/').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Reference {
        text.parse().unwrap()
    }

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(parse("debian:bookworm-slim").to_string(), "registry-1.docker.io/library/debian:bookworm-slim");
        assert_eq!(parse("python").to_string(), "registry-1.docker.io/library/python:latest");
        assert_eq!(parse("docker.io/pytorch/pytorch:2.3.0").to_string(), "registry-1.docker.io/pytorch/pytorch:2.3.0");
        assert_eq!(parse("nvidia/cuda:12.4.1-runtime-ubuntu22.04").repository, "nvidia/cuda");
    }

    #[test]
    fn host_port_path_tag_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let reference = parse(&format!("127.0.0.1:5000/team/app:v1@{digest}"));
        assert_eq!(reference.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository, "team/app");
        assert_eq!(reference.tag.as_deref(), Some("v1"));
        assert_eq!(reference.manifest_selector(), digest);

        let untagged = parse("localhost:5000/app");
        assert_eq!(untagged.tag.as_deref(), Some("latest"));
        let pinned = parse(&format!("ghcr.io/org/app@{digest}"));
        assert_eq!(pinned.tag, None);
        assert_eq!(pinned.to_string(), format!("ghcr.io/org/app@{digest}"));
    }

    #[test]
    fn errors_name_the_reference() {
        for bad in ["", "Debian:12", "debian:", "debian@sha256:abc", "host:5000/", "a b", "repo:-tag"] {
            let error = bad.parse::<Reference>().unwrap_err();
            assert!(error.to_string().contains(&format!("`{bad}`")), "{error}");
        }
    }
}
