//! The image, planned: `layout(spec, facts, placements) -> ImagePlan`, every
//! layer in order with what goes into it, its compression, the image config
//! and the volume manifest. It reads resolved facts only (the lock, the
//! weights listings, the hook) and touches no network; the native build
//! executes the ImagePlan, `dockerfile` renders it, the cost model prices
//! it. Every rule about layers lives here or below: the split of weights,
//! compression, Python layer groups, the local-weights walk, and what may
//! go on a volume.

pub mod compression;
pub mod dependency_sizes;
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
pub use crate::deps::python::WHEEL_UNPACKED_FACTOR;

/// Bake or volume, for one weights source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    Bake,
    Volume,
    /// A ModelPack artifact beside the image ([`ImagePlan::artifacts`]).
    Artifact,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Bake => "bake",
            Placement::Volume => "volume",
            Placement::Artifact => "artifact",
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
    /// The artifact-mode sources: each a ModelPack artifact beside the image.
    pub artifacts: Vec<ArtifactPlan>,
    pub config: ImageConfig,
    pub warnings: Vec<String>,
}

/// One weights source as a ModelPack artifact (`mode = "artifact"`): its
/// files in layers split as baked weights are, but with paths relative to
/// the source (the node mounts the artifact at `mount_path`), uncompressed,
/// weights and config files in layers of their own (`src/image/modelpack.rs`
/// writes the documents).
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactPlan {
    pub origin: String,
    pub uri: String,
    pub mount: String,
    /// Where the app reads the files: the pod's image volume mount path.
    pub mount_path: String,
    pub layers: Vec<ArtifactLayer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactLayer {
    pub layer: PlannedLayer,
    /// Model config files only (json, tokenizer, …): the weight-config media type.
    pub config_files: bool,
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
    /// The `.pyc` files of the base's standard library, which has none
    /// (the lock's `python.stdlib`), compiled at build.
    StdlibBytecode,
    /// The lock's Debian packages, unpacked on the base.
    Apt,
    /// These Python distributions (lock names), installed with their bytecode;
    /// with `part`, one share of a single distribution split across layers.
    Python { packages: Vec<String>, part: Option<Part> },
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

/// Share `index` (0-based) of `of` of one distribution's installed files
/// ([`split_distribution`] decides which files, from the files alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: u32,
    pub of: u32,
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
        layers.extend(dependency_layers(lock, spec.dependency_split_size, spec.python.bytecode));
    }
    layers.push(app_files_layer(spec, &mut warnings)?);

    let mut placed = Vec::new();
    let mut volume_sources = Vec::new();
    let mut artifacts = Vec::new();
    for entry in &spec.weights {
        let placement = placement_of(entry, placements);
        let blocker = match placement {
            Placement::Volume => weights::volume_blocker(entry, spec),
            Placement::Artifact => weights::artifact_blocker(entry),
            Placement::Bake => None,
        };
        if let Some(blocker) = blocker {
            return Err(LayoutError::Refused(blocker));
        }
        placed.push(SourcePlacement {
            origin: entry.origin.clone(),
            uri: entry.uri.clone(),
            configured: entry.mode,
            placement,
            reason: None,
        });
        match (&entry.source, placement) {
            (WeightsSource::Local { path }, Placement::Artifact) => {
                let files = weights::local_files(entry, path)?;
                artifacts.push(artifact_plan(entry, spec, files, &|_| 1.0));
            }
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
            (_, Placement::Artifact) => {
                let source = resolved(entry, facts)?;
                let files = remote_plain_files(source);
                artifacts.push(artifact_plan(entry, spec, files, &|_| 1.0));
            }
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
    let mut plan = ImagePlan { layers, placements: placed, volume, artifacts, config, warnings };
    compression::assign(&mut plan, spec, facts);
    Ok(plan)
}

/// Refuses, before anything is resolved, an entry configured for a volume
/// or an artifact that cannot go there (the same line `layout` would give).
pub fn check_configured(spec: &Spec) -> Result<(), LayoutError> {
    for entry in &spec.weights {
        let blocker = match entry.mode {
            WeightsMode::Volume => weights::volume_blocker(entry, spec),
            WeightsMode::Artifact => weights::artifact_blocker(entry),
            WeightsMode::Bake | WeightsMode::Auto => None,
        };
        if let Some(blocker) = blocker {
            return Err(LayoutError::Refused(blocker));
        }
    }
    Ok(())
}

fn placement_of(entry: &WeightsEntry, placements: &Placements) -> Placement {
    match placements.get(&entry.origin) {
        Some(placement) => *placement,
        None if entry.mode == WeightsMode::Volume => Placement::Volume,
        None if entry.mode == WeightsMode::Artifact => Placement::Artifact,
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

/// The dependency layers of the lock, in image order: the bytecode of the
/// base's standard library when it has none and `bytecode` is on (first: it
/// changes only with the base), apt, Python (see [`python_groups`]), conda.
pub fn dependency_layers(lock: &Lock, split_size: u64, bytecode: bool) -> Vec<PlannedLayer> {
    let mut layers = Vec::new();
    let stdlib = lock.python.as_ref().and_then(|p| p.stdlib.as_ref()).filter(|s| bytecode && s.needs_bytecode());
    if let Some(stdlib) = stdlib {
        layers.push(PlannedLayer {
            name: "python stdlib bytecode".into(),
            history: format!(
                "imgbake: bytecode of the base's Python standard library {} ({} of {} modules had none)",
                stdlib.dir,
                stdlib.uncompiled(),
                stdlib.modules
            ),
            compression: compression::GZIP,
            codec_choice: None,
            content: LayerContent::StdlibBytecode,
        });
    }
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
        for group in python_groups(&python.packages, split_size) {
            let names: Vec<String> = group.wheels.iter().map(|w| format!("{}=={}", w.name, w.version)).collect();
            let (name, history) = match (group.wheels.len(), group.part) {
                (1, Some(part)) => (
                    format!("python {} (part {} of {})", names[0], part.index + 1, part.of),
                    format!("imgbake: python package {} part {} of {}", names[0], part.index + 1, part.of),
                ),
                (1, None) => (format!("python {}", names[0]), format!("imgbake: python package {}", names[0])),
                (count, _) => (
                    format!("python packages ({count})"),
                    format!("imgbake: {count} python packages into {}", python.target.site_packages),
                ),
            };
            layers.push(PlannedLayer {
                name,
                history,
                compression: compression::GZIP,
                codec_choice: None,
                content: LayerContent::Python {
                    packages: group.wheels.iter().map(|w| w.name.clone()).collect(),
                    part: group.part,
                },
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

/// Most layers one distribution is split into.
pub const MAX_PARTS_PER_DISTRIBUTION: u32 = 4;
/// Most Python layers in all (the split size doubles until they fit), so
/// that an image with apt, conda, app and weights layers stays far below the
/// ~125 layers overlay-based runtimes take.
pub const MAX_PYTHON_LAYERS: usize = 48;

/// One Python layer: several small distributions, one large one, or one
/// part of a distribution larger than the split size.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonGroup<'a> {
    pub wheels: Vec<&'a crate::deps::python::LockedWheel>,
    pub part: Option<Part>,
}

/// The Python layers of a lock, the weights split's rule applied to
/// distributions (docs/deps.md, "Layers"):
/// - a distribution whose install is [`crate::deps::python::LARGE_DISTRIBUTION`]
///   (or the split size, when smaller) or more (torch, nvidia-*, triton) gets layers of its own, largest first, so
///   a change elsewhere never re-pushes it and two apps with the same wheel
///   share its layers byte for byte;
/// - one larger than `split_size` is split into about `split_size` parts (at
///   most [`MAX_PARTS_PER_DISTRIBUTION`]), so a runtime pulls torch's two big
///   libraries on parallel connections as it does a weights split;
/// - the small ones are packed in lock (name) order into layers of at most
///   `split_size`.
///
/// Sizes are the lock's installed sizes, estimated from the wheel's bytes
/// where the lock has none.
pub fn python_groups(wheels: &[crate::deps::python::LockedWheel], split_size: u64) -> Vec<PythonGroup<'_>> {
    let mut split_size = split_size.max(1);
    loop {
        let groups = python_groups_at(wheels, split_size);
        if groups.len() <= MAX_PYTHON_LAYERS || split_size >= u64::MAX / 2 {
            return groups;
        }
        split_size *= 2;
    }
}

fn python_groups_at(wheels: &[crate::deps::python::LockedWheel], split_size: u64) -> Vec<PythonGroup<'_>> {
    // A distribution larger than the split is at least a layer of its own.
    let large = crate::deps::python::LARGE_DISTRIBUTION.min(split_size);
    let (mut big, small): (Vec<_>, Vec<_>) = wheels.iter().partition(|w| w.installed_estimate() >= large);
    big.sort_by(|a, b| b.installed_estimate().cmp(&a.installed_estimate()).then(a.name.cmp(&b.name)));
    let mut groups = Vec::new();
    for wheel in big {
        let parts = wheel.installed_estimate().div_ceil(split_size).clamp(1, MAX_PARTS_PER_DISTRIBUTION as u64) as u32;
        if parts == 1 {
            groups.push(PythonGroup { wheels: vec![wheel], part: None });
        } else {
            groups.extend(
                (0..parts).map(|index| PythonGroup { wheels: vec![wheel], part: Some(Part { index, of: parts }) }),
            );
        }
    }
    let sizes: Vec<u64> = small.iter().map(|w| w.installed_estimate()).collect();
    for packed in weights::pack_by_size(&sizes, split_size) {
        groups.push(PythonGroup { wheels: packed.into_iter().map(|i| small[i]).collect(), part: None });
    }
    groups
}

/// Which of `sizes` (a distribution's installed files, in path order) go to
/// each of `parts` layers: largest first, each to the part with the fewest
/// bytes so far (ties to the lower part), so the parts come out about equal
/// and depend on the files alone (two builds, or two apps, of one wheel
/// split it the same way). Returns each file's part.
pub fn split_distribution(sizes: &[u64], parts: u32) -> Vec<u32> {
    let parts = parts.max(1) as usize;
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut filled = vec![0u64; parts];
    let mut part_of = vec![0u32; sizes.len()];
    for index in order {
        let lightest = (0..parts).min_by_key(|&p| (filled[p], p)).unwrap_or(0);
        filled[lightest] += sizes[index];
        part_of[index] = lightest as u32;
    }
    part_of
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
        WeightsLayout::Plain => weights_layers(entry, spec, remote_plain_files(source), &ratio_of),
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

/// A remote source's files as listed, at their paths in the source.
fn remote_plain_files(source: &ResolvedSource) -> Vec<WeightsFile> {
    source
        .listing
        .files
        .iter()
        .map(|f| WeightsFile { content: WeightsContent::Remote(f.clone()), relative: f.path.clone(), size: f.size })
        .collect()
}

/// Extensions of the files a model loads its weights from; every other
/// file of a source (config.json, tokenizer files, …) is a config file.
const WEIGHTS_EXTENSIONS: [&str; 12] =
    ["safetensors", "bin", "pt", "pth", "ckpt", "gguf", "ggml", "onnx", "h5", "msgpack", "npz", "tflite"];

/// Whether `path` holds weights (by extension), else model config.
pub fn is_weights_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.').is_some_and(|(_, ext)| WEIGHTS_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// An artifact-mode source: its weights files split into layers as baked
/// ones are, its config files in layers of their own, every path relative
/// to the source, every layer uncompressed (ModelPack: weights do not
/// compress, and the node unpacks an uncompressed layer fastest).
fn artifact_plan(
    entry: &WeightsEntry,
    spec: &Spec,
    files: Vec<WeightsFile>,
    ratio_of: &dyn Fn(&[WeightsFile]) -> f64,
) -> ArtifactPlan {
    let (weights, configs): (Vec<WeightsFile>, Vec<WeightsFile>) =
        files.into_iter().partition(|f| is_weights_file(&f.relative));
    let mut layers: Vec<ArtifactLayer> = Vec::new();
    for (group, config_files) in [(weights, false), (configs, true)] {
        if group.is_empty() {
            continue;
        }
        let kind = if config_files { "config" } else { "weights" };
        layers.extend(
            split_layers(entry, spec, group, ratio_of, "", &format!("artifact {kind} {}", entry.mount))
                .into_iter()
                .map(|mut layer| {
                    layer.compression = Compression::None;
                    ArtifactLayer { layer, config_files }
                }),
        );
    }
    ArtifactPlan {
        origin: entry.origin.clone(),
        uri: entry.uri.clone(),
        mount: entry.mount.clone(),
        mount_path: entry.path.clone(),
        layers,
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
    split_layers(entry, spec, files, ratio_of, entry.path.trim_start_matches('/'), &format!("weights {}", entry.mount))
}

/// `files` under `root` (relative to the image or artifact root), split into
/// layers named `name` (`name 1/3` …) by the Spec's `weights_split_size`.
fn split_layers(
    entry: &WeightsEntry,
    spec: &Spec,
    files: Vec<WeightsFile>,
    ratio_of: &dyn Fn(&[WeightsFile]) -> f64,
    root: &str,
    name: &str,
) -> Vec<PlannedLayer> {
    let groups = weights::split_into_layers(files, spec.weights_split_size);
    let parts = groups.len();
    let under_root = |relative: &str| if root.is_empty() { relative.to_string() } else { format!("{root}/{relative}") };
    groups
        .into_iter()
        .enumerate()
        .map(|(index, group)| {
            let name = if parts == 1 { name.to_string() } else { format!("{name} {}/{parts}", index + 1) };
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
                        .map(|file| PlannedWeightsFile { image_path: under_root(&file.relative), file })
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
            LayerContent::Rootfs { .. }
            | LayerContent::StdlibBytecode
            | LayerContent::Apt
            | LayerContent::Python { .. }
            | LayerContent::Conda => return None,
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
            installed: None,
            python_source: None,
            native_libraries: None,
            built_from: None,
        };
        // torch's wheel installs to well over 64 MiB; nvidia-x's to just over it (wheel bytes × 3.4).
        let nvidia = (LARGE_DISTRIBUTION as f64 / WHEEL_UNPACKED_FACTOR).ceil() as u64;
        let wheels =
            vec![wheel("a", 1), wheel("torch", LARGE_DISTRIBUTION * 4), wheel("b", 2), wheel("nvidia-x", nvidia)];
        type Named<'a> = (Vec<&'a str>, Option<(u32, u32)>);
        let groups = |split_size: u64| -> Vec<Named> {
            python_groups(&wheels, split_size)
                .iter()
                .map(|g| (g.wheels.iter().map(|w| w.name.as_str()).collect(), g.part.map(|p| (p.index, p.of))))
                .collect()
        };
        assert_eq!(groups(1 << 30), vec![(vec!["torch"], None), (vec!["nvidia-x"], None), (vec!["a", "b"], None)]);
        // torch's estimate is 4 × 3.4 × 64 MiB: in parts of at most 256 MiB, capped at 4.
        let parts = groups(256 << 20);
        assert_eq!(parts.len(), 6);
        assert_eq!(parts[3], (vec!["torch"], Some((3, 4))));
        assert_eq!(parts[4], (vec!["nvidia-x"], None));
        // The lock's installed size wins over the estimate.
        let mut exact = wheels.clone();
        exact[1].installed = Some(300 << 20);
        assert_eq!(python_groups(&exact, 256 << 20).iter().filter(|g| g.part.is_some()).count(), 2);
    }

    #[test]
    fn small_distributions_pack_into_layers_of_at_most_the_split() {
        let wheel = |name: &str, installed: u64| LockedWheel {
            name: name.into(),
            version: "1".into(),
            url: String::new(),
            sha256: String::new(),
            size: 1,
            installed: Some(installed),
            python_source: None,
            native_libraries: None,
            built_from: None,
        };
        let wheels: Vec<LockedWheel> = ["a", "b", "c", "d", "e"].iter().map(|n| wheel(n, 40 << 20)).collect();
        let groups: Vec<usize> = python_groups(&wheels, 100 << 20).iter().map(|g| g.wheels.len()).collect();
        assert_eq!(groups, vec![2, 2, 1]);
    }

    #[test]
    fn too_many_python_layers_double_the_split() {
        let wheels: Vec<LockedWheel> = (0..60)
            .map(|i| LockedWheel {
                name: format!("nvidia-{i:02}"),
                version: "1".into(),
                url: String::new(),
                sha256: String::new(),
                size: 1,
                installed: Some(200 << 20),
                python_source: None,
                native_libraries: None,
                built_from: None,
            })
            .collect();
        // In parts of 64 MiB they would be 240 layers; 60 of their own are
        // still more than the cap, whatever the split: no parts at least.
        let groups = python_groups(&wheels, 64 << 20);
        assert_eq!(groups.len(), 60);
        assert!(groups.iter().all(|g| g.part.is_none()));
        let fewer: Vec<LockedWheel> = wheels.into_iter().take(20).collect();
        // 20 × 200 MiB: 80 parts of 64 MiB, 40 of 128 MiB (≤ 48).
        let groups = python_groups(&fewer, 64 << 20);
        assert_eq!(groups.len(), 40);
        assert_eq!(groups[0].part, Some(Part { index: 0, of: 2 }));
    }

    #[test]
    fn a_split_distribution_deals_its_largest_files_apart() {
        // torch 2.15's two big libraries, then many small files.
        let mut sizes = vec![3, 495, 1, 427, 2];
        sizes.extend(std::iter::repeat_n(1, 160));
        let part_of = split_distribution(&sizes, 3);
        assert_ne!(part_of[1], part_of[3]);
        let filled = |p: u32| sizes.iter().zip(&part_of).filter(|(_, &q)| q == p).map(|(s, _)| s).sum::<u64>();
        assert_eq!((filled(0), filled(1), filled(2)), (495, 427, 166));
        assert_eq!(split_distribution(&sizes, 3), part_of, "the same files split the same way");
    }
}
