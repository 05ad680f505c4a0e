//! `plan --calibrate`: measures this machine's rates (unpack per codec, disk
//! write and read, sha256, compression, and optionally a registry pull) on
//! bf16-like data and returns them as profile parameters with their sources.

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

/// Entries in the per-entry unpack measurement.
const ENTRY_SAMPLE: usize = 4000;

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
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io("writing a test layer"))?;
    file.write_all(blob).map_err(io("writing a test layer"))?;
    file.as_file().sync_all().map_err(io("writing a test layer"))?;
    let target = tempfile::tempdir_in(dir).map_err(io("creating a directory"))?;
    let pipeline = if decoder.is_empty() {
        "tar -x -C \"$2\" < \"$1\" && sync".to_string()
    } else {
        format!("{decoder} -dc < \"$1\" | tar -x -C \"$2\" && sync")
    };
    let (status, seconds) = timed(|| {
        std::process::Command::new("sh")
            .args(["-c", &pipeline, "sh"])
            .arg(file.path())
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
        push(key, layer.len(), seconds, &what);
    }

    // Written the way build writes an uncompressed layer's blob (the first
    // 8 MiB buffered, the rest with direct I/O, then fsync and rename).
    let store_dir = tempfile::tempdir_in(dir).map_err(io("creating a directory"))?;
    let blob_error = |doing: &'static str| {
        move |error: crate::image::blobs::BlobError| CalibrateError::Io { doing, source: std::io::Error::other(error) }
    };
    let store = crate::image::blobs::BlobStore::open(store_dir.path()).map_err(blob_error("opening a blob store"))?;
    let digest = crate::image::digest::Digest::from_sha256_bytes(&Sha256::digest(&data));
    let (_, seconds) = timed(|| {
        let mut writer = store.writer_unhashed().map_err(blob_error("writing a test blob"))?;
        writer.write_all_blob(&data).map_err(blob_error("writing a test blob"))?;
        writer.commit_as(&digest).map_err(blob_error("committing a test blob"))
    })?;
    push("disk_write", data.len(), seconds, &format!("blob write (direct I/O past 8 MiB) + fsync of {mib} MiB"));
    let blob_path = store.path(&digest);
    // Drop the file's pages from the page cache so the read comes from disk.
    if let Ok(file) = std::fs::File::open(&blob_path) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; fadvise only hints the kernel.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let (_, seconds) = timed(|| {
        let mut buffer = Vec::with_capacity(data.len());
        std::fs::File::open(&blob_path).and_then(|mut f| f.read_to_end(&mut buffer)).map_err(io("reading a test file"))
    })?;
    push("disk_read", data.len(), seconds, &format!("read of {mib} MiB after posix_fadvise(DONTNEED)"));

    out.push(zstd_level);

    // Per-entry cost: a layer of many empty files, where bytes cost nothing.
    let many = many_entries_tar(ENTRY_SAMPLE)?;
    let seconds = match external_unpack(&many, "", dir)? {
        Some(seconds) => seconds,
        None => timed(|| unpack(&many[..], dir))?.1,
    };
    out.push(Measurement {
        key: "unpack_entry_seconds",
        value: seconds / ENTRY_SAMPLE as f64,
        how: format!("{at}: tar -x + sync of {ENTRY_SAMPLE} empty files, per file"),
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

    #[test]
    fn bf16_like_data_compresses_a_little_like_real_weights() {
        let data = bf16_like(1 << 20, 7);
        let ratio = zstd::bulk::compress(&data, 1).unwrap().len() as f64 / data.len() as f64;
        assert!((0.55..0.95).contains(&ratio), "{ratio}");
    }
}
