//! The build's own layers, as the ImagePlan lists them: a root filesystem,
//! the app files, and baked weights (local files read, remote ones streamed
//! from `streams`). Every layer goes through the layer cache, so an
//! unchanged input is neither read nor compressed again.

use super::stream::RemoteStreams;
use crate::image::cache::{CacheError, LayerCache};
use crate::image::entries::{self, EntryError, EntryKind, LayerEntry};
use crate::image::layer::{write_layer_streaming, LayerOptions, NoStreams, StreamSource, WrittenLayer};
use crate::layout::weights::WeightsContent;
use crate::layout::{AppFile, PlannedLayer, PlannedWeightsFile};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct BuiltLayer {
    pub layer: WrittenLayer,
    pub history: String,
    /// Short name for logs (`app files`, `weights sdxl-base`).
    pub what: String,
    pub files: usize,
    pub cached: bool,
    /// It came from the registry cache: neither fetched nor built here.
    pub from_registry_cache: bool,
    /// Image paths of what the layer holds that could be run (for the
    /// entrypoint check): see [`super::entrypoint::runnable_paths`].
    pub programs: Vec<String>,
    /// `(image path, bytes)` of its regular files, sorted (`build --json`
    /// prints them, so they can be checked against `plan`'s).
    pub paths: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerBuildError {
    #[error("cannot list the files of {what}")]
    Entries {
        what: String,
        #[source]
        source: EntryError,
    },
    #[error("cannot build the layer of {what}")]
    Cache {
        what: String,
        #[source]
        source: CacheError,
    },
    #[error("cannot read the weights directory {}", path.display())]
    Walk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Weights(crate::weights::WeightsError),
    #[error("cannot fetch weights")]
    Store(#[source] crate::weights::store::StoreError),
    #[error("cannot read {path} to compute its sha256")]
    Hash {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The app files under the image's workdir (symlinks kept as links).
pub fn app_files_layer(
    layer: &PlannedLayer,
    files: &[AppFile],
    workdir: &str,
    cache: &LayerCache,
) -> Result<BuiltLayer, LayerBuildError> {
    let what = layer.name.clone();
    let entries_error = |source| LayerBuildError::Entries { what: what.clone(), source };
    let regular: Vec<(PathBuf, String)> =
        files.iter().filter(|f| f.link.is_none()).map(|f| (f.source.clone(), f.image_path.clone())).collect();
    let mut all = entries::entries_from_files(&regular).map_err(entries_error)?;
    all.extend(files.iter().filter_map(|f| f.link.as_ref().map(|target| LayerEntry::symlink(&f.image_path, target))));
    if all.is_empty() {
        all.push(LayerEntry::dir(workdir.trim_matches('/'), entries::DEFAULT_DIR_MODE));
    }
    let all = entries::finish_entries(all).map_err(entries_error)?;
    let options = LayerOptions::from_env(layer.compression);
    build_cached_layer(cache, &all, &options, what, layer.history.clone(), files.len())
}

/// Layer entries for a root filesystem directory (e.g. made by debootstrap):
/// everything, except that `dev`, `proc` and `sys` stay empty (a container
/// runtime mounts its own; device nodes never belong in an image).
pub fn rootfs_entries(root: &Path) -> Result<Vec<LayerEntry>, EntryError> {
    let mut all = Vec::new();
    let read = std::fs::read_dir(root).map_err(|source| EntryError::Io { path: root.to_path_buf(), source })?;
    let mut children: Vec<PathBuf> = read.filter_map(Result::ok).map(|e| e.path()).collect();
    children.sort();
    for child in children {
        let name = child.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let meta =
            std::fs::symlink_metadata(&child).map_err(|source| EntryError::Io { path: child.clone(), source })?;
        if ["dev", "proc", "sys"].contains(&name.as_str()) {
            all.push(LayerEntry::dir(&name, entries::DEFAULT_DIR_MODE));
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&child).map_err(|source| EntryError::Io { path: child.clone(), source })?;
            all.push(LayerEntry::symlink(&name, &target.to_string_lossy()));
        } else if meta.is_dir() {
            all.extend(entries::entries_from_dir(&child, &name)?);
        } else {
            all.extend(entries::entries_from_files(&[(child.clone(), name)])?);
        }
    }
    entries::finish_entries(all)
}

/// A root filesystem directory as the image's first layer (`--base rootfs:DIR`).
pub fn rootfs_layer(layer: &PlannedLayer, root: &Path, cache: &LayerCache) -> Result<BuiltLayer, LayerBuildError> {
    let what = layer.name.clone();
    let all = rootfs_entries(root).map_err(|source| LayerBuildError::Entries { what: what.clone(), source })?;
    let files = all.iter().filter(|e| e.is_file()).count();
    let options = LayerOptions::from_env(layer.compression);
    build_cached_layer(cache, &all, &options, what, format!("{} ({files} files)", layer.history), files)
}

/// One planned weights layer: local files read, remote ones streamed from
/// `streams` (a cache hit reads nothing).
pub fn weights_layer(
    layer: &PlannedLayer,
    files: &[PlannedWeightsFile],
    cache: &LayerCache,
    streams: Option<&RemoteStreams>,
) -> Result<BuiltLayer, LayerBuildError> {
    let what = layer.name.clone();
    let entries_error = |source| LayerBuildError::Entries { what: what.clone(), source };
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for planned in files {
        match &planned.file.content {
            WeightsContent::Local(source) => local.push((source.clone(), planned.image_path.clone())),
            WeightsContent::Remote(file) => remote.push(RemoteStreams::entry(file, &planned.image_path)),
        }
    }
    let mut all = entries::entries_from_files(&local).map_err(entries_error)?;
    all.extend(remote);
    let all = entries::finish_entries(all).map_err(entries_error)?;
    let options = LayerOptions::from_env(layer.compression);
    let streams: &dyn StreamSource = match streams {
        Some(streams) => streams,
        None => &NoStreams,
    };
    build_streamed_layer(cache, &all, &options, what, layer.history.clone(), files.len(), streams)
}

/// One layer through the cache: a hit reads no input file.
pub fn build_cached_layer(
    cache: &LayerCache,
    entries: &[LayerEntry],
    options: &LayerOptions,
    what: String,
    history: String,
    files: usize,
) -> Result<BuiltLayer, LayerBuildError> {
    build_streamed_layer(cache, entries, options, what, history, files, &NoStreams)
}

/// [`build_cached_layer`] for entries whose bytes may come from `streams`.
pub fn build_streamed_layer(
    cache: &LayerCache,
    entries: &[LayerEntry],
    options: &LayerOptions,
    what: String,
    history: String,
    files: usize,
    streams: &dyn StreamSource,
) -> Result<BuiltLayer, LayerBuildError> {
    let cached = cache
        .get_or_build(entries, options, |store, entries, options| {
            write_layer_streaming(store, entries, options, streams)
        })
        .map_err(|source| LayerBuildError::Cache { what: what.clone(), source })?;
    let programs = super::entrypoint::runnable_paths(entries);
    let mut paths: Vec<(String, u64)> = entries
        .iter()
        .filter_map(|entry| match &entry.kind {
            EntryKind::File { size, .. } | EntryKind::Stream { size, .. } => Some((entry.path.clone(), *size)),
            _ => None,
        })
        .collect();
    paths.sort();
    Ok(BuiltLayer {
        layer: cached.layer,
        history,
        what,
        files,
        cached: cached.hit,
        from_registry_cache: false,
        programs,
        paths,
    })
}
