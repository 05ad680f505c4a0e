//! The image, planned: `layout(spec, facts, placements) -> ImagePlan`, every
//! layer in order with what goes into it, its compression, the image config
//! and the volume manifest. It reads resolved facts only (the lock, the
//! weights listings, the hook) and touches no network; the native build
//! executes the ImagePlan, `dockerfile` renders it, the cost model prices
//! it. Every rule about layers lives here or below: the split of weights,
//! compression, Python layer groups, the local-weights walk, and what may
//! go on a volume.

pub mod compression;
pub mod key;
pub mod weights;

use crate::image::appfiles::{self, AppFilesError};
use crate::image::layer::Compression;
use crate::lock::Lock;
use crate::resolve::weights::ResolvedSource;
use crate::spec::{Spec, WeightsEntry, WeightsLayout, WeightsMode, WeightsSource};
use crate::weights::manifest::{ManifestEntry, WeightsManifest, MANIFEST_PATH};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use weights::{WeightsContent, WeightsFile};

/// Where the prefetch hook goes in the image.
pub const HOOK_PATH: &str = "/usr/local/bin/imgbake";
/// Installed bytes per wheel byte (wheels are zip-deflated), measured on
/// `fixtures/cerebrium-pip-apt` (docs/plan.md): how the layout estimates a
/// distribution's installed size from the lock, before anything is installed.
pub const WHEEL_UNPACKED_FACTOR: f64 = 3.4;

/// Bake or volume, for one weights source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    Bake,
    Volume,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Bake => "bake",
            Placement::Volume => "volume",
        }
    }
}

/// The placement of every weights entry, by origin. An entry not named
/// here is placed by its configured mode (`auto` bakes: the cost model
/// names every `auto` entry before the final layout).
pub type Placements = BTreeMap<String, Placement>;

/// What the layout reads besides the Spec.
#[derive(Debug, Clone, Copy)]
pub struct LayoutFacts<'a> {
    /// The dependencies to install (Python layer groups come from its wheel sizes).
    pub lock: Option<&'a Lock>,
    /// Every remote weights source, listed and sampled.
    pub sources: &'a [ResolvedSource],
    /// `--base rootfs:DIR`: a root filesystem that becomes the first layer.
    pub rootfs: Option<&'a Path>,
    /// The prefetch hook binary put in volume-mode images.
    pub hook: &'a Path,
    /// What the codec choice prices layers for: the target's profile and base.
    pub target: compression::CodecTarget<'a>,
}

