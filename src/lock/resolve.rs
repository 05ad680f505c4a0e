//! Making a lock: resolve every input of a Spec against its base image and
//! its sources (Python wheels through uv or pip, weights listings at pinned
//! revisions), and decide whether an existing lock can be used as it is.

use super::{
    inputs_of, Lock, LockError, LockInputs, LockedBase, LockedConda, LockedPython, LockedWeightsFile, LOCK_VERSION,
};
use crate::build::base::ResolvedBase;
use crate::build::basefs::BaseFacts;
use crate::deps::conda::{self, CondaError};
use crate::deps::python::{self, PythonError};
use crate::spec::{Spec, WeightsSource};
use crate::weights::source::SourceClient;
use crate::weights::WeightsError;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error(transparent)]
    Conda(#[from] CondaError),
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
        let mut packages = python::resolve(spec, &target)?;
        // Sizes the resolver did not give (pip) come from the downloaded wheels;
        // the wheels are needed for the build anyway.
        if packages.iter().any(|p| p.size == 0) {
            python::fetch(&mut packages, cache_dir)?;
        }
        let installer = inputs.installer.clone();
        Some(LockedPython { installer, target, packages })
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
        conda,
        base: LockedBase { image: spec.base.image.clone(), pinned: base.pinned.clone() },
        python,
        weights: weights_files(spec, warnings)?,
        inputs,
    })
}

/// Every remote weights file at its pinned revision, as its source lists it.
fn weights_files(spec: &Spec, warnings: &mut Vec<String>) -> Result<Vec<LockedWeightsFile>, ResolveError> {
    let mut files = Vec::new();
    for entry in &spec.weights {
        if matches!(entry.source, WeightsSource::Local { .. }) {
            continue;
        }
        let listing = SourceClient::for_entry(entry)
            .and_then(|client| client.list(entry))
            .map_err(|source| ResolveError::Weights { origin: entry.origin.clone(), source })?;
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
    let path = super::lock_path(spec);
    let existing = Lock::read(&path)?;
    let inputs: LockInputs = inputs_of(spec)?;
    match (existing, policy) {
        (Some(lock), _) if lock.is_current(&inputs) => Ok((lock, false)),
        (None, LockPolicy::Locked) => Err(ResolveError::Missing { path }),
        (Some(lock), LockPolicy::Locked) => {
            let mut wanted = lock.clone();
            wanted.inputs = inputs;
            Err(ResolveError::Stale { diff: super::diff(&lock.to_toml(), &wanted.to_toml()), path })
        }
        (existing, LockPolicy::Refresh) => {
            let fresh = resolve(spec, base, facts, cache_dir, warnings)?;
            // Configs without dependencies or remote weights have nothing to pin;
            // a lock is only written for them when one already exists.
            let worth_writing =
                fresh.python.is_some() || fresh.conda.is_some() || !fresh.weights.is_empty() || existing.is_some();
            if worth_writing {
                fresh.write(&path)?;
            }
            Ok((fresh, worth_writing))
        }
    }
}
