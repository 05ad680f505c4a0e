//! The build's own layers: the app files, and baked weights from local
//! directories. Every layer goes through the layer cache, so an unchanged
//! input is neither read nor compressed again.

use super::stream::RemoteStreams;
use crate::image::appfiles::{self, AppFilesError};
use crate::image::cache::{CacheError, LayerCache};
use crate::image::entries::{self, EntryError, LayerEntry};
use crate::image::layer::{write_layer_streaming, Compression, LayerOptions, NoStreams, StreamSource, WrittenLayer};
use crate::spec::{self, Spec, WeightsEntry, WeightsSource};
use crate::weights::filter::PathFilter;
use std::io::Read;
use std::path::{Path, PathBuf};

/// gzip level for app and text-like layers: fixed so digests never drift.
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;
/// Compressed/original size above which `auto` stores a layer uncompressed:
/// saving under 10% is not worth the CPU at pull and unpack time.
const INCOMPRESSIBLE_RATIO: f64 = 0.90;
/// How much of a weights source is sampled to decide `auto` compression.
const SAMPLE_BYTES: u64 = 8 << 20;
/// The same for a remote source, fetched as ranges before the stream:
/// enough to tell bf16 from text, small next to the weights.
const REMOTE_SAMPLE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct BuiltLayer {
    pub layer: WrittenLayer,
    pub history: String,
    /// Short name for logs (`app files`, `weights sdxl-base`).
    pub what: String,
    pub files: usize,
    pub cached: bool,
    /// Image paths of what the layer holds that could be run (for the
    /// entrypoint check): see [`super::entrypoint::runnable_paths`].
    pub programs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerBuildError {
    #[error("cannot select the app files")]
    AppFiles(#[source] AppFilesError),
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
    #[error("{origin}: {message}")]
    Pattern { origin: String, message: String },
    #[error("{origin}: no file of {source_path} matches allow_patterns {allow:?} / ignore_patterns {ignore:?}; the image would ship without these weights")]
    EmptyWeights { origin: String, source_path: String, allow: Vec<String>, ignore: Vec<String> },
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
    #[error("{origin}: `{}` is a symlink that leaves the weights directory", path.display())]
    EscapingSymlink { origin: String, path: PathBuf },
}

fn compression_for(setting: spec::Compression, sample: impl FnOnce() -> f64) -> Compression {
    match setting {
        spec::Compression::None => Compression::None,
        spec::Compression::Gzip => Compression::Gzip { level: GZIP_LEVEL },
        spec::Compression::Zstd => Compression::Zstd { level: ZSTD_LEVEL },
        spec::Compression::Auto => {
            if sample() > INCOMPRESSIBLE_RATIO {
                Compression::None
            } else {
                Compression::Gzip { level: GZIP_LEVEL }
            }
        }
    }
}

/// The app files (include/exclude of the config) under the image's workdir.
pub fn app_files_layer(
    spec: &Spec,
    cache: &LayerCache,
    warnings: &mut Vec<String>,
) -> Result<BuiltLayer, LayerBuildError> {
    let root = &spec.app.root;
    let config_file = spec.source.path.file_name().map(PathBuf::from).into_iter().collect::<Vec<_>>();
    let selection = appfiles::select_app_files(root, &spec.app.include, &spec.app.exclude, &config_file)
        .map_err(LayerBuildError::AppFiles)?;
    warnings.extend(selection.warnings.iter().map(|w| w.to_string()));
    let prefix = spec.app.workdir.trim_matches('/');
    let mut files = Vec::new();
    let mut links = Vec::new();
    for relative in &selection.files {
        let source = root.join(relative);
        let image_path = format!("{prefix}/{}", relative.to_string_lossy());
        match std::fs::read_link(&source) {
            Ok(target) => links.push(LayerEntry::symlink(&image_path, &target.to_string_lossy())),
            Err(_) => files.push((source, image_path)),
        }
    }
    let what = "app files".to_string();
    let mut all = entries::entries_from_files(&files)
        .map_err(|source| LayerBuildError::Entries { what: what.clone(), source })?;
    all.extend(links);
    if all.is_empty() {
        all.push(LayerEntry::dir(prefix, entries::DEFAULT_DIR_MODE));
    }
    let all = entries::finish_entries(all).map_err(|source| LayerBuildError::Entries { what: what.clone(), source })?;
    let options = LayerOptions::from_env(compression_for(spec.compression, || 0.0));
    let count = selection.files.len();
    build_cached_layer(cache, &all, &options, what, format!("imgbake: app files ({count} files) at /{prefix}"), count)
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
pub fn rootfs_layer(root: &Path, cache: &LayerCache) -> Result<BuiltLayer, LayerBuildError> {
    let what = "base root filesystem".to_string();
    let all = rootfs_entries(root).map_err(|source| LayerBuildError::Entries { what: what.clone(), source })?;
    let files = all.iter().filter(|e| e.is_file()).count();
    let options = LayerOptions::from_env(Compression::Gzip { level: GZIP_LEVEL });
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    build_cached_layer(
        cache,
        &all,
        &options,
        what,
        format!("imgbake: base root filesystem {name} ({files} files)"),
        files,
    )
}

/// A weights file ready to bake: where its bytes come from, and its path
/// below the entry's mount.
#[derive(Debug, Clone)]
pub struct WeightsFile {
    pub content: WeightsContent,
    pub relative: String,
    pub size: u64,
}

/// Where a baked weights file's bytes come from.
#[derive(Debug, Clone)]
pub enum WeightsContent {
    /// A file on the build machine (a local weights directory).
    Local(PathBuf),
    /// A remote file, streamed into the layer (see [`super::stream`]).
    Remote(crate::weights::RemoteFile),
}

/// Most layers one weights source is split into (the split size doubles
/// until it fits), so that an image stays far below the ~125-layer limit of
/// overlay-based runtimes.
pub const MAX_LAYERS_PER_SOURCE: u64 = 24;

/// Groups files into layers of about `split_size` (doubled while that makes
/// more than [`MAX_LAYERS_PER_SOURCE`] layers): each file of that size
/// or more alone, the smaller ones packed in path order into layers of at
/// most that size, which come first. Layers of similar size are what lets a
/// runtime pull them in parallel (containerd: 3 at a time, one connection
/// each); docs/benchmarks.md ("Split size") measures the default.
pub fn split_into_layers(files: Vec<WeightsFile>, split_size: u64) -> Vec<Vec<WeightsFile>> {
    let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
    let total: u64 = sizes.iter().sum();
    let mut split_size = split_size.max(1);
    let mut plan = pack_by_size(&sizes, split_size);
    while plan.len() as u64 > MAX_LAYERS_PER_SOURCE && split_size < total {
        split_size = split_size.saturating_mul(2);
        plan = pack_by_size(&sizes, split_size);
    }
    let mut files: Vec<Option<WeightsFile>> = files.into_iter().map(Some).collect();
    plan.into_iter().map(|group| group.into_iter().filter_map(|i| files[i].take()).collect()).collect()
}

/// Indices of `sizes` grouped as [`split_into_layers`] describes.
fn pack_by_size(sizes: &[u64], split_size: u64) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut filled = 0u64;
    for (index, size) in sizes.iter().enumerate().filter(|(_, size)| **size < split_size) {
        match groups.last_mut() {
            Some(group) if filled + size <= split_size => {
                filled += size;
                group.push(index);
            }
            _ => {
                filled = *size;
                groups.push(vec![index]);
            }
        }
    }
    groups.extend(sizes.iter().enumerate().filter(|(_, size)| **size >= split_size).map(|(index, _)| vec![index]));
    groups
}

/// A local weights directory baked at the entry's path.
pub fn local_weights_layers(
    entry: &WeightsEntry,
    spec: &Spec,
    cache: &LayerCache,
    warnings: &mut Vec<String>,
) -> Result<Vec<BuiltLayer>, LayerBuildError> {
    let WeightsSource::Local { path: root } = &entry.source else { return Ok(Vec::new()) };
    if entry.mode == spec::WeightsMode::Auto {
        warnings.push(format!(
            "{}: mode auto bakes a local directory (the volume hook fetches remote sources only, so a volume is not an option)",
            entry.origin
        ));
    }
    let files = select_weight_files(entry, root)?
        .into_iter()
        .map(|relative| {
            let source = root.join(&relative);
            let size = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0);
            WeightsFile {
                content: WeightsContent::Local(source),
                relative: relative.to_string_lossy().into_owned(),
                size,
            }
        })
        .collect();
    weights_layers(entry, spec, files, cache, None)
}

/// Bakes `files` at the entry's path, in as many layers as [`split_into_layers`]
/// makes with the Spec's `weights_split_size`. Remote files are streamed
/// from `streams` (a cache hit reads nothing).
pub fn weights_layers(
    entry: &WeightsEntry,
    spec: &Spec,
    files: Vec<WeightsFile>,
    cache: &LayerCache,
    streams: Option<&RemoteStreams>,
) -> Result<Vec<BuiltLayer>, LayerBuildError> {
    let image_root = entry.path.trim_start_matches('/');
    let groups = split_into_layers(files, spec.weights_split_size);
    let parts = groups.len();
    let mut built = Vec::with_capacity(parts);
    for (index, group) in groups.into_iter().enumerate() {
        let what = if parts == 1 {
            format!("weights {}", entry.mount)
        } else {
            format!("weights {} {}/{parts}", entry.mount, index + 1)
        };
        let entries_error = |source| LayerBuildError::Entries { what: what.clone(), source };
        let mut local = Vec::new();
        let mut remote = Vec::new();
        for file in &group {
            let image_path = format!("{image_root}/{}", file.relative);
            match &file.content {
                WeightsContent::Local(source) => local.push((source.clone(), image_path)),
                WeightsContent::Remote(remote_file) => remote.push((remote_file, image_path)),
            }
        }
        let mut all = entries::entries_from_files(&local).map_err(entries_error)?;
        all.extend(remote.iter().map(|(file, image_path)| RemoteStreams::entry(file, image_path)));
        let all = entries::finish_entries(all).map_err(entries_error)?;
        let sample = || match streams {
            Some(streams) if !remote.is_empty() => {
                streams.sampled_ratio(&remote.iter().map(|(f, _)| *f).collect::<Vec<_>>(), REMOTE_SAMPLE_BYTES)
            }
            _ => sampled_ratio(&local.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>()),
        };
        let options = LayerOptions::from_env(compression_for(spec.compression, sample));
        let names = if group.len() == 1 { group[0].relative.clone() } else { format!("{} files", group.len()) };
        let history = format!("imgbake: weights {} ({names}) at {}", entry.uri, entry.path);
        let streams: &dyn StreamSource = match streams {
            Some(streams) => streams,
            None => &NoStreams,
        };
        built.push(build_streamed_layer(cache, &all, &options, what, history, group.len(), streams)?);
    }
    Ok(built)
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
    Ok(BuiltLayer { layer: cached.layer, history, what, files, cached: cached.hit, programs })
}

/// Files of a local source (relative paths, sorted), filtered by the entry's patterns.
fn select_weight_files(entry: &WeightsEntry, root: &Path) -> Result<Vec<PathBuf>, LayerBuildError> {
    let filter = PathFilter::new(&entry.allow_patterns, &entry.ignore_patterns)
        .map_err(|message| LayerBuildError::Pattern { origin: entry.origin.clone(), message })?;
    let canonical_root =
        root.canonicalize().map_err(|source| LayerBuildError::Walk { path: root.to_path_buf(), source })?;
    let mut files = Vec::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name() {
        let item = item.map_err(|e| LayerBuildError::Walk {
            path: e.path().unwrap_or(root).to_path_buf(),
            source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed")),
        })?;
        let file_type = item.file_type();
        if file_type.is_dir() {
            continue;
        }
        if file_type.is_symlink() {
            let target = item.path().canonicalize().ok();
            if !target.as_ref().is_some_and(|t| t.starts_with(&canonical_root) && t.is_file()) {
                return Err(LayerBuildError::EscapingSymlink {
                    origin: entry.origin.clone(),
                    path: item.path().to_path_buf(),
                });
            }
        } else if !file_type.is_file() {
            continue;
        }
        let relative = item.path().strip_prefix(root).unwrap_or(item.path()).to_path_buf();
        let text = relative.to_string_lossy();
        if !filter.matches(&text) {
            continue;
        }
        files.push(relative);
    }
    if files.is_empty() {
        return Err(LayerBuildError::EmptyWeights {
            origin: entry.origin.clone(),
            source_path: root.display().to_string(),
            allow: entry.allow_patterns.clone(),
            ignore: entry.ignore_patterns.clone(),
        });
    }
    Ok(files)
}

/// zstd-1 compressed size / original size over samples spread across the
/// files (1 = incompressible). Reads at most [`SAMPLE_BYTES`].
pub fn sampled_ratio(files: &[PathBuf]) -> f64 {
    let per_file = (SAMPLE_BYTES / files.len().max(1) as u64).max(64 << 10);
    let mut sample = Vec::new();
    for path in files {
        if sample.len() as u64 >= SAMPLE_BYTES {
            break;
        }
        if let Ok(file) = std::fs::File::open(path) {
            let _ = file.take(per_file).read_to_end(&mut sample);
        }
    }
    compression_ratio(&sample)
}

/// zstd -1 compressed size / size of `sample` (1 = incompressible); 0 for
/// an empty sample, so that nothing known is compressed.
pub fn compression_ratio(sample: &[u8]) -> f64 {
    if sample.is_empty() {
        return 0.0;
    }
    let compressed = zstd::bulk::compress(sample, 1).map(|c| c.len()).unwrap_or(sample.len());
    compressed as f64 / sample.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_get_a_layer_each_and_small_ones_share_one() {
        let file = |name: &str, size| WeightsFile {
            content: WeightsContent::Local(PathBuf::from(name)),
            relative: name.to_string(),
            size,
        };
        let groups = split_into_layers(
            vec![
                file("a.json", 10),
                file("b.safetensors", 600),
                file("c.safetensors", 500),
                file("d.safetensors", 900),
            ],
            512,
        );
        let names = |groups: &[Vec<WeightsFile>]| -> Vec<Vec<String>> {
            groups.iter().map(|g| g.iter().map(|f| f.relative.clone()).collect()).collect()
        };
        assert_eq!(names(&groups), [vec!["a.json", "c.safetensors"], vec!["b.safetensors"], vec!["d.safetensors"]]);
        assert_eq!(split_into_layers(vec![file("big", 512)], 512).len(), 1);
        assert!(split_into_layers(Vec::new(), 512).is_empty());
        // Small files are packed into layers of at most the split size, in path order.
        let shards: Vec<WeightsFile> = (0..5).map(|i| file(&format!("shard-{i}"), 200)).collect();
        let groups = split_into_layers(shards, 512);
        assert_eq!(names(&groups), [vec!["shard-0", "shard-1"], vec!["shard-2", "shard-3"], vec!["shard-4"]]);
        // A source of many split sizes gets at most MAX_LAYERS_PER_SOURCE layers.
        let many: Vec<WeightsFile> = (0..100).map(|i| file(&format!("part-{i:03}"), 512)).collect();
        assert!(split_into_layers(many, 512).len() as u64 <= MAX_LAYERS_PER_SOURCE);
    }

    #[test]
    fn auto_compression_stores_random_bytes_uncompressed_and_gzips_text() {
        let dir = tempfile::tempdir().unwrap();
        let random = dir.path().join("random.bin");
        let mut state = 0x2545F4914F6CDD1Du64;
        let bytes: Vec<u8> = (0..1 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(&random, bytes).unwrap();
        let text = dir.path().join("config.json");
        std::fs::write(&text, "{\"hidden_size\": 4096, \"layers\": 32}\n".repeat(20_000)).unwrap();
        assert_eq!(compression_for(spec::Compression::Auto, || sampled_ratio(&[random])), Compression::None);
        assert_eq!(
            compression_for(spec::Compression::Auto, || sampled_ratio(&[text])),
            Compression::Gzip { level: GZIP_LEVEL }
        );
    }
}
