//! How compressible some bytes are: zstd -1 over a sample, as a ratio
//! (compressed / original; 1 = incompressible). The one measure the layout
//! (`compression = "auto"`) and the cost model read.

use std::io::Read;
use std::path::PathBuf;

/// How much of a local source is read to judge it.
pub const LOCAL_SAMPLE_BYTES: u64 = 8 << 20;
/// The same for a remote source, fetched as ranges from the middle of its
/// files: enough to tell bf16 from text, small next to the weights.
pub const REMOTE_SAMPLE_BYTES: u64 = 1 << 20;
/// At least this much of each file, so one huge file does not hide the rest.
pub const MIN_PER_FILE: u64 = 64 << 10;

/// zstd -1 compressed size / size of `sample`; 0 for an empty sample, so
/// that nothing known is left uncompressed.
pub fn compression_ratio(sample: &[u8]) -> f64 {
    if sample.is_empty() {
        return 0.0;
    }
    let compressed = zstd::bulk::compress(sample, 1).map(|c| c.len()).unwrap_or(sample.len());
    compressed as f64 / sample.len() as f64
}

/// [`compression_ratio`] over the start of each file, at most
/// [`LOCAL_SAMPLE_BYTES`] in all.
pub fn sampled_ratio(files: &[PathBuf]) -> f64 {
    let per_file = (LOCAL_SAMPLE_BYTES / files.len().max(1) as u64).max(MIN_PER_FILE);
    let mut sample = Vec::new();
    for path in files {
        if sample.len() as u64 >= LOCAL_SAMPLE_BYTES {
            break;
        }
        if let Ok(file) = std::fs::File::open(path) {
            let _ = file.take(per_file).read_to_end(&mut sample);
        }
    }
    compression_ratio(&sample)
}
