//! The layer writer: entries → deterministic tar → sha256 (diff_id) →
//! compressor → sha256 (digest) → blob, in one streaming pass.
//!
//! Two threads share the work through a bounded channel of 1 MiB buffers:
//! the calling thread reads files, builds the tar stream and hashes it
//! (diff_id); a sink thread compresses, hashes the compressed bytes (digest)
//! and writes the blob. At most a few buffers are in flight, so memory does
//! not grow with file size. Nothing is committed unless every file read back
//! exactly the size its entry promised.
//!
//! Tar headers are written here rather than with `tar::Builder`: the builder
//! emits GNU long-name records (not PAX) for long paths and base-256 numbers
//! for sizes ≥ 8 GiB, and it reads metadata from disk; we want only the
//! fields we choose. `tar::Header` is still used as the 512-byte block type.

use crate::image::blobs::{BlobError, BlobStore};
use crate::image::digest::Digest;
use crate::image::entries::{EntryKind, LayerEntry};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Environment variable fixing every timestamp we write (reproducible builds).
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";
/// The version of the bytes this writer makes from the same entries and
/// options (tar headers, entry order, codec settings). Part of every layer
/// key (`crate::layout::key`): bump it whenever a change here would give
/// different bytes, so the registry cache never serves the old ones.
/// 2: gzip layers over 1 MiB are independent 1 MiB blocks (`crate::image::pgzip`).
pub const LAYER_FORMAT: &str = "imgbake-layer-2";