/// The whole image, before a byte of it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePlan {
    /// New layers in image order (on top of the base's).
    pub layers: Vec<PlannedLayer>,
    /// Where every weights entry goes, in config order.
    pub placements: Vec<SourcePlacement>,
    /// The volume-mode sources, when any.
    pub volume: Option<VolumePlan>,
    pub config: ImageConfig,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourcePlacement {
    pub origin: String,
    pub uri: String,
    pub configured: WeightsMode,
    pub placement: Placement,
    /// Why, when the cost model decided it (`mode = "auto"`).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedLayer {
    /// Short name (`app files`, `weights sdxl 1/3`); build, plan and Dockerfile print the same.
    pub name: String,
    /// The image history line.
    pub history: String,
    /// Set by [`compression::assign`] once every layer is known.
    pub compression: Compression,
    /// Why that codec, and what the others would have given.
    pub codec_choice: Option<compression::CodecChoice>,
    pub content: LayerContent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LayerContent {
    /// A root filesystem directory (`--base rootfs:DIR`).
    Rootfs { root: PathBuf },
    /// The lock's Debian packages, unpacked on the base.
    Apt,
    /// These Python distributions (lock names), installed with their bytecode.
    Python { packages: Vec<String> },
    /// The lock's conda environment.
    Conda,
    /// The selected app files under the workdir.
    AppFiles { files: Vec<AppFile> },
    /// Weights files of one source (one split of it); `ratio` is their
    /// sampled compressibility (zstd -1, compressed/original).
    Weights { origin: String, uri: String, files: Vec<PlannedWeightsFile>, ratio: f64 },
    /// hf-cache layout: the snapshot links and refs of one source.
    HfSnapshot { origin: String, links: Vec<(String, String)>, refs: Vec<(String, String)> },
    /// The volume manifest, the hook and the app-path links ([`ImagePlan::volume`]).
    Volume,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFile {
    pub source: PathBuf,
    /// Relative to the image root.
    pub image_path: String,
    /// The target, when the file is a symlink.
    pub link: Option<String>,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWeightsFile {
    /// Relative to the image root.
    pub image_path: String,
    pub file: WeightsFile,
}

/// Volume mode: the sources the hook fetches at start.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumePlan {
    pub sources: Vec<ResolvedSource>,
    /// `(app path, volume path)` links, relative to the image root.
    pub links: Vec<(String, String)>,
    pub hook: PathBuf,
}

/// The image config the layout sets on top of the base's.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    /// Set on top of the base's environment.
    pub env: BTreeMap<String, String>,
    /// Empty: the base's. Wrapped by the hook in volume mode.
    pub entrypoint: Vec<String>,
    pub workdir: String,
    pub port: Option<u16>,
    pub labels: BTreeMap<String, String>,
    /// The conda prefix, which goes first on PATH.
    pub conda_prefix: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot select the app files")]
    AppFiles(#[source] AppFilesError),
    #[error("{origin}: cannot read the weights directory {}", path.display())]
    Walk {
        origin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Pattern { origin: String, message: String },
    #[error("{origin}: no file of {source_path} matches allow_patterns {allow:?} / ignore_patterns {ignore:?}; the image would ship without these weights")]
    EmptyWeights { origin: String, source_path: String, allow: Vec<String>, ignore: Vec<String> },
    #[error("{origin}: `{}` is a symlink that leaves the weights directory", path.display())]
    EscapingSymlink { origin: String, path: PathBuf },
    /// A placement that cannot be built (volume for a local directory, or without an entrypoint).
    #[error("{0}")]
    Refused(String),
    #[error("{origin}: {uri} was not resolved")]
    Unresolved { origin: String, uri: String },
}

/// Plans the image of `spec` from resolved `facts`, with each weights
/// entry placed as `placements` says (else as configured; `auto` bakes).
pub fn layout(spec: &Spec, facts: &LayoutFacts, placements: &Placements) -> Result<ImagePlan, LayoutError> {
    let mut layers = Vec::new();
    let mut warnings = Vec::new();
    if let Some(root) = facts.rootfs {
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        layers.push(PlannedLayer {
            name: "base root filesystem".into(),
            history: format!("imgbake: base root filesystem {name}"),
            compression: compression::GZIP,
            codec_choice: None,
            content: LayerContent::Rootfs { root: root.to_path_buf() },
        });
    }
    if let Some(lock) = facts.lock {
        layers.extend(dependency_layers(lock));
    }
    layers.push(app_files_layer(spec, &mut warnings)?);

    let mut placed = Vec::new();
    let mut volume_sources = Vec::new();
    for entry in &spec.weights {
        let placement = placement_of(entry, placements);
        if placement == Placement::Volume {
            if let Some(blocker) = weights::volume_blocker(entry, spec) {
                return Err(LayoutError::Refused(blocker));
            }
        }
        placed.push(SourcePlacement {
            origin: entry.origin.clone(),
            uri: entry.uri.clone(),
            configured: entry.mode,
            placement,
            reason: None,
        });
        match (&entry.source, placement) {
            (WeightsSource::Local { path }, _) => {
                if entry.mode == WeightsMode::Auto {
                    warnings.push(format!(
                        "{}: mode auto bakes a local directory (the volume hook fetches remote sources only, so a volume is not an option)",
                        entry.origin
                    ));
                }
                let files = weights::local_files(entry, path)?;
                layers.extend(weights_layers(entry, spec, files, &|group| {
                    let paths: Vec<PathBuf> = group
                        .iter()
                        .filter_map(|f| match &f.content {
                            WeightsContent::Local(path) => Some(path.clone()),
                            WeightsContent::Remote(_) => None,
                        })
                        .collect();
                    crate::image::sample::sampled_ratio(&paths)
                }));
            }
            (_, Placement::Volume) => volume_sources.push(resolved(entry, facts)?.clone()),
            (_, Placement::Bake) => {
                let source = resolved(entry, facts)?;
                let unsampled = facts.target.profile.params.remote_weights_ratio;
                layers.extend(remote_weights_layers(entry, spec, source, unsampled));
            }
        }
    }

    let volume = (!volume_sources.is_empty()).then(|| VolumePlan {
        links: volume_sources
            .iter()
            .filter(|s| s.entry.path != s.entry.volume_path)
            .map(|s| (s.entry.path.trim_start_matches('/').to_string(), s.entry.volume_path.clone()))
            .collect(),
        sources: volume_sources,
        hook: facts.hook.to_path_buf(),
    });
    if let Some(volume) = &volume {
        let total: u64 = volume.sources.iter().map(|s| s.listing.total_size()).sum();
        layers.push(PlannedLayer {
            name: "volume manifest and prefetch hook".into(),
            history: format!(
                "imgbake: volume mode: {MANIFEST_PATH} ({} sources, {total} bytes fetched at start), prefetch hook at {HOOK_PATH}",
                volume.sources.len()
            ),
            compression: compression::GZIP,
            codec_choice: None,
            content: LayerContent::Volume,
        });
    }
    let config = image_config(spec, facts.lock, volume.is_some());
    let mut plan = ImagePlan { layers, placements: placed, volume, config, warnings };
    compression::assign(&mut plan, spec, facts);
    Ok(plan)
}

/// Refuses, before anything is resolved, an entry configured for a volume
/// that cannot go there (the same line `layout` would give).
pub fn check_configured(spec: &Spec) -> Result<(), LayoutError> {
    for entry in spec.weights.iter().filter(|e| e.mode == WeightsMode::Volume) {
        if let Some(blocker) = weights::volume_blocker(entry, spec) {
            return Err(LayoutError::Refused(blocker));
        }
    }
    Ok(())
}

fn placement_of(entry: &WeightsEntry, placements: &Placements) -> Placement {
    match placements.get(&entry.origin) {
        Some(placement) => *placement,
        None if entry.mode == WeightsMode::Volume => Placement::Volume,
        None => Placement::Bake,
    }
}

fn resolved<'a>(entry: &WeightsEntry, facts: &'a LayoutFacts) -> Result<&'a ResolvedSource, LayoutError> {
    facts
        .sources
        .iter()
        .find(|s| s.entry.origin == entry.origin)
        .ok_or_else(|| LayoutError::Unresolved { origin: entry.origin.clone(), uri: entry.uri.clone() })
}

/// The dependency layers of the lock, in image order: apt, Python (a
/// layer per large distribution, largest first, then one for the rest),
/// conda.
pub fn dependency_layers(lock: &Lock) -> Vec<PlannedLayer> {
    let mut layers = Vec::new();
    if let Some(apt) = &lock.apt {
        let names: Vec<&str> = apt.packages.iter().map(|p| p.name.as_str()).collect();
        layers.push(PlannedLayer {
            name: format!("apt packages ({})", apt.packages.len()),
            history: format!("imgbake: apt {}", names.join(" ")),
            compression: compression::GZIP,
            codec_choice: None,
            content: LayerContent::Apt,
        });
    }
    if let Some(python) = &lock.python {
        for group in python_groups(&python.packages) {
            let names: Vec<String> = group.iter().map(|w| format!("{}=={}", w.name, w.version)).collect();
            let (name, history) = if group.len() == 1 {
                (format!("python {}", names[0]), format!("imgbake: python package {}", names[0]))
            } else {
                (
                    format!("python packages ({})", group.len()),
                    format!("imgbake: {} python packages into {}", group.len(), python.target.site_packages),
                )
            };
            layers.push(PlannedLayer {
                name,
                history,
                compression: compression::GZIP,
                codec_choice: None,
                content: LayerContent::Python { packages: group.iter().map(|w| w.name.clone()).collect() },
            });
        }
    }
    if let Some(conda) = &lock.conda {
        layers.push(PlannedLayer {
            name: format!("conda packages ({})", conda.packages.len()),
            history: format!("imgbake: {} conda packages into {}", conda.packages.len(), conda.target.prefix),
            compression: compression::GZIP,
            codec_choice: None,
            content: LayerContent::Conda,
        });
    }
    layers
}

/// Distributions whose estimated install is [`crate::deps::python::LARGE_DISTRIBUTION`]
/// or more (torch, nvidia-*) get a layer each, largest first; the rest share one.
pub fn python_groups(wheels: &[crate::deps::python::LockedWheel]) -> Vec<Vec<&crate::deps::python::LockedWheel>> {
    let large = crate::deps::python::LARGE_DISTRIBUTION as f64;
    let (mut big, small): (Vec<_>, Vec<_>) =
        wheels.iter().partition(|w| w.size as f64 * WHEEL_UNPACKED_FACTOR >= large);
    big.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(&b.name)));
    let mut groups: Vec<Vec<_>> = big.into_iter().map(|w| vec![w]).collect();
    if !small.is_empty() {
        groups.push(small);
    }
    groups
}

