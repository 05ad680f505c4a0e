//! The local layer cache: written layers kept in a content-addressed blob
//! store, found again by a fingerprint of their inputs, so that an unchanged
//! layer is neither re-read nor re-compressed — whatever changed before it.
//!
//! The fingerprint covers every entry's path, mode and kind, and for files
//! their (size, mtime in ns, inode, device) from `stat` — the same trade-off
//! as make and git's index: a file rewritten in place with its old size and
//! mtime restored is not noticed. Streamed files (remote weights) count by
//! their key (pinned URL, source etag) and size. Plus the layer options. A hit needs the
//! index record *and* its blob; on a hit no input file is opened.

use crate::image::blobs::{write_file_atomic, BlobError, BlobStore};
use crate::image::digest::Digest;
use crate::image::entries::{EntryKind, LayerEntry};
use crate::image::layer::{LayerError, LayerOptions, WrittenLayer};
use sha2::{Digest as _, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Overrides the cache directory.
pub const CACHE_DIR_ENV: &str = "IMGBAKE_CACHE_DIR";
/// Bumped whenever the tar format or the fingerprint changes.
/// v2: gzip layers are written in independent 1 MiB blocks (`crate::image::pgzip`).
const FINGERPRINT_VERSION: &str = "imgbake layer cache v2";
const INDEX_DIR: &str = "layers";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no cache directory: set {CACHE_DIR_ENV}, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    #[error("failed to stat `{path}` for the layer cache")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create the layer cache in `{dir}`")]
    Create {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// Counts since the cache was opened. `files_read`/`bytes_read` are the
/// file entries handed to the build function on misses (hits read nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub files_read: u64,
    pub bytes_read: u64,
    pub hits: u64,
    pub misses: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedLayer {
    pub layer: WrittenLayer,
    /// The layer came from the cache, no input read.
    pub hit: bool,
}

#[derive(Debug)]
pub struct LayerCache {
    blobs: BlobStore,
    index_dir: PathBuf,
    files_read: AtomicU64,
    bytes_read: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    /// `false`: every layer is built again (and recorded) — `--no-cache`.
    reads: bool,
}

impl LayerCache {
    /// `$IMGBAKE_CACHE_DIR`, else `$XDG_CACHE_HOME/imgbake`, else `~/.cache/imgbake`.
    pub fn default_dir() -> Result<PathBuf, CacheError> {
        let from_env = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = from_env(CACHE_DIR_ENV) {
            return Ok(dir);
        }
        if let Some(dir) = from_env("XDG_CACHE_HOME") {
            return Ok(dir.join("imgbake"));
        }
        from_env("HOME").map(|home| home.join(".cache").join("imgbake")).ok_or(CacheError::NoCacheDir)
    }

    pub fn open(root: &Path) -> Result<LayerCache, CacheError> {
        let index_dir = root.join(INDEX_DIR);
        std::fs::create_dir_all(&index_dir).map_err(|source| CacheError::Create { dir: index_dir.clone(), source })?;
        Ok(LayerCache {
            blobs: BlobStore::open(root)?,
            index_dir,
            files_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            reads: true,
        })
    }

    /// Builds every layer from now on, finding none (still recording each).
    pub fn stop_reading(&mut self) {
        self.reads = false;
    }

    /// Where cached layer blobs live; export them with [`LayerCache::export`].
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            files_read: self.files_read.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// The cached layer for these inputs, or `build(cache blobs, entries,
    /// options)` (normally [`crate::image::layer::write_layer`]) and remember it.
    pub fn get_or_build<F>(
        &self,
        entries: &[LayerEntry],
        options: &LayerOptions,
        build: F,
    ) -> Result<CachedLayer, CacheError>
    where
        F: FnOnce(&BlobStore, &[LayerEntry], &LayerOptions) -> Result<WrittenLayer, LayerError>,
    {
        let fingerprint = fingerprint(entries, options)?;
        let record = self.index_dir.join(format!("{}.json", fingerprint.hex()));
        if let Some(layer) = std::fs::read(&record)
            .ok()
            .filter(|_| self.reads)
            .and_then(|bytes| serde_json::from_slice::<WrittenLayer>(&bytes).ok())
            .filter(|layer| self.blobs.has(&layer.digest))
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(CachedLayer { layer, hit: true });
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        for entry in entries {
            if let EntryKind::File { size, .. } | EntryKind::Stream { size, .. } = entry.kind {
                self.files_read.fetch_add(1, Ordering::Relaxed);
                self.bytes_read.fetch_add(size, Ordering::Relaxed);
            }
        }
        let layer = build(&self.blobs, entries, options)?;
        let json = serde_json::to_vec(&layer).expect("a WrittenLayer serializes");
        write_file_atomic(&record, &json)?;
        Ok(CachedLayer { layer, hit: false })
    }

    /// Puts a cached layer's blob into another store (an OCI layout): a hard
    /// link on the same file system, else a copy.
    pub fn export(&self, layer: &WrittenLayer, to: &BlobStore) -> Result<(), BlobError> {
        to.import_file(&layer.digest, &self.blobs.path(&layer.digest))
    }
}

/// sha256 over the inputs of a layer; see the module doc for what is in it.
/// Fields are length-prefixed so that no two inputs share an encoding.
pub fn fingerprint(entries: &[LayerEntry], options: &LayerOptions) -> Result<Digest, CacheError> {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(FINGERPRINT_VERSION.as_bytes());
    field(&serde_json::to_vec(options).expect("options serialize"));
    field(&(entries.len() as u64).to_le_bytes());
    for entry in entries {
        field(entry.path.as_bytes());
        field(&entry.mode.to_le_bytes());
        match &entry.kind {
            EntryKind::Dir => field(b"dir"),
            EntryKind::Symlink { target } => {
                field(b"symlink");
                field(target.as_bytes());
            }
            EntryKind::Hardlink { target } => {
                field(b"hardlink");
                field(target.as_bytes());
            }
            EntryKind::Stream { key, size } => {
                field(b"stream");
                field(key.as_bytes());
                field(&size.to_le_bytes());
            }
            EntryKind::File { source, size } => {
                let meta =
                    std::fs::metadata(source).map_err(|e| CacheError::Stat { path: source.clone(), source: e })?;
                let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
                field(b"file");
                field(&size.to_le_bytes());
                field(&meta.len().to_le_bytes());
                field(&mtime_ns.to_le_bytes());
                field(&meta.ino().to_le_bytes());
                field(&meta.dev().to_le_bytes());
            }
        }
    }
    Ok(Digest::from_sha256_bytes(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::entries::entries_from_dir;
    use crate::image::layer::{write_layer, Compression};
    use std::fs;
    use std::time::{Duration, SystemTime};

    const OPTIONS: LayerOptions = LayerOptions { compression: Compression::Zstd { level: 3 }, mtime: 0 };

    #[test]
    fn unchanged_inputs_hit_without_reading_changed_ones_miss() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir(&tree).unwrap();
        fs::write(tree.join("a.bin"), b"aaaa").unwrap();
        fs::write(tree.join("b.bin"), b"bbbbbb").unwrap();
        let cache = LayerCache::open(&dir.path().join("cache")).unwrap();

        let entries = entries_from_dir(&tree, "w").unwrap();
        let first = cache.get_or_build(&entries, &OPTIONS, write_layer).unwrap();
        assert!(!first.hit);
        assert_eq!(cache.stats().files_read, 2);
        assert_eq!(cache.stats().bytes_read, 10);

        // Rewrite a file in place with the same size and restore its mtime:
        // the fingerprint cannot see it, so a hit proves the file was not
        // read (reading it would give a different digest).
        let when = fs::metadata(tree.join("a.bin")).unwrap().modified().unwrap();
        fs::write(tree.join("a.bin"), b"AAAA").unwrap();
        fs::File::options().write(true).open(tree.join("a.bin")).unwrap().set_modified(when).unwrap();
        let entries = entries_from_dir(&tree, "w").unwrap();
        let second = cache.get_or_build(&entries, &OPTIONS, |_, _, _| panic!("a hit must not build")).unwrap();
        assert!(second.hit);
        assert_eq!(second.layer, first.layer);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.files_read), (1, 1, 2));

        // A new mtime is a miss, and the new content is read.
        fs::File::options()
            .write(true)
            .open(tree.join("a.bin"))
            .unwrap()
            .set_modified(when + Duration::from_nanos(1))
            .unwrap();
        let third = cache.get_or_build(&entries, &OPTIONS, write_layer).unwrap();
        assert!(!third.hit);
        assert_ne!(third.layer.diff_id, first.layer.diff_id);
        assert_eq!(cache.stats().files_read, 4);

        // Other options are another layer.
        let gzip = LayerOptions { compression: Compression::Gzip { level: 6 }, ..OPTIONS };
        assert!(!cache.get_or_build(&entries, &gzip, write_layer).unwrap().hit);
    }

    #[test]
    fn a_record_whose_blob_is_gone_is_a_miss_and_export_links() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"content").unwrap();
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(7))
            .unwrap();
        let entries = crate::image::entries::entries_from_files(&[(file, "f".into())]).unwrap();
        let cache = LayerCache::open(&dir.path().join("cache")).unwrap();
        let built = cache.get_or_build(&entries, &OPTIONS, write_layer).unwrap();
        fs::remove_file(cache.blobs().path(&built.layer.digest)).unwrap();
        let rebuilt = cache.get_or_build(&entries, &OPTIONS, write_layer).unwrap();
        assert!(!rebuilt.hit);
        assert_eq!(rebuilt.layer, built.layer);

        let layout = BlobStore::open(&dir.path().join("layout")).unwrap();
        cache.export(&rebuilt.layer, &layout).unwrap();
        assert!(layout.has(&rebuilt.layer.digest));
    }
}