/// Size of the buffers passed between the two threads.
const CHUNK: usize = 1 << 20;
/// Buffers in flight in the channel (plus one being filled, one being drained).
const CHANNEL_DEPTH: usize = 4;
const BLOCK: usize = 512;
/// Sizes from here on need a PAX `size` record (the ustar field holds 11 octal digits).
const USTAR_MAX_SIZE: u64 = 8 << 30;
/// Compression threads: one per core, for zstd and gzip alike. The output
/// does not depend on the count (checked by tests here and in
/// [`crate::image::pgzip`]): zstd's multithreaded format cuts jobs by size,
/// not by worker, and parallel gzip cuts fixed blocks.
fn compression_workers() -> usize {
    crate::image::pgzip::available_workers()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Compression {
    None,
    Gzip { level: u32 },
    Zstd { level: i32 },
}

impl Compression {
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::None => MEDIA_TYPE_TAR,
            Compression::Gzip { .. } => MEDIA_TYPE_TAR_GZIP,
            Compression::Zstd { .. } => MEDIA_TYPE_TAR_ZSTD,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerOptions {
    pub compression: Compression,
    /// Modification time of every entry, seconds since the epoch.
    pub mtime: u64,
}

impl LayerOptions {
    /// `mtime` from `SOURCE_DATE_EPOCH` when set and valid, else 0.
    pub fn from_env(compression: Compression) -> LayerOptions {
        LayerOptions { compression, mtime: source_date_epoch().unwrap_or(0) }
    }
}

/// `SOURCE_DATE_EPOCH` as seconds, if set to a non-negative integer.
pub fn source_date_epoch() -> Option<u64> {
    std::env::var(SOURCE_DATE_EPOCH).ok()?.trim().parse().ok()
}

/// A layer blob, committed to the store. Computed once, in one pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenLayer {
    /// Digest of the blob (compressed bytes).
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Blob size in bytes.
    pub size: u64,
    /// Uncompressed tar size in bytes.
    pub uncompressed_size: u64,
    pub media_type: String,
}

/// Gives the bytes of [`EntryKind::Stream`] entries. The reader must give
/// exactly the entry's size and may fail the read that would complete a
/// file whose content is wrong; either way the layer is not committed.
pub trait StreamSource {
    fn open_stream(&self, key: &str) -> io::Result<Box<dyn Read + '_>>;
}

/// For layers without streamed entries.
pub struct NoStreams;

impl StreamSource for NoStreams {
    fn open_stream(&self, key: &str) -> io::Result<Box<dyn Read + '_>> {
        Err(io::Error::other(format!("no stream source was given for `{key}`")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("`{path}` changed size while it was being read")]
    FileChanged { path: PathBuf },
    #[error("cannot stream the bytes of `/{path}`")]
    Stream {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing the blob failed; its message names the blob dir (e.g. disk full).
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("failed to compress the layer")]
    Compress(#[source] io::Error),
    #[error("the layer writer thread stopped unexpectedly")]
    SinkStopped,
}

enum Message {
    Chunk(Vec<u8>, usize),
    /// All bytes sent; `diff_id` is their sha256.
    Finish(Digest),
}

/// Writes `entries` (already sorted, see [`crate::image::entries`]) as one
/// layer blob into `store`.
pub fn write_layer(
    store: &BlobStore,
    entries: &[LayerEntry],
    options: &LayerOptions,
) -> Result<WrittenLayer, LayerError> {
    write_layer_streaming(store, entries, options, &NoStreams)
}

/// [`write_layer`] for entries that include [`EntryKind::Stream`] files,
/// whose bytes `streams` gives (read on the calling thread, like files).
pub fn write_layer_streaming(
    store: &BlobStore,
    entries: &[LayerEntry],
    options: &LayerOptions,
    streams: &dyn StreamSource,
) -> Result<WrittenLayer, LayerError> {
    let (to_sink, from_producer) = mpsc::sync_channel::<Message>(CHANNEL_DEPTH);
    let (recycle, recycled) = mpsc::channel::<Vec<u8>>();
    let compression = options.compression;
    std::thread::scope(|scope| {
        let sink = scope.spawn(move || run_sink(store, compression, from_producer, recycle));
        let mut tar = TarStream {
            to_sink,
            recycled,
            buffer: vec![0; CHUNK],
            filled: 0,
            hasher: Sha256::new(),
            total: 0,
            streams,
        };
        let produced = tar.write_entries(entries, options.mtime);
        let finished = match produced {
            Ok(()) => tar.finish(),
            Err(e) => {
                drop(tar); // closes the channel without Finish: the sink discards the blob
                Err(e)
            }
        };
        let sunk = sink.join();
        match (finished, sunk) {
            (Ok((diff_id, uncompressed_size)), Ok(Ok(Some((digest, size))))) => Ok(WrittenLayer {
                digest,
                diff_id,
                size,
                uncompressed_size,
                media_type: compression.media_type().to_string(),
            }),
            // The sink failed first (e.g. disk full); the producer only saw it go away.
            (Err(LayerError::SinkStopped) | Ok(_), Ok(Err(e))) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(_), Ok(Ok(None)) | Err(_)) => Err(LayerError::SinkStopped),
        }
    })
}

/// The sink thread: compress (or not), write, commit on `Finish` only.
fn run_sink(
    store: &BlobStore,
    compression: Compression,
    messages: mpsc::Receiver<Message>,
    recycle: mpsc::Sender<Vec<u8>>,
) -> Result<Option<(Digest, u64)>, LayerError> {
    let dir = store.blob_dir();
    let compress_error = |error: io::Error| compress_error(dir, error);
    match compression {
        Compression::None => {
            // The blob is the tar: its digest is the diff_id, hashed once by the producer.
            let mut blob = store.writer_unhashed()?;
            match drain(&messages, &recycle, |bytes| Ok(blob.write_all_blob(bytes)?))? {
                Some(diff_id) => {
                    let size = blob.commit_as(&diff_id)?;
                    Ok(Some((diff_id, size)))
                }
                None => Ok(None),
            }
        }
        Compression::Gzip { level } => {
            let blob = store.writer()?;
            // Independent blocks on every core; fixed header fields (no mtime, OS "unknown").
            let mut encoder = crate::image::pgzip::ParallelGzip::new(blob, level, compression_workers());
            match drain(&messages, &recycle, |bytes| encoder.write_all(bytes).map_err(compress_error))? {
                Some(_) => {
                    let blob = encoder.finish().map_err(compress_error)?;
                    Ok(Some(blob.commit()?))
                }
                None => Ok(None),
            }
        }
        Compression::Zstd { level } => {
            let blob = store.writer()?;
            let mut encoder = zstd::stream::write::Encoder::new(blob, level).map_err(compress_error)?;
            encoder.multithread(compression_workers() as u32).map_err(compress_error)?;
            encoder.include_checksum(false).map_err(compress_error)?;
            match drain(&messages, &recycle, |bytes| encoder.write_all(bytes).map_err(compress_error))? {
                Some(_) => {
                    let blob = encoder.finish().map_err(compress_error)?;
                    Ok(Some(blob.commit()?))
                }
                None => Ok(None),
            }
        }
    }
}

/// Feeds every chunk to `write`; `Some(diff_id)` when the producer finished,
/// `None` when it gave up (the caller then drops its writer, removing the temp file).
fn drain(
    messages: &mpsc::Receiver<Message>,
    recycle: &mpsc::Sender<Vec<u8>>,
    mut write: impl FnMut(&[u8]) -> Result<(), LayerError>,
) -> Result<Option<Digest>, LayerError> {
    for message in messages {
        match message {
            Message::Chunk(buffer, len) => {
                write(&buffer[..len])?;
                let _ = recycle.send(buffer);
            }
            Message::Finish(diff_id) => return Ok(Some(diff_id)),
        }
    }
    Ok(None)
}

/// Errors coming out of a compressor are mostly the blob writer's own
/// (through `Write`); a full disk keeps its meaning and names the blob dir.
fn compress_error(dir: &Path, error: io::Error) -> LayerError {
    if error.raw_os_error() == Some(libc::ENOSPC) {
        LayerError::Blob(BlobError::DiskFull { dir: dir.to_path_buf(), source: error })
    } else {
        LayerError::Compress(error)
    }
}

/// The producer side: builds the tar stream into buffers and hashes it.
struct TarStream<'s> {
    to_sink: mpsc::SyncSender<Message>,
    recycled: mpsc::Receiver<Vec<u8>>,
    buffer: Vec<u8>,
    filled: usize,
    hasher: Sha256,
    total: u64,
    streams: &'s dyn StreamSource,
}

impl TarStream<'_> {
    fn write_entries(&mut self, entries: &[LayerEntry], mtime: u64) -> Result<(), LayerError> {
        for entry in entries {
            self.write_entry(entry, mtime)?;
        }
        // End of archive: two zero blocks.
        self.put(&[0u8; 2 * BLOCK])
    }

    fn write_entry(&mut self, entry: &LayerEntry, mtime: u64) -> Result<(), LayerError> {
        match &entry.kind {
            EntryKind::Dir => {
                let name = format!("{}/", entry.path);
                self.put_header(&name, tar::EntryType::Directory, entry.mode, 0, mtime, None)
            }
            EntryKind::Symlink { target } => {
                self.put_header(&entry.path, tar::EntryType::Symlink, entry.mode, 0, mtime, Some(target))
            }
            EntryKind::Hardlink { target } => {
                self.put_header(&entry.path, tar::EntryType::Link, entry.mode, 0, mtime, Some(target))
            }
            EntryKind::File { source, size } => {
                let read_error = |source_error| LayerError::Read { path: source.clone(), source: source_error };
                let mut file = File::open(source).map_err(read_error)?;
                let on_disk = file.metadata().map_err(read_error)?.len();
                if on_disk != *size {
                    return Err(LayerError::FileChanged { path: source.clone() });
                }
                advise_sequential(&file);
                self.put_header(&entry.path, tar::EntryType::Regular, entry.mode, *size, mtime, None)?;
                let changed = || LayerError::FileChanged { path: source.clone() };
                self.copy_exactly(&mut file, *size, changed, read_error)?;
                self.pad(*size)
            }
            EntryKind::Stream { key, size } => {
                let stream_error = |source| LayerError::Stream { path: entry.path.clone(), source };
                let mut reader = self.streams.open_stream(key).map_err(stream_error)?;
                self.put_header(&entry.path, tar::EntryType::Regular, entry.mode, *size, mtime, None)?;
                let wrong_size = || {
                    stream_error(io::Error::new(io::ErrorKind::InvalidData, format!("the stream is not {size} bytes")))
                };
                self.copy_exactly(&mut reader, *size, wrong_size, stream_error)?;
                self.pad(*size)
            }
        }
    }

    /// Reads exactly `size` bytes of `input` straight into the outgoing
    /// buffers; `wrong_size` when it ends early or goes on after `size`.
    fn copy_exactly(
        &mut self,
        input: &mut dyn Read,
        size: u64,
        wrong_size: impl Fn() -> LayerError,
        read_error: impl Fn(io::Error) -> LayerError,
    ) -> Result<(), LayerError> {
        let mut remaining = size;
        while remaining > 0 {
            if self.filled == CHUNK {
                self.flush()?;
            }
            let want = (CHUNK - self.filled).min(remaining.try_into().unwrap_or(usize::MAX));
            let n = match input.read(&mut self.buffer[self.filled..self.filled + want]) {
                Ok(0) => return Err(wrong_size()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            self.filled += n;
            remaining -= n as u64;
        }
        // The input must end where its entry says: a grown file is changed too.
        let mut probe = [0u8; 1];
        match input.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(wrong_size()),
            Err(e) => Err(read_error(e)),
        }
    }

    fn pad(&mut self, size: u64) -> Result<(), LayerError> {
        let rest = (size % BLOCK as u64) as usize;
        if rest != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rest])?;
        }
        Ok(())
    }

    fn put_header(
        &mut self,
        name: &str,
        entry_type: tar::EntryType,
        mode: u32,
        size: u64,
        mtime: u64,
        link: Option<&str>,
    ) -> Result<(), LayerError> {
        // PAX records only for what ustar cannot hold, sorted by key.
        let mut records: Vec<(&str, String)> = Vec::new();
        if let Some(link) = link.filter(|l| l.len() > 100) {
            records.push(("linkpath", link.to_string()));
        }
        if name.len() > 100 {
            records.push(("path", name.to_string()));
        }
        if size >= USTAR_MAX_SIZE {
            records.push(("size", size.to_string()));
        }
        if !records.is_empty() {
            let mut body = Vec::new();
            for (key, value) in &records {
                body.extend_from_slice(&pax_record(key, value));
            }
            let pax_name = format!("PaxHeaders.0/{}", last_component(name));
            let header = ustar_header(&pax_name, tar::EntryType::XHeader, 0o644, body.len() as u64, mtime, None);
            self.put(header.as_bytes())?;
            self.put(&body)?;
            self.pad(body.len() as u64)?;
        }
        let header_size = if size >= USTAR_MAX_SIZE { 0 } else { size };
        let header = ustar_header(name, entry_type, mode, header_size, mtime, link);
        self.put(header.as_bytes())
    }

    fn put(&mut self, mut bytes: &[u8]) -> Result<(), LayerError> {
        while !bytes.is_empty() {
            if self.filled == CHUNK {
                self.flush()?;
            }
            let n = (CHUNK - self.filled).min(bytes.len());
            self.buffer[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Hashes the filled buffer and hands it to the sink.
    fn flush(&mut self) -> Result<(), LayerError> {
        if self.filled == 0 {
            return Ok(());
        }
        self.hasher.update(&self.buffer[..self.filled]);
        self.total += self.filled as u64;
        let next = self.recycled.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        let full = std::mem::replace(&mut self.buffer, next);
        let len = std::mem::take(&mut self.filled);
        self.send(Message::Chunk(full, len))
    }

    fn send(&mut self, message: Message) -> Result<(), LayerError> {
        self.to_sink.send(message).map_err(|_| LayerError::SinkStopped)
    }

    fn finish(mut self) -> Result<(Digest, u64), LayerError> {
        self.flush()?;
        let diff_id = Digest::from_sha256_bytes(&std::mem::take(&mut self.hasher).finalize());
        self.send(Message::Finish(diff_id.clone()))?;
        Ok((diff_id, self.total))
    }
}

fn last_component(name: &str) -> &str {
    let trimmed = name.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    // Keep the PAX header's own name within ustar's 100 bytes.
    let mut end = last.len().min(80);
    while !last.is_char_boundary(end) {
        end -= 1;
    }
    &last[..end]
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// A ustar header with only the fields we decide: uid/gid 0, empty user and
/// group names, the given mtime, no device numbers. Names and link targets
/// longer than 100 bytes are truncated here; the PAX record carries them.
fn ustar_header(
    name: &str,
    entry_type: tar::EntryType,
    mode: u32,
    size: u64,
    mtime: u64,
    link: Option<&str>,
) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    {
        let ustar = header.as_ustar_mut().expect("new_ustar is ustar");
        let name = name.as_bytes();
        let n = name.len().min(100);
        ustar.name[..n].copy_from_slice(&name[..n]);
        if let Some(link) = link {
            let link = link.as_bytes();
            let n = link.len().min(100);
            ustar.linkname[..n].copy_from_slice(&link[..n]);
        }
    }
    header.set_mode(mode & 0o7777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_entry_type(entry_type);
    header.set_cksum();
    header
}

/// Tells the kernel we read front to back (bigger readahead); a hint only.
fn advise_sequential(file: &File) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: a plain syscall on a valid, open descriptor; errors are ignored.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::entries::{entries_from_dir, LayerEntry};
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    const NONE: Compression = Compression::None;
    const GZIP: Compression = Compression::Gzip { level: 6 };
    const ZSTD: Compression = Compression::Zstd { level: 3 };

    fn options(compression: Compression) -> LayerOptions {
        LayerOptions { compression, mtime: 1_700_000_000 }
    }

    fn long_name() -> String {
        format!("{}/file.bin", "d".repeat(120))
    }

    /// A tree with every kind of entry; `stamp` varies the mtimes on disk.
    fn make_tree(root: &Path, stamp: u64) {
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::create_dir_all(root.join("d".repeat(120))).unwrap();
        fs::write(root.join("bin/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("data.txt"), vec![7u8; 5000]).unwrap();
        fs::set_permissions(root.join("data.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::hard_link(root.join("data.txt"), root.join("hard.txt")).unwrap();
        std::os::unix::fs::symlink("data.txt", root.join("link")).unwrap();
        fs::write(root.join(long_name()), b"long").unwrap();
        // Modes set explicitly so the golden digests do not depend on the umask.
        for dir in [String::new(), "bin".into(), "empty".into(), "d".repeat(120)] {
            fs::set_permissions(root.join(dir), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::set_permissions(root.join(long_name()), fs::Permissions::from_mode(0o644)).unwrap();
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(stamp);
        for name in ["bin/run.sh", "data.txt"] {
            fs::File::options().write(true).open(root.join(name)).unwrap().set_modified(when).unwrap();
        }
    }

    fn build(compression: Compression, stamp: u64) -> (tempfile::TempDir, BlobStore, WrittenLayer) {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        make_tree(&tree, stamp);
        let store = BlobStore::open(&dir.path().join("out")).unwrap();
        let entries = entries_from_dir(&tree, "app").unwrap();
        let layer = write_layer(&store, &entries, &options(compression)).unwrap();
        (dir, store, layer)
    }

    fn decompressed(store: &BlobStore, layer: &WrittenLayer) -> Vec<u8> {
        let file = store.open_blob(&layer.digest).unwrap();
        let mut out = Vec::new();
        match layer.media_type.as_str() {
            MEDIA_TYPE_TAR => Box::new(file) as Box<dyn Read>,
            MEDIA_TYPE_TAR_GZIP => Box::new(flate2::read::GzDecoder::new(file)),
            _ => Box::new(zstd::stream::read::Decoder::new(file).unwrap()),
        }
        .read_to_end(&mut out)
        .unwrap();
        out
    }

    fn sha(bytes: &[u8]) -> Digest {
        Digest::from_sha256_bytes(&Sha256::digest(bytes))
    }

    #[test]
    fn same_tree_same_digests_whatever_the_disk_mtimes() {
        for compression in [NONE, GZIP, ZSTD] {
            let (_a, _, first) = build(compression, 1_000);
            let (_b, _, second) = build(compression, 2_000_000_000);
            assert_eq!(first, second, "{compression:?}");
        }
    }

    #[test]
    fn digests_are_stable_across_releases() {
        // Golden values: a change here changes every image digest we build.
        let (_d, _, none) = build(NONE, 5);
        let (_e, _, gzip) = build(GZIP, 5);
        let (_f, _, zstd) = build(ZSTD, 5);
        assert_eq!(none.digest, none.diff_id, "uncompressed: digest is the diff_id");
        assert_eq!(gzip.diff_id, none.diff_id);
        assert_eq!(zstd.diff_id, none.diff_id);
        assert_eq!(
            format!("none {}\ngzip {}\nzstd {}", none.digest, gzip.digest, zstd.digest),
            "none sha256:defcaeb88d113879e799422bd16ad28a6bda5e59ce18092bc45afd96a40233ba\n\
             gzip sha256:3e545b7850548446a585af7c93453b237a1ec1af43d5ec13c1b67aea37bb32cb\n\
             zstd sha256:2b81fe8d580489ba67789fd9d6a1712c7bd58fabe91a657e9848370debd9e0db"
        );
    }

    #[test]
    fn diff_id_and_digest_match_the_bytes() {
        for compression in [NONE, GZIP, ZSTD] {
            let (_d, store, layer) = build(compression, 5);
            let blob = fs::read(store.path(&layer.digest)).unwrap();
            assert_eq!(sha(&blob), layer.digest);
            assert_eq!(blob.len() as u64, layer.size);
            let tar_bytes = decompressed(&store, &layer);
            assert_eq!(sha(&tar_bytes), layer.diff_id, "{compression:?}");
            assert_eq!(tar_bytes.len() as u64, layer.uncompressed_size);
            assert_eq!(layer.media_type, compression.media_type());
        }
    }

    #[test]
    fn tar_round_trips_kinds_modes_links_and_long_names() {
        let (_d, store, layer) = build(ZSTD, 5);
        let tar_bytes = decompressed(&store, &layer);
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            assert_eq!(header.uid().unwrap(), 0);
            assert_eq!(header.gid().unwrap(), 0);
            assert_eq!(header.username_bytes(), Some(&b""[..]));
            assert_eq!(header.mtime().unwrap(), 1_700_000_000);
            let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            seen.push((path, header.entry_type(), header.mode().unwrap(), link, content));
        }
        let find = |p: &str| {
            seen.iter()
                .find(|s| s.0 == p)
                .unwrap_or_else(|| panic!("{p} missing: {:?}", seen.iter().map(|s| &s.0).collect::<Vec<_>>()))
        };
        assert!(find("app/empty/").1.is_dir());
        let run = find("app/bin/run.sh");
        assert_eq!((run.2, run.4.as_slice()), (0o755, &b"#!/bin/sh\necho hi\n"[..]));
        let data = find("app/data.txt");
        assert_eq!((data.2, data.4.len()), (0o600, 5000));
        let hard = find("app/hard.txt");
        assert!(hard.1.is_hard_link());
        assert_eq!(hard.3.as_deref(), Some("app/data.txt"));
        let link = find("app/link");
        assert!(link.1.is_symlink());
        assert_eq!(link.3.as_deref(), Some("data.txt"));
        let long = find(&format!("app/{}", long_name()));
        assert_eq!(long.4, b"long");
        // PAX only where needed: exactly one extended header, for the long file
        // (its directory "app/ddd…/" is 125 bytes too: two).
        let pax_headers = tar_bytes.chunks(BLOCK).filter(|b| b[156] == b'x' && &b[257..263] == b"ustar\0").count();
        assert_eq!(pax_headers, 2);
    }

    /// A producer whose sink is a plain channel the test holds.
    fn test_stream() -> (TarStream<'static>, mpsc::Receiver<Message>) {
        let (to_sink, from_producer) = mpsc::sync_channel(64);
        let stream = TarStream {
            to_sink,
            recycled: mpsc::channel().1,
            buffer: vec![0; CHUNK],
            filled: 0,
            hasher: Sha256::new(),
            total: 0,
            streams: &NoStreams,
        };
        (stream, from_producer)
    }

    #[test]
    fn huge_sizes_use_a_pax_size_record() {
        let header = |size| {
            let (mut tar, _sink) = test_stream();
            tar.put_header("f", tar::EntryType::Regular, 0o644, size, 0, None).unwrap();
            tar.buffer[..tar.filled].to_vec()
        };
        assert_eq!(header(USTAR_MAX_SIZE - 1).len(), BLOCK);
        let big = header(USTAR_MAX_SIZE);
        assert_eq!(big.len(), 3 * BLOCK);
        assert_eq!(big[156], b'x');
        assert!(String::from_utf8_lossy(&big[BLOCK..2 * BLOCK]).starts_with("19 size=8589934592\n"));
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", "abc"), b"12 path=abc\n");
        let long = "x".repeat(95); // 95 + 8 = 103 bytes with a 3-digit length
        let record = pax_record("path", &long);
        assert_eq!(record.len().to_string(), String::from_utf8_lossy(&record[..3]));
    }

    #[test]
    fn a_file_of_the_wrong_size_is_an_error_and_nothing_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("w.bin");
        fs::write(&source, vec![1u8; 3 * CHUNK]).unwrap();
        let store = BlobStore::open(&dir.path().join("out")).unwrap();
        for wrong_size in [3 * CHUNK as u64 - 1, 3 * CHUNK as u64 + 1] {
            let entries = vec![LayerEntry {
                path: "w.bin".into(),
                mode: 0o644,
                kind: EntryKind::File { source: source.clone(), size: wrong_size },
            }];
            for compression in [NONE, ZSTD] {
                let error = write_layer(&store, &entries, &options(compression)).unwrap_err();
                assert!(matches!(error, LayerError::FileChanged { ref path } if path == &source), "{error:?}");
            }
        }
        // The check while reading (the size matched at open, then the file
        // shrank or grew): copy_file against a file shorter / longer than promised.
        for promised in [3 * CHUNK as u64 + 10, 3 * CHUNK as u64 - 10] {
            let (mut tar, _sink) = test_stream();
            let mut file = fs::File::open(&source).unwrap();
            let changed = || LayerError::FileChanged { path: source.clone() };
            let read_error = |e| LayerError::Read { path: source.clone(), source: e };
            let error = tar.copy_exactly(&mut file, promised, changed, read_error).unwrap_err();
            assert!(matches!(error, LayerError::FileChanged { .. }), "{error:?}");
        }
        assert_eq!(fs::read_dir(store.blob_dir()).unwrap().count(), 0, "no blob, no temp file");
    }

    /// Streams given by key: a key's bytes, or an error at the last byte.
    struct TestStreams(Vec<(&'static str, Vec<u8>)>);

    impl StreamSource for TestStreams {
        fn open_stream(&self, key: &str) -> io::Result<Box<dyn Read + '_>> {
            if key == "bad" {
                // Gives 100 bytes, then fails, as a hash check does at the last byte.
                let failing = io::repeat(7).take(100).chain(FailingRead);
                return Ok(Box::new(failing));
            }
            let (_, bytes) = self.0.iter().find(|(k, _)| *k == key).ok_or_else(|| io::Error::other("no such key"))?;
            Ok(Box::new(&bytes[..]))
        }
    }

    struct FailingRead;

    impl Read for FailingRead {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::InvalidData, "content has the wrong sha256"))
        }
    }

    #[test]
    fn streamed_entries_are_files_in_the_tar_and_a_failing_stream_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("out")).unwrap();
        let bytes: Vec<u8> = (0..(3 * CHUNK as u32 + 17)).map(|i| (i % 251) as u8).collect();
        let streams = TestStreams(vec![("a", bytes.clone())]);
        let entries = vec![LayerEntry::streamed("w/model.bin", "a", bytes.len() as u64)];
        for compression in [NONE, GZIP, ZSTD] {
            let layer = write_layer_streaming(&store, &entries, &options(compression), &streams).unwrap();
            let tar = decompressed(&store, &layer);
            let mut archive = tar::Archive::new(&tar[..]);
            let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
            assert_eq!(entry.path().unwrap().to_str(), Some("w/model.bin"));
            assert_eq!(entry.header().mode().unwrap(), 0o644);
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            assert_eq!(content, bytes);
        }
        let empty = tempfile::tempdir().unwrap();
        let store = BlobStore::open(empty.path()).unwrap();
        for (key, size) in [("bad", 100), ("a", bytes.len() as u64 + 1), ("a", bytes.len() as u64 - 1)] {
            let entries = vec![LayerEntry::streamed("w/model.bin", key, size)];
            let error = write_layer_streaming(&store, &entries, &options(ZSTD), &streams).unwrap_err();
            assert!(matches!(error, LayerError::Stream { ref path, .. } if path == "w/model.bin"), "{error:?}");
        }
        // Without a stream source a streamed entry is an error, not an empty file.
        assert!(write_layer(&store, &[LayerEntry::streamed("x", "a", 1)], &options(NONE)).is_err());
        assert_eq!(fs::read_dir(store.blob_dir()).unwrap().count(), 0, "no blob, no temp file");
    }

    #[test]
    fn zstd_output_does_not_depend_on_the_worker_count() {
        let data: Vec<u8> = (0..(20u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 & 0x3f).collect();
        let compress = |workers| {
            let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            encoder.multithread(workers).unwrap();
            encoder.include_checksum(false).unwrap();
            encoder.write_all(&data).unwrap();
            sha(&encoder.finish().unwrap())
        };
        assert_eq!(compress(1), compress(2));
        assert_eq!(compress(1), compress(5));
    }
}