fn app_files_layer(spec: &Spec, warnings: &mut Vec<String>) -> Result<PlannedLayer, LayoutError> {
    let root = &spec.app.root;
    let config_file = spec.source.path.file_name().map(PathBuf::from).into_iter().collect::<Vec<_>>();
    let selection = appfiles::select_app_files(root, &spec.app.include, &spec.app.exclude, &config_file)
        .map_err(LayoutError::AppFiles)?;
    warnings.extend(selection.warnings.iter().map(|w| w.to_string()));
    let prefix = spec.app.workdir.trim_matches('/');
    let files: Vec<AppFile> = selection
        .files
        .iter()
        .map(|relative| {
            let source = root.join(relative);
            let link = std::fs::read_link(&source).ok().map(|t| t.to_string_lossy().into_owned());
            let size = if link.is_some() { 0 } else { std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0) };
            AppFile { image_path: format!("{prefix}/{}", relative.to_string_lossy()), source, link, size }
        })
        .collect();
    Ok(PlannedLayer {
        name: "app files".into(),
        history: format!("imgbake: app files ({} files) at /{prefix}", files.len()),
        compression: compression::GZIP,
        codec_choice: None,
        content: LayerContent::AppFiles { files },
    })
}

/// A remote source baked: its files as listed (plain), or as an hf-cache
/// tree (blobs split like any weights, then one small layer of snapshot
/// links and refs).
/// `unsampled` is the ratio assumed when the source could not be sampled.
fn remote_weights_layers(
    entry: &WeightsEntry,
    spec: &Spec,
    source: &ResolvedSource,
    unsampled: f64,
) -> Vec<PlannedLayer> {
    let listing = &source.listing;
    let ratio_of = |group: &[WeightsFile]| {
        if source.sampled() {
            source.ratio_of(remote_files(group))
        } else {
            unsampled
        }
    };
    match entry.layout {
        WeightsLayout::Plain => {
            let files = listing
                .files
                .iter()
                .map(|f| WeightsFile {
                    content: WeightsContent::Remote(f.clone()),
                    relative: f.path.clone(),
                    size: f.size,
                })
                .collect();
            weights_layers(entry, spec, files, &ratio_of)
        }
        WeightsLayout::HfCache => {
            let tree = crate::weights::hf_cache::tree(entry, listing);
            let blobs = tree
                .blobs
                .iter()
                .map(|(f, blob)| WeightsFile {
                    content: WeightsContent::Remote(f.clone()),
                    relative: blob.clone(),
                    size: f.size,
                })
                .collect();
            let mut layers = weights_layers(entry, spec, blobs, &ratio_of);
            let root = entry.path.trim_start_matches('/');
            let under = |path: &str| format!("{root}/{path}");
            layers.push(PlannedLayer {
                name: format!("weights {} snapshot", entry.mount),
                history: format!("imgbake: hf-cache snapshot links and refs of {} at {}", entry.uri, entry.path),
                compression: compression::GZIP,
                codec_choice: None,
                content: LayerContent::HfSnapshot {
                    origin: entry.origin.clone(),
                    links: tree.links.iter().map(|(link, target)| (under(link), target.clone())).collect(),
                    refs: tree.refs.iter().map(|(path, commit)| (under(path), commit.clone())).collect(),
                },
            });
            layers
        }
    }
}

