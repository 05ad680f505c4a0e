//! OCI distribution client: pull and push over HTTP(S), streaming blobs.
//!
//! A thin client on `reqwest`'s blocking API (rustls). We do not use
//! `oci-client`: it buffers whole blobs in memory, and ML images carry
//! multi-GB weight layers. Here a blob goes from file to socket
//! (`Body::sized(File, size)`) and from socket to a temp file whose sha256 is
//! checked while it streams, so memory stays flat whatever the blob size.
//!
//! - [`reference`]: `host[:port]/path[:tag][@sha256:…]`, Docker Hub defaults.
//! - [`auth`]: credentials (options, env, Docker config) and Basic/Bearer challenges.
//! - [`client`]: options, retries with backoff and jitter, transfer counters.
//! - [`pull`]: manifests, platform selection, verified blob downloads.
//! - [`push`]: HEAD-then-upload of blobs, cross-repo mounts, manifests, whole images.
//! - [`error`]: typed errors that say whether a retry makes sense.

pub mod auth;
pub mod client;
pub mod error;
pub mod manifest;
mod progress;
pub mod pull;
pub mod push;
pub mod reference;

pub use auth::Credentials;
pub use client::{RegistryClient, RegistryClientOptions, TransferStats};
pub use error::RegistryError;
pub use progress::{human_bytes, ProgressMode};
pub use pull::{blob_path, FetchedManifest, PulledImage};
pub use push::{BlobPushOutcome, BlobSource, ImageToPush, PushReport};
pub use reference::{Reference, ReferenceError};
