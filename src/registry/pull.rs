//! Pulling: manifests (OCI and Docker schema 2, indexes and manifest lists),
//! platform selection, and blobs streamed to disk with their sha256 checked
//! on the way.

use super::client::{Counters, RegistryClient};
use super::error::{RegistryError, Result, ServerMessage, CODE_NAME_UNKNOWN};
use super::manifest::{declared_media_type, is_image_manifest, is_index, ACCEPTED_MANIFESTS};
use super::parallel::for_each_parallel;
use super::reference::Reference;
use crate::image::digest::Digest;
use crate::image::oci::{Descriptor, ImageIndex, ImageManifest};
use crate::plumbing::fs::AtomicFile;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Manifests larger than this are refused (the distribution spec suggests 4 MiB).
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// A manifest or index as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The exact bytes; their sha256 is `digest`.
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

/// A base image pulled into a blob directory (`<dir>/sha256/<hex>`).
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// Digest of what the reference pointed at (an index for multi-platform
    /// images): record it to pin the base, `repo@<this>`.
    pub pinned_digest: Digest,
    /// The platform's image manifest (also written to the blob directory).
    pub manifest: FetchedManifest,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl RegistryClient {
    /// Fetches the manifest or index `reference` names, checking its digest
    /// when the reference is pinned.
    pub fn fetch_manifest(&self, reference: &Reference) -> Result<FetchedManifest> {
        let url = self
            .url(&reference.registry, &format!("{}/manifests/{}", reference.repository, reference.manifest_selector()));
        let response = self.send(&reference.registry, &reference.repository, true, &|http| {
            Ok(http.get(&url).header(ACCEPT, ACCEPTED_MANIFESTS.join(", ")))
        })?;
        let status = response.status().as_u16();
        if status == 404 {
            // NAME_UNKNOWN: no such repository; MANIFEST_UNKNOWN (or no
            // code): the repository is there, the tag or digest is not.
            let mut body = Vec::new();
            let _ = response.take(64 * 1024).read_to_end(&mut body);
            let name_unknown = ServerMessage::has_code(&ServerMessage::parse_all(&body), CODE_NAME_UNKNOWN);
            if name_unknown || !self.repository_exists(reference) {
                return Err(RegistryError::RepositoryUnknown {
                    registry: reference.registry.clone(),
                    repository: reference.repository.clone(),
                });
            }
            return Err(RegistryError::ManifestUnknown { reference: reference.to_string() });
        }
        if !response.status().is_success() {
            return Err(RegistryError::UnexpectedStatus {
                registry: reference.registry.clone(),
                method: "GET".into(),
                path: format!("{}/manifests/{}", reference.repository, reference.manifest_selector()),
                status,
            });
        }
        let header_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or(value).trim().to_string());
        let mut bytes = Vec::new();
        response.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes).map_err(|source| RegistryError::Transfer {
            registry: reference.registry.clone(),
            source: Box::new(source),
        })?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(RegistryError::InvalidManifest {
                reference: reference.to_string(),
                detail: "it is larger than 4 MiB".into(),
            });
        }
        let digest = sha256_of(&bytes);
        if let Some(expected) = &reference.digest {
            if *expected != digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest {reference}"),
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        let media_type = header_type
            .filter(|media_type| is_index(media_type) || is_image_manifest(media_type))
            .or_else(|| declared_media_type(&bytes))
            .ok_or_else(|| RegistryError::InvalidManifest {
                reference: reference.to_string(),
                detail: "it declares no media type".into(),
            })?;
        if !is_index(&media_type) && !is_image_manifest(&media_type) {
            return Err(RegistryError::InvalidManifest {
                reference: reference.to_string(),
                detail: format!("media type {media_type} is not supported"),
            });
        }
        Ok(FetchedManifest { bytes, digest, media_type })
    }

    /// Whether the registry knows `reference`'s repository. Many registries
    /// (docker-registry among them) answer a missing repository's manifest
    /// with MANIFEST_UNKNOWN; its tag list says NAME_UNKNOWN (404). Asked only
    /// after a 404, to tell the two apart; when in doubt, it exists.
    fn repository_exists(&self, reference: &Reference) -> bool {
        let url = self.url(&reference.registry, &format!("{}/tags/list?n=1", reference.repository));
        match self.send(&reference.registry, &reference.repository, false, &|http| Ok(http.get(&url))) {
            Ok(response) => response.status().as_u16() != 404,
            Err(_) => true,
        }
    }

    /// For an index, fetches the manifest for `os`/`architecture` (any
    /// variant); an image manifest is returned as it is.
    pub fn resolve_platform(
        &self,
        reference: &Reference,
        manifest: FetchedManifest,
        os: &str,
        architecture: &str,
    ) -> Result<FetchedManifest> {
        if !is_index(&manifest.media_type) {
            return Ok(manifest);
        }
        let index: ImageIndex = serde_json::from_slice(&manifest.bytes).map_err(|error| {
            RegistryError::InvalidManifest { reference: reference.to_string(), detail: error.to_string() }
        })?;
        let chosen = index.manifests.iter().find(|descriptor| {
            descriptor
                .platform
                .as_ref()
                .is_some_and(|platform| platform.os == os && platform.architecture == architecture)
        });
        let Some(chosen) = chosen else {
            let available = index
                .manifests
                .iter()
                .filter_map(|descriptor| descriptor.platform.as_ref())
                // buildx attestation manifests are not images.
                .filter(|platform| platform.os != "unknown")
                .map(|platform| platform.label())
                .collect();
            return Err(RegistryError::NoPlatform {
                reference: reference.to_string(),
                wanted: format!("{os}/{architecture}"),
                available,
            });
        };
        let resolved = self.fetch_manifest(&reference.with_digest(chosen.digest.clone()))?;
        if !is_image_manifest(&resolved.media_type) {
            return Err(RegistryError::InvalidManifest {
                reference: reference.with_digest(chosen.digest.clone()).to_string(),
                detail: format!("expected an image manifest, got {}", resolved.media_type),
            });
        }
        Ok(resolved)
    }

    /// Streams blob `digest` of `image`'s repository to `dest`: into a temp
    /// file beside it, sha256 checked while streaming, fsync, rename. On a
    /// mismatch the temp file is deleted and `dest` is untouched. Returns
    /// the size.
    pub fn fetch_blob_to_file(&self, image: &Reference, digest: &Digest, dest: &Path) -> Result<u64> {
        // Cut off mid-stream: start over (the temp file is gone).
        self.with_retries(
            || self.fetch_blob_once(image, digest, dest),
            |error| matches!(error, RegistryError::Transfer { .. }),
        )
    }

    fn fetch_blob_once(&self, image: &Reference, digest: &Digest, dest: &Path) -> Result<u64> {
        let path = format!("{}/blobs/{digest}", image.repository);
        let url = self.url(&image.registry, &path);
        let mut response = self.send(&image.registry, &image.repository, true, &|http| Ok(http.get(&url)))?;
        let status = response.status().as_u16();
        if status == 404 {
            return Err(RegistryError::BlobUnknown {
                registry: image.registry.clone(),
                repository: image.repository.clone(),
                digest: digest.clone(),
            });
        }
        if !response.status().is_success() {
            return Err(RegistryError::UnexpectedStatus {
                registry: image.registry.clone(),
                method: "GET".into(),
                path,
                status,
            });
        }
        let io_error = |source| RegistryError::Io { path: dest.to_path_buf(), source };
        let directory = dest.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(directory).map_err(io_error)?;
        let mut temp = AtomicFile::new_in(directory).map_err(io_error)?;
        let transfer = self.progress.start("pulled", digest, response.content_length().unwrap_or(0));
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
        let mut size = 0u64;
        loop {
            let count = match response.read(&mut buffer) {
                Ok(0) => break,
                Ok(count) => count,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(RegistryError::Transfer { registry: image.registry.clone(), source: Box::new(source) })
                }
            };
            hasher.update(&buffer[..count]);
            temp.write_all(&buffer[..count]).map_err(io_error)?;
            size += count as u64;
            transfer.advance(count as u64);
        }
        let actual = Digest::from_sha256_bytes(&hasher.finalize());
        if actual != *digest {
            // Dropping `temp` deletes it.
            return Err(RegistryError::DigestMismatch {
                what: format!("blob {digest} of {}/{}", image.registry, image.repository),
                expected: digest.clone(),
                actual,
            });
        }
        set_readable(temp.path()).map_err(io_error)?;
        temp.persist(dest).map_err(io_error)?;
        Counters::add(&self.counters.blobs_downloaded, 1);
        Counters::add(&self.counters.bytes_downloaded, size);
        transfer.finish();
        Ok(size)
    }

    /// Pulls `reference` for `os`/`architecture` into `blobs_dir/sha256/<hex>`:
    /// the image manifest, the config and every layer. Blobs already there
    /// with the right size are kept (their content was checked when written).
    pub fn pull_image(
        &self,
        reference: &Reference,
        os: &str,
        architecture: &str,
        blobs_dir: &Path,
    ) -> Result<PulledImage> {
        let top = self.fetch_manifest(reference)?;
        let pinned_digest = top.digest.clone();
        let manifest = self.resolve_platform(reference, top, os, architecture)?;
        let view: ImageManifest = serde_json::from_slice(&manifest.bytes).map_err(|error| {
            RegistryError::InvalidManifest { reference: reference.to_string(), detail: error.to_string() }
        })?;
        let manifest_path = blob_path(blobs_dir, &manifest.digest);
        if !manifest_path.exists() {
            write_atomically(&manifest_path, &manifest.bytes)?;
        }
        let missing: Vec<&Descriptor> = std::iter::once(&view.config)
            .chain(&view.layers)
            .filter(|descriptor| {
                let path = blob_path(blobs_dir, &descriptor.digest);
                !fs::metadata(path).is_ok_and(|meta| meta.len() == descriptor.size)
            })
            .collect();
        for_each_parallel(&missing, self.options.parallel_transfers, |descriptor| {
            let path = blob_path(blobs_dir, &descriptor.digest);
            self.fetch_blob_to_file(reference, &descriptor.digest, &path)
        })?;
        Ok(PulledImage { pinned_digest, manifest, config: view.config, layers: view.layers })
    }
}

/// `<blobs_dir>/sha256/<hex>`, the OCI image layout's blob path.
pub fn blob_path(blobs_dir: &Path, digest: &Digest) -> PathBuf {
    blobs_dir.join("sha256").join(digest.hex())
}

pub(crate) fn sha256_of(bytes: &[u8]) -> Digest {
    Digest::from_sha256_bytes(&Sha256::digest(bytes))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::plumbing::fs::write_atomic(path, bytes)
        .map_err(|source| RegistryError::Io { path: path.to_path_buf(), source })
}

fn set_readable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}