/// The remote files of a group.
fn remote_files(group: &[WeightsFile]) -> impl Iterator<Item = &crate::weights::RemoteFile> {
    group.iter().filter_map(|f| match &f.content {
        WeightsContent::Remote(file) => Some(file),
        WeightsContent::Local(_) => None,
    })
}

/// `files` at the entry's path, split into layers by the Spec's
/// `weights_split_size`; each layer's codec is chosen later from `ratio_of` its files.
fn weights_layers(
    entry: &WeightsEntry,
    spec: &Spec,
    files: Vec<WeightsFile>,
    ratio_of: &dyn Fn(&[WeightsFile]) -> f64,
) -> Vec<PlannedLayer> {
    let image_root = entry.path.trim_start_matches('/');
    let groups = weights::split_into_layers(files, spec.weights_split_size);
    let parts = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(index, group)| {
            let name = if parts == 1 {
                format!("weights {}", entry.mount)
            } else {
                format!("weights {} {}/{parts}", entry.mount, index + 1)
            };
            let names = if group.len() == 1 { group[0].relative.clone() } else { format!("{} files", group.len()) };
            let ratio = ratio_of(&group);
            PlannedLayer {
                name,
                history: format!("imgbake: weights {} ({names}) at {}", entry.uri, entry.path),
                compression: compression::GZIP,
                codec_choice: None,
                content: LayerContent::Weights {
                    origin: entry.origin.clone(),
                    uri: entry.uri.clone(),
                    ratio,
                    files: group
                        .into_iter()
                        .map(|file| PlannedWeightsFile { image_path: format!("{image_root}/{}", file.relative), file })
                        .collect(),
                },
            }
        })
        .collect()
}

