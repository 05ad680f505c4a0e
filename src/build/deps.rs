//! Dependency layers of the native build, from the lock: Python wheels
//! (fetched, verified, installed per distribution, large ones in a layer of
//! their own). Debian and conda packages join here as they are built.

use super::layers::{build_cached_layer, BuiltLayer, LayerBuildError};
use crate::deps::python::{self, PythonError};
use crate::image::cache::LayerCache;
use crate::image::layer::{Compression, LayerOptions};
use crate::lock::{LockedConda, LockedPython};
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
    Layer(#[from] LayerBuildError),
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

/// The Python layers for a locked set of wheels. Prints the install marker
/// Cerebrium's build log uses, so log scrapers written for it keep working.
pub fn python_layers(
    locked: &LockedPython,
    cache_dir: &Path,
    cache: &LayerCache,
) -> Result<Vec<BuiltLayer>, DepsError> {
    let installer = if locked.installer == "pip" { PythonInstaller::Pip } else { PythonInstaller::Uv };
    eprintln!("{}", if installer == PythonInstaller::Uv { "UV_PIP_INSTALL_STARTED" } else { "PIP_INSTALL_STARTED" });
    let mut wheels = locked.packages.clone();
    let files = python::fetch(&mut wheels, cache_dir)?;
    let staged = python::install(&wheels, &files, &locked.target, installer, cache_dir)?;
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
