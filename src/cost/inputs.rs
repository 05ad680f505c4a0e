//! What the cost model reads, priced from an ImagePlan (every weights
//! source baked): layer sizes of the base image, the dependency layers, the
//! app files, and each weights source's layers exactly as the layout splits
//! them, with their sampled compressibility. No I/O but reading the app
//! files' sample; the model reads [`PlanInputs`] only, so tests can
//! hand-make them.

use crate::image::layer::Compression;
use crate::image::oci::ImageManifest;
use crate::layout::{ImagePlan, LayerContent, PlannedLayer};
use crate::lock::Lock;
use crate::pricing::estimate::{Codec, ImportsInput, LayerEstimate, BYTES_PER_ENTRY_ESTIMATE};
use crate::resolve::base::BaseLookup;
use crate::resolve::weights::ResolvedSource;
use crate::spec::{Spec, Target, WeightsMode, WeightsSource};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaseInput {
    pub image: String,
    /// Empty when the size is unknown and the profile's default is used.
    pub layers: Vec<LayerEstimate>,
    /// How the size was found, or why not.
    pub source: String,
}

/// Why a weights source cannot be kept on a volume (the layout's rule).
pub type VolumeBlocker = Option<String>;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightsInput {
    pub origin: String,
    pub uri: String,
    pub mount: String,
    pub mode: WeightsMode,
    pub local: bool,
    pub files: usize,
    pub bytes: u64,
    /// zstd-1 compressed/original.
    pub ratio: f64,
    pub ratio_source: String,
    /// The layers build makes when it bakes this source.
    pub layers: Vec<LayerEstimate>,
    /// Every file's size, in listing order (download and prefetch simulate per file).
    #[serde(skip)]
    pub file_sizes: Vec<u64>,
    pub volume_blocker: VolumeBlocker,
    /// Why it cannot be a ModelPack artifact (the layout's rule), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_blocker: Option<String>,
}

/// Everything the cost model reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanInputs {
    pub name: String,
    pub config: String,
    pub target: Target,
    pub base: BaseInput,
    /// pip/apt/conda layers from imgbake.lock; empty until the lock is wired in.
    pub dependency_layers: Vec<LayerEstimate>,
    pub dependencies_declared: bool,
    pub app: LayerEstimate,
    pub imports: ImportsInput,
    pub weights: Vec<WeightsInput>,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub weights_updates_per_week: Option<f64>,
    pub notes: Vec<String>,
}

/// Share of a wheel's installed bytes that is `.py` source, for a lock
/// written before it recorded it: measured on numpy, pandas, fastapi,
/// uvicorn, pydantic, transformers, requests and safetensors installed
/// together (108 MB of .py in 369 MB).
const SOURCE_SHARE_OF_INSTALLED: f64 = 0.29;
/// Libraries of such a wheel: one for a platform wheel, none for a
/// pure-Python one (`-none-any`).
fn estimated_libraries(wheel: &crate::deps::python::LockedWheel) -> u64 {
    u64::from(!wheel.filename().ends_with("-none-any.whl"))
}

/// The imports of `spec`'s app from the lock's wheel sizes and the app's files.
fn imports_input(spec: &Spec, bake: &ImagePlan, lock: Option<&Lock>, notes: &mut Vec<String>) -> ImportsInput {
    let mut imports = ImportsInput { bytecode: spec.python.bytecode, ..ImportsInput::default() };
    let wheels = lock.and_then(|l| l.python.as_ref()).map(|p| &p.packages[..]).unwrap_or_default();
    let mut estimated = 0;
    for wheel in wheels {
        let installed = wheel.installed_estimate() as f64;
        imports.python_source += wheel.python_source.unwrap_or((installed * SOURCE_SHARE_OF_INSTALLED) as u64);
        imports.native_libraries += wheel.native_libraries.unwrap_or_else(|| estimated_libraries(wheel));
        estimated += usize::from(wheel.python_source.is_none() || wheel.native_libraries.is_none());
    }
    if estimated > 0 {
        notes.push(format!(
            "imports: {estimated} of {} packages without source bytes and library counts in imgbake.lock (estimated from their installed size and wheel tag; `imgbake lock` records them)",
            wheels.len()
        ));
    }
    // The base's standard library compiles at each start when it has no
    // bytecode and the plan has no layer of it (`bytecode = false`).
    let stdlib = lock.and_then(|l| l.python.as_ref()).and_then(|p| p.stdlib.as_ref());
    let stdlib_layer = bake.layers.iter().any(|l| l.content == LayerContent::StdlibBytecode);
    imports.stdlib_uncompiled = stdlib.is_some_and(|s| s.needs_bytecode()) && !stdlib_layer;
    for layer in &bake.layers {
        if let LayerContent::AppFiles { files } = &layer.content {
            imports.app_source += files
                .iter()
                .filter(|f| f.link.is_none() && f.source.extension().is_some_and(|e| e == "py"))
                .map(|f| f.size)
                .sum::<u64>();
        }
    }
    imports
}

