//! The base image: `scratch`, a local OCI layout (`oci:DIR[:TAG]`), or a
//! registry reference pulled (linux/amd64, digest pinned) into the layer
//! cache's blob store. Base layers are referenced as they are, never rewritten.

use crate::image::assemble::BaseImage;
use crate::image::blobs::BlobStore;
use crate::image::cache::LayerCache;
use crate::image::layout::{self, parse_oci_ref};
use crate::image::oci::{Descriptor, ImageConfiguration, ImageManifest};
use crate::registry::{Reference, RegistryClient, RegistryClientOptions, RegistryError};
use std::path::PathBuf;

/// The resolved base: its documents, its layers, and where their blobs are.
#[derive(Debug)]
pub struct ResolvedBase {
    pub image: Option<BaseImage>,
    /// The base's layers as its manifest lists them.
    pub layers: Vec<Descriptor>,
    /// The store holding the base's layer blobs (the source layout, or the cache).
    pub blobs: Option<BlobStore>,
    /// `registry/repo@sha256:…` when the base came from a registry.
    pub pinned: Option<String>,
    pub reference: Option<Reference>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("cannot read the base image {base}")]
    Layout {
        base: String,
        #[source]
        source: Box<layout::LayoutError>,
    },
    #[error("`{base}` is not a valid image reference")]
    Reference {
        base: String,
        #[source]
        source: crate::registry::ReferenceError,
    },
    #[error("cannot pull the base image {base}")]
    Pull {
        base: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("the base image {base} has a malformed manifest")]
    Manifest {
        base: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot open the blob store of {base}")]
    Blobs {
        base: String,
        #[source]
        source: crate::image::blobs::BlobError,
    },
}

impl ResolvedBase {
    /// `config.Env` of the base, if it has one.
    pub fn config_env(&self) -> Option<Vec<String>> {
        let config: ImageConfiguration = serde_json::from_slice(&self.image.as_ref()?.config).ok()?;
        config.config?.env?
    }
}

pub fn resolve(base: &str, cache: &LayerCache, registry: &RegistryClientOptions) -> Result<ResolvedBase, BaseError> {
    if base == "scratch" {
        return Ok(ResolvedBase { image: None, layers: Vec::new(), blobs: None, pinned: None, reference: None });
    }
    if let Some(oci) = parse_oci_ref(base) {
        let read = layout::read_image(&oci.dir, &oci.tag)
            .map_err(|source| BaseError::Layout { base: base.to_string(), source: Box::new(source) })?;
        let blobs = BlobStore::open(&oci.dir).map_err(|source| BaseError::Blobs { base: base.to_string(), source })?;
        let layers = layers_of(base, &read.manifest)?;
        return Ok(ResolvedBase {
            image: Some(BaseImage { manifest: read.manifest, config: read.config }),
            layers,
            blobs: Some(blobs),
            pinned: None,
            reference: None,
        });
    }
    let reference: Reference =
        base.parse().map_err(|source| BaseError::Reference { base: base.to_string(), source })?;
    let client = RegistryClient::new(registry.clone())
        .map_err(|source| BaseError::Pull { base: base.to_string(), source: Box::new(source) })?;
    let blobs_dir: PathBuf = cache.blobs().root().join("blobs");
    let pulled = client
        .pull_image(&reference, "linux", "amd64", &blobs_dir)
        .map_err(|source| BaseError::Pull { base: base.to_string(), source: Box::new(source) })?;
    let config = cache
        .blobs()
        .read_small(&pulled.config.digest)
        .map_err(|source| BaseError::Blobs { base: base.to_string(), source })?;
    let manifest = pulled.manifest.bytes.clone();
    let layers = pulled.layers;
    let store =
        BlobStore::open(cache.blobs().root()).map_err(|source| BaseError::Blobs { base: base.to_string(), source })?;
    Ok(ResolvedBase {
        image: Some(BaseImage { manifest, config }),
        layers,
        blobs: Some(store),
        pinned: Some(format!("{}/{}@{}", reference.registry, reference.repository, pulled.pinned_digest)),
        reference: Some(reference),
    })
}

fn layers_of(base: &str, manifest: &[u8]) -> Result<Vec<Descriptor>, BaseError> {
    let manifest: ImageManifest =
        serde_json::from_slice(manifest).map_err(|source| BaseError::Manifest { base: base.to_string(), source })?;
    Ok(manifest.layers)
}
