//! The OCI image engine: deterministic streaming layers, blobs, image
//! assembly and the OCI image layout on disk.
//!
//! Flow: [`entries`] (what a layer holds) → [`layer::write_layer`] (one
//! streaming pass to a blob in a [`blobs::BlobStore`], through the
//! [`cache::LayerCache`]) → [`assemble`] (config + manifest bytes, the
//! documents typed in [`oci`]) → [`layout`] (blobs + `index.json` of an OCI
//! image layout directory).

pub mod appfiles;
pub mod assemble;
pub mod blobs;
pub mod cache;
pub mod digest;
pub mod direct_io;
pub mod entries;
pub mod layer;
pub mod layout;
pub mod modelpack;
pub mod oci;
pub mod pgzip;
pub mod sample;
pub mod tar_guard;
