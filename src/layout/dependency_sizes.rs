//! Dependency layers priced from `imgbake.lock`: the pinned packages'
//! archive sizes of each dependency layer the ImagePlan lists (the layout
//! groups them: apt one layer; Python a layer per large distribution, the
//! rest in one; conda one layer at /opt/conda) turned into layer estimates.
//! The layout sizes its own layers here: `compression = "auto"` prices them
//! in each codec, and the cost model reads them for the plan.
//!
//! Archive bytes are exact (the lock has them); unpacked and gzip sizes are
//! estimated with the factors below, measured on this project's fixtures
//! (`imgbake build --json` of fixtures/cerebrium-pip-apt on the bookworm base:
//! 15 wheels of 20.5 MB → 69.5 MB of tar, 20.0 MB gzip; 3 debs of 0.39 MB →
//! 1.26 MB of tar, 0.51 MB gzip). The estimate is marked `exact: false`.

use super::{LayerContent, PlannedLayer};
use crate::lock::Lock;
use crate::pricing::estimate::{codec_of, Codec, LayerEstimate};

/// Installed bytes per wheel byte (wheels are zip-deflated); the layout
/// groups Python layers by the same factor.
pub use super::WHEEL_UNPACKED_FACTOR;
/// gzip-6 layer bytes per wheel byte.
pub const WHEEL_GZIP_FACTOR: f64 = 1.0;
/// Layer tar bytes per installed byte the lock records (the wheel's files):
/// what bytecode and tar headers add. Measured on the same fixture
/// (2026-12-05, uv, bytecode on): 15 wheels whose zip directories list
/// 68.2 MB of files gave a 90.4 MB layer tar.
pub const INSTALLED_TAR_FACTOR: f64 = 1.33;
/// Unpacked bytes per .deb byte (xz-compressed data.tar).
pub const DEB_UNPACKED_FACTOR: f64 = 3.25;
pub const DEB_GZIP_FACTOR: f64 = 1.3;
/// conda archives are bz2 or zstd; about like debs.
pub const CONDA_UNPACKED_FACTOR: f64 = 3.25;
pub const CONDA_GZIP_FACTOR: f64 = 1.3;

/// The base's standard library compiled (`LayerContent::StdlibBytecode`),
/// measured on Debian bookworm's Python 3.11 (544 modules, 10.3 MB of
/// `.py` → 11.6 MB of `.pyc`; the tar of them 4.37 MB at gzip -6, 4.06 MB
/// at zstd -3): `.pyc` bytes per source byte, and compressed per tar byte.
pub const PYC_PER_SOURCE_BYTE: f64 = 1.12;
pub const PYC_COMPRESSED_RATIO: f64 = 0.36;

/// Archive bytes per tar entry (same fixture: 1545 entries from 20.5 MB of
/// wheels; the ffmpeg closure, 3653 entries from 131 MB of debs).
pub const WHEEL_BYTES_PER_ENTRY: f64 = 13_000.0;
pub const DEB_BYTES_PER_ENTRY: f64 = 36_000.0;

/// The layer in `codec`: gzip and zstd are estimated at the gzip factor
/// (zstd -3 lands within a few percent of gzip -6 on installed packages).
fn estimate(
    what: String,
    codec: Codec,
    archive_bytes: u64,
    unpacked: f64,
    gzip: f64,
    bytes_per_entry: f64,
) -> LayerEstimate {
    let uncompressed = (archive_bytes as f64 * unpacked) as u64;
    LayerEstimate {
        what,
        uncompressed,
        compressed: match codec {
            Codec::None => uncompressed,
            Codec::Gzip | Codec::Zstd => (archive_bytes as f64 * gzip) as u64,
        },
        codec,
        exact: false,
        entries: (archive_bytes as f64 / bytes_per_entry).ceil() as u64,
    }
}

