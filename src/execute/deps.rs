//! Dependency layers of the native build, from the lock, as the ImagePlan
//! groups them: Debian packages unpacked on the base, Python wheels
//! (fetched, verified, installed per distribution, bytecode compiled, on a
//! thread of their own while the layers of those already installed are
//! written: [`PythonStaging`]), the conda environment.

use super::layers::{build_cached_layer, BuiltLayer, LayerBuildError};
use crate::deps::python::{self, PythonError};
use crate::image::cache::LayerCache;
use crate::image::entries::{EntryKind, LayerEntry};
use crate::image::layer::LayerOptions;
use crate::layout::{split_distribution, Part, PlannedLayer};
use crate::lock::{LockedApt, LockedConda, LockedPython};
use crate::spec::PythonInstaller;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::mpsc;
use std::thread::{Scope, ScopedJoinHandle};

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error(transparent)]
    Conda(#[from] crate::deps::conda::CondaError),
    #[error(transparent)]
    Apt(#[from] crate::deps::apt::AptError),
    #[error(transparent)]
    Base(#[from] Box<crate::resolve::ResolveError>),
    #[error("cannot cache the apt layer's file list at {}", path.display())]
    AptCache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layer(#[from] LayerBuildError),
    #[error("the Python package `{0}` of a planned layer was not installed (the lock and the plan disagree)")]
    NotStaged(String),
}

/// One layer with the locked Debian packages unpacked on top of the base
/// (files, dpkg status and info records). The unpacked tree is cached by
/// the packages and the base's dpkg status, so a rebuild reads nothing.
pub fn apt_layer(
    layer: &PlannedLayer,
    locked: &LockedApt,
    facts: &crate::resolve::basefs::BaseFacts,
    cache_dir: &Path,
    cache: &LayerCache,
    warnings: &mut Vec<String>,
) -> Result<BuiltLayer, DepsError> {
    use sha2::Digest as _;
    let base = crate::resolve::base_system(facts).map_err(Box::new)?;
    let key = {
        let text = serde_json::to_string(&(&locked.packages, base_state(&base))).unwrap_or_default();
        hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16])
    };
    let root = cache_dir.join("apt-staging");
    let staging = root.join(&key);
    let record = root.join(format!("{key}.json"));
    let cached: Option<(Vec<crate::image::entries::LayerEntry>, Vec<String>)> =
        std::fs::read(&record).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let (entries, apt_warnings) = match cached.filter(|_| staging.is_dir()) {
        Some(found) => found,
        None => {
            let files = crate::deps::apt::fetch(&locked.packages, cache_dir)?;
            let _ = std::fs::remove_dir_all(&staging);
            let made = crate::deps::apt::install_tree(&base, &locked.packages, &files, &staging)?;
            let bytes = serde_json::to_vec(&made).expect("entries serialize");
            crate::plumbing::fs::write_atomic(&record, &bytes)
                .map_err(|source| DepsError::AptCache { path: record.clone(), source })?;
            made
        }
    };
    warnings.extend(apt_warnings);
    let options = LayerOptions::from_env(layer.compression);
    let files = entries.iter().filter(|e| e.is_file()).count();
    Ok(build_cached_layer(cache, &entries, &options, layer.name.clone(), layer.history.clone(), files)?)
}

/// What of the base the apt layer is unpacked against (its dpkg status and
/// the directories it links, e.g. `/bin` → `/usr/bin`).
fn base_state(base: &crate::deps::apt::BaseSystem) -> impl serde::Serialize + '_ {
    (&base.dpkg_status, &base.symlinked_dirs)
}

/// [`base_state`] of the resolved base as text, for the layer key.
pub fn apt_base_text(facts: &crate::resolve::basefs::BaseFacts) -> Result<String, crate::resolve::ResolveError> {
    let base = crate::resolve::base_system(facts)?;
    let text = serde_json::to_string(&base_state(&base)).unwrap_or_default();
    Ok(text)
}

/// One layer with the conda environment at its prefix (`/opt/conda`).
pub fn conda_layer(
    layer: &PlannedLayer,
    locked: &LockedConda,
    cache_dir: &Path,
    cache: &LayerCache,
) -> Result<BuiltLayer, DepsError> {
    let entries = crate::deps::conda::install(&locked.packages, &locked.target, cache_dir)?;
    let options = LayerOptions::from_env(layer.compression);
    let files = entries.iter().filter(|e| e.is_file()).count();
    Ok(build_cached_layer(cache, &entries, &options, layer.name.clone(), layer.history.clone(), files)?)
}

/// Every locked wheel fetched, verified and installed into its staging
/// tree (each handed to `on_staged` as soon as it is), with `.pyc` files when there is a `compiler` (the build's,
/// `base_python::build_compiler`: none when the config turns bytecode off or
/// no interpreter of the image's version is here). Prints the install marker Cerebrium's
/// build log uses, so log scrapers written for it keep working.
pub fn stage_python(
    spec: &crate::spec::Spec,
    locked: &LockedPython,
    cache_dir: &Path,
    compiler: Option<&python::bytecode::Compiler>,
    timeline: &crate::plumbing::timeline::Timeline,
    on_staged: &(dyn Fn(&python::StagedDistribution) -> bool + Sync),
    warnings: &mut Vec<String>,
) -> Result<(), DepsError> {
    let installer = if locked.installer == "pip" { PythonInstaller::Pip } else { PythonInstaller::Uv };
    eprintln!("{}", if installer == PythonInstaller::Uv { "UV_PIP_INSTALL_STARTED" } else { "PIP_INSTALL_STARTED" });
    let context = python::FetchContext { installer, ..python::FetchContext::new(spec, &locked.target) };
    for wheel in &locked.packages {
        let Some(source) = &wheel.built_from else { continue };
        if let Some(now) = python::source_build::moved_revision(source, &context.credentials) {
            warnings.push(format!(
                "{}: `{}` of {} now points at {now}; the image is built from {} as imgbake.lock pins it (run `imgbake lock` to move)",
                wheel.name,
                source.requested_revision.as_deref().unwrap_or_default(),
                source.url,
                source.commit.as_deref().unwrap_or_default()
            ));
        }
    }
    timeline.time("fetch and install wheels", || {
        python::fetch_and_install(&locked.packages, cache_dir, &context, &locked.target, compiler, on_staged, warnings)
    })?;
    Ok(())
}

