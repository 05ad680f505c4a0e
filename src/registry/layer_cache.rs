//! The build cache kept in a registry: for each layer key
//! (`crate::layout::key`), one small OCI artifact tagged
//! `imgbake-cache-<key>` in the cache repository. Its manifest has
//! `artifactType` [`ARTIFACT_TYPE`], the empty config, and one layer: the
//! cached layer's own descriptor (so the registry's garbage collection
//! keeps the blob as long as the entry exists), annotated with the layer's
//! diff_id, uncompressed size, file count, runnable paths and the layer
//! format it was written with. docs/build.md ("Registry cache") documents
//! it. Nothing else is written: no source URL, no credential, no path of
//! the build machine.
//!
//! One artifact per key, not one per image: a lookup is one GET by tag, and
//! two CI jobs writing at once never overwrite each other's entries.

use super::client::RegistryClient;
use super::error::{RegistryError, Result};
use super::push::BlobSource;
use super::reference::Reference;
use crate::image::digest::Digest;
use crate::image::layer::{WrittenLayer, LAYER_FORMAT};
use crate::image::oci::{canonical_json, Descriptor, ImageManifest, OCI_MANIFEST};
use reqwest::header::CONTENT_LENGTH;
use std::collections::BTreeMap;
use std::path::Path;

/// `artifactType` of a cache entry's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.imgbake.layer-cache.v1+json";
/// The OCI empty descriptor's media type and content (`{}`).
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONTENT: &[u8] = b"{}";
/// Tag prefix of cache entries: `imgbake-cache-<64 hex>` (78 characters,
/// within the 128 a tag may have).
pub const TAG_PREFIX: &str = "imgbake-cache-";

const KEY: &str = "dev.imgbake.cache.key";
const FORMAT: &str = "dev.imgbake.cache.format";
const DIFF_ID: &str = "dev.imgbake.cache.diff-id";
const UNCOMPRESSED_SIZE: &str = "dev.imgbake.cache.uncompressed-size";
const FILES: &str = "dev.imgbake.cache.files";
const PROGRAMS: &str = "dev.imgbake.cache.programs";
const LAYER_NAME: &str = "dev.imgbake.cache.layer";

/// What the cache knows of one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub layer: WrittenLayer,
    /// Regular files in the layer (for the build's report).
    pub files: usize,
    /// Runnable image paths (for the entrypoint check).
    pub programs: Vec<String>,
}

/// The reference of `key`'s entry in `repository`.
pub fn entry_reference(repository: &Reference, key: &str) -> Reference {
    Reference { tag: Some(format!("{TAG_PREFIX}{key}")), digest: None, ..repository.clone() }
}

/// The entry's manifest bytes. `name` is the layer's display name.
pub fn entry_manifest(key: &str, entry: &CacheEntry, name: &str) -> Vec<u8> {
    let layer = &entry.layer;
    let mut descriptor = Descriptor::new(&layer.media_type, layer.digest.clone(), layer.size);
    descriptor.annotations = Some(BTreeMap::from([
        (DIFF_ID.to_string(), layer.diff_id.to_string()),
        (UNCOMPRESSED_SIZE.to_string(), layer.uncompressed_size.to_string()),
        (FILES.to_string(), entry.files.to_string()),
        (PROGRAMS.to_string(), serde_json::to_string(&entry.programs).expect("strings serialize")),
    ]));
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        config: Descriptor::new(EMPTY_MEDIA_TYPE, empty_digest(), EMPTY_CONTENT.len() as u64),
        layers: vec![descriptor],
        subject: None,
        annotations: Some(BTreeMap::from([
            (KEY.to_string(), key.to_string()),
            (FORMAT.to_string(), LAYER_FORMAT.to_string()),
            (LAYER_NAME.to_string(), name.to_string()),
        ])),
    };
    canonical_json(&manifest)
}

/// The entry in `bytes`, when it is one for `key` written with this
/// imgbake's layer format; anything else is not a hit.
pub fn parse_entry(bytes: &[u8], key: &str) -> Option<CacheEntry> {
    let manifest: ImageManifest = serde_json::from_slice(bytes).ok()?;
    let annotations = manifest.annotations.as_ref()?;
    if manifest.artifact_type.as_deref() != Some(ARTIFACT_TYPE)
        || annotations.get(KEY).map(String::as_str) != Some(key)
        || annotations.get(FORMAT).map(String::as_str) != Some(LAYER_FORMAT)
        || manifest.layers.len() != 1
    {
        return None;
    }
    let descriptor = &manifest.layers[0];
    let layer_annotations = descriptor.annotations.as_ref()?;
    let layer = WrittenLayer {
        digest: descriptor.digest.clone(),
        diff_id: layer_annotations.get(DIFF_ID)?.parse().ok()?,
        size: descriptor.size,
        uncompressed_size: layer_annotations.get(UNCOMPRESSED_SIZE)?.parse().ok()?,
        media_type: descriptor.media_type.clone(),
    };
    let files = layer_annotations.get(FILES)?.parse().ok()?;
    let programs = serde_json::from_str(layer_annotations.get(PROGRAMS)?).ok()?;
    Some(CacheEntry { layer, files, programs })
}

