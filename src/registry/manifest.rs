//! What the client needs to route manifest requests: the media types it
//! accepts and how to tell an index from an image manifest. The documents
//! themselves are the typed ones of [`crate::image::oci`]; manifests are kept
//! and pushed as the exact bytes fetched or given, never re-serialised.

pub use crate::image::oci::{
    declared_media_type, is_image_manifest, is_index, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};

/// Sent as `Accept` when fetching a manifest.
pub const ACCEPTED_MANIFESTS: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];
