//! The OCI image engine: deterministic streaming layers, blobs, image
//! assembly and the OCI image layout on disk.

pub mod appfiles;
pub mod digest;
