//! Pushing: blobs streamed from files (HEAD first, cross-repository mount
//! when a source repository is known, else one monolithic streamed PUT), then
//! the manifest. `push_image` takes plain data — digests, sizes, paths and
//! manifest bytes — and knows nothing of how the image was built.

use super::client::{Counters, RegistryClient};
use super::error::{RegistryError, Result};
use super::parallel::for_each_parallel;
use super::pull::{blob_path, sha256_of};
use super::reference::Reference;
use crate::image::digest::Digest;
use crate::image::oci::ImageManifest;
use reqwest::blocking::Body;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::Url;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bytes read from the blob file per piece of a streamed PUT body.
const PUT_CHUNK: usize = 1 << 20;

/// How a chunked PUT ended.
enum ChunkedPut {
    /// The status, and the registry's error message when it gave one.
    Done(u16, Option<String>),
    Unauthorized,
}

/// One blob on disk, described by the caller (the registry client never
/// hashes it again: the registry checks the digest on upload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSource {
    pub digest: Digest,
    pub size: u64,
    pub path: PathBuf,
}

impl BlobSource {
    /// The blob at `<blobs_dir>/sha256/<hex>` (OCI image layout).
    pub fn in_blobs_dir(blobs_dir: &Path, digest: Digest, size: u64) -> BlobSource {
        BlobSource { path: blob_path(blobs_dir, &digest), digest, size }
    }
}

/// Everything needed to push one image manifest.
#[derive(Debug, Clone)]
pub struct ImageToPush {
    /// The exact manifest bytes (pushed unchanged; their sha256 is the image digest).
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub config: BlobSource,
    pub layers: Vec<BlobSource>,
    /// A repository on the same registry that may already hold some of the
    /// blobs (e.g. the base image's), tried as a cross-repository mount.
    pub mount_from: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPushOutcome {
    AlreadyPresent,
    Mounted,
    Uploaded,
}

#[derive(Debug, Clone)]
pub struct PushReport {
    pub manifest_digest: Digest,
    /// The target pinned by digest: what a deployment should reference.
    pub pinned: Reference,
    pub blobs: Vec<(Digest, BlobPushOutcome)>,
}

impl RegistryClient {
    /// `HEAD` the blob: is it in `image`'s repository?
    pub fn blob_exists(&self, image: &Reference, digest: &Digest) -> Result<bool> {
        Counters::add(&self.counters.blob_checks, 1);
        let path = format!("{}/blobs/{digest}", image.repository);
        let url = self.url(&image.registry, &path);
        let response = self.send(&image.registry, &image.repository, true, &|http| Ok(http.head(&url)))?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(RegistryError::UnexpectedStatus {
                registry: image.registry.clone(),
                method: "HEAD".into(),
                path,
                status,
            }),
        }
    }

    /// Pushes one blob to `image`'s repository unless it is there already.
    /// `mount_from` names a repository on the same registry to mount from.
    pub fn push_blob_from_file(
        &self,
        image: &Reference,
        blob: &BlobSource,
        mount_from: Option<&str>,
    ) -> Result<BlobPushOutcome> {
        if self.blob_exists(image, &blob.digest)? {
            self.progress.note(&format!("exists {} (skipped)", blob.digest));
            return Ok(BlobPushOutcome::AlreadyPresent);
        }
        let on_disk =
            std::fs::metadata(&blob.path).map_err(|source| RegistryError::Io { path: blob.path.clone(), source })?;
        if on_disk.len() != blob.size {
            return Err(RegistryError::BlobSizeMismatch {
                path: blob.path.clone(),
                expected: blob.size,
                actual: on_disk.len(),
            });
        }
        self.with_retries(
            || self.upload_once(image, blob, mount_from.filter(|from| *from != image.repository)),
            RegistryError::is_retryable,
        )
    }