/// The state of `imgbake.lock` for the dependency layers.
#[derive(Debug, Clone, Copy)]
pub struct LockState<'a> {
    pub lock: Option<&'a Lock>,
    /// The lock answers the config's current inputs.
    pub current: bool,
}

/// What the cost model reads, from `bake` (the ImagePlan with every source
/// baked), the resolved sources and the base. `remote_ratio` (the profile's
/// `remote_weights_ratio`) stands in for a remote source that could not be
/// sampled here.
pub fn from_plan(
    spec: &Spec,
    bake: &ImagePlan,
    sources: &[ResolvedSource],
    base: BaseInput,
    lock: LockState,
    remote_ratio: f64,
) -> PlanInputs {
    let mut notes = Vec::new();
    let deps = &spec.dependencies;
    let dependencies_declared = !deps.pip.is_empty()
        || !deps.apt.is_empty()
        || !deps.conda.is_empty()
        || deps.pip_file.is_some()
        || deps.apt_file.is_some()
        || deps.conda_file.is_some();
    let mut dependency_layers = Vec::new();
    if dependencies_declared {
        match lock.lock {
            Some(locked) => {
                dependency_layers = bake.layers.iter().filter_map(|l| crate::layout::dependency_sizes::estimate_planned(l, locked)).collect();
                notes.push(format!(
                    "dependency layers estimated from the package sizes in imgbake.lock{}",
                    if lock.current { "" } else { " (stale: the config changed since; run `imgbake lock`)" }
                ));
            }
            None => notes.push(
                "dependencies not resolved: pip/apt/conda layers and the packages' imports are not counted until imgbake.lock exists (run `imgbake lock`)"
                    .into(),
            ),
        }
    }
    let app = bake
        .layers
        .iter()
        .find_map(|layer| match &layer.content {
            LayerContent::AppFiles { files } => {
                let paths: Vec<std::path::PathBuf> =
                    files.iter().filter(|f| f.link.is_none()).map(|f| f.source.clone()).collect();
                let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
                let ratio = if paths.is_empty() { 1.0 } else { crate::image::sample::sampled_ratio(&paths) };
                Some(LayerEstimate::from_files(layer.name.clone(), &sizes, ratio, layer.compression))
            }
            _ => None,
        })
        .unwrap_or_else(|| LayerEstimate::from_files("app files".into(), &[], 1.0, Compression::None));
    let weights = spec
        .weights
        .iter()
        .map(|entry| {
            let layers: Vec<&PlannedLayer> = bake
                .layers
                .iter()
                .filter(|layer| match &layer.content {
                    LayerContent::Weights { origin, .. } | LayerContent::HfSnapshot { origin, .. } => {
                        *origin == entry.origin
                    }
                    _ => false,
                })
                .collect();
            let mut file_sizes = Vec::new();
            // The layers' sampled ratios, weighted by their bytes.
            let mut weighted = 0.0;
            for layer in &layers {
                if let LayerContent::Weights { files, ratio: sampled, .. } = &layer.content {
                    file_sizes.extend(files.iter().map(|f| f.file.size));
                    weighted += sampled * files.iter().map(|f| f.file.size).sum::<u64>() as f64;
                }
            }
            let total: u64 = file_sizes.iter().sum();
            let mut ratio = if total == 0 { 0.0 } else { weighted / total as f64 };
            let local = matches!(entry.source, WeightsSource::Local { .. });
            let source = sources.iter().find(|s| s.entry.origin == entry.origin);
            let unsampled = source.is_some_and(|s| !s.sampled());
            if unsampled {
                ratio = remote_ratio;
            }
            let ratio_source = match source {
                Some(source) if unsampled => format!("profile: remote_weights_ratio ({})", source.ratio_source),
                Some(source) => source.ratio_source.clone(),
                None => format!(
                    "sampled: zstd -1 over up to {} MiB of each layer's files",
                    crate::image::sample::LOCAL_SAMPLE_BYTES >> 20
                ),
            };
            let estimates =
                layers.iter().map(|layer| estimate_weights_layer(layer, unsampled.then_some(ratio))).collect();
            WeightsInput {
                origin: entry.origin.clone(),
                uri: entry.uri.clone(),
                mount: entry.mount.clone(),
                mode: entry.mode,
                local,
                files: file_sizes.len(),
                bytes: file_sizes.iter().sum(),
                ratio,
                ratio_source,
                layers: estimates,
                file_sizes,
                volume_blocker: crate::layout::weights::volume_blocker(entry, spec),
                artifact_blocker: crate::layout::weights::artifact_blocker(entry),
            }
        })
        .collect();
    let imports = imports_input(spec, bake, lock.lock, &mut notes);
    let scaling = spec.scaling.as_ref();
    PlanInputs {
        name: spec.name.clone(),
        config: spec.source.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        target: spec.target.name,
        base,
        dependency_layers,
        dependencies_declared,
        app,
        imports,
        weights,
        min_replicas: scaling.map(|s| s.min_replicas).unwrap_or(0),
        max_replicas: scaling.map(|s| s.max_replicas.max(s.min_replicas)).unwrap_or(1).max(1),
        weights_updates_per_week: spec.weights_updates_per_week,
        notes,
    }
}

