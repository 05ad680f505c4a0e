//! Dependency layers of the native build, from the lock: Python wheels
//! (fetched, verified, installed per distribution, large ones in a layer of
//! their own). Debian and conda packages join here as they are built.

use super::layers::{build_cached_layer, BuiltLayer, LayerBuildError};
use crate::deps::python::{self, PythonError};
use crate::image::cache::LayerCache;
use crate::image::layer::{Compression, LayerOptions};
use crate::lock::{LockedApt, LockedConda, LockedPython};
use crate::spec::PythonInstaller;
use std::path::Path;

/// gzip level for dependency layers: they compress well (2-3× for wheels).
const GZIP_LEVEL: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error(transparent)]
    Conda(#[from] crate::deps::conda::CondaError),
    #[error(transparent)]
    Apt(#[from] crate::deps::apt::AptError),
    #[error(transparent)]
    Base(#[from] crate::resolve::ResolveError),
    #[error("cannot cache the apt layer's file list at {}", path.display())]
    AptCache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layer(#[from] LayerBuildError),
}

/// One layer with the locked Debian packages unpacked on top of the base
/// (files, dpkg status and info records). The unpacked tree is cached by
/// the packages and the base's dpkg status, so a rebuild reads nothing.
pub fn apt_layer(
    locked: &LockedApt,
    facts: &crate::resolve::basefs::BaseFacts,
    cache_dir: &Path,
    cache: &LayerCache,
    warnings: &mut Vec<String>,
) -> Result<BuiltLayer, DepsError> {
    use sha2::Digest as _;
    let base = crate::resolve::base_system(facts)?;
    let key = {
        let text =
            serde_json::to_string(&(&locked.packages, &base.dpkg_status, &base.symlinked_dirs)).unwrap_or_default();
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
    let options = LayerOptions::from_env(Compression::Gzip { level: GZIP_LEVEL });
    let files = entries.iter().filter(|e| e.is_file()).count();
    let what = format!("apt packages ({})", locked.packages.len());
    let names: Vec<&str> = locked.packages.iter().map(|p| p.name.as_str()).collect();
    let history = format!("imgbake: apt {}", names.join(" "));
    Ok(build_cached_layer(cache, &entries, &options, what, history, files)?)
}

/// One layer with the conda environment at its prefix (`/opt/conda`).
pub fn conda_layer(locked: &LockedConda, cache_dir: &Path, cache: &LayerCache) -> Result<BuiltLayer, DepsError> {
    let entries = crate::deps::conda::install(&locked.packages, &locked.target, cache_dir)?;
    let options = LayerOptions::from_env(Compression::Gzip { level: GZIP_LEVEL });
    let files = entries.iter().filter(|e| e.is_file()).count();
    let what = format!("conda packages ({})", locked.packages.len());
    let history = format!("imgbake: {} conda packages into {}", locked.packages.len(), locked.target.prefix);
    Ok(build_cached_layer(cache, &entries, &options, what, history, files)?)
}

/// The Python layers for a locked set of wheels, with `.pyc` files unless the
/// config turns them off (or no interpreter of the image's version is here
/// to compile them: one warning, and the build goes on without). Prints the
/// install marker Cerebrium's build log uses, so log scrapers written for it
/// keep working.
pub fn python_layers(
    spec: &crate::spec::Spec,
    locked: &LockedPython,
    cache_dir: &Path,
    cache: &LayerCache,
    warnings: &mut Vec<String>,
) -> Result<Vec<BuiltLayer>, DepsError> {
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
    let mut wheels = locked.packages.clone();
    let files = python::fetch(&mut wheels, cache_dir, &context, warnings)?;
    let compiler = if spec.python.bytecode {
        let found = python::bytecode::find_compiler(&locked.target.python_version);
        if found.is_none() {
            warnings.push(python::bytecode::missing_warning(&locked.target.python_version));
        }
        found
    } else {
        None
    };
    let staged = python::install(&wheels, &files, &locked.target, installer, compiler.as_ref(), cache_dir)?;
    let options = LayerOptions::from_env(Compression::Gzip { level: GZIP_LEVEL });
    let mut built = Vec::new();
    for group in python::group_for_layers(&staged) {
        let entries = python::layer_entries(&group, &locked.target)?;
        let names: Vec<String> = group.iter().map(|d| format!("{}=={}", d.name, d.version)).collect();
        let (what, history) = if group.len() == 1 {
            (format!("python {}", names[0]), format!("imgbake: python package {}", names[0]))
        } else {
            (
                format!("python packages ({})", group.len()),
                format!("imgbake: {} python packages into {}", group.len(), locked.target.site_packages),
            )
        };
        let files = entries.iter().filter(|e| e.is_file()).count();
        built.push(build_cached_layer(cache, &entries, &options, what, history, files)?);
    }
    Ok(built)
}
