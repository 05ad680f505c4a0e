//! Which compression a planned layer gets. One rule for every layer, read
//! by the native build (it writes that codec), the Dockerfile (it says so)
//! and the cost model (it prices that codec).

use crate::image::layer::Compression;
use crate::spec;

/// gzip level of every gzip layer: fixed, so digests never drift.
pub const GZIP_LEVEL: u32 = 6;
pub const ZSTD_LEVEL: i32 = 3;
/// Compressed/original size above which `auto` stores a layer uncompressed:
/// saving under 10% is not worth the CPU at pull and unpack time.
pub const INCOMPRESSIBLE_RATIO: f64 = 0.90;

pub const GZIP: Compression = Compression::Gzip { level: GZIP_LEVEL };

/// The codec for a layer of weights whose sample compresses to `ratio`
/// (zstd -1, compressed/original) under the config's `compression`.
pub fn for_weights(setting: spec::Compression, ratio: f64) -> Compression {
    match setting {
        spec::Compression::None => Compression::None,
        spec::Compression::Gzip => GZIP,
        spec::Compression::Zstd => Compression::Zstd { level: ZSTD_LEVEL },
        spec::Compression::Auto if ratio > INCOMPRESSIBLE_RATIO => Compression::None,
        spec::Compression::Auto => GZIP,
    }
}

/// The codec for app files: source code and configs always compress, so
/// `auto` is gzip without a sample.
pub fn for_app_files(setting: spec::Compression) -> Compression {
    for_weights(setting, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_leaves_incompressible_weights_alone_and_gzips_the_rest() {
        assert_eq!(for_weights(spec::Compression::Auto, 0.95), Compression::None);
        assert_eq!(for_weights(spec::Compression::Auto, 0.5), GZIP);
        assert_eq!(for_weights(spec::Compression::Zstd, 0.95), Compression::Zstd { level: ZSTD_LEVEL });
        assert_eq!(for_app_files(spec::Compression::Auto), GZIP);
        assert_eq!(for_app_files(spec::Compression::None), Compression::None);
    }

    #[test]
    fn sampled_random_bytes_stay_uncompressed_and_text_is_gzipped() {
        use crate::image::sample::sampled_ratio;
        let dir = tempfile::tempdir().unwrap();
        let random = dir.path().join("random.bin");
        let mut state = 0x2545F4914F6CDD1Du64;
        let bytes: Vec<u8> = (0..1 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(&random, bytes).unwrap();
        let text = dir.path().join("config.json");
        std::fs::write(&text, "{\"hidden_size\": 4096, \"layers\": 32}\n".repeat(20_000)).unwrap();
        assert_eq!(for_weights(spec::Compression::Auto, sampled_ratio(&[random])), Compression::None);
        assert_eq!(for_weights(spec::Compression::Auto, sampled_ratio(&[text])), GZIP);
    }
}
