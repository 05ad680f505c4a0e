//! Making a lock: resolve every input of a Spec against its base image and
//! its sources (Python wheels through uv or pip, weights listings at pinned
//! revisions), and decide whether an existing lock can be used as it is.

pub mod base;
pub mod basefs;

use crate::deps::apt::{self, AptError};
use crate::deps::conda::{self, CondaError};
use crate::deps::python::{self, PythonError};
use crate::lock::{
    inputs_of, Lock, LockError, LockInputs, LockedApt, LockedBase, LockedConda, LockedPython, LockedWeightsFile,
    LOCK_VERSION,
};
use crate::spec::{Spec, WeightsSource};
use crate::weights::source::SourceClient;
use crate::weights::WeightsError;
use base::ResolvedBase;
use basefs::BaseFacts;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error(transparent)]
    Conda(#[from] CondaError),
    #[error(transparent)]
    Apt(#[from] AptError),
    #[error("apt packages need a Debian or Ubuntu base, and the base image has no /etc/os-release{0}\nhint: use a Debian/Ubuntu base, or install them with a container builder (`imgbake dockerfile`)")]
    AptWithoutDistribution(String),
    #[error("{origin}: cannot list the weights files")]
    Weights {
        origin: String,
        #[source]
        source: WeightsError,
    },
    #[error("{} does not match the config (it was resolved from other inputs), and --locked forbids updating it:\n{diff}hint: run `imgbake lock` and commit the new lock", path.display())]
    Stale { path: std::path::PathBuf, diff: String },
    #[error("{} does not exist, and --locked needs it\nhint: run `imgbake lock` and commit imgbake.lock", path.display())]
    Missing { path: std::path::PathBuf },
}

/// Resolves a fresh lock for `spec` on `base`.
pub fn resolve(
    spec: &Spec,
    base: &ResolvedBase,
    facts: &BaseFacts,
    cache_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Lock, ResolveError> {
    let inputs = inputs_of(spec)?;
    let python = if python::has_python_deps(spec) {
        let target = python::target_for(spec, facts.python.as_ref(), facts.glibc, warnings);
        let mut packages = python::resolve(spec, &target, cache_dir)?;
        python::fill_sizes(&mut packages, &python::FetchContext::new(spec, &target))?;
        let installer = inputs.installer.clone();
        Some(LockedPython { installer, target, packages })
    } else {
        None
    };
    let apt = if apt_requested(spec) {
        let base_system = base_system(facts)?;
        let requested = apt_requirements(spec)?;
        let packages = apt::resolve(&base_system, &requested, &apt::AptOptions::new(cache_dir))?;
        Some(LockedApt { distribution: distribution_of(&base_system.os_release), packages })
    } else {
        None
    };
    let conda = if conda::has_conda_deps(spec) {
        let target = conda::target(facts.glibc);
        let packages = conda::resolve(spec, &target)?;
        Some(LockedConda { target, packages })
    } else {
        None
    };
    Ok(Lock {
        version: LOCK_VERSION,
        apt,
        conda,
        base: LockedBase { image: spec.base.image.clone(), pinned: base.pinned.clone() },
        python,
        weights: weights_files(spec, cache_dir, warnings)?,
        inputs,
    })
}

pub fn apt_requested(spec: &Spec) -> bool {
    !spec.dependencies.apt.is_empty() || spec.dependencies.apt_file.is_some()
}

/// The config's apt packages: inline ones, then `pkglist.txt`'s.
pub fn apt_requirements(spec: &Spec) -> Result<Vec<crate::spec::Requirement>, AptError> {
    let mut requested = spec.dependencies.apt.clone();
    if let Some(file) = &spec.dependencies.apt_file {
        requested.extend(apt::read_pkglist(file)?);
    }
    Ok(requested)
}

/// What apt needs to know about the base, from its facts.
pub fn base_system(facts: &BaseFacts) -> Result<apt::BaseSystem, ResolveError> {
    let os_release = facts.os_release.clone().ok_or_else(|| ResolveError::AptWithoutDistribution(String::new()))?;
    Ok(apt::BaseSystem {
        os_release,
        dpkg_status: facts.dpkg_status.clone().unwrap_or_default(),
        apt_sources: facts.apt_sources.clone(),
        arch: "amd64".to_string(),
        symlinked_dirs: facts.symlinked_dirs.clone(),
        // Every archive key the base trusts (as apt on the base would).
        keyrings: facts.keyrings.values().filter_map(|bytes| apt::dearmor(bytes)).collect(),
    })
}

/// `ID VERSION_CODENAME` of an os-release file (`debian bookworm`).
fn distribution_of(os_release: &str) -> String {
    let field = |key: &str| {
        os_release
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(|value| value.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    format!("{} {}", field("ID"), field("VERSION_CODENAME")).trim().to_string()
}

/// Every remote weights file at its pinned revision, as its source lists it.
/// A file listed without a sha256 keeps the one the existing lock records
/// for it (same path, size and etag), else the one computed when its bytes
/// last passed through imgbake on this machine.
fn weights_files(
    spec: &Spec,
    cache_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<LockedWeightsFile>, ResolveError> {
    let existing = Lock::read(&crate::lock::lock_path(spec)).ok().flatten();
    let store = crate::weights::store::WeightsStore::open(cache_dir).ok();
    let mut files = Vec::new();
    for entry in &spec.weights {
        if matches!(entry.source, WeightsSource::Local { .. }) {
            continue;
        }
        let mut listing = SourceClient::for_entry(entry)
            .and_then(|client| client.list(entry))
            .map_err(|source| ResolveError::Weights { origin: entry.origin.clone(), source })?;
        crate::execute::remote::fill_known_hashes(entry, &mut listing, existing.as_ref(), store.as_ref());
        if let (WeightsSource::Hf { revision, .. }, Some(pinned)) = (&entry.source, &listing.revision) {
            if revision != pinned {
                warnings
                    .push(format!("{}: revision `{revision}` is pinned to commit {pinned} in the lock", entry.origin));
            }
        }
        files.extend(listing.files.iter().map(|file| LockedWeightsFile {
            source: entry.uri.clone(),
            revision: listing.revision.clone(),
            path: file.path.clone(),
            size: file.size,
            sha256: file.sha256.as_ref().map(|d| d.hex().to_string()),
            etag: file.etag.clone(),
        }));
    }
    Ok(files)
}

/// How a build treats `imgbake.lock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockPolicy {
    /// Use the lock when current; otherwise resolve and write a new one.
    #[default]
    Refresh,
    /// The lock must exist and be current (`--locked`).
    Locked,
}

/// The lock a build uses: the existing one when it answers the Spec's inputs,
/// else a fresh one (written beside the config), or an error under `--locked`.
/// Returns the lock and whether it was written.
pub fn lock_for_build(
    spec: &Spec,
    base: &ResolvedBase,
    facts: &BaseFacts,
    cache_dir: &Path,
    policy: LockPolicy,
    warnings: &mut Vec<String>,
) -> Result<(Lock, bool), ResolveError> {
    let path = crate::lock::lock_path(spec);
    let existing = Lock::read(&path)?;
    let inputs: LockInputs = inputs_of(spec)?;
    match (existing, policy) {
        (Some(lock), _) if lock.is_current(&inputs) => Ok((lock, false)),
        (None, LockPolicy::Locked) => Err(ResolveError::Missing { path }),
        (Some(lock), LockPolicy::Locked) => {
            let mut wanted = lock.clone();
            wanted.inputs = inputs;
            Err(ResolveError::Stale { diff: crate::lock::diff(&lock.to_toml(), &wanted.to_toml()), path })
        }
        (existing, LockPolicy::Refresh) => {
            let fresh = resolve(spec, base, facts, cache_dir, warnings)?;
            // Configs without dependencies or remote weights have nothing to pin;
            // a lock is only written for them when one already exists.
            let worth_writing = fresh.python.is_some()
                || fresh.apt.is_some()
                || fresh.conda.is_some()
                || !fresh.weights.is_empty()
                || existing.is_some();
            if worth_writing {
                fresh.write(&path)?;
            }
            Ok((fresh, worth_writing))
        }
    }
}
