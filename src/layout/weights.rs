//! Weights in the plan: which files a source bakes (the local-directory
//! walk, a remote listing, an hf-cache tree), how they are split into
//! layers, and whether a source may go on a volume or into a ModelPack
//! artifact. The rules live here only; config, build, Dockerfile and cost
//! model read their result.

use super::LayoutError;
use crate::spec::{Spec, WeightsEntry, WeightsSource};
use crate::weights::filter::PathFilter;
use crate::weights::RemoteFile;
use std::path::{Path, PathBuf};

/// A weights file ready to bake: where its bytes come from, and its path
/// below the entry's path in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsFile {
    pub content: WeightsContent,
    pub relative: String,
    pub size: u64,
}

/// Where a baked weights file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsContent {
    /// A file on the build machine (a local weights directory).
    Local(PathBuf),
    /// A remote file, streamed into the layer at build time.
    Remote(RemoteFile),
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
pub(crate) fn pack_by_size(sizes: &[u64], split_size: u64) -> Vec<Vec<usize>> {
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

/// The files of a local weights directory, sorted by path and filtered by
/// the entry's patterns. A symlink may name a file inside the directory
/// only (it is baked as that file); an empty selection is an error, since
/// the image would ship without these weights.
pub fn local_files(entry: &WeightsEntry, root: &Path) -> Result<Vec<WeightsFile>, LayoutError> {
    let filter = PathFilter::new(&entry.allow_patterns, &entry.ignore_patterns)
        .map_err(|message| LayoutError::Pattern { origin: entry.origin.clone(), message })?;
    let walk_error =
        |path: &Path, source| LayoutError::Walk { origin: entry.origin.clone(), path: path.to_path_buf(), source };
    let canonical_root = root.canonicalize().map_err(|source| walk_error(root, source))?;
    let mut files = Vec::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name() {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            walk_error(&path, e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed")))
        })?;
        let file_type = item.file_type();
        if file_type.is_dir() {
            continue;
        }
        if file_type.is_symlink() {
            let target = item.path().canonicalize().ok();
            if !target.as_ref().is_some_and(|t| t.starts_with(&canonical_root) && t.is_file()) {
                return Err(LayoutError::EscapingSymlink {
                    origin: entry.origin.clone(),
                    path: item.path().to_path_buf(),
                });
            }
        } else if !file_type.is_file() {
            continue;
        }
        let relative = item.path().strip_prefix(root).unwrap_or(item.path()).to_string_lossy().into_owned();
        if !filter.matches(&relative) {
            continue;
        }
        let size = std::fs::metadata(item.path()).map_err(|source| walk_error(item.path(), source))?.len();
        files.push(WeightsFile { content: WeightsContent::Local(item.path().to_path_buf()), relative, size });
    }
    if files.is_empty() {
        return Err(LayoutError::EmptyWeights {
            origin: entry.origin.clone(),
            source_path: root.display().to_string(),
            allow: entry.allow_patterns.clone(),
            ignore: entry.ignore_patterns.clone(),
        });
    }
    Ok(files)
}

/// Why `entry` cannot be kept on a volume, or `None` when it can: the
/// prefetch hook fetches any remote source (hub, object store, URL; plain
/// or hf-cache layout) and runs before the config's entrypoint.
pub fn volume_blocker(entry: &WeightsEntry, spec: &Spec) -> Option<String> {
    if matches!(entry.source, WeightsSource::Local { .. }) {
        return Some(format!(
            "volume mode for {} needs a remote source (hf://, s3://, gs://, azure://, https://); a local directory is only baked",
            entry.origin
        ));
    }
    if spec.runtime.entrypoint.is_empty() {
        return Some(format!(
            "volume mode for {} wraps the config's entrypoint with the prefetch hook, but the config has none",
            entry.origin
        ));
    }
    None
}

/// [`WeightsLayout::artifact_blocker`] for `entry`, naming it.
pub fn artifact_blocker(entry: &WeightsEntry) -> Option<String> {
    entry.layout.artifact_blocker().map(|why| format!("{}: {why}", entry.origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64) -> WeightsFile {
        WeightsFile { content: WeightsContent::Local(PathBuf::from(name)), relative: name.to_string(), size }
    }

    fn names(groups: &[Vec<WeightsFile>]) -> Vec<Vec<String>> {
        groups.iter().map(|g| g.iter().map(|f| f.relative.clone()).collect()).collect()
    }

    #[test]
    fn large_files_get_a_layer_each_and_small_ones_share_one() {
        let groups = split_into_layers(
            vec![
                file("a.json", 10),
                file("b.safetensors", 600),
                file("c.safetensors", 500),
                file("d.safetensors", 900),
            ],
            512,
        );
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
    fn a_local_walk_refuses_escaping_links_and_an_empty_selection() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("w");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/model.bin"), b"abc").unwrap();
        std::fs::write(root.join("README.md"), b"x").unwrap();
        let spec = crate::config::spec_of("cerebrium.toml", "[cerebrium.deployment]\nname = \"a\"\n");
        let mut entry = crate::spec::WeightsEntry {
            origin: "imgbake.weights[0]".into(),
            uri: root.display().to_string(),
            source: WeightsSource::Local { path: root.clone() },
            mount: "m".into(),
            path: "/app/model_cache/m".into(),
            volume_path: "/persistent-storage/m".into(),
            allow_patterns: vec!["*.bin".into()],
            ignore_patterns: vec![],
            secret: None,
            mode: crate::spec::WeightsMode::Bake,
            layout: crate::spec::WeightsLayout::Plain,
        };
        let files = local_files(&entry, &root).unwrap();
        assert_eq!(files.iter().map(|f| (f.relative.as_str(), f.size)).collect::<Vec<_>>(), [("sub/model.bin", 3)]);
        entry.allow_patterns = vec!["*.safetensors".into()];
        assert!(matches!(local_files(&entry, &root), Err(LayoutError::EmptyWeights { .. })));
        entry.allow_patterns.clear();
        std::os::unix::fs::symlink("/etc/hostname", root.join("escape")).unwrap();
        assert!(matches!(local_files(&entry, &root), Err(LayoutError::EscapingSymlink { .. })));
        assert!(volume_blocker(&entry, &spec).unwrap().contains("a local directory is only baked"));
    }
}
