//! `imgbake.lock`: every input of the image pinned — the base image digest,
//! each Python wheel and Debian package (URL, sha256, size), and each weights
//! file at its revision — next to the config it answers.
//!
//! TOML, sorted, one table per item, so a diff reads like a changelog. The
//! `[inputs]` table records what the lock was resolved *from*; when the
//! config's inputs differ, the lock is stale: `build` refreshes it, and
//! `build --locked` fails with the difference. Writes are atomic.

use crate::deps::conda::{CondaTarget, LockedCondaPackage};
use crate::deps::python::{LockedWheel, PythonTarget};
use crate::image::digest::Digest;
use crate::spec::Spec;
use crate::weights::RemoteFile;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use crate::spec::LOCK_FILE;
pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    pub version: u32,
    pub inputs: LockInputs,
    pub base: LockedBase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<LockedPython>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apt: Option<LockedApt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conda: Option<LockedConda>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<LockedWeightsFile>,
    /// The ModelPack artifact of each `mode = "artifact"` source, recorded
    /// by the build that made it (a function of the locked files: the same
    /// lock gives the same digest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<LockedArtifact>,
}

/// One weights source's artifact. Field order is the lock file's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedArtifact {
    pub source: String,
    pub mount: String,
    /// The artifact manifest's digest.
    pub digest: String,
}

/// What the lock was resolved from: the parts of the config that change it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInputs {
    pub base: String,
    pub python_version: String,
    pub installer: String,
    pub pip: Vec<String>,
    /// sha256 of the requirements file (`paths.pip` / `requirements_file`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pip_file_sha256: Option<String>,
    pub apt: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apt_file_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conda: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conda_file_sha256: Option<String>,
    /// Conda channels in effect (`IMGBAKE_CONDA_CHANNELS`), when there are conda dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conda_channels: Vec<String>,
    /// `uri [allow=…] [ignore=…]` of every remote weights source.
    pub weights: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedBase {
    pub image: String,
    /// `registry/repo@sha256:…` for registry bases; absent for scratch and local layouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPython {
    /// `uv` or `pip`: which resolver produced the pins.
    pub installer: String,
    pub target: PythonTarget,
    /// The base interpreter's standard library and how much of it has
    /// bytecode, read from the base's layers: when much of it has none,
    /// the layout compiles it into a layer of its own. Absent in older locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdlib: Option<LockedStdlib>,
    pub packages: Vec<LockedWheel>,
}

/// The base's standard library, as `imgbake lock` found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedStdlib {
    /// Image path, `/usr/local/lib/python3.11`.
    pub dir: String,
    /// Its `.py` modules.
    pub modules: u64,
    /// Those with `.pyc` of the base interpreter's version.
    pub compiled: u64,
    /// Bytes of the modules without.
    pub uncompiled_bytes: u64,
}

impl LockedStdlib {
    /// More than a tenth of the modules have no bytecode: the official
    /// `python:*` images and bases built like them delete every `.pyc`.
    pub fn needs_bytecode(&self) -> bool {
        self.uncompiled() * 10 > self.modules
    }

