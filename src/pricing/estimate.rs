//! A layer as the cost model sees it: its tar and blob sizes in a codec,
//! its entries, estimated from file sizes and a sampled compressibility
//! ratio; and what a cold start's imports read. The units every pricing
//! reader shares (the layout's `compression = "auto"`, the cost model).

use crate::image::layer::Compression;
use serde::Serialize;

/// tar: a 512-byte header per entry, data padded to 512, two zero blocks at the end.
const TAR_BLOCK: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Gzip,
    Zstd,
    None,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<Codec> {
        [Codec::Gzip, Codec::Zstd, Codec::None].into_iter().find(|c| c.as_str() == text)
    }
}

/// One layer as it will be in the image: tar size and estimated blob size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerEstimate {
    pub what: String,
    pub uncompressed: u64,
    pub compressed: u64,
    pub codec: Codec,
    /// True when `compressed` is known (a built or published layer), not estimated.
    pub exact: bool,
    /// Tar entries (files, directories, links): unpacking pays per entry too.
    pub entries: u64,
}

/// Bytes of unpacked layer per tar entry when the entries cannot be counted:
/// the debootstrap bookworm base here has 4550 entries in 144 MB (32 KB
/// each); distribution and CUDA layers are in the same range.
pub const BYTES_PER_ENTRY_ESTIMATE: u64 = 32 << 10;

impl LayerEstimate {
    /// A tar layer of files with these sizes, written with `compression`;
    /// `ratio` is the zstd-1 compressed/original of a sample.
    pub fn from_files(what: String, sizes: &[u64], ratio: f64, compression: Compression) -> LayerEstimate {
        let uncompressed = tar_size(sizes);
        let codec = codec_of(compression);
        // gzip -6 and zstd -3 land within a few percent of zstd -1 on weights
        // and source files; one sampled ratio serves all three.
        let compressed = match codec {
            Codec::None => uncompressed,
            Codec::Gzip | Codec::Zstd => ((uncompressed as f64) * ratio.clamp(0.0, 1.0)).ceil() as u64,
        };
        // Each file, plus about one directory per eight files.
        let entries = sizes.len() as u64 + (sizes.len() as u64).div_ceil(8);
        LayerEstimate { what, uncompressed, compressed, codec, exact: false, entries }
    }
}

/// The report's name for a layer codec.
pub fn codec_of(compression: Compression) -> Codec {
    match compression {
        Compression::None => Codec::None,
        Compression::Gzip { .. } => Codec::Gzip,
        Compression::Zstd { .. } => Codec::Zstd,
    }
}

/// Bytes of a tar stream holding files of these sizes.
pub fn tar_size(sizes: &[u64]) -> u64 {
    sizes.iter().map(|s| TAR_BLOCK + s.div_ceil(TAR_BLOCK) * TAR_BLOCK).sum::<u64>() + 2 * TAR_BLOCK
}

/// What the app's imports read at a cold start: the locked Python
/// packages' `.py` bytes (the model takes its share) and compiled
/// libraries, and the app's own `.py` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ImportsInput {
    pub python_source: u64,
    pub native_libraries: u64,
    pub app_source: u64,
    /// The packages' `.pyc` files are in the image (`[imgbake] bytecode`).
    pub bytecode: bool,
    /// The image has no bytecode of the base's standard library (the base
    /// deleted it, and imgbake did not compile it): what the app imports of
    /// it compiles at every start.
    pub stdlib_uncompiled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tar_of_two_files_counts_headers_padding_and_the_end_blocks() {
        // 1 byte → 512 header + 512 data; 1024 bytes → 512 + 1024; + 1024 end.
        assert_eq!(tar_size(&[1, 1024]), 512 + 512 + 512 + 1024 + 1024);
    }

    #[test]
    fn a_layer_estimate_compresses_by_the_sampled_ratio() {
        let layer = LayerEstimate::from_files("w".into(), &[1 << 20], 0.5, Compression::Gzip { level: 6 });
        assert_eq!(layer.codec, Codec::Gzip);
        assert_eq!(layer.compressed, (layer.uncompressed as f64 * 0.5).ceil() as u64);
        let stored = LayerEstimate::from_files("w".into(), &[1 << 20], 0.97, Compression::None);
        assert_eq!(stored.compressed, stored.uncompressed);
    }
}