    fn upload_once(&self, image: &Reference, blob: &BlobSource, mount_from: Option<&str>) -> Result<BlobPushOutcome> {
        let registry = &image.registry;
        let repository = &image.repository;
        let start_url = self.url(registry, &format!("{repository}/blobs/uploads/"));
        let start = self.send(registry, repository, true, &|http| {
            let mut request = http.post(&start_url).header(CONTENT_LENGTH, 0);
            if let Some(from) = mount_from {
                request = request.query(&[("mount", blob.digest.to_string().as_str()), ("from", from)]);
            }
            Ok(request)
        })?;
        let status = start.status().as_u16();
        if status == 201 && mount_from.is_some() {
            Counters::add(&self.counters.blobs_mounted, 1);
            self.progress.note(&format!("mounted {} from {}", blob.digest, mount_from.unwrap_or_default()));
            return Ok(BlobPushOutcome::Mounted);
        }
        if status != 202 {
            return Err(self.upload_error(image, blob, Some(status), None));
        }
        let location = start
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| self.upload_error(image, blob, Some(status), Some("no upload location".into())))?;
        let base = Url::parse(&self.url(registry, ""))
            .map_err(|error| self.upload_error(image, blob, None, Some(error.to_string())))?;
        let mut put_url =
            base.join(location).map_err(|error| self.upload_error(image, blob, None, Some(error.to_string())))?;
        put_url.query_pairs_mut().append_pair("digest", &blob.digest.to_string());
        drop(start);

        let transfer = self.progress.start("pushed", &blob.digest, blob.size);
        // The whole body is sent within the request timeout, so give big
        // blobs time in proportion to their size.
        let allowance = Duration::from_secs(blob.size / self.options.min_upload_bytes_per_second.max(1));
        let timeout = self.options.timeout + allowance;
        match self.put_in_chunks(registry, repository, &put_url, blob, timeout, &transfer)? {
            ChunkedPut::Done(201, _) => {
                Counters::add(&self.counters.blobs_uploaded, 1);
                Counters::add(&self.counters.bytes_uploaded, blob.size);
                transfer.finish();
                return Ok(BlobPushOutcome::Uploaded);
            }
            ChunkedPut::Done(status, detail) => return Err(self.upload_error(image, blob, Some(status), detail)),
            // A new challenge (an expired token): the blocking path answers it.
            ChunkedPut::Unauthorized => {}
        }
        let response = self.send(registry, repository, false, &|http| {
            let file =
                File::open(&blob.path).map_err(|source| RegistryError::Io { path: blob.path.clone(), source })?;
            Ok(http
                .put(put_url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, blob.size)
                .timeout(timeout)
                .body(Body::sized(transfer.reader(file), blob.size)))
        })?;
        let status = response.status().as_u16();
        if status != 201 {
            let detail = error_detail(response);
            return Err(self.upload_error(image, blob, Some(status), detail));
        }
        Counters::add(&self.counters.blobs_uploaded, 1);
        Counters::add(&self.counters.bytes_uploaded, blob.size);
        transfer.finish();
        Ok(BlobPushOutcome::Uploaded)
    }

    /// The monolithic PUT of `blob`'s bytes, read in [`PUT_CHUNK`] pieces
    /// into a streamed body on a one-thread async client, with the
    /// authorization the upload's POST already answered.
    ///
    /// Why not the blocking client: `reqwest::blocking::Body::sized(reader)`
    /// copies a reader in fixed 8 KiB pieces (reqwest 0.12,
    /// `blocking/body.rs`, `send_future`), each handed through a channel to
    /// the runtime thread; for 1 GiB that was 131 k reads, 129 k `writev`s
    /// and 560 k futex calls, enough client CPU to lose to skopeo on two
    /// cores (docs/benchmarks.md, "Build and push"). Memory stays at a few
    /// pieces: the body is pulled as the socket drains.
    fn put_in_chunks(
        &self,
        registry: &str,
        repository: &str,
        url: &Url,
        blob: &BlobSource,
        timeout: Duration,
        transfer: &super::progress::Transfer,
    ) -> Result<ChunkedPut> {
        let setup_error = |source: std::io::Error| RegistryError::Transfer {
            registry: registry.to_string(),
            source: Box::new(source),
        };
        let file = File::open(&blob.path).map_err(|source| RegistryError::Io { path: blob.path.clone(), source })?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(setup_error)?;
        let mut builder = crate::plumbing::http::asynchronous(self.options.connect_timeout);
        for certificate in &self.root_certificates {
            builder = builder.add_root_certificate(certificate.clone());
        }
        let client = builder.build().map_err(|error| super::connection::transport_error(registry, error))?;
        let path = blob.path.clone();
        let bar = transfer.clone_bar();
        let pieces = futures_util::stream::unfold(Some(file), move |file| {
            let path = path.clone();
            let bar = bar.clone();
            async move {
                let mut file = file?;
                let mut piece = vec![0u8; PUT_CHUNK];
                let mut filled = 0;
                while filled < PUT_CHUNK {
                    match file.read(&mut piece[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(error) => {
                            let error = std::io::Error::new(error.kind(), format!("{}: {error}", path.display()));
                            return Some((Err(error), None));
                        }
                    }
                }
                if filled == 0 {
                    return None;
                }
                piece.truncate(filled);
                if let Some(bar) = &bar {
                    bar.inc(filled as u64);
                }
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(piece)), Some(file)))
            }
        });
        let mut request = client
            .put(url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, blob.size)
            .timeout(timeout)
            .body(reqwest::Body::wrap_stream(pieces));
        if let Some(authorization) = self.authorization(registry, repository) {
            request = request.header(AUTHORIZATION, authorization);
        }
        let (status, body) = runtime
            .block_on(async {
                let response = request.send().await?;
                let status = response.status().as_u16();
                // The body only matters when it explains a failure.
                let body = if status == 201 { String::new() } else { response.text().await.unwrap_or_default() };
                Ok((status, body))
            })
            .map_err(|error| super::connection::transport_error(registry, error))?;
        Ok(match status {
            401 => ChunkedPut::Unauthorized,
            status => ChunkedPut::Done(status, error_detail_of(&body)),
        })
    }

    fn upload_error(
        &self,
        image: &Reference,
        blob: &BlobSource,
        status: Option<u16>,
        detail: Option<String>,
    ) -> RegistryError {
        RegistryError::BlobUpload {
            registry: image.registry.clone(),
            repository: image.repository.clone(),
            digest: blob.digest.clone(),
            status,
            source: detail.map(|detail| detail.into()),
        }
    }

    /// Pushes manifest bytes under `target`'s tag (or digest). Returns the
    /// manifest digest, the sha256 of exactly these bytes.
    pub fn push_manifest(&self, target: &Reference, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let digest = sha256_of(bytes);
        let selector = target.manifest_selector();
        let url = self.url(&target.registry, &format!("{}/manifests/{selector}", target.repository));
        let response = self.send(&target.registry, &target.repository, true, &|http| {
            Ok(http.put(&url).header(CONTENT_TYPE, media_type).body(bytes.to_vec()))
        })?;
        let status = response.status().as_u16();
        if status != 201 && status != 200 {
            return Err(RegistryError::ManifestRejected {
                reference: target.to_string(),
                status,
                detail: error_detail(response).unwrap_or_else(|| "no details".into()),
            });
        }
        Ok(digest)
    }

    /// Pushes a built image: every blob checked with `HEAD` and the missing
    /// ones uploaded (a few at once), then the manifest under `target`.
    pub fn push_image(&self, image: &ImageToPush, target: &Reference) -> Result<PushReport> {
        check_manifest_matches(image, target)?;
        let blobs: Vec<&BlobSource> = std::iter::once(&image.config).chain(&image.layers).collect();
        let outcomes = for_each_parallel(&blobs, self.options.parallel_transfers, |blob| {
            self.push_blob_from_file(target, blob, image.mount_from.as_deref())
        })?;
        let manifest_digest = self.push_manifest(target, &image.manifest, &image.manifest_media_type)?;
        Ok(PushReport {
            pinned: target.with_digest(manifest_digest.clone()),
            manifest_digest,
            blobs: blobs.iter().zip(outcomes).map(|(blob, outcome)| (blob.digest.clone(), outcome)).collect(),
        })
    }
}

