//! `plan --calibrate`: measures this machine's rates (unpack per codec, disk
//! write and read, the page cache, sha256, compression, and optionally a
//! registry pull) on bf16-like data and returns them as profile parameters
//! with their sources.
//!
//! Disk rates depend on size: a virtual disk serves its first tens of MiB
//! from a cache or a burst allowance, then settles. Weights are GBs, so disk
//! reads and writes and plain-tar unpacks are measured at several sizes and
//! the profile gets the rate past the smaller ones ([`sustained_rate`]); the
//! source lists every size's rate.

use crate::registry::{Reference, RegistryClient, RegistryClientOptions};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::time::Instant;

/// Bytes of test data: enough to get past caches' warm-up, small enough to
/// run in seconds on a shared 2-core machine.
const SAMPLE_BYTES: usize = 32 << 20;
const FILES_IN_LAYER: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("calibration failed while {doing}")]
    Io {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{reference}` is not an image reference (expected HOST:PORT/REPO[:TAG])")]
    Reference {
        reference: String,
        #[source]
        source: crate::registry::ReferenceError,
    },
    #[error("cannot pull {reference} to measure the registry")]
    Registry {
        reference: String,
        #[source]
        source: Box<crate::registry::RegistryError>,
    },
}

/// One measured parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub key: &'static str,
    pub value: f64,
    pub how: String,
}

/// bf16 weights-like bytes: normally distributed values, so the exponent
/// bytes repeat and the mantissa bytes look random, as in real checkpoints.
pub fn bf16_like(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        // Sum of uniforms ≈ normal, scaled like trained weights (σ ≈ 0.02).
        let value: f32 = ((0..4).map(|_| rng.f32()).sum::<f32>() - 2.0) * 0.035;
        let bits = (value.to_bits() >> 16) as u16;
        out.extend_from_slice(&bits.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn io(doing: &'static str) -> impl FnOnce(std::io::Error) -> CalibrateError {
    move |source| CalibrateError::Io { doing, source }
}

fn timed<T>(work: impl FnOnce() -> Result<T, CalibrateError>) -> Result<(T, f64), CalibrateError> {
    let started = Instant::now();
    let value = work()?;
    Ok((value, started.elapsed().as_secs_f64().max(1e-6)))
}

fn tar_of(data: &[u8]) -> Result<Vec<u8>, CalibrateError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (index, chunk) in data.chunks(data.len().div_ceil(FILES_IN_LAYER)).enumerate() {
        let mut header = tar::Header::new_gnu();
        header.set_size(chunk.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, format!("model-{index}.safetensors"), chunk).map_err(io("writing a tar"))?;
    }
    builder.into_inner().map_err(io("writing a tar"))
}

/// Entries in the per-entry unpack measurements: the cost per entry is the
/// difference over the difference, so `tar`'s start and the `sync` drop out.
const ENTRY_SAMPLES: [usize; 2] = [1000, 4000];

/// Sizes of the disk read and write samples, MiB: the small one shows a
/// device's fast start, the large ones what a GB of weights sees.
pub const DISK_SAMPLES_MIB: [u64; 3] = [32, 256, 1024];

/// Sizes of the plain-tar unpack samples, MiB (unpacked bytes are held in
/// neither memory nor a second file, so the large one stays smaller).
const UNPACK_SAMPLES_MIB: [u64; 2] = [32, 256];

/// One timed transfer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub bytes: u64,
    pub seconds: f64,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        self.bytes as f64 / self.seconds.max(1e-9)
    }
}

/// The rate a transfer of GBs sees: what each byte past the second-largest
/// sample cost (the marginal rate between the two largest), which leaves a
/// device's fast start and any fixed cost behind. Two close times can make
/// that quotient absurd, so it is kept between half and all of the largest
/// sample's own rate; with one sample, its rate.
pub fn sustained_rate(samples: &[Sample]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.bytes);
    let Some(largest) = sorted.last().copied() else {
        return 0.0;
    };
    let average = largest.rate();
    let Some(smaller) = sorted.len().checked_sub(2).map(|i| sorted[i]) else {
        return average;
    };
    let (bytes, seconds) = (largest.bytes.saturating_sub(smaller.bytes), largest.seconds - smaller.seconds);
    if bytes == 0 || seconds <= 0.0 {
        return average;
    }
    (bytes as f64 / seconds).clamp(average / 2.0, average)
}

/// Seconds per entry from unpacks of different entry counts: the extra time
/// over the extra entries of the two largest (a fixed cost drops out), or
/// the largest's average when noise makes that difference ≤ 0.
pub fn per_entry_seconds(samples: &[Sample]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.bytes);
    match sorted.as_slice() {
        [.., smaller, larger] if larger.bytes > smaller.bytes && larger.seconds > smaller.seconds => {
            (larger.seconds - smaller.seconds) / (larger.bytes - smaller.bytes) as f64
        }
        [.., larger] if larger.bytes > 0 => larger.seconds / larger.bytes as f64,
        _ => 0.0,
    }
}

/// "32 MiB 1.02 GB/s, 1024 MiB 0.61 GB/s": every sample's rate.
pub fn describe_samples(samples: &[Sample]) -> String {
    let rates: Vec<String> =
        samples.iter().map(|s| format!("{} MiB {:.2} GB/s", s.bytes >> 20, s.rate() / 1e9)).collect();
    rates.join(", ")
}

/// Bytes the page cache can hold for files written now: `MemAvailable`,
/// capped by this process's cgroup (v2) room (`memory.max - memory.current`).
pub fn page_cache_room(meminfo: &str, cgroup_max: Option<&str>, cgroup_current: Option<&str>) -> Option<u64> {
    let available = meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemAvailable:")?;
        rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kib| kib * 1024)
    })?;
    let number = |text: Option<&str>| text.and_then(|t| t.trim().parse::<u64>().ok());
    let cgroup_room = match (number(cgroup_max), number(cgroup_current)) {
        (Some(max), Some(current)) => Some(max.saturating_sub(current)),
        _ => None,
    };
    Some(cgroup_room.map_or(available, |room| room.min(available)))
}

/// [`page_cache_room`] of this machine and this process's cgroup.
fn this_page_cache_room() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let dir = cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
    let read = |name: &str| dir.as_ref().and_then(|d| std::fs::read_to_string(d.join(name)).ok());
    page_cache_room(&meminfo, read("memory.max").as_deref(), read("memory.current").as_deref())
}

/// `bytes` of bf16-like data made from `chunk`, each 4 KiB block stamped
/// with its position and `seed`, so that no two blocks of a sample (or of
/// two samples) are equal and a deduplicating disk cannot skip them.
struct Stamped<'a> {
    chunk: &'a [u8],
    seed: u64,
    left: u64,
    block: u64,
    buffer: Vec<u8>,
    at: usize,
}

impl<'a> Stamped<'a> {
    fn new(chunk: &'a [u8], bytes: u64, seed: u64) -> Self {
        Stamped { chunk, seed, left: bytes, block: 0, buffer: Vec::new(), at: 0 }
    }

    /// The next piece (at most `chunk.len()` bytes), or `None` at the end.
    fn next_piece(&mut self) -> Option<&[u8]> {
        if self.left == 0 {
            return None;
        }
        let take = (self.chunk.len() as u64).min(self.left) as usize;
        self.buffer.clear();
        self.buffer.extend_from_slice(&self.chunk[..take]);
        for block in self.buffer.chunks_mut(4096) {
            let stamp = (self.seed << 40) ^ self.block;
            let n = block.len().min(8);
            block[..n].copy_from_slice(&stamp.to_le_bytes()[..n]);
            self.block += 1;
        }
        self.left -= take as u64;
        Some(&self.buffer)
    }
}

impl Read for Stamped<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buffer.len() {
            self.at = 0;
            if self.next_piece().is_none() {
                self.buffer.clear();
                return Ok(0);
            }
        }
        let n = out.len().min(self.buffer.len() - self.at);
        out[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Asks the kernel to drop `path`'s pages from the page cache, so that the
/// next read comes from the disk.
fn drop_from_page_cache(path: &std::path::Path) {
    if let Ok(file) = std::fs::File::open(path) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; fadvise only hints the kernel.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

/// Reads `path` to the end in 1 MiB pieces, as an app reads its weights.
fn read_through(path: &std::path::Path) -> Result<u64, CalibrateError> {
    let mut file = std::fs::File::open(path).map_err(io("reading a test file"))?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io("reading a test file"))?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Disk writes and cold reads at each size, and the largest file read again
/// from the page cache.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSamples {
    pub writes: Vec<Sample>,
    pub reads: Vec<Sample>,
    pub cached_read: Sample,
}

/// Writes a new file of each size the way build writes an uncompressed
/// layer's blob (the first 8 MiB buffered, the rest with direct I/O, then
/// fsync and rename: fresh blocks, as a node's unpack and the hook write),
/// drops it from the page cache and reads it back; the largest is read
/// once more, now from the page cache.
pub fn disk_samples(dir: &std::path::Path, sizes_mib: &[u64]) -> Result<DiskSamples, CalibrateError> {
    let store_dir = tempfile::tempdir_in(dir).map_err(io("creating a directory"))?;
    let blob_error = |doing: &'static str| {
        move |error: crate::image::blobs::BlobError| CalibrateError::Io { doing, source: std::io::Error::other(error) }
    };
    let store = crate::image::blobs::BlobStore::open(store_dir.path()).map_err(blob_error("opening a blob store"))?;
    let chunk = bf16_like(8 << 20, 3);
    let (mut writes, mut reads, mut cached_read) = (Vec::new(), Vec::new(), None);
    for (index, &mib) in sizes_mib.iter().enumerate() {
        let bytes = mib << 20;
        let name = crate::image::digest::Digest::from_sha256_bytes(&Sha256::digest(format!("calibrate-{index}")));
        let mut data = Stamped::new(&chunk, bytes, index as u64);
        let (_, seconds) = timed(|| {
            let mut writer = store.writer_unhashed().map_err(blob_error("writing a test blob"))?;
            while let Some(piece) = data.next_piece() {
                writer.write_all_blob(piece).map_err(blob_error("writing a test blob"))?;
            }
            writer.commit_as(&name).map_err(blob_error("committing a test blob"))
        })?;
        writes.push(Sample { bytes, seconds });
        let path = store.path(&name);
        drop_from_page_cache(&path);
        let (read, seconds) = timed(|| read_through(&path))?;
        reads.push(Sample { bytes: read, seconds });
        if index + 1 == sizes_mib.len() {
            let (read, seconds) = timed(|| read_through(&path))?;
            cached_read = Some(Sample { bytes: read, seconds });
        }
        std::fs::remove_file(&path).map_err(io("removing a test blob"))?;
    }
    let cached_read = cached_read.unwrap_or(Sample { bytes: 0, seconds: 1.0 });
    Ok(DiskSamples { writes, reads, cached_read })
}

/// A tar of `count` empty files in 40 directories.
fn many_entries_tar(count: usize) -> Result<Vec<u8>, CalibrateError> {
    let mut builder = tar::Builder::new(Vec::new());
    for index in 0..count {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, format!("d{}/f{index}", index % 40), &[][..]).map_err(io("writing a tar"))?;
    }
    builder.into_inner().map_err(io("writing a tar"))
}

/// Unpacks `archive` (decoded by `reader`) into a fresh directory, fsyncing
/// every file as containerd's snapshotter does before it commits a layer.
fn unpack(reader: impl Read, dir: &std::path::Path) -> Result<(), CalibrateError> {
    let target = tempfile::tempdir_in(dir).map_err(io("creating a directory"))?;
    let mut archive = tar::Archive::new(reader);
    archive.unpack(target.path()).map_err(io("unpacking a layer"))?;
    for entry in std::fs::read_dir(target.path()).map_err(io("listing a layer"))? {
        let path = entry.map_err(io("listing a layer"))?.path();
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io("syncing a layer"))?;
    }
    Ok(())
}

/// Seconds for `DECODER -dc < blob | tar -x` (or `tar -x < blob`) into a
/// fresh directory and a `sync`; `None` when the tools are not installed.
fn external_unpack(blob: &[u8], decoder: &str, dir: &std::path::Path) -> Result<Option<f64>, CalibrateError> {
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io("writing a test layer"))?;
    file.write_all(blob).map_err(io("writing a test layer"))?;
    file.as_file().sync_all().map_err(io("writing a test layer"))?;
    external_unpack_file(file.path(), decoder, dir)
}

/// [`external_unpack`] of a layer already in a file.
fn external_unpack_file(
    blob: &std::path::Path,
    decoder: &str,
    dir: &std::path::Path,
) -> Result<Option<f64>, CalibrateError> {
    let installed = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !installed("tar") || (!decoder.is_empty() && !installed(decoder)) {
        return Ok(None);
    }
    let target = tempfile::tempdir_in(dir).map_err(io("creating a directory"))?;
    let pipeline = if decoder.is_empty() {
        "tar -x -C \"$2\" < \"$1\" && sync".to_string()
    } else {
        format!("{decoder} -dc < \"$1\" | tar -x -C \"$2\" && sync")
    };
    let (status, seconds) = timed(|| {
        std::process::Command::new("sh")
            .args(["-c", &pipeline, "sh"])
            .arg(blob)
            .arg(target.path())
            .status()
            .map_err(io("running tar"))
    })?;
    if !status.success() {
        return Err(CalibrateError::Io {
            doing: "unpacking with system tools",
            source: std::io::Error::other(format!("`{pipeline}` exited with {status}")),
        });
    }
    Ok(Some(seconds))
}

/// A plain-tar layer of `mib` MiB of stamped bf16-like data in
/// [`FILES_IN_LAYER`] files, written to a file in `dir` (synced).
fn plain_layer_file(dir: &std::path::Path, mib: u64, seed: u64) -> Result<tempfile::NamedTempFile, CalibrateError> {
    let file = tempfile::NamedTempFile::new_in(dir).map_err(io("writing a test layer"))?;
    let chunk = bf16_like(8 << 20, seed);
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file.as_file()));
    let per_file = (mib << 20) / FILES_IN_LAYER as u64;
    for index in 0..FILES_IN_LAYER {
        let mut header = tar::Header::new_gnu();
        header.set_size(per_file);
        header.set_mode(0o644);
        header.set_cksum();
        let data = Stamped::new(&chunk, per_file, (seed << 8) + index as u64);
        builder.append_data(&mut header, format!("model-{index}.safetensors"), data).map_err(io("writing a tar"))?;
    }
    builder.into_inner().and_then(|mut w| w.flush()).map_err(io("writing a tar"))?;
    file.as_file().sync_all().map_err(io("writing a test layer"))?;
    Ok(file)
}

/// Plain-tar unpack (`tar -x` + `sync`) at each of [`UNPACK_SAMPLES_MIB`];
/// `None` without `tar`.
fn plain_unpack_samples(dir: &std::path::Path) -> Result<Option<Vec<Sample>>, CalibrateError> {
    let mut samples = Vec::new();
    for (index, &mib) in UNPACK_SAMPLES_MIB.iter().enumerate() {
        let layer = plain_layer_file(dir, mib, 10 + index as u64)?;
        let bytes = layer.as_file().metadata().map_err(io("writing a test layer"))?.len();
        match external_unpack_file(layer.path(), "", dir)? {
            Some(seconds) => samples.push(Sample { bytes, seconds }),
            None => return Ok(None),
        }
    }
    Ok(Some(samples))
}

/// A codec's unpack rate for large layers: its small-sample rate with the
/// plain-tar part of the time (parsing, writing) swapped for the sustained
/// one, since decoding costs the same per byte at any size.
pub fn codec_rate_at_size(codec_small: f64, plain_small: f64, plain_sustained: f64) -> f64 {
    let per_byte = 1.0 / codec_small - 1.0 / plain_small + 1.0 / plain_sustained;
    if per_byte > 0.0 && per_byte.is_finite() {
        1.0 / per_byte
    } else {
        codec_small
    }
}

/// zstd levels `--calibrate` compares.
pub const ZSTD_LEVELS: [i32; 3] = [1, 3, 6];

/// One zstd level measured: all-core rate (bytes/s of input) and ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZstdLevel {
    pub level: i32,
    pub rate: f64,
    pub ratio: f64,
}

/// The level that builds a layer soonest: compressing it on every core, then
/// pushing the blob at `push_bandwidth` (build writes a layer, then pushes it).
pub fn best_zstd_level(levels: &[ZstdLevel], push_bandwidth: f64) -> Option<ZstdLevel> {
    let seconds_per_byte = |l: &ZstdLevel| 1.0 / l.rate + l.ratio / push_bandwidth;
    levels.iter().copied().min_by(|a, b| seconds_per_byte(a).total_cmp(&seconds_per_byte(b)))
}

/// zstd of `data` at `level` on every core, as the layer writer runs it.
fn zstd_all_cores(data: &[u8], level: i32) -> Result<Vec<u8>, CalibrateError> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level).map_err(io("zstd"))?;
    encoder.multithread(crate::image::pgzip::available_workers() as u32).map_err(io("zstd"))?;
    encoder.include_checksum(false).map_err(io("zstd"))?;
    encoder.write_all(data).map_err(io("zstd"))?;
    encoder.finish().map_err(io("zstd"))
}

/// Measures this machine. `dir` is where disk tests write (the plan's
/// working directory); `push_bandwidth` weighs zstd levels (see [`best_zstd_level`]).
pub fn measure(
    dir: &std::path::Path,
    registry: Option<(&str, &RegistryClientOptions)>,
    push_bandwidth: f64,
) -> Result<Vec<Measurement>, CalibrateError> {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let now =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let at = format!("measured by `imgbake plan --calibrate` on {host} at {now}");
    let mut out = Vec::new();
    let mut push = |key: &'static str, bytes: usize, seconds: f64, what: &str| {
        out.push(Measurement { key, value: bytes as f64 / seconds, how: format!("{at}: {what}") });
    };
    let data = bf16_like(SAMPLE_BYTES, 1);
    let mib = SAMPLE_BYTES >> 20;

    let (_, seconds) = timed(|| Ok(Sha256::digest(&data)))?;
    push("sha256", data.len(), seconds, &format!("sha256 of {mib} MiB in memory"));

    let layer = tar_of(&data)?;
    let cores = crate::image::pgzip::available_workers();
    let (gzip, seconds) = timed(|| {
        let mut encoder = crate::image::pgzip::ParallelGzip::new(Vec::new(), 6, cores);
        encoder.write_all(&layer).map_err(io("gzip"))?;
        encoder.finish().map_err(io("gzip"))
    })?;
    push("compress_gzip", layer.len(), seconds, &format!("gzip -6 on {cores} cores of a {mib} MiB bf16-like tar"));
    let mut levels = Vec::new();
    let mut zstd = Vec::new();
    for level in ZSTD_LEVELS {
        let (blob, seconds) = timed(|| zstd_all_cores(&layer, level))?;
        levels.push(ZstdLevel {
            level,
            rate: layer.len() as f64 / seconds,
            ratio: blob.len() as f64 / layer.len() as f64,
        });
        if level == 3 {
            zstd = blob;
        }
    }
    let best = best_zstd_level(&levels, push_bandwidth).expect("levels were measured");
    let table: Vec<String> =
        levels.iter().map(|l| format!("-{} {:.0} MB/s ratio {:.3}", l.level, l.rate / 1e6, l.ratio)).collect();
    let why = format!(
        "zstd on {cores} cores of a {mib} MiB bf16-like tar: {}; level {} builds soonest (compress, then push at {:.0} MB/s)",
        table.join(", "),
        best.level,
        push_bandwidth / 1e6
    );
    push("compress_zstd", layer.len(), layer.len() as f64 / best.rate, &why);

    let zstd_level = Measurement { key: "zstd_level", value: best.level as f64, how: format!("{at}: {why}") };

    // A node unpacks with its runtime's single-threaded inflate (containerd:
    // Go's compress/gzip unless unpigz is installed; umoci: Go's too), which
    // runs at about GNU gzip's speed and well below imgbake's own decoder, so
    // the system tools are measured when present.
    let mut small_unpack = Vec::new();
    for (key, blob, decoder) in
        [("unpack_gzip", &gzip, "gzip"), ("unpack_zstd", &zstd, "zstd"), ("unpack_none", &layer, "")]
    {
        let (seconds, what) = match external_unpack(blob, decoder, dir)? {
            Some(seconds) => {
                let tools = if decoder.is_empty() { "tar -x".to_string() } else { format!("{decoder} -dc | tar -x") };
                (seconds, format!("{tools} + sync of a {mib} MiB bf16-like layer (system tools)"))
            }
            None => {
                let seconds = match decoder {
                    "gzip" => timed(|| unpack(flate2::read::GzDecoder::new(&blob[..]), dir))?.1,
                    "zstd" => {
                        timed(|| unpack(zstd::stream::read::Decoder::new(&blob[..]).map_err(io("zstd -d"))?, dir))?.1
                    }
                    _ => timed(|| unpack(&blob[..], dir))?.1,
                };
                (
                    seconds,
                    format!("in-process decode + tar extract + fsync of {mib} MiB (no `{decoder}`/`tar` on PATH)"),
                )
            }
        };
        small_unpack.push((key, layer.len() as f64 / seconds, what));
    }
    // Large layers write more fresh blocks than a device's fast start covers:
    // plain tar at several sizes gives the sustained rate, and each codec's
    // rate keeps its decoding cost with the writing at that rate.
    let plain = plain_unpack_samples(dir)?;
    let plain_small = small_unpack.iter().find(|(key, ..)| *key == "unpack_none").map(|(_, rate, _)| *rate);
    for (key, rate, what) in small_unpack {
        let (rate, what) = match (&plain, plain_small) {
            (Some(samples), Some(plain_small)) => {
                let sustained = sustained_rate(samples);
                let at_size =
                    if key == "unpack_none" { sustained } else { codec_rate_at_size(rate, plain_small, sustained) };
                (
                    at_size,
                    format!(
                        "{what}: {:.0} MB/s, with tar -x + sync at {} ({:.0} MB/s past the smaller): {:.0} MB/s",
                        rate / 1e6,
                        describe_samples(samples),
                        sustained / 1e6,
                        at_size / 1e6
                    ),
                )
            }
            _ => (rate, what),
        };
        out.push(Measurement { key, value: rate, how: format!("{at}: {what}") });
    }

    let disk = disk_samples(dir, &DISK_SAMPLES_MIB)?;
    let write = sustained_rate(&disk.writes);
    out.push(Measurement {
        key: "disk_write",
        value: write,
        how: format!(
            "{at}: new files written as build writes a blob (direct I/O past 8 MiB) + fsync, at {}; {:.0} MB/s past the smaller",
            describe_samples(&disk.writes),
            write / 1e6
        ),
    });
    let read = sustained_rate(&disk.reads);
    out.push(Measurement {
        key: "disk_read",
        value: read,
        how: format!(
            "{at}: 1 MiB reads after posix_fadvise(DONTNEED), at {}; {:.0} MB/s past the smaller",
            describe_samples(&disk.reads),
            read / 1e6
        ),
    });
    out.push(Measurement {
        key: "page_cache_read",
        value: disk.cached_read.rate(),
        how: format!("{at}: the {} MiB file read again from the page cache, 1 MiB reads", disk.cached_read.bytes >> 20),
    });
    if let Some(room) = this_page_cache_room() {
        out.push(Measurement {
            key: "page_cache_bytes",
            value: room as f64,
            how: format!(
                "{at}: MemAvailable (within this cgroup's memory.max); lower it by what the app itself keeps in RAM"
            ),
        });
    }

    out.push(zstd_level);

    // Per-entry cost: layers of many empty files, where bytes cost nothing;
    // the difference between two counts leaves tar's start and the sync out.
    let mut entry_samples = Vec::new();
    for count in ENTRY_SAMPLES {
        let many = many_entries_tar(count)?;
        let seconds = match external_unpack(&many, "", dir)? {
            Some(seconds) => seconds,
            None => timed(|| unpack(&many[..], dir))?.1,
        };
        entry_samples.push(Sample { bytes: count as u64, seconds });
    }
    let per_entry = per_entry_seconds(&entry_samples);
    let listed: Vec<String> = entry_samples.iter().map(|s| format!("{} in {:.3} s", s.bytes, s.seconds)).collect();
    out.push(Measurement {
        key: "unpack_entry_seconds",
        value: per_entry,
        how: format!("{at}: tar -x + sync of empty files ({}), per file past the smaller count", listed.join(", ")),
    });

    if let Some((text, options)) = registry {
        out.extend(measure_registry(text, options, &at)?);
    }
    Ok(out)
}

/// Pulls every layer of `image` (3 at a time, as containerd), then the
/// largest layer alone: the aggregate and the per-connection bandwidth.
fn measure_registry(text: &str, options: &RegistryClientOptions, at: &str) -> Result<Vec<Measurement>, CalibrateError> {
    let reference: Reference =
        text.parse().map_err(|source| CalibrateError::Reference { reference: text.to_string(), source })?;
    let registry_error = |source| CalibrateError::Registry { reference: text.to_string(), source: Box::new(source) };
    let mut options = options.clone();
    options.parallel_transfers = 3;
    options.progress = crate::registry::ProgressMode::Quiet;
    let client = RegistryClient::new(options).map_err(registry_error)?;
    let dir = tempfile::tempdir().map_err(io("creating a pull directory"))?;
    let (pulled, seconds) =
        timed(|| client.pull_image(&reference, "linux", "amd64", dir.path()).map_err(registry_error))?;
    let total: u64 = pulled.layers.iter().map(|l| l.size).sum();
    let mut out = vec![Measurement {
        key: "registry_bandwidth",
        value: total as f64 / seconds,
        how: format!("{at}: pull of {} layers ({total} bytes, 3 at a time) from {text}", pulled.layers.len()),
    }];
    if let Some(largest) = pulled.layers.iter().max_by_key(|l| l.size) {
        let again = tempfile::tempdir().map_err(io("creating a pull directory"))?;
        let dest = again.path().join("blob");
        let (bytes, seconds) =
            timed(|| client.fetch_blob_to_file(&reference, &largest.digest, &dest).map_err(registry_error))?;
        out.push(Measurement {
            key: "layer_bandwidth",
            value: bytes as f64 / seconds,
            how: format!("{at}: one connection, largest layer ({bytes} bytes) of {text}"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zstd_level_that_builds_soonest_wins() {
        let levels = [
            ZstdLevel { level: 1, rate: 400e6, ratio: 0.80 },
            ZstdLevel { level: 3, rate: 200e6, ratio: 0.70 },
            ZstdLevel { level: 6, rate: 50e6, ratio: 0.65 },
        ];
        // Per GB at 100 MB/s push: -1 2.5 + 8.0 = 10.5 s, -3 5 + 7 = 12 s, -6 20 + 6.5 s.
        assert_eq!(best_zstd_level(&levels, 100e6).unwrap().level, 1);
        // A slow uplink pays for smaller blobs: at 10 MB/s, -1 82.5 s, -3 75 s, -6 85 s.
        assert_eq!(best_zstd_level(&levels, 10e6).unwrap().level, 3);
    }

    const MB: u64 = 1_000_000;

    fn sample(mb: u64, seconds: f64) -> Sample {
        Sample { bytes: mb * MB, seconds }
    }

    #[test]
    fn a_device_fast_at_first_is_charged_its_rate_past_the_fast_part() {
        // 100 MB at 2 GB/s, then 500 MB/s: 100 MB in 0.05 s, 500 MB in
        // 0.85 s, 1000 MB in 1.85 s. The 1000 MB average (541 MB/s) still
        // carries the fast start; past 500 MB it is 500 MB/s.
        let samples = [sample(100, 0.05), sample(500, 0.85), sample(1000, 1.85)];
        assert!((sustained_rate(&samples) - 500e6).abs() < 1.0);
        assert_eq!(describe_samples(&samples[..1]), "95 MiB 2.00 GB/s");
        // Order does not matter.
        let shuffled = [samples[2], samples[0], samples[1]];
        assert_eq!(sustained_rate(&shuffled), sustained_rate(&samples));
    }

    #[test]
    fn a_fixed_cost_or_noise_keeps_the_largest_samples_own_rate() {
        // 0.1 s of fixed cost, then 1 GB/s: the marginal 1 GB/s is above the
        // 1000 MB average (909 MB/s), which is what 1000 MB really took.
        let fixed = [sample(100, 0.2), sample(1000, 1.1)];
        assert!((sustained_rate(&fixed) - 1000e6 / 1.1).abs() < 1.0);
        // Two near-equal times would give 50 GB/s: the average wins.
        let noisy = [sample(500, 0.85), sample(1000, 0.86)];
        assert!((sustained_rate(&noisy) - 1000e6 / 0.86).abs() < 1.0);
        // A hiccup in the large sample (100 MB more in 9.1 s, 11 MB/s): no
        // less than half the 1000 MB average (100 MB/s) is charged.
        let hiccup = [sample(900, 0.9), sample(1000, 10.0)];
        assert!((sustained_rate(&hiccup) - 50e6).abs() < 1.0);
        assert_eq!(sustained_rate(&[sample(100, 0.5)]), 200e6);
        assert_eq!(sustained_rate(&[]), 0.0);
    }

    #[test]
    fn per_entry_cost_leaves_the_fixed_cost_out() {
        // tar's start and the sync: 0.2 s; 100 µs per entry.
        let samples = [Sample { bytes: 1000, seconds: 0.3 }, Sample { bytes: 4000, seconds: 0.6 }];
        assert!((per_entry_seconds(&samples) - 100e-6).abs() < 1e-12);
        let noisy = [Sample { bytes: 1000, seconds: 0.6 }, Sample { bytes: 4000, seconds: 0.5 }];
        assert!((per_entry_seconds(&noisy) - 0.5 / 4000.0).abs() < 1e-12);
    }

    #[test]
    fn a_codec_keeps_its_decoding_and_writes_at_the_sustained_rate() {
        // gzip 100 MB/s at 32 MiB with plain tar 1 GB/s there: 9 ns/B of
        // decoding + 1 ns/B of writing; writing at 250 MB/s (4 ns/B) gives
        // 13 ns/B = 76.9 MB/s.
        assert!((codec_rate_at_size(100e6, 1e9, 250e6) - 1e9 / 13.0).abs() < 1.0);
        // A codec measured faster than plain tar (noise) keeps its own rate.
        assert_eq!(codec_rate_at_size(1e9, 100e6, 1e12), 1e9);
    }

    #[test]
    fn the_page_cache_room_is_memavailable_within_the_cgroup() {
        let meminfo = "MemTotal:       24683656 kB\nMemFree:         4000000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(page_cache_room(meminfo, None, None), Some(20_000_000 * 1024));
        assert_eq!(page_cache_room(meminfo, Some("max\n"), Some("1000\n")), Some(20_000_000 * 1024));
        assert_eq!(page_cache_room(meminfo, Some("8000000000\n"), Some("3000000000\n")), Some(5_000_000_000));
        assert_eq!(page_cache_room("MemTotal: 1 kB\n", None, None), None);
    }

    #[test]
    fn disk_samples_time_every_size_and_leave_nothing_behind() {
        // Bounded: 1 and 4 MiB (the command measures 32 MiB to 1 GiB).
        let dir = tempfile::tempdir().unwrap();
        let samples = disk_samples(dir.path(), &[1, 4]).unwrap();
        let bytes: Vec<u64> = samples.reads.iter().map(|s| s.bytes).collect();
        assert_eq!(bytes, [1 << 20, 4 << 20]);
        assert_eq!(samples.writes.iter().map(|s| s.bytes).collect::<Vec<_>>(), bytes);
        assert_eq!(samples.cached_read.bytes, 4 << 20);
        for s in samples.writes.iter().chain(&samples.reads).chain([&samples.cached_read]) {
            assert!(s.seconds > 0.0 && s.rate().is_finite(), "{s:?}");
        }
        assert!(sustained_rate(&samples.reads) > 0.0);
        let left: Vec<_> = walk(dir.path());
        assert!(left.is_empty(), "{left:?}");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                files.extend(walk(&entry.path()));
            } else {
                files.push(entry.path());
            }
        }
        files
    }

    #[test]
    fn stamped_data_has_no_two_equal_blocks() {
        let chunk = bf16_like(16 << 10, 1);
        let mut data = Vec::new();
        Stamped::new(&chunk, 40 << 10, 5).read_to_end(&mut data).unwrap();
        assert_eq!(data.len(), 40 << 10);
        let blocks: std::collections::BTreeSet<&[u8]> = data.chunks(4096).collect();
        assert_eq!(blocks.len(), 10);
        let mut other = Vec::new();
        Stamped::new(&chunk, 4096, 6).read_to_end(&mut other).unwrap();
        assert!(!blocks.contains(&other[..]));
    }

    #[test]
    fn bf16_like_data_compresses_a_little_like_real_weights() {
        let data = bf16_like(1 << 20, 7);
        let ratio = zstd::bulk::compress(&data, 1).unwrap().len() as f64 / data.len() as f64;
        assert!((0.55..0.95).contains(&ratio), "{ratio}");
    }
}
