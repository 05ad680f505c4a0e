//! Weights sources: list the files of a source at a pinned revision, and open
//! them as streams. One module per kind of source; this file holds what they
//! share (the listing types, path safety, pattern filtering, errors).
//!
//! Sources never decide bake vs volume; they only say what files exist, how
//! big they are, what hash the source vouches for, and how to read them.

pub mod filter;
pub mod hf;
pub mod hf_cache;
pub mod http;
pub mod manifest;
pub mod object;
pub mod signed_url;
pub mod source;
pub mod store;

use crate::image::digest::Digest;
use std::io::Read;

/// One file of a source, at a pinned revision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteFile {
    /// Path relative to the source root, `/`-separated, checked by [`safe_relative_path`].
    pub path: String,
    pub size: u64,
    /// sha256 of the content when the source gives it (HF LFS files); else
    /// computed when the bytes first pass through imgbake.
    pub sha256: Option<Digest>,
    /// The source's own identifier for this content (HF etag, S3 ETag, …).
    pub etag: Option<String>,
    /// Where to read it, pinned (`…/resolve/<commit>/<path>`, `s3://bucket/key`).
    pub url: String,
}

/// Every selected file of one source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listing {
    /// The source as written in the config.
    pub uri: String,
    /// The pinned revision (HF commit sha), when the source has revisions.
    pub revision: Option<String>,
    /// Sorted by path.
    pub files: Vec<RemoteFile>,
}

impl Listing {
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A credential value, read from the environment by its *name*. Its Debug
/// and Display never show the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for an Authorization header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first of these environment variables that is set and not empty.
    pub fn from_env(names: &[&str]) -> Option<Secret> {
        names.iter().find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty())).map(Secret)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{source_uri}: revision `{revision}` does not exist")]
    RevisionNotFound { source_uri: String, revision: String },
    #[error("{source_uri}: not found (check the name; private repos need a token)")]
    NotFound { source_uri: String },
    #[error("{source_uri}: access denied (HTTP {status}); set the credential named {credential}")]
    Unauthorized { source_uri: String, status: u16, credential: String },
    #[error("{source_uri}: no file matches allow_patterns {allow:?} / ignore_patterns {ignore:?}; the image would ship without these weights")]
    Empty { source_uri: String, allow: Vec<String>, ignore: Vec<String> },
    #[error("{source_uri}: the listing has an unsafe path `{path}` (absolute, `..`, or empty parts)")]
    UnsafePath { source_uri: String, path: String },
    #[error("{source_uri}: {message}")]
    Protocol { source_uri: String, message: String },
    #[error("{source_uri}: request failed")]
    Http {
        source_uri: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A path from a listing is safe when it is relative, `/`-separated and has
/// no `.`, `..` or empty components (so it can never leave the mount).
pub fn safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
}

/// A stream of one file's bytes.
pub type FileReader = Box<dyn Read + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\\b"] {
            assert!(!safe_relative_path(bad), "{bad:?}");
        }
        for good in ["model.safetensors", "unet/config.json", ".gitattributes"] {
            assert!(safe_relative_path(good), "{good:?}");
        }
    }

    #[test]
    fn secrets_never_print_their_value() {
        let secret = Secret::new("hf_abcdefSECRET".to_string());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}
