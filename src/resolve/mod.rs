//! Resolve: the one step that touches the network. Every input of a Spec is
//! pinned against its base image and its sources (the base's digest and
//! facts, Python wheels through uv or pip, debs, conda packages, weights
//! listings at pinned revisions with their samples), into a [`Lock`] (kept
//! in `imgbake.lock`) and the in-memory [`Resolved`] the layout reads.
//! Whether an existing lock can be used as it is is decided here too.

pub mod base;
pub mod basefs;
pub mod hook;
pub mod weights;

use crate::deps::apt::{self, AptError};
use crate::deps::conda::{self, CondaError};
use crate::deps::python::{self, PythonError};
use crate::lock::{
    inputs_of, Lock, LockError, LockedApt, LockedBase, LockedConda, LockedPython, LockedWeightsFile, LOCK_VERSION,
};
use crate::spec::Spec;
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
    #[error("apt packages need a Debian or Ubuntu base, and the base image has no /etc/os-release{0}")]
    AptWithoutDistribution(String),
    #[error("{origin}: cannot list the weights files")]
    Weights {
        origin: String,
        #[source]
        source: WeightsError,
    },
    #[error("{} does not match the config (it was resolved from other inputs), and --locked forbids updating it:\n{}", path.display(), diff.trim_end())]
    Stale { path: std::path::PathBuf, diff: String },
    #[error("{} does not exist, and --locked needs it", path.display())]
    Missing { path: std::path::PathBuf },
    #[error(transparent)]
    Base(#[from] base::BaseError),
    #[error("cannot read the base image's files")]
    BaseFs(#[from] basefs::BaseFsError),
    #[error("cannot open the layer cache")]
    Cache(#[source] crate::image::cache::CacheError),
    #[error("cannot open the weights store")]
    Store(#[source] crate::weights::store::StoreError),
    #[error("{}", path.display())]
    Hook {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::plumbing::errors::Hint for ResolveError {
    fn hint(&self) -> Option<String> {
        match self {
            ResolveError::Lock(error) => error.hint(),
            ResolveError::AptWithoutDistribution(_) => {
                Some("use a Debian/Ubuntu base, or install them with a container builder (`imgbake dockerfile`)".into())
            }
            ResolveError::Stale { .. } => Some("run `imgbake lock` and commit the new lock".into()),
            ResolveError::Missing { .. } => Some("run `imgbake lock` and commit imgbake.lock".into()),
            _ => None,
        }
    }
}

/// `--base rootfs:DIR`: a root filesystem directory becomes the first layer.
pub const ROOTFS_PREFIX: &str = "rootfs:";

/// Everything a build reads besides the Spec, resolved once.
#[derive(Debug)]
pub struct Resolved {
    /// The base as given (`--base` or the config's).
    pub base_text: String,
    pub base: ResolvedBase,
    pub facts: BaseFacts,
    /// `--base rootfs:DIR`.
    pub rootfs: Option<std::path::PathBuf>,
    pub lock: Lock,
    /// `imgbake.lock` was (re)written while resolving.
    pub lock_written: bool,
    /// Every remote weights source, listed once.
    pub sources: Vec<weights::ResolvedSource>,
    /// The prefetch hook binary volume-mode images carry.
    pub hook: std::path::PathBuf,
    pub cache_dir: std::path::PathBuf,
    pub warnings: Vec<String>,
}

/// How a build resolves.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// Use this base instead of the config's (`scratch`, `oci:DIR[:TAG]`, `rootfs:DIR` or a reference).
    pub base_override: Option<String>,
    /// Layer cache directory (default `$XDG_CACHE_HOME/imgbake`).
    pub cache_dir: Option<std::path::PathBuf>,
    pub registry: crate::registry::RegistryClientOptions,
    pub lock_policy: LockPolicy,
}

/// Resolves what `build` needs: the base (pulled into the cache, pinned to
/// a current lock's digest), its facts, the lock (the current one, else a
/// fresh one, written; `--locked` refuses a stale one) and every remote
/// weights source, each listed exactly once.
pub fn for_build(spec: &Spec, options: &ResolveOptions) -> Result<Resolved, ResolveError> {
    // `--locked` with a missing or stale lock fails before anything is fetched.
    lock_for_context(spec, options.lock_policy)?;
    let cache_dir = match &options.cache_dir {
        Some(dir) => dir.clone(),
        None => crate::image::cache::LayerCache::default_dir().map_err(ResolveError::Cache)?,
    };
    let cache = crate::image::cache::LayerCache::open(&cache_dir).map_err(ResolveError::Cache)?;
    let base_text = options.base_override.clone().unwrap_or_else(|| spec.base.image.clone());
    let rootfs = base_text.strip_prefix(ROOTFS_PREFIX).map(std::path::PathBuf::from);
    // A current lock pins a registry base to the digest it was resolved with.
    let pinned_base = match &options.base_override {
        Some(_) => None,
        None => current_lock(spec).and_then(|lock| lock.base.pinned),
    };
    let base_ref = match (&rootfs, &pinned_base) {
        (Some(_), _) => "scratch",
        (None, Some(pinned)) => pinned.as_str(),
        (None, None) => base_text.as_str(),
    };
    let base = base::resolve(base_ref, &cache, &options.registry)?;
    let facts = match &rootfs {
        Some(root) => basefs::facts_of_rootfs(root)?,
        None => basefs::facts_of_base(&base, &cache_dir)?,
    };
    let mut warnings = Vec::new();
    let store = crate::weights::store::WeightsStore::open(&cache_dir).map_err(ResolveError::Store)?;
    let (lock, lock_written, sources) =
        lock_for_build(spec, &base, &facts, &cache_dir, options.lock_policy, &mut warnings)?;
    let sources = match sources {
        Some(sources) => sources,
        None => weights::resolve_sources(spec, Some(&lock), true, Some(&store), &mut warnings)?,
    };
    let hook = hook::hook_binary().map_err(|(path, source)| ResolveError::Hook { path, source })?;
    Ok(Resolved { base_text, base, facts, rootfs, lock, lock_written, sources, hook, cache_dir, warnings })
}

/// The lock a generated context reads: the current one, if any (without
/// one the Dockerfile installs the requirements as written); under
/// `--locked`, it must exist and be current, as for the native build.
pub fn lock_for_context(spec: &Spec, policy: LockPolicy) -> Result<Option<Lock>, ResolveError> {
    let path = crate::lock::lock_path(spec);
    let existing = Lock::read(&path)?;
    let inputs = inputs_of(spec)?;
    match (existing, policy) {
        (Some(lock), _) if lock.is_current(&inputs) => Ok(Some(lock)),
        (None, LockPolicy::Locked) => Err(ResolveError::Missing { path }),
        (Some(lock), LockPolicy::Locked) => {
            let mut wanted = lock.clone();
            wanted.inputs = inputs;
            Err(ResolveError::Stale { diff: crate::lock::diff(&lock.to_toml(), &wanted.to_toml()), path })
        }
        (_, LockPolicy::Refresh) => Ok(None),
    }
}

/// The lock beside the config when it answers the Spec's current inputs.
pub fn current_lock(spec: &Spec) -> Option<Lock> {
    let lock = Lock::read(&crate::lock::lock_path(spec)).ok()??;
    let inputs = inputs_of(spec).ok()?;
    lock.is_current(&inputs).then_some(lock)
}

/// Resolves a fresh lock for `spec` on `base`, and the weights sources it
/// listed on the way.
pub fn resolve(
    spec: &Spec,
    base: &ResolvedBase,
    facts: &BaseFacts,
    cache_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<(Lock, Vec<weights::ResolvedSource>), ResolveError> {
    let inputs = inputs_of(spec)?;
    let python = if python::has_python_deps(spec) {
        let target = python::target_for(spec, facts.python.as_ref(), facts.glibc, warnings);
        let mut packages = python::resolve(spec, &target, cache_dir)?;
        let context = python::FetchContext::new(spec, &target);
        python::fill_sizes(&mut packages, &context)?;
        python::wheel_size::fill_installed_sizes(&mut packages, &context.credentials, cache_dir);
        let installer = inputs.installer.clone();
        let stdlib = facts.stdlib.as_ref().map(locked_stdlib);
        Some(LockedPython { installer, target, stdlib, packages })
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
    // A file listed without a sha256 keeps the one the existing lock records
    // for it (same path, size and etag), else the one computed when its
    // bytes last passed through imgbake on this machine.
    let existing = Lock::read(&crate::lock::lock_path(spec)).ok().flatten();
    let store = crate::weights::store::WeightsStore::open(cache_dir).ok();
    let sources = weights::resolve_sources(spec, existing.as_ref(), false, store.as_ref(), warnings)?;
    let weights = locked_files(&sources);
    // An artifact's digest stays true while its source's locked files do.
    let files_of = |locked: &[crate::lock::LockedWeightsFile], source: &str| -> Vec<crate::lock::LockedWeightsFile> {
        locked.iter().filter(|f| f.source == source).cloned().collect()
    };
    let artifacts = existing
        .as_ref()
        .map(|old| {
            old.artifacts
                .iter()
                .filter(|a| files_of(&old.weights, &a.source) == files_of(&weights, &a.source))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let lock = Lock {
        version: LOCK_VERSION,
        apt,
        conda,
        base: LockedBase { image: spec.base.image.clone(), pinned: base.pinned.clone() },
        python,
        weights,
        artifacts,
        inputs,
    };
    Ok((lock, sources))
}

/// The base's standard library as the lock records it.
pub fn locked_stdlib(found: &basefs::StdlibFacts) -> crate::lock::LockedStdlib {
    crate::lock::LockedStdlib {
        dir: found.dir.clone(),
        modules: found.modules,
        compiled: found.compiled,
        uncompiled_bytes: found.uncompiled_bytes,
    }
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
fn locked_files(sources: &[weights::ResolvedSource]) -> Vec<LockedWeightsFile> {
    sources
        .iter()
        .flat_map(|source| {
            source.listing.files.iter().map(|file| LockedWeightsFile {
                source: source.entry.uri.clone(),
                revision: source.listing.revision.clone(),
                path: file.path.clone(),
                size: file.size,
                sha256: file.sha256.as_ref().map(|d| d.hex().to_string()),
                etag: file.etag.clone(),
                sample: source.file_ratios.get(&file.path).map(|ratio| (ratio * 1e4).round() / 1e4),
            })
        })
        .collect()
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

/// The weights sources a fresh lock listed (`None`: the lock was current).
type ListedSources = Option<Vec<weights::ResolvedSource>>;

/// The lock a build uses: the existing one when it answers the Spec's inputs,
/// else a fresh one (written beside the config), or an error under `--locked`.
/// Returns the lock, whether it was written, and the sources listed for it.
pub fn lock_for_build(
    spec: &Spec,
    base: &ResolvedBase,
    facts: &BaseFacts,
    cache_dir: &Path,
    policy: LockPolicy,
    warnings: &mut Vec<String>,
) -> Result<(Lock, bool, ListedSources), ResolveError> {
    if let Some(lock) = lock_for_context(spec, policy)? {
        return Ok((lock, false, None));
    }
    let path = crate::lock::lock_path(spec);
    let existing = Lock::read(&path)?;
    let (fresh, sources) = resolve(spec, base, facts, cache_dir, warnings)?;
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
    Ok((fresh, worth_writing, Some(sources)))
}