/// `imgbake prefetch --manifest … -- <entrypoint>`.
pub fn wrap_entrypoint(entrypoint: &[String]) -> Vec<String> {
    let mut wrapped: Vec<String> =
        [HOOK_PATH, "prefetch", "--manifest", MANIFEST_PATH, "--"].iter().map(|s| s.to_string()).collect();
    wrapped.extend(entrypoint.iter().cloned());
    wrapped
}

fn image_config(spec: &Spec, lock: Option<&Lock>, volume: bool) -> ImageConfig {
    let mut env = spec.runtime.environment.clone();
    // huggingface_hub / transformers find an hf-cache layout through HF_HUB_CACHE.
    if let Some(entry) = spec.weights.iter().find(|e| e.layout == WeightsLayout::HfCache) {
        env.entry("HF_HUB_CACHE".to_string()).or_insert_with(|| entry.path.clone());
    }
    let config_name = spec.source.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let labels = BTreeMap::from([
        ("org.opencontainers.image.title".to_string(), spec.name.clone()),
        ("dev.imgbake.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("dev.imgbake.config".to_string(), config_name),
    ]);
    let entrypoint = if volume { wrap_entrypoint(&spec.runtime.entrypoint) } else { spec.runtime.entrypoint.clone() };
    ImageConfig {
        env,
        entrypoint,
        workdir: spec.app.workdir.clone(),
        port: spec.runtime.port,
        labels,
        conda_prefix: lock.and_then(|l| l.conda.as_ref()).map(|c| c.target.prefix.clone()),
    }
}

impl VolumePlan {
    /// The manifest entries, once every file has a sha256 (the build
    /// computes the missing ones by reading the bytes through).
    pub fn manifest(&self, spec: &Spec) -> Result<WeightsManifest, crate::weights::manifest::MissingHash> {
        let entries: Vec<ManifestEntry> = self
            .sources
            .iter()
            .map(|s| crate::weights::manifest::entry(&s.entry, &s.listing))
            .collect::<Result<_, _>>()?;
        Ok(WeightsManifest::new(spec, entries))
    }

    /// The manifest's size with every sha256 in place (a sha256 is 64 hex
    /// digits whether known yet or not), for the plan's file list.
    pub fn manifest_size(&self, spec: &Spec) -> u64 {
        let mut sources = self.sources.clone();
        let placeholder: crate::image::digest::Digest =
            format!("sha256:{}", "0".repeat(64)).parse().expect("a valid digest");
        for source in &mut sources {
            for file in source.listing.files.iter_mut().filter(|f| f.sha256.is_none()) {
                file.sha256 = Some(placeholder.clone());
            }
        }
        let filled = VolumePlan { sources, links: Vec::new(), hook: self.hook.clone() };
        filled.manifest(spec).map(|m| m.to_bytes().len() as u64).unwrap_or(0)
    }
}

impl PlannedLayer {
    /// `(image path, bytes)` of the regular files the layer holds, sorted,
    /// when the layout knows them (dependency layers are known after install).
    pub fn files(&self, spec: &Spec, volume: Option<&VolumePlan>) -> Option<Vec<(String, u64)>> {
        let mut files: Vec<(String, u64)> = match &self.content {
            LayerContent::Rootfs { .. } | LayerContent::Apt | LayerContent::Python { .. } | LayerContent::Conda => {
                return None
            }
            LayerContent::AppFiles { files } => {
                files.iter().filter(|f| f.link.is_none()).map(|f| (f.image_path.clone(), f.size)).collect()
            }
            LayerContent::Weights { files, .. } => files.iter().map(|f| (f.image_path.clone(), f.file.size)).collect(),
            LayerContent::HfSnapshot { refs, .. } => {
                refs.iter().map(|(path, commit)| (path.clone(), commit.len() as u64)).collect()
            }
            LayerContent::Volume => {
                let volume = volume?;
                let hook = std::fs::metadata(&volume.hook).map(|m| m.len()).unwrap_or(0);
                vec![
                    (MANIFEST_PATH.trim_start_matches('/').to_string(), volume.manifest_size(spec)),
                    (HOOK_PATH.trim_start_matches('/').to_string(), hook),
                ]
            }
        };
        files.sort();
        Some(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deps::python::{LockedWheel, LARGE_DISTRIBUTION};

    #[test]
    fn large_distributions_get_a_layer_each_largest_first() {
        let wheel = |name: &str, size: u64| LockedWheel {
            name: name.into(),
            version: "1".into(),
            url: format!("https://files.example/{name}.whl"),
            sha256: "ab".into(),
            size,
            built_from: None,
        };
        // torch's wheel installs to well over 64 MiB; nvidia-x's to just over it (wheel bytes × 3.4).
        let nvidia = (LARGE_DISTRIBUTION as f64 / WHEEL_UNPACKED_FACTOR).ceil() as u64;
        let wheels =
            vec![wheel("a", 1), wheel("torch", LARGE_DISTRIBUTION * 4), wheel("b", 2), wheel("nvidia-x", nvidia)];
        let groups: Vec<Vec<&str>> =
            python_groups(&wheels).iter().map(|g| g.iter().map(|w| w.name.as_str()).collect()).collect();
        assert_eq!(groups, vec![vec!["torch"], vec!["nvidia-x"], vec!["a", "b"]]);
    }
}
