//! A content-addressed blob store over a directory laid out as
//! `blobs/sha256/<hex>`, so an OCI image layout directory *is* a blob store.
//!
//! A blob becomes visible under its digest only once it is complete: it is
//! written to a temp file in the same directory, fsynced, renamed to `<hex>`,
//! and the directory is fsynced. A writer dropped before `commit` removes its
//! temp file, so a crash or an error never leaves a truncated `<hex>`.
//!
//! Past its first [`DIRECT_FROM`] bytes a blob is written with direct I/O
//! (see [`super::direct_io`] for why and how).

use crate::image::digest::Digest;
use crate::image::direct_io::{self, AlignedBuffer, ALIGN};
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of temp files; never a valid hex digest, so never mistaken for a blob.
const TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no space left on device while writing a blob into `{dir}`")]
    DiskFull {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to {action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob written to `{dir}` has digest {actual}, expected {expected}")]
    DigestMismatch { dir: PathBuf, expected: Digest, actual: Digest },
}

impl BlobError {
    /// Wraps an I/O error, turning ENOSPC into [`BlobError::DiskFull`] naming `dir`.
    fn io(action: &'static str, path: &Path, dir: &Path, source: io::Error) -> BlobError {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            BlobError::DiskFull { dir: dir.to_path_buf(), source }
        } else {
            BlobError::Io { action, path: path.to_path_buf(), source }
        }
    }
}

/// A directory of blobs, `<root>/blobs/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    dir: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed) the blob store under `root`.
    pub fn open(root: &Path) -> Result<BlobStore, BlobError> {
        let dir = root.join("blobs").join("sha256");
        fs::create_dir_all(&dir).map_err(|e| BlobError::io("create", &dir, &dir, e))?;
        Ok(BlobStore { root: root.to_path_buf(), dir })
    }

    /// The directory given to [`BlobStore::open`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/blobs/sha256`, where blobs and temp files live.
    pub fn blob_dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Opens a committed blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, BlobError> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| BlobError::io("open", &path, &self.dir, e))
    }

    /// Reads a whole blob; only for small documents (manifests, configs, indexes).
    pub fn read_small(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let path = self.path(digest);
        fs::read(&path).map_err(|e| BlobError::io("read", &path, &self.dir, e))
    }

    /// Starts a blob that is hashed as it is written; see [`BlobWriter::commit`].
    pub fn writer(&self) -> Result<BlobWriter, BlobError> {
        self.new_writer(true)
    }

    /// Starts a blob whose digest the caller computes itself (so that the
    /// bytes are hashed once, e.g. an uncompressed layer whose digest is its
    /// diff_id); see [`BlobWriter::commit_as`].
    pub fn writer_unhashed(&self) -> Result<BlobWriter, BlobError> {
        self.new_writer(false)
    }

    fn new_writer(&self, hashed: bool) -> Result<BlobWriter, BlobError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let name = format!("{TEMP_PREFIX}{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
            let temp_path = self.dir.join(name);
            match File::options().write(true).create_new(true).open(&temp_path) {
                Ok(file) => {
                    return Ok(BlobWriter {
                        file: Some(file),
                        temp_path,
                        dir: self.dir.clone(),
                        hasher: hashed.then(Sha256::new),
                        size: 0,
                        writeback_started: 0,
                        direct_tried: false,
                        staged: None,
                    })
                }
                // A stale temp file of an earlier process with the same pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(BlobError::io("create", &temp_path, &self.dir, e)),
            }
        }
    }

    /// Writes a small in-memory document as a blob and returns its digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, BlobError> {
        // Present already (a no-op rebuild): nothing to write or fsync.
        let digest = Digest::from_sha256_bytes(&sha2::Sha256::digest(bytes));
        if self.has(&digest) {
            return Ok(digest);
        }
        let mut writer = self.writer()?;
        writer.write_all_blob(bytes)?;
        Ok(writer.commit()?.0)
    }

    /// Places an existing, complete blob file (e.g. from the layer cache)
    /// into this store under `digest`: a hard link when on the same file
    /// system, else a copy through a temp file. The caller vouches that the
    /// file's content has that digest (the copy path checks it anyway).
    pub fn import_file(&self, digest: &Digest, source: &Path) -> Result<(), BlobError> {
        let target = self.path(digest);
        if target.is_file() {
            return Ok(());
        }
        match fs::hard_link(source, &target) {
            Ok(()) => return sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EXDEV)
                    || e.raw_os_error() == Some(libc::EPERM)
                    || e.raw_os_error() == Some(libc::EMLINK) => {}
            Err(e) => return Err(BlobError::io("hard link into", source, &self.dir, e)),
        }
        let mut input = File::open(source).map_err(|e| BlobError::io("open", source, &self.dir, e))?;
        let mut writer = self.writer()?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buffer).map_err(|e| BlobError::io("read", source, &self.dir, e))?;
            if n == 0 {
                break;
            }
            writer.write_all_blob(&buffer[..n])?;
        }
        let (actual, _) = writer.commit_expecting(Some(digest))?;
        debug_assert_eq!(&actual, digest);
        Ok(())
    }
}

