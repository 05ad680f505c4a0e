//! Downloaded weights on the build machine: content-addressed, verified, and
//! kept, for what needs them as files (a Dockerfile build context); a native
//! build streams remote weights into layers instead (`build::stream`) and
//! keeps only their sha256 here.
//!
//! `<cache>/weights/blobs/sha256/<hex>` holds file contents; `index/<key>`
//! maps a source object (pinned URL, etag, size) to its sha256, for sources
//! that do not give one (S3 ETags, git sha1s of small hub files).

use super::{FileReader, RemoteFile, WeightsError};
use crate::image::digest::Digest;
use crate::plumbing::fs::{write_atomic, AtomicFile};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const BUFFER: usize = 1 << 20;
/// Mode of stored weights files (the mode natively baked weights get).
const WEIGHTS_MODE: u32 = 0o644;

#[derive(Clone)]
pub struct WeightsStore {
    blobs: PathBuf,
    index: PathBuf,
}

/// A weights file present on the build machine.
#[derive(Debug, Clone)]
pub struct LocalCopy {
    pub path: PathBuf,
    pub sha256: Digest,
    /// False when it was already in the store.
    pub downloaded: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write the weights cache at {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Source(#[from] WeightsError),
    #[error("{url}: expected {expected} bytes, received {actual}")]
    Size { url: String, expected: u64, actual: u64 },
    #[error("{url}: content has sha256 {actual}, but the source says {expected}")]
    Hash { url: String, expected: Digest, actual: Digest },
    #[error("{url}: reading the download failed")]
    Read {
        url: String,
        #[source]
        source: io::Error,
    },
}

impl WeightsStore {
    pub fn open(cache_root: &Path) -> Result<WeightsStore, StoreError> {
        let root = cache_root.join("weights");
        let store = WeightsStore { blobs: root.join("blobs/sha256"), index: root.join("index") };
        for dir in [&store.blobs, &store.index] {
            fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.clone(), source })?;
        }
        Ok(store)
    }

    fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    fn index_path(&self, file: &RemoteFile) -> PathBuf {
        let key = Sha256::digest(format!("{}\n{}\n{}", file.url, file.etag.as_deref().unwrap_or(""), file.size));
        self.index.join(hex::encode(key))
    }

    /// The sha256 this store knows for `file`: the source's own, or one
    /// recorded when its bytes were downloaded before.
    pub fn known_sha256(&self, file: &RemoteFile) -> Option<Digest> {
        file.sha256.clone().or_else(|| fs::read_to_string(self.index_path(file)).ok()?.trim().parse().ok())
    }