/// The manifest must reference exactly the blobs given, or the registry
/// would reject it after the uploads (or accept a manifest we did not mean).
fn check_manifest_matches(image: &ImageToPush, target: &Reference) -> Result<()> {
    let invalid = |detail: String| RegistryError::InvalidManifest { reference: target.to_string(), detail };
    let view: ImageManifest = serde_json::from_slice(&image.manifest).map_err(|error| invalid(error.to_string()))?;
    if view.config.digest != image.config.digest || view.config.size != image.config.size {
        return Err(invalid(format!(
            "its config is {} but the config blob given is {}",
            view.config.digest, image.config.digest
        )));
    }
    let listed: Vec<(&Digest, u64)> = view.layers.iter().map(|l| (&l.digest, l.size)).collect();
    let given: Vec<(&Digest, u64)> = image.layers.iter().map(|l| (&l.digest, l.size)).collect();
    if listed != given {
        return Err(invalid("its layers differ from the layer blobs given (digest, size or order)".into()));
    }
    Ok(())
}

/// The first `errors[].code: message` of a registry error body, if any.
fn error_detail(response: reqwest::blocking::Response) -> Option<String> {
    error_detail_of(&response.text().ok()?)
}

/// `code: message` of the first error in an OCI error body.
fn error_detail_of(body: &str) -> Option<String> {
    super::error::ServerMessage::parse_all(body.as_bytes()).into_iter().next().map(|message| message.to_string())
}