fn empty_digest() -> Digest {
    super::pull::sha256_of(EMPTY_CONTENT)
}

impl RegistryClient {
    /// The cache entry of `key` in `repository`; `None` when there is none
    /// (no tag, no repository) or it is not one this imgbake can use.
    pub fn read_cache_entry(&self, repository: &Reference, key: &str) -> Result<Option<CacheEntry>> {
        match self.fetch_manifest(&entry_reference(repository, key)) {
            Ok(fetched) => Ok(parse_entry(&fetched.bytes, key)),
            Err(RegistryError::ManifestUnknown { .. } | RegistryError::RepositoryUnknown { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Records `entry` under `key` in `repository`, whose blobs must hold
    /// the layer already. `scratch` is a directory for the empty config's file.
    pub fn write_cache_entry(
        &self,
        repository: &Reference,
        key: &str,
        entry: &CacheEntry,
        name: &str,
        scratch: &Path,
    ) -> Result<()> {
        let empty = scratch.join("empty.json");
        std::fs::write(&empty, EMPTY_CONTENT).map_err(|source| RegistryError::Io { path: empty.clone(), source })?;
        let config = BlobSource { digest: empty_digest(), size: EMPTY_CONTENT.len() as u64, path: empty };
        self.push_blob_from_file(repository, &config, None)?;
        let target = entry_reference(repository, key);
        self.push_manifest(&target, &entry_manifest(key, entry, name), OCI_MANIFEST)?;
        Ok(())
    }

    /// The size of blob `digest` in `image`'s repository (`HEAD`), or
    /// `None` when it is not there.
    pub fn blob_size(&self, image: &Reference, digest: &Digest) -> Result<Option<u64>> {
        let path = format!("{}/blobs/{digest}", image.repository);
        let url = self.url(&image.registry, &path);
        let response = self.send(&image.registry, &image.repository, false, &|http| Ok(http.head(&url)))?;
        match response.status().as_u16() {
            200 => Ok(response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok())),
            404 => Ok(None),
            status => Err(RegistryError::UnexpectedStatus {
                registry: image.registry.clone(),
                method: "HEAD".into(),
                path,
                status,
            }),
        }
    }

    /// Mounts blob `digest` from repository `from` into `target`'s
    /// repository (same registry); `false` when the registry would not.
    pub fn mount_blob(&self, target: &Reference, digest: &Digest, from: &str) -> Result<bool> {
        let url = self.url(&target.registry, &format!("{}/blobs/uploads/", target.repository));
        let response = self.send(&target.registry, &target.repository, true, &|http| {
            Ok(http
                .post(&url)
                .header(CONTENT_LENGTH, 0)
                .query(&[("mount", digest.to_string().as_str()), ("from", from)]))
        })?;
        Ok(response.status().as_u16() == 201)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> CacheEntry {
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap();
        CacheEntry {
            layer: WrittenLayer {
                digest: digest('a'),
                diff_id: digest('b'),
                size: 10,
                uncompressed_size: 20,
                media_type: crate::image::layer::MEDIA_TYPE_TAR_GZIP.into(),
            },
            files: 3,
            programs: vec!["usr/local/bin/uvicorn".into()],
        }
    }

    #[test]
    fn an_entry_reads_back_for_its_key_only() {
        let bytes = entry_manifest("k1", &entry(), "python torch");
        assert_eq!(parse_entry(&bytes, "k1"), Some(entry()));
        assert_eq!(parse_entry(&bytes, "k2"), None);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(ARTIFACT_TYPE) && text.contains(EMPTY_MEDIA_TYPE), "{text}");
    }

    #[test]
    fn an_entry_of_another_layer_format_is_ignored() {
        let text = String::from_utf8(entry_manifest("k1", &entry(), "x")).unwrap();
        let other = text.replace(LAYER_FORMAT, "imgbake-layer-0");
        assert_eq!(parse_entry(other.as_bytes(), "k1"), None);
    }

    #[test]
    fn the_tag_fits_a_registry_tag() {
        let repository: Reference = "127.0.0.1:5000/team/app:v1".parse().unwrap();
        let tag = entry_reference(&repository, &"f".repeat(64)).tag.unwrap();
        assert!(tag.len() <= 128 && tag.starts_with(TAG_PREFIX));
    }
}