    /// The local copy of `file`, downloading it through `open` when missing.
    /// Size (and sha256, when the source gives one) are checked before the
    /// file gets its name; a failed download leaves nothing behind.
    pub fn fetch(
        &self,
        file: &RemoteFile,
        open: impl FnOnce() -> Result<FileReader, WeightsError>,
    ) -> Result<LocalCopy, StoreError> {
        if let Some(digest) = self.known_sha256(file) {
            let path = self.blob(&digest);
            if fs::metadata(&path).is_ok_and(|m| m.len() == file.size) {
                // Stores written before blobs were made world-readable held them at 0600.
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(WEIGHTS_MODE));
                return Ok(LocalCopy { path, sha256: digest, downloaded: false });
            }
        }
        let reader = open()?;
        let (digest, path) = self.store_stream(file, reader)?;
        self.remember_sha256(file, &digest)?;
        Ok(LocalCopy { path, sha256: digest, downloaded: true })
    }

    /// Records the sha256 of `file`'s content, computed when its bytes
    /// passed through imgbake without being kept (a streamed layer, a
    /// volume-mode hash), so later builds and `imgbake lock` know it.
    pub fn remember_sha256(&self, file: &RemoteFile, digest: &Digest) -> Result<(), StoreError> {
        write_atomic(&self.index_path(file), digest.to_string().as_bytes())
            .map_err(|source| StoreError::Io { path: self.index.clone(), source })
    }

    /// The `compression = "auto"` sample ratio recorded for this set of
    /// remote files (by their stream keys), else `sample()`, recorded now:
    /// a rebuild then reads no byte of them to decide again.
    pub fn sampled_ratio(&self, keys: &[String], sample: impl FnOnce() -> f64) -> f64 {
        let path = self.index.join(hex::encode(Sha256::digest(format!("ratio\n{}", keys.join("\n")))));
        if let Some(ratio) = fs::read_to_string(&path).ok().and_then(|text| text.trim().parse::<f64>().ok()) {
            return ratio;
        }
        let ratio = sample();
        // Best effort: without the record the next build samples again.
        let _ = write_atomic(&path, ratio.to_string().as_bytes());
        ratio
    }

    /// Stores small generated content (e.g. an hf-cache `refs/main` file).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let digest = Digest::from_sha256_bytes(&Sha256::digest(bytes));
        let path = self.blob(&digest);
        if !path.exists() {
            write_atomic(&path, bytes).map_err(|source| StoreError::Io { path: path.clone(), source })?;
        }
        Ok(path)
    }

    fn store_stream(&self, file: &RemoteFile, mut reader: FileReader) -> Result<(Digest, PathBuf), StoreError> {
        let io_error = |source| StoreError::Io { path: self.blobs.clone(), source };
        let mut temp = AtomicFile::new_in(&self.blobs).map_err(io_error)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; BUFFER];
        let mut total = 0u64;
        {
            let mut out = io::BufWriter::with_capacity(BUFFER, temp.file_mut());
            loop {
                let n = match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => return Err(StoreError::Read { url: file.url.clone(), source }),
                };
                hasher.update(&buffer[..n]);
                out.write_all(&buffer[..n]).map_err(io_error)?;
                total += n as u64;
                if total > file.size {
                    break;
                }
            }
            out.flush().map_err(io_error)?;
        }
        if total != file.size {
            return Err(StoreError::Size { url: file.url.clone(), expected: file.size, actual: total });
        }
        let digest = Digest::from_sha256_bytes(&hasher.finalize());
        if let Some(expected) = &file.sha256 {
            if *expected != digest {
                return Err(StoreError::Hash { url: file.url.clone(), expected: expected.clone(), actual: digest });
            }
        }
        // A build context hard-links these files, and a Dockerfile COPY keeps
        // their mode: readable by every user, as natively baked weights are.
        temp.file().set_permissions(fs::Permissions::from_mode(WEIGHTS_MODE)).map_err(io_error)?;
        let path = self.blob(&digest);
        temp.persist(&path).map_err(io_error)?;
        Ok((digest, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(bytes: &[u8], sha256: Option<Digest>) -> RemoteFile {
        RemoteFile {
            path: "model.bin".into(),
            size: bytes.len() as u64,
            sha256,
            etag: Some("\"etag-1\"".into()),
            url: "s3://bucket/model.bin".into(),
        }
    }

    fn reader(bytes: &[u8]) -> Result<FileReader, WeightsError> {
        Ok(Box::new(io::Cursor::new(bytes.to_vec())))
    }

    #[test]
    fn downloads_once_then_serves_from_the_store_by_recorded_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let store = WeightsStore::open(dir.path()).unwrap();
        let bytes = b"weights bytes".repeat(1000);
        let file = remote(&bytes, None);
        let first = store.fetch(&file, || reader(&bytes)).unwrap();
        assert!(first.downloaded);
        assert_eq!(fs::read(&first.path).unwrap(), bytes);
        let second = store.fetch(&file, || panic!("downloaded twice")).unwrap();
        assert!(!second.downloaded);
        assert_eq!(second.sha256, first.sha256);
    }

    #[test]
    fn a_wrong_byte_or_a_short_body_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = WeightsStore::open(dir.path()).unwrap();
        let bytes = vec![7u8; 4096];
        let good = Digest::from_sha256_bytes(&Sha256::digest(&bytes));
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        let err = store.fetch(&remote(&bytes, Some(good.clone())), || reader(&flipped)).unwrap_err();
        assert!(matches!(err, StoreError::Hash { .. }), "{err}");
        let err = store.fetch(&remote(&bytes, Some(good)), || reader(&bytes[..4000])).unwrap_err();
        assert!(matches!(err, StoreError::Size { expected: 4096, actual: 4000, .. }), "{err}");
        assert_eq!(fs::read_dir(&store.blobs).unwrap().count(), 0, "a partial or wrong file was kept");
    }
}