/// The lock's wheels being fetched and installed on a thread of their own
/// ([`stage_python`]) while the build writes (and uploads) the layers of
/// the distributions already installed: torch's layers are compressed while
/// the nvidia-* wheels still unpack.
pub struct PythonStaging<'scope> {
    receiver: Option<mpsc::Receiver<python::StagedDistribution>>,
    staged: Vec<python::StagedDistribution>,
    worker: Option<ScopedJoinHandle<'scope, Result<Vec<String>, DepsError>>>,
}

impl<'scope> PythonStaging<'scope> {
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        spec: &'env crate::spec::Spec,
        locked: &'env LockedPython,
        cache_dir: &'env Path,
        compiler: Option<&'env python::bytecode::Compiler>,
        timeline: &'env crate::plumbing::timeline::Timeline,
    ) -> PythonStaging<'scope> {
        let (sender, receiver) = mpsc::channel();
        let worker = scope.spawn(move || {
            let mut warnings = Vec::new();
            // A closed channel means the build stopped: so does the staging.
            let on_staged = |staged: &python::StagedDistribution| sender.send(staged.clone()).is_ok();
            stage_python(spec, locked, cache_dir, compiler, timeline, &on_staged, &mut warnings)?;
            Ok(warnings)
        });
        PythonStaging { receiver: Some(receiver), staged: Vec::new(), worker: Some(worker) }
    }

    /// Every staged distribution so far, once all of `packages` are.
    pub fn wait_for(&mut self, packages: &[String]) -> Result<&[python::StagedDistribution], DepsError> {
        while !packages.iter().all(|name| self.staged.iter().any(|d| &d.name == name)) {
            match self.receiver.as_ref().map(|r| r.recv()) {
                Some(Ok(staged)) => self.staged.push(staged),
                // The staging ended: its error, or a package it never staged.
                _ => {
                    self.finish()?;
                    let missing = packages.iter().find(|name| !self.staged.iter().any(|d| &d.name == *name));
                    return Err(DepsError::NotStaged(missing.cloned().unwrap_or_default()));
                }
            }
        }
        Ok(&self.staged)
    }

    /// Waits for the staging to end; its warnings.
    pub fn finish(&mut self) -> Result<Vec<String>, DepsError> {
        self.receiver.take();
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(result)) => result,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Ok(Vec::new()),
        }
    }
}

/// One planned Python layer: the staged distributions of `packages`, or
/// `part` of the one distribution.
pub fn python_layer(
    layer: &PlannedLayer,
    packages: &[String],
    part: Option<Part>,
    staged: &[python::StagedDistribution],
    locked: &LockedPython,
    cache: &LayerCache,
) -> Result<BuiltLayer, DepsError> {
    let group: Vec<&python::StagedDistribution> = staged.iter().filter(|d| packages.contains(&d.name)).collect();
    let mut entries = python::layer_entries(&group, &locked.target)?;
    if let Some(part) = part {
        entries = entries_of_part(entries, part);
    }
    let options = LayerOptions::from_env(layer.compression);
    let files = entries.iter().filter(|e| e.is_file()).count();
    Ok(build_cached_layer(cache, &entries, &options, layer.name.clone(), layer.history.clone(), files)?)
}

/// The entries of `part` of one distribution's layer entries: its share of
/// the files, links and hard links ([`split_distribution`], by bytes; a hard
/// link goes with its target, which must be in the same layer), and the
/// directories above them with their own modes. Directories holding no file
/// at all go to the first part.
fn entries_of_part(entries: Vec<LayerEntry>, part: Part) -> Vec<LayerEntry> {
    let leaves: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].kind != EntryKind::Dir).collect();
    let by_path: HashMap<&str, usize> =
        leaves.iter().enumerate().map(|(n, &i)| (entries[i].path.as_str(), n)).collect();
    // A hard link weighs nothing and follows its target.
    let sizes: Vec<u64> = leaves
        .iter()
        .map(|&i| match &entries[i].kind {
            EntryKind::File { size, .. } | EntryKind::Stream { size, .. } => *size,
            _ => 0,
        })
        .collect();
    let mut part_of = split_distribution(&sizes, part.of);
    for (n, &i) in leaves.iter().enumerate() {
        if let EntryKind::Hardlink { target } = &entries[i].kind {
            if let Some(&t) = by_path.get(target.as_str()) {
                part_of[n] = part_of[t];
            }
        }
    }
    let mut keep: BTreeSet<String> = BTreeSet::new();
    let mut under_a_leaf: BTreeSet<String> = BTreeSet::new();
    for (n, &i) in leaves.iter().enumerate() {
        let path = &entries[i].path;
        let parents = path.match_indices('/').map(|(at, _)| path[..at].to_string());
        if part_of[n] == part.index {
            keep.insert(path.clone());
            keep.extend(parents);
        } else {
            under_a_leaf.extend(parents);
        }
    }
    entries
        .into_iter()
        .filter(|e| {
            keep.contains(&e.path) || (part.index == 0 && e.kind == EntryKind::Dir && !under_a_leaf.contains(&e.path))
        })
        .collect()
}
