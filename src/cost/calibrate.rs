//! `plan --calibrate`: measures this machine's rates (unpack per codec, disk
//! write and read, the page cache, sha256, compression, Python imports with
//! and without bytecode, and optionally a registry pull) on bf16-like data
//! and returns them as profile parameters with their sources.
//!
//! Disk rates depend on size: a virtual disk serves its first tens of MiB
//! from a cache or a burst allowance, then settles. Weights are GBs, so disk
//! reads and writes and plain-tar unpacks are measured at several sizes and
//! the profile gets the rate past the smaller ones ([`sustained_rate`]); the
//! source lists every size's rate.

mod disk;
mod imports;

pub use disk::{
    describe_samples, disk_samples, page_cache_room, per_entry_seconds, sustained_rate, DiskSamples, Sample,
    DISK_SAMPLES_MIB, READ_SAMPLES_MIB,
};
use disk::{this_page_cache_room, Stamped};

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

/// Sizes of the plain-tar unpack samples, MiB (unpacked bytes are held in
/// neither memory nor a second file, so the large one stays smaller).
const UNPACK_SAMPLES_MIB: [u64; 2] = [32, 256];

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
/// working directory); `push_bandwidth` weighs zstd levels (see
/// [`best_zstd_level`]); cold reads are timed at the sizes of
/// [`READ_SAMPLES_MIB`] up to `read_max_mib` (the smallest at least).
pub fn measure(
    dir: &std::path::Path,
    registry: Option<(&str, &RegistryClientOptions)>,
    push_bandwidth: f64,
    read_max_mib: u64,
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

    let read_sizes: Vec<u64> = READ_SAMPLES_MIB
        .iter()
        .copied()
        .enumerate()
        .filter(|&(index, mib)| index == 0 || mib <= read_max_mib)
        .map(|(_, mib)| mib)
        .collect();
    let disk = disk_samples(dir, &DISK_SAMPLES_MIB, &read_sizes)?;
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
    let host_backed = if disk::this_machine_reports_memory() {
        "; this machine hands free memory back to its host (free page reporting), so these reads ran at the \
         host's rate for backing memory too: a node with dedicated memory (a GPU node) reads faster (docs/plan.md, Limits)"
    } else {
        ""
    };
    out.push(Measurement {
        key: "disk_read",
        value: read,
        how: format!(
            "{at}: 1 MiB reads of new files written as a node writes them (buffered + fsync) after posix_fadvise(DONTNEED), at {}; {:.0} MB/s past the smaller{host_backed}",
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

    out.extend(imports::measure_imports("python3", dir, &at)?);

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
    fn bf16_like_data_compresses_a_little_like_real_weights() {
        let data = bf16_like(1 << 20, 7);
        let ratio = zstd::bulk::compress(&data, 1).unwrap().len() as f64 / data.len() as f64;
        assert!((0.55..0.95).contains(&ratio), "{ratio}");
    }
}