/// A blob being written: a temp file next to the final `<hex>`.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<File>,
    temp_path: PathBuf,
    dir: PathBuf,
    hasher: Option<Sha256>,
    size: u64,
    /// Bytes up to here have been handed to the kernel's writeback.
    writeback_started: u64,
    /// Direct I/O was tried (it starts once, at [`DIRECT_FROM`] bytes).
    direct_tried: bool,
    /// From then on, bytes gather here and go to the file a whole buffer at a time.
    staged: Option<Staged>,
}

/// Bytes that direct I/O is waiting for; `direct` is false once the file
/// system refused it (the staging then goes on, buffered).
#[derive(Debug)]
struct Staged {
    buffer: AlignedBuffer,
    direct: bool,
}

/// Start writeback every this many bytes (see [`BlobWriter::early_writeback`]).
const WRITEBACK_WINDOW: u64 = 16 << 20;
/// Blobs larger than this write the rest with direct I/O; small blobs
/// (configs, manifests, small layers) stay in the page cache.
pub const DIRECT_FROM: u64 = 8 << 20;

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// `write_all` with a [`BlobError`] (ENOSPC named as disk full).
    pub fn write_all_blob(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.write_all(bytes).map_err(|e| BlobError::io("write", &self.temp_path, &self.dir, e))
    }

    /// Finishes a hashed blob: fsync, rename to `<hex>`, fsync the directory.
    /// Returns the digest and size.
    pub fn commit(self) -> Result<(Digest, u64), BlobError> {
        self.commit_expecting(None)
    }

    fn commit_expecting(mut self, expected: Option<&Digest>) -> Result<(Digest, u64), BlobError> {
        let hasher = self.hasher.take().expect("commit() on a writer made by writer_unhashed(); use commit_as()");
        let digest = Digest::from_sha256_bytes(&hasher.finalize());
        if let Some(expected) = expected {
            if expected != &digest {
                return Err(BlobError::DigestMismatch {
                    dir: self.dir.clone(),
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        let size = self.size;
        self.finish(&digest)?;
        Ok((digest, size))
    }

    /// Finishes a blob under a digest the caller computed over exactly the
    /// bytes written (the writer does not hash them again).
    pub fn commit_as(mut self, digest: &Digest) -> Result<u64, BlobError> {
        let size = self.size;
        self.finish(digest)?;
        Ok(size)
    }

    /// Starts writing the last window to disk now (without waiting for
    /// it). Without this, a multi-GB blob sits dirty in the page cache until
    /// `commit`'s fsync, which then stalls for the whole disk write; with it,
    /// disk writes overlap reading and hashing. Waiting for older windows as
    /// well (to bound dirty memory) measured slower here, and the kernel's
    /// dirty limits bound it anyway. A hint only: errors show up at fsync.
    fn early_writeback(&mut self) {
        use std::os::unix::io::AsRawFd;
        let Some(file) = self.file.as_ref() else {
            return;
        };
        let start = self.writeback_started;
        let len = self.size - start;
        // SAFETY: a plain syscall on a valid, open descriptor; result ignored.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), start as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        }
        self.writeback_started = self.size;
    }

    /// Switches to direct I/O at the current size (a multiple of [`ALIGN`]);
    /// stays buffered when the file system refuses it.
    fn start_direct(&mut self) {
        self.direct_tried = true;
        // The buffered part goes to disk now, beside the direct writes.
        self.early_writeback();
        let Some(file) = self.file.as_ref() else {
            return;
        };
        if direct_io::enabled() && direct_io::set_direct(file, true).is_ok() {
            self.staged = Some(Staged { buffer: AlignedBuffer::new(), direct: true });
        }
    }

    fn finish(&mut self, digest: &Digest) -> Result<(), BlobError> {
        let mut file = self.file.take().expect("finish called once");
        if let Some(staged) = self.staged.take() {
            direct_io::write_aligned(&mut file, staged.buffer.filled(), staged.direct)
                .map_err(|e| BlobError::io("write", &self.temp_path, &self.dir, e))?;
        }
        file.sync_all().map_err(|e| BlobError::io("fsync", &self.temp_path, &self.dir, e))?;
        drop(file);
        let target = self.dir.join(digest.hex());
        fs::rename(&self.temp_path, &target).map_err(|e| BlobError::io("rename", &self.temp_path, &self.dir, e))?;
        // Renamed: nothing for Drop to clean up.
        self.temp_path = PathBuf::new();
        sync_dir(&self.dir)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = match self.staged.as_mut() {
            Some(staged) => {
                let n = staged.buffer.fill_from(bytes);
                if staged.buffer.is_full() {
                    let file = self.file.as_mut().expect("write after commit");
                    staged.direct = direct_io::write_aligned(file, staged.buffer.filled(), staged.direct)?;
                    staged.buffer.clear();
                }
                n
            }
            None => {
                let mut take = bytes.len();
                if !self.direct_tried && self.size >= DIRECT_FROM {
                    // Direct writes start at a block boundary: reach it first.
                    let to_boundary = (ALIGN - self.size as usize % ALIGN) % ALIGN;
                    if to_boundary == 0 {
                        self.start_direct();
                        return self.write(bytes);
                    }
                    take = take.min(to_boundary);
                }
                let file = self.file.as_mut().expect("write after commit");
                file.write(&bytes[..take])?
            }
        };
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&bytes[..n]);
        }
        self.size += n as u64;
        if self.staged.is_none() && self.size - self.writeback_started >= WRITEBACK_WINDOW {
            self.early_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.temp_path.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Makes a rename or link in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| BlobError::io("fsync directory", dir, dir, e))
}

/// Writes a small file atomically: temp file in the same directory, fsync,
/// rename, fsync the directory.
pub(crate) fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::plumbing::fs::write_atomic(path, bytes).map_err(|e| BlobError::io("write", path, dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> Digest {
        Digest::from_sha256_bytes(&Sha256::digest(bytes))
    }

    fn names(store: &BlobStore) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(store.blob_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_large_blob_written_in_odd_pieces_past_the_direct_io_switch_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        // 8 MiB buffered, then direct I/O in 1 MiB pieces, then a tail that
        // is not a whole block; pieces of an odd size cross every boundary.
        let size = (DIRECT_FROM as usize) + 3 * direct_io::STAGING + 12_345;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
        let mut writer = store.writer().unwrap();
        for piece in data.chunks(99_991) {
            writer.write_all_blob(piece).unwrap();
        }
        assert!(writer.direct_tried);
        let (digest, written) = writer.commit().unwrap();
        assert_eq!(written, size as u64);
        assert_eq!(digest, sha(&data));
        assert!(fs::read(store.path(&digest)).unwrap() == data);
    }

    #[test]
    fn commit_names_the_blob_by_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = store.put_bytes(b"hello").unwrap();
        assert_eq!(digest, sha(b"hello"));
        assert!(store.has(&digest));
        assert_eq!(fs::read(store.path(&digest)).unwrap(), b"hello");
        assert_eq!(names(&store), vec![digest.hex().to_string()]);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut writer = store.writer().unwrap();
        writer.write_all_blob(b"half a blob").unwrap();
        assert_eq!(names(&store).len(), 1, "temp file exists while writing");
        drop(writer);
        assert!(names(&store).is_empty());
        assert!(!store.has(&sha(b"half a blob")));
    }

    #[test]
    fn import_links_or_copies_and_checks_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobStore::open(&dir.path().join("cache")).unwrap();
        let layout = BlobStore::open(&dir.path().join("layout")).unwrap();
        let digest = cache.put_bytes(b"layer bytes").unwrap();
        layout.import_file(&digest, &cache.path(&digest)).unwrap();
        assert_eq!(fs::read(layout.path(&digest)).unwrap(), b"layer bytes");

        // The copy path (used across file systems) refuses a wrong digest.
        let wrong = sha(b"something else");
        let mut writer = layout.writer().unwrap();
        writer.write_all_blob(b"layer bytes").unwrap();
        assert!(matches!(writer.commit_expecting(Some(&wrong)), Err(BlobError::DigestMismatch { .. })));
        assert_eq!(names(&layout), vec![digest.hex().to_string()]);
    }
}