/// A planned weights layer (or hf-cache snapshot layer) as the model sees
/// it; `ratio` replaces the layer's own when its source was not sampled.
fn estimate_weights_layer(layer: &PlannedLayer, ratio: Option<f64>) -> LayerEstimate {
    match &layer.content {
        LayerContent::Weights { files, ratio: sampled, .. } => {
            let sizes: Vec<u64> = files.iter().map(|f| f.file.size).collect();
            LayerEstimate::from_files(layer.name.clone(), &sizes, ratio.unwrap_or(*sampled), layer.compression)
        }
        LayerContent::HfSnapshot { links, refs, .. } => {
            // One symlink per file and a ref: headers only.
            let sizes = vec![0u64; links.len() + refs.len()];
            LayerEstimate::from_files(layer.name.clone(), &sizes, 0.1, layer.compression)
        }
        _ => LayerEstimate::from_files(layer.name.clone(), &[], 1.0, layer.compression),
    }
}

/// The base's layers as the model sees them: blob sizes exact from the
/// manifest; unpacked sizes and entries read from the blobs when they are
/// on this machine, else estimated.
pub fn base_input(image: &str, lookup: BaseLookup) -> BaseInput {
    let image = image.to_string();
    let unknown = |why: String| BaseInput { image: image.clone(), layers: Vec::new(), source: why };
    let (manifest, where_from, local_blobs) = match lookup {
        BaseLookup::Scratch => {
            return BaseInput { image, layers: Vec::new(), source: "scratch: no base layers".into() }
        }
        BaseLookup::Rootfs { sizes } => {
            let layer =
                LayerEstimate::from_files(format!("rootfs {image}"), &sizes, 0.4, crate::layout::compression::GZIP);
            return BaseInput {
                image,
                layers: vec![layer],
                source: "root filesystem walked; compressed size assumes gzip to 40% (typical for Debian rootfs)"
                    .into(),
            };
        }
        BaseLookup::Unknown(why) => return unknown(format!("{why}; profile default used")),
        BaseLookup::Manifest { bytes, where_from, blobs } => (bytes, where_from, blobs),
    };
    match serde_json::from_slice::<ImageManifest>(&manifest) {
        Ok(view) => {
            let layers = view
                .layers
                .iter()
                .enumerate()
                .map(|(index, layer)| {
                    let codec = if layer.media_type.contains("zstd") {
                        Codec::Zstd
                    } else if layer.media_type.contains("gzip") {
                        Codec::Gzip
                    } else {
                        Codec::None
                    };
                    // Manifests give blob sizes only; unpacked size is
                    // estimated at 2.5× for compressed layers (typical of
                    // distro and CUDA layers).
                    let uncompressed = match codec {
                        Codec::None => layer.size,
                        _ => (layer.size as f64 * 2.5) as u64,
                    };
                    let shape = local_blobs.as_ref().and_then(|(blobs, cache)| {
                        crate::resolve::basefs::layer_shape(blobs, &layer.digest, &layer.media_type, cache).ok()
                    });
                    LayerEstimate {
                        what: format!("base layer {}", index + 1),
                        uncompressed: shape.map_or(uncompressed, |s| s.tar_bytes),
                        compressed: layer.size,
                        codec,
                        exact: true,
                        entries: shape.map_or((uncompressed / BYTES_PER_ENTRY_ESTIMATE).max(1), |s| s.entries),
                    }
                })
                .collect();
            let unpacked = if local_blobs.is_some() {
                "unpacked sizes and entries read from the layers"
            } else {
                "unpacked sizes estimated at 2.5× compressed, entries at one per 32 KiB"
            };
            BaseInput { image, layers, source: format!("{where_from}: blob sizes exact, {unpacked}") }
        }
        Err(error) => unknown(format!("{image}: malformed manifest ({error}); profile default used")),
    }
}