/// The estimate of one planned dependency layer from the lock's archive
/// sizes, in the layer's codec (`None` for a layer that is not a dependency layer).
pub fn estimate_planned(layer: &PlannedLayer, lock: &Lock) -> Option<LayerEstimate> {
    let what = layer.name.clone();
    let codec = codec_of(layer.compression);
    match &layer.content {
        LayerContent::StdlibBytecode => {
            let stdlib = lock.python.as_ref()?.stdlib.as_ref()?;
            let uncompiled = stdlib.uncompiled();
            // Every module is compiled; the lock sizes the uncompiled ones.
            let source = stdlib.uncompiled_bytes as f64 * stdlib.modules as f64 / uncompiled.max(1) as f64;
            let pyc = source * PYC_PER_SOURCE_BYTE;
            // One `__pycache__` directory per ten modules or so, a header each.
            let entries = stdlib.modules + stdlib.modules / 10;
            let uncompressed = (pyc + entries as f64 * 512.0) as u64;
            Some(LayerEstimate {
                what,
                uncompressed,
                compressed: match codec {
                    Codec::None => uncompressed,
                    Codec::Gzip | Codec::Zstd => (uncompressed as f64 * PYC_COMPRESSED_RATIO) as u64,
                },
                codec,
                exact: false,
                entries,
            })
        }
        LayerContent::Apt => {
            let bytes = lock.apt.as_ref()?.packages.iter().map(|p| p.size).sum();
            Some(estimate(what, codec, bytes, DEB_UNPACKED_FACTOR, DEB_GZIP_FACTOR, DEB_BYTES_PER_ENTRY))
        }
        LayerContent::Python { packages, part } => {
            let wheels: Vec<_> = lock.python.as_ref()?.packages.iter().filter(|w| packages.contains(&w.name)).collect();
            let share = |bytes: u64| part.map_or(bytes, |p| bytes / p.of.max(1) as u64);
            let bytes = share(wheels.iter().map(|w| w.size).sum());
            let mut layer =
                estimate(what, codec, bytes, WHEEL_UNPACKED_FACTOR, WHEEL_GZIP_FACTOR, WHEEL_BYTES_PER_ENTRY);
            // The lock's installed sizes (read from the wheels' zip
            // directories) replace the archive factor where it has them all.
            if let Some(installed) = wheels.iter().map(|w| w.installed).sum::<Option<u64>>() {
                layer.uncompressed = (share(installed) as f64 * INSTALLED_TAR_FACTOR) as u64;
                if codec == Codec::None {
                    layer.compressed = layer.uncompressed;
                }
            }
            Some(layer)
        }
        LayerContent::Conda => {
            let bytes = lock.conda.as_ref()?.packages.iter().map(|p| p.size).sum();
            Some(estimate(what, codec, bytes, CONDA_UNPACKED_FACTOR, CONDA_GZIP_FACTOR, DEB_BYTES_PER_ENTRY))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deps::python::LockedWheel;
    use crate::lock::{LockInputs, LockedBase, LockedPython};

    #[test]
    fn a_torch_sized_wheel_gets_its_own_estimated_layer() {
        let wheel = |name: &str, size: u64| LockedWheel {
            name: name.into(),
            version: "1".into(),
            url: String::new(),
            sha256: String::new(),
            size,
            installed: None,
            python_source: None,
            native_libraries: None,
            built_from: None,
        };
        let lock = Lock {
            version: crate::lock::LOCK_VERSION,
            inputs: LockInputs {
                base: String::new(),
                python_version: "3.11".into(),
                installer: "uv".into(),
                pip: vec![],
                pip_file_sha256: None,
                apt: vec![],
                apt_file_sha256: None,
                conda: vec![],
                conda_file_sha256: None,
                conda_channels: vec![],
                weights: vec![],
            },
            base: LockedBase { image: String::new(), pinned: None },
            python: Some(LockedPython {
                installer: "uv".into(),
                stdlib: None,
                target: crate::deps::python::PythonTarget {
                    python_version: "3.11".into(),
                    platform: String::new(),
                    interpreter: String::new(),
                    site_packages: String::new(),
                },
                packages: vec![wheel("small", 1_000_000), wheel("torch", 800_000_000)],
            }),
            apt: None,
            conda: None,
            weights: vec![],
            artifacts: vec![],
        };
        let layers: Vec<LayerEstimate> =
            crate::layout::dependency_layers(&lock, crate::spec::DEFAULT_DEPENDENCY_SPLIT_SIZE, true)
                .iter()
                .filter_map(|layer| estimate_planned(layer, &lock))
                .collect();
        // 800 MB × 3.4 installed: four parts (the most) of the 512 MiB split.
        assert_eq!(layers.len(), 5);
        assert_eq!(layers[0].what, "python torch==1 (part 1 of 4)");
        assert_eq!(layers[0].uncompressed, (200_000_000.0 * WHEEL_UNPACKED_FACTOR) as u64);
        assert_eq!(layers[4].compressed, 1_000_000);
        assert!(layers.iter().all(|l| !l.exact));

        // With the lock's installed sizes, those are what the layers hold.
        let mut exact = lock.clone();
        exact.python.as_mut().unwrap().packages[1].installed = Some(1_200_000_000);
        exact.python.as_mut().unwrap().packages[0].installed = Some(3_000_000);
        let layers: Vec<LayerEstimate> = crate::layout::dependency_layers(&exact, 512 << 20, true)
            .iter()
            .filter_map(|layer| estimate_planned(layer, &exact))
            .collect();
        assert_eq!(layers.len(), 4, "1.2 GB in parts of 512 MiB: 3, and the small one");
        assert_eq!(layers[0].uncompressed, (400_000_000.0 * INSTALLED_TAR_FACTOR) as u64);
    }
}