    /// Modules without bytecode.
    pub fn uncompiled(&self) -> u64 {
        self.modules - self.compiled.min(self.modules)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedApt {
    /// The base's distribution as its os-release names it (`debian bookworm`).
    pub distribution: String,
    pub packages: Vec<crate::deps::apt::LockedDeb>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedConda {
    pub target: CondaTarget,
    pub packages: Vec<LockedCondaPackage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedWeightsFile {
    /// The source as written in the config.
    pub source: String,
    /// The pinned revision (a commit for `hf://`), when the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub path: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// zstd -1 compressed/original of a sample from the middle of the file
    /// (4 decimals), so a build on a fresh machine chooses the same
    /// compression without reading the file again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a valid imgbake lock: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: lock version {found}, this imgbake reads version {LOCK_VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {}", path.display())]
    Input {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl crate::plumbing::errors::Hint for LockError {
    fn hint(&self) -> Option<String> {
        match self {
            LockError::Parse { .. } => Some("delete it and run `imgbake lock` to write a new one".into()),
            LockError::Version { .. } => Some("run `imgbake lock` to rewrite it".into()),
            _ => None,
        }
    }
}

/// Where the lock of a config lives: beside it.
pub fn lock_path(spec: &Spec) -> PathBuf {
    spec.source.project_dir.join(LOCK_FILE)
}

/// The inputs of `spec` that a lock answers.
pub fn inputs_of(spec: &Spec) -> Result<LockInputs, LockError> {
    let file_hash = |path: &Option<PathBuf>| -> Result<Option<String>, LockError> {
        path.as_ref()
            .map(|path| {
                fs::read(path)
                    .map(|bytes| hex::encode(Sha256::digest(&bytes)))
                    .map_err(|source| LockError::Input { path: path.clone(), source })
            })
            .transpose()
    };
    let deps = &spec.dependencies;
    let weights = spec
        .weights
        .iter()
        .filter(|entry| !matches!(entry.source, crate::spec::WeightsSource::Local { .. }))
        .map(|entry| {
            let mut text = entry.uri.clone();
            if !entry.allow_patterns.is_empty() {
                text.push_str(&format!(" allow={:?}", entry.allow_patterns));
            }
            if !entry.ignore_patterns.is_empty() {
                text.push_str(&format!(" ignore={:?}", entry.ignore_patterns));
            }
            text
        })
        .collect();
    Ok(LockInputs {
        base: spec.base.image.clone(),
        python_version: spec.python.version.clone(),
        installer: format!("{:?}", spec.python.installer).to_lowercase(),
        pip: deps.pip.iter().map(|r| r.to_requirement_string()).collect(),
        pip_file_sha256: file_hash(&deps.pip_file)?,
        apt: deps.apt.iter().map(|r| r.to_requirement_string()).collect(),
        apt_file_sha256: file_hash(&deps.apt_file)?,
        conda: deps.conda.iter().map(|r| r.to_requirement_string()).collect(),
        conda_file_sha256: file_hash(&deps.conda_file)?,
        conda_channels: if crate::deps::conda::has_conda_deps(spec) {
            crate::deps::conda::channels()
        } else {
            Vec::new()
        },
        weights,
    })
}

impl Lock {
    /// Reads the lock at `path`; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Lock>, LockError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LockError::Read { path: path.to_path_buf(), source }),
        };
        Lock::from_toml(&text, path).map(Some)
    }

    /// Parses lock text read from `path` (named in errors).
    pub fn from_toml(text: &str, path: &Path) -> Result<Lock, LockError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let version: VersionOnly =
            toml::from_str(text).map_err(|e| LockError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        if version.version != LOCK_VERSION {
            return Err(LockError::Version { path: path.to_path_buf(), found: version.version });
        }
        toml::from_str(text).map_err(|e| LockError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).expect("the lock is plain data");
        format!("# imgbake.lock: written by `imgbake lock` / `imgbake build`; commit it, do not edit it.\n{body}")
    }

    /// Writes atomically (temp file, fsync, rename, fsync of the directory).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        crate::plumbing::fs::write_atomic(path, self.to_toml().as_bytes())
            .map_err(|source| LockError::Write { path: path.to_path_buf(), source })
    }

    /// Whether the lock answers these inputs.
    pub fn is_current(&self, inputs: &LockInputs) -> bool {
        &self.inputs == inputs
    }

    /// The compressibility sample the lock records for a file of source
    /// `uri` as listed now (same path, size and etag), if any.
    pub fn weights_sample(&self, uri: &str, file: &RemoteFile) -> Option<f64> {
        self.weights.iter().find(|locked| locked.is(uri, file))?.sample
    }

    /// The sha256 the lock records for a file of source `uri` as listed now
    /// (same path, size and etag), if any.
    pub fn weights_sha256(&self, uri: &str, file: &RemoteFile) -> Option<Digest> {
        let locked = self.weights.iter().find(|locked| locked.is(uri, file))?;
        format!("sha256:{}", locked.sha256.as_deref()?).parse().ok()
    }

    /// Records sha256s computed when the bytes of files of source `uri`
    /// passed through imgbake, for entries that have none; returns how many
    /// entries got one.
    pub fn record_weights_hashes(&mut self, uri: &str, computed: &[(RemoteFile, Digest)]) -> usize {
        let mut added = 0;
        for (file, digest) in computed {
            for locked in self.weights.iter_mut().filter(|locked| locked.sha256.is_none() && locked.is(uri, file)) {
                locked.sha256 = Some(digest.hex().to_string());
                added += 1;
            }
        }
        added
    }
}

impl LockedWeightsFile {
    /// Whether this entry is `file` of source `uri` (same path, size and etag).
    fn is(&self, uri: &str, file: &RemoteFile) -> bool {
        self.source == uri && self.path == file.path && self.size == file.size && self.etag == file.etag
    }
}

/// The weights entry with its revision pinned to the lock's (hf:// sources),
/// so a build with a current lock fetches exactly what was locked. An
/// hf-cache layout keeps its branch: the cache's `refs/<branch>` file needs
/// the name (build warns when the branch has moved since the lock).
pub fn pinned_entry(entry: &crate::spec::WeightsEntry, lock: &Lock) -> crate::spec::WeightsEntry {
    let mut entry = entry.clone();
    if entry.layout == crate::spec::WeightsLayout::HfCache {
        return entry;
    }
    if let crate::spec::WeightsSource::Hf { revision, .. } = &mut entry.source {
        if let Some(pinned) = lock.weights.iter().find(|f| f.source == entry.uri).and_then(|f| f.revision.clone()) {
            *revision = pinned;
        }
    }
    entry
}

/// A line diff (`- old` / `+ new`) of two locks' TOML, for `--locked` failures
/// and `lock` output. Unchanged lines are left out; table headers are kept as
/// context when something under them changed.
pub fn diff(old: &str, new: &str) -> String {
    let old_lines: Vec<&str> = old.lines().filter(|l| !l.starts_with('#')).collect();
    let new_lines: Vec<&str> = new.lines().filter(|l| !l.starts_with('#')).collect();
    let old_set: std::collections::BTreeSet<&str> = old_lines.iter().copied().collect();
    let new_set: std::collections::BTreeSet<&str> = new_lines.iter().copied().collect();
    let mut out = String::new();
    for line in &old_lines {
        if !new_set.contains(line) && !line.trim().is_empty() {
            out.push_str(&format!("- {line}\n"));
        }
    }
    for line in &new_lines {
        if !old_set.contains(line) && !line.trim().is_empty() {
            out.push_str(&format!("+ {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        Lock {
            version: LOCK_VERSION,
            inputs: LockInputs {
                base: "debian:bookworm-slim".into(),
                python_version: "3.12".into(),
                installer: "uv".into(),
                pip: vec!["numpy==2.1.0".into()],
                pip_file_sha256: None,
                apt: vec![],
                apt_file_sha256: None,
                conda: vec![],
                conda_file_sha256: None,
                conda_channels: vec![],
                weights: vec![],
            },
            base: LockedBase { image: "debian:bookworm-slim".into(), pinned: Some("r/debian@sha256:00".into()) },
            python: Some(LockedPython {
                installer: "uv".into(),
                stdlib: None,
                target: PythonTarget {
                    python_version: "3.12".into(),
                    platform: "x86_64-manylinux_2_36".into(),
                    interpreter: "/usr/local/bin/python3.12".into(),
                    site_packages: "/usr/local/lib/python3.12/site-packages".into(),
                },
                packages: vec![LockedWheel {
                    name: "numpy".into(),
                    version: "2.1.0".into(),
                    url: "https://files.example/numpy.whl".into(),
                    sha256: "ab".into(),
                    size: 3,
                    installed: None,
                    python_source: None,
                    native_libraries: None,
                    built_from: None,
                }],
            }),
            apt: None,
            conda: None,
            weights: vec![],
            artifacts: vec![],
        }
    }

    #[test]
    fn computed_weights_hashes_fill_entries_without_one_and_only_the_same_file() {
        let mut lock = sample();
        let locked = |path: &str, etag: &str| LockedWeightsFile {
            source: "s3://b/m".into(),
            revision: None,
            path: path.into(),
            size: 4,
            sha256: None,
            etag: Some(etag.into()),
            sample: None,
        };
        lock.weights = vec![locked("a.bin", "\"e1\""), locked("b.bin", "\"e2\"")];
        let file = |path: &str, etag: &str| RemoteFile {
            path: path.into(),
            size: 4,
            sha256: None,
            etag: Some(etag.into()),
            url: format!("s3://b/m/{path}"),
        };
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        // Another etag is other content: not recorded, not matched.
        let computed = vec![(file("a.bin", "\"e1\""), digest.clone()), (file("b.bin", "\"changed\""), digest.clone())];
        assert_eq!(lock.record_weights_hashes("s3://b/m", &computed), 1);
        assert_eq!(lock.record_weights_hashes("s3://other", &computed), 0);
        assert_eq!(lock.weights_sha256("s3://b/m", &file("a.bin", "\"e1\"")), Some(digest));
        assert_eq!(lock.weights_sha256("s3://b/m", &file("b.bin", "\"e2\"")), None);
        // Recorded once: a second pass adds nothing.
        assert_eq!(lock.record_weights_hashes("s3://b/m", &computed), 0);
    }

    #[test]
    fn a_lock_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        assert_eq!(Lock::read(&path).unwrap(), None);
        sample().write(&path).unwrap();
        assert_eq!(Lock::read(&path).unwrap(), Some(sample()));
    }

    #[test]
    fn a_changed_requirement_shows_in_the_diff() {
        let old = sample();
        let mut new = sample();
        new.inputs.pip = vec!["numpy==2.2.0".into()];
        assert!(!old.is_current(&new.inputs));
        let diff = diff(&old.to_toml(), &new.to_toml());
        assert_eq!(diff, "- pip = [\"numpy==2.1.0\"]\n+ pip = [\"numpy==2.2.0\"]\n");
    }

    #[test]
    fn another_version_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        fs::write(&path, "version = 9\n").unwrap();
        let message = Lock::read(&path).unwrap_err().to_string();
        assert!(message.contains("lock version 9"), "{message}");
    }
}
