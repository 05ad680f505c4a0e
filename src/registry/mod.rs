//! OCI distribution client: pull and push over HTTP(S), streaming blobs.
//!
//! A thin client on `reqwest`'s blocking API (rustls). We do not use
//! `oci-client`: it buffers whole blobs in memory, and ML images carry
//! multi-GB weight layers. Here a blob goes from file to socket in 1 MiB
//! pieces of a streamed body (see `push::put_in_chunks` for why not the
//! blocking client's reader body) and from socket to a temp file whose
//! sha256 is checked while it streams, so memory stays flat whatever the
//! blob size.
//!
//! - [`reference`]: `host[:port]/path[:tag][@sha256:…]`, Docker Hub defaults.
//! - [`auth`]: credentials (options, env, Docker config) and Basic/Bearer challenges.
//! - [`credential_helper`]: docker's `docker-credential-<name> get` protocol.
//! - [`client`]: options, retries with backoff and jitter, transfer counters.
//! - [`connection`]: what a failed connection means; plain HTTP for loopback.
//! - [`pull`]: manifests, platform selection, verified blob downloads.
//! - [`push`]: HEAD-then-upload of blobs, cross-repo mounts, manifests, whole images.
//! - [`layer_cache`]: the build cache kept in the registry, one artifact per layer key.
//! - [`error`]: typed errors that say whether a retry makes sense, with hints.
//!
//! The build pipeline needs two calls; both take and return plain data:
//!
//! ```no_run
//! use imgbake::registry::{BlobSource, ImageToPush, Reference, RegistryClient, RegistryClientOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = RegistryClient::new(RegistryClientOptions::default())?;
//! let blobs = std::path::Path::new("out/blobs");
//!
//! // Base image → blob directory; record `pinned_digest` in the lock.
//! let base: Reference = "debian:bookworm-slim".parse()?;
//! let pulled = client.pull_image(&base, "linux", "amd64", blobs)?;
//! println!("base pinned at {}", base.with_digest(pulled.pinned_digest));
//!
//! // Built layout → registry.
//! # let (manifest_bytes, config_digest, config_size) = (Vec::new(), pulled.config.digest.clone(), 0);
//! let image = ImageToPush {
//!     manifest: manifest_bytes,
//!     manifest_media_type: imgbake::registry::manifest::OCI_MANIFEST.into(),
//!     config: BlobSource::in_blobs_dir(blobs, config_digest, config_size),
//!     layers: pulled.layers.iter()
//!         .map(|layer| BlobSource::in_blobs_dir(blobs, layer.digest.clone(), layer.size))
//!         .collect(),
//!     mount_from: None,
//! };
//! let report = client.push_image(&image, &"registry.example.com/team/app:v1".parse()?)?;
//! println!("pushed {}", report.pinned);
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod client;
pub mod connection;
pub mod credential_helper;
pub mod error;
pub mod layer_cache;
pub mod manifest;
pub(crate) mod parallel;
mod progress;
pub mod pull;
pub mod push;
pub mod push_record;
pub mod reference;

pub use auth::{CredentialSource, Credentials};
pub use client::{RegistryClient, RegistryClientOptions, TransferStats};
pub use error::{CertificateProblem, RegistryError};
pub use progress::ProgressMode;
pub use pull::{blob_path, FetchedManifest, PulledImage};
pub use push::{BlobPushOutcome, BlobSource, ImageToPush, PushReport};
pub use reference::{Reference, ReferenceError};
