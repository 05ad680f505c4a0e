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

/// What the cost model can learn of a base without pulling it.
#[derive(Debug)]
pub enum BaseLookup {
    Scratch,
    /// `rootfs:DIR`: the sizes of its files.
    Rootfs {
        sizes: Vec<u64>,
    },
    /// Its manifest; `blobs` when the layers are on this machine: their
    /// store, and the cache directory where their facts are kept (so a base
    /// the build already scanned is not read again).
    Manifest {
        bytes: Vec<u8>,
        where_from: &'static str,
        blobs: Option<(BlobStore, std::path::PathBuf)>,
    },
    /// Why it could not be looked up.
    Unknown(String),
}

impl ResolvedBase {
    /// The lookup of a base already resolved (no request); `cache_dir` is
    /// where the build cached its layers' facts.
    pub fn lookup(&self, image: &str, cache_dir: &std::path::Path) -> BaseLookup {
        if image.starts_with(super::ROOTFS_PREFIX) {
            return rootfs_lookup(image);
        }
        match &self.image {
            None => BaseLookup::Scratch,
            Some(base) => BaseLookup::Manifest {
                bytes: base.manifest.clone(),
                where_from: if self.reference.is_some() { "registry manifest" } else { "OCI layout manifest" },
                blobs: self
                    .blobs
                    .as_ref()
                    .and_then(|b| BlobStore::open(b.root()).ok())
                    .map(|b| (b, cache_dir.to_path_buf())),
            },
        }
    }
}

fn rootfs_lookup(image: &str) -> BaseLookup {
    let root = image.strip_prefix(super::ROOTFS_PREFIX).unwrap_or(image);
    let sizes = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .collect();
    BaseLookup::Rootfs { sizes }
}

/// Looks a base up for the cost model: a local layout's manifest and blobs,
/// or a registry's manifest for linux/amd64 (one quick attempt, no retries:
/// the report says so when it fails), never its layers.
pub fn lookup(image: &str, skip_registry: bool, registry: &RegistryClientOptions) -> BaseLookup {
    if image == "scratch" {
        return BaseLookup::Scratch;
    }
    if image.starts_with(super::ROOTFS_PREFIX) {
        return rootfs_lookup(image);
    }
    if let Some(oci) = parse_oci_ref(image) {
        return match layout::read_image(&oci.dir, &oci.tag) {
            Ok(read) => BaseLookup::Manifest {
                bytes: read.manifest,
                where_from: "OCI layout manifest",
                blobs: BlobStore::open(&oci.dir).ok().zip(LayerCache::default_dir().ok()),
            },
            Err(error) => BaseLookup::Unknown(format!("cannot read {image} ({error})")),
        };
    }
    if skip_registry {
        return BaseLookup::Unknown("not looked up (--skip-base-lookup)".into());
    }
    match registry_manifest(image, registry) {
        Ok(bytes) => BaseLookup::Manifest { bytes, where_from: "registry manifest", blobs: None },
        Err(why) => BaseLookup::Unknown(why),
    }
}

fn registry_manifest(image: &str, registry: &RegistryClientOptions) -> Result<Vec<u8>, String> {
    let reference: Reference = image.parse().map_err(|e| format!("`{image}` is not an image reference ({e})"))?;
    let mut options = registry.clone();
    options.max_retries = 0;
    options.connect_timeout = std::time::Duration::from_secs(5);
    options.timeout = std::time::Duration::from_secs(10);
    let client = RegistryClient::new(options).map_err(|e| format!("no registry client ({e})"))?;
    let fetched = client.fetch_manifest(&reference).map_err(|e| format!("{} unreachable ({e})", reference.registry))?;
    let resolved = client
        .resolve_platform(&reference, fetched, "linux", "amd64")
        .map_err(|e| format!("{image}: no linux/amd64 manifest ({e})"))?;
    Ok(resolved.bytes)
}
