//! Dependency layers for the plan, from `imgbake.lock`: the pinned packages'
//! archive sizes turned into layer estimates, grouped as build groups them
//! (apt: one layer; Python: a layer per large distribution, the rest in one;
//! conda: one layer at /opt/conda).
//!
//! Archive bytes are exact (the lock has them); unpacked and gzip sizes are
//! estimated with the factors below, measured on this project's fixtures
//! (`imgbake build --json` of fixtures/cerebrium-pip-apt on the bookworm base:
//! 15 wheels of 20.5 MB → 69.5 MB of tar, 20.0 MB gzip; 3 debs of 0.39 MB →
//! 1.26 MB of tar, 0.51 MB gzip). The estimate is marked `exact: false`.

use super::inputs::{Codec, LayerEstimate};
use crate::lock::Lock;

/// Installed bytes per wheel byte (wheels are zip-deflated).
pub const WHEEL_UNPACKED_FACTOR: f64 = 3.4;
/// gzip-6 layer bytes per wheel byte.
pub const WHEEL_GZIP_FACTOR: f64 = 1.0;
/// Unpacked bytes per .deb byte (xz-compressed data.tar).
pub const DEB_UNPACKED_FACTOR: f64 = 3.25;
pub const DEB_GZIP_FACTOR: f64 = 1.3;
/// conda archives are bz2 or zstd; about like debs.
pub const CONDA_UNPACKED_FACTOR: f64 = 3.25;
pub const CONDA_GZIP_FACTOR: f64 = 1.3;

/// Archive bytes per tar entry (same fixture: 1545 entries from 20.5 MB of
/// wheels; the ffmpeg closure, 3653 entries from 131 MB of debs).
pub const WHEEL_BYTES_PER_ENTRY: f64 = 13_000.0;
pub const DEB_BYTES_PER_ENTRY: f64 = 36_000.0;

fn estimate(what: String, archive_bytes: u64, unpacked: f64, gzip: f64, bytes_per_entry: f64) -> LayerEstimate {
    LayerEstimate {
        what,
        uncompressed: (archive_bytes as f64 * unpacked) as u64,
        compressed: (archive_bytes as f64 * gzip) as u64,
        codec: Codec::Gzip,
        exact: false,
        entries: (archive_bytes as f64 / bytes_per_entry).ceil() as u64,
    }
}

/// The dependency layers a build with this lock would write, in image order.
pub fn layers_from_lock(lock: &Lock) -> Vec<LayerEstimate> {
    let mut layers = Vec::new();
    if let Some(apt) = &lock.apt {
        let bytes = apt.packages.iter().map(|p| p.size).sum();
        layers.push(estimate(
            format!("apt packages ({})", apt.packages.len()),
            bytes,
            DEB_UNPACKED_FACTOR,
            DEB_GZIP_FACTOR,
            DEB_BYTES_PER_ENTRY,
        ));
    }
    if let Some(python) = &lock.python {
        let large = crate::deps::python::LARGE_DISTRIBUTION as f64;
        let (mut big, small): (Vec<_>, Vec<_>) =
            python.packages.iter().partition(|w| w.size as f64 * WHEEL_UNPACKED_FACTOR >= large);
        big.sort_by_key(|w| std::cmp::Reverse(w.size));
        for wheel in big {
            layers.push(estimate(
                format!("python {}=={}", wheel.name, wheel.version),
                wheel.size,
                WHEEL_UNPACKED_FACTOR,
                WHEEL_GZIP_FACTOR,
                WHEEL_BYTES_PER_ENTRY,
            ));
        }
        if !small.is_empty() {
            let bytes = small.iter().map(|w| w.size).sum();
            layers.push(estimate(
                format!("python packages ({})", small.len()),
                bytes,
                WHEEL_UNPACKED_FACTOR,
                WHEEL_GZIP_FACTOR,
                WHEEL_BYTES_PER_ENTRY,
            ));
        }
    }
    if let Some(conda) = &lock.conda {
        let bytes = conda.packages.iter().map(|p| p.size).sum();
        layers.push(estimate(
            format!("conda packages ({})", conda.packages.len()),
            bytes,
            CONDA_UNPACKED_FACTOR,
            CONDA_GZIP_FACTOR,
            DEB_BYTES_PER_ENTRY,
        ));
    }
    layers
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
        };
        let layers = layers_from_lock(&lock);
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].what, "python torch==1");
        assert_eq!(layers[0].uncompressed, (800_000_000.0 * WHEEL_UNPACKED_FACTOR) as u64);
        assert_eq!(layers[1].compressed, 1_000_000);
        assert!(layers.iter().all(|l| !l.exact));
    }
}
