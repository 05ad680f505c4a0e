//! Gathers what the cost model needs from a Spec without building: layer
//! sizes of the base image, the app files, every weights source (split into
//! layers exactly as build splits them) and their compressibility.
//!
//! Only this module touches the network (registry manifests, weights
//! listings); the model reads [`PlanInputs`] only, so tests can hand-make them.

use crate::execute::layers::{sampled_ratio, split_into_layers, WeightsContent, WeightsFile};
use crate::image::appfiles;
use crate::image::layout::parse_oci_ref;
use crate::image::oci::ImageManifest;
use crate::registry::{Reference, RegistryClient, RegistryClientOptions};
use crate::spec::{self, Spec, Target, WeightsEntry, WeightsLayout, WeightsMode, WeightsSource};
use crate::weights::filter::PathFilter;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The ratio above which build's `compression = "auto"` stores a layer
/// uncompressed. Mirrors `INCOMPRESSIBLE_RATIO` in src/execute/layers.rs (private
/// there); `auto_codec_matches_build` below pins the two together by behaviour.
const INCOMPRESSIBLE_RATIO: f64 = 0.90;
/// Bytes read from the largest file of a remote source to estimate its compressibility.
const REMOTE_SAMPLE_BYTES: u64 = 4 << 20;
/// safetensors headers are JSON, a few MB at most; anything larger is not one.
const MAX_SAFETENSORS_HEADER: u64 = 100 << 20;
/// tar: a 512-byte header per entry, data padded to 512, two zero blocks at the end.
const TAR_BLOCK: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Gzip,
    Zstd,
    None,
}

/// One layer as it will be in the image: tar size and estimated blob size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerEstimate {
    pub what: String,
    pub uncompressed: u64,
    pub compressed: u64,
    pub codec: Codec,
    /// True when `compressed` is known (a built or published layer), not estimated.
    pub exact: bool,
    /// Tar entries (files, directories, links): unpacking pays per entry too.
    pub entries: u64,
}

/// Bytes of unpacked layer per tar entry when the entries cannot be counted:
/// the debootstrap bookworm base here has 4550 entries in 144 MB (32 KB
/// each); distribution and CUDA layers are in the same range.
pub const BYTES_PER_ENTRY_ESTIMATE: u64 = 32 << 10;

impl LayerEstimate {
    /// A tar layer of files with these sizes, compressed with the codec build
    /// would choose for `ratio` (zstd-1 compressed/original of a sample).
    pub fn from_files(what: String, sizes: &[u64], ratio: f64, setting: spec::Compression) -> LayerEstimate {
        let uncompressed = tar_size(sizes);
        let codec = codec_for(setting, ratio);
        // gzip -6 and zstd -3 land within a few percent of zstd -1 on weights
        // and source files; one sampled ratio serves all three.
        let compressed = match codec {
            Codec::None => uncompressed,
            Codec::Gzip | Codec::Zstd => ((uncompressed as f64) * ratio.clamp(0.0, 1.0)).ceil() as u64,
        };
        // Each file, plus about one directory per eight files.
        let entries = sizes.len() as u64 + (sizes.len() as u64).div_ceil(8);
        LayerEstimate { what, uncompressed, compressed, codec, exact: false, entries }
    }
}

/// The layer codec build picks (`compression_for` in src/execute/layers.rs).
pub fn codec_for(setting: spec::Compression, ratio: f64) -> Codec {
    match setting {
        spec::Compression::None => Codec::None,
        spec::Compression::Gzip => Codec::Gzip,
        spec::Compression::Zstd => Codec::Zstd,
        spec::Compression::Auto if ratio > INCOMPRESSIBLE_RATIO => Codec::None,
        spec::Compression::Auto => Codec::Gzip,
    }
}

/// Bytes of a tar stream holding files of these sizes.
pub fn tar_size(sizes: &[u64]) -> u64 {
    sizes.iter().map(|s| TAR_BLOCK + s.div_ceil(TAR_BLOCK) * TAR_BLOCK).sum::<u64>() + 2 * TAR_BLOCK
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaseInput {
    pub image: String,
    /// Empty when the size is unknown and the profile's default is used.
    pub layers: Vec<LayerEstimate>,
    /// How the size was found, or why not.
    pub source: String,
}

/// Why a weights source cannot be kept on a volume by this version's build.
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
    pub weights: Vec<WeightsInput>,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub weights_updates_per_week: Option<f64>,
    pub notes: Vec<String>,
}

/// How to look things up.
#[derive(Debug, Clone)]
pub struct GatherOptions {
    /// Use this base instead of the config's (as `build --base`).
    pub base_override: Option<String>,
    /// Do not ask a registry for the base image's manifest.
    pub skip_base_lookup: bool,
    pub registry: RegistryClientOptions,
    /// zstd-1 ratio assumed for remote weights (the profile's `remote_weights_ratio`).
    pub remote_weights_ratio: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error("cannot select the app files")]
    AppFiles(#[source] appfiles::AppFilesError),
    #[error("{origin}: cannot list {uri}")]
    Weights {
        origin: String,
        uri: String,
        #[source]
        source: crate::weights::WeightsError,
    },
    #[error("{origin}: cannot read the weights directory {}", path.display())]
    Walk {
        origin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Pattern { origin: String, message: String },
}

pub fn gather(spec: &Spec, options: &GatherOptions) -> Result<PlanInputs, GatherError> {
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
        let lock = crate::lock::Lock::read(&crate::lock::lock_path(spec)).ok().flatten();
        let current = crate::lock::inputs_of(spec).ok().zip(lock.as_ref()).is_some_and(|(i, l)| l.is_current(&i));
        match lock {
            Some(lock) => {
                dependency_layers = super::deps::layers_from_lock(&lock);
                notes.push(format!(
                    "dependency layers estimated from the package sizes in imgbake.lock{}",
                    if current { "" } else { " (stale: the config changed since; run `imgbake lock`)" }
                ));
            }
            None => notes.push(
                "dependencies not resolved: pip/apt/conda layers are not counted until imgbake.lock exists (run `imgbake lock`)"
                    .into(),
            ),
        }
    }
    let base = base_input(spec, options);
    let app = app_layer(spec)?;
    let mut weights = Vec::new();
    for entry in &spec.weights {
        weights.push(weights_input(entry, spec, options.remote_weights_ratio)?);
    }
    let scaling = spec.scaling.as_ref();
    Ok(PlanInputs {
        name: spec.name.clone(),
        config: spec.source.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        target: spec.target.name,
        base,
        dependency_layers,
        dependencies_declared,
        app,
        weights,
        min_replicas: scaling.map(|s| s.min_replicas).unwrap_or(0),
        max_replicas: scaling.map(|s| s.max_replicas.max(s.min_replicas)).unwrap_or(1).max(1),
        weights_updates_per_week: spec.weights_updates_per_week,
        notes,
    })
}

fn base_input(spec: &Spec, options: &GatherOptions) -> BaseInput {
    let image = options.base_override.clone().unwrap_or_else(|| spec.base.image.clone());
    let unknown = |why: String| BaseInput { image: image.clone(), layers: Vec::new(), source: why };
    if image == "scratch" {
        return BaseInput { image, layers: Vec::new(), source: "scratch: no base layers".into() };
    }
    if let Some(root) = image.strip_prefix(crate::execute::ROOTFS_PREFIX) {
        let sizes: Vec<u64> = walkdir::WalkDir::new(root)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .collect();
        let layer = LayerEstimate::from_files(format!("rootfs {root}"), &sizes, 0.4, spec::Compression::Gzip);
        return BaseInput {
            image,
            layers: vec![layer],
            source: "root filesystem walked; compressed size assumes gzip to 40% (typical for Debian rootfs)".into(),
        };
    }
    // A local layout's blobs are here: their tar bytes and entries are read exactly.
    let mut local_blobs = None;
    let (manifest, where_from) = if let Some(oci) = parse_oci_ref(&image) {
        local_blobs = crate::image::blobs::BlobStore::open(&oci.dir).ok();
        match crate::image::layout::read_image(&oci.dir, &oci.tag) {
            Ok(read) => (read.manifest, "OCI layout manifest"),
            Err(error) => return unknown(format!("cannot read {image} ({error}); profile default used")),
        }
    } else if options.skip_base_lookup {
        return unknown("not looked up (--skip-base-lookup); profile default used".into());
    } else {
        match registry_manifest(&image, &options.registry) {
            Ok(bytes) => (bytes, "registry manifest"),
            Err(why) => return unknown(format!("{why}; profile default used")),
        }
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
                    let shape = local_blobs.as_ref().and_then(|blobs| {
                        let cache = crate::image::cache::LayerCache::default_dir().ok()?;
                        crate::resolve::basefs::layer_shape(blobs, &layer.digest, &layer.media_type, &cache).ok()
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

fn registry_manifest(image: &str, registry: &RegistryClientOptions) -> Result<Vec<u8>, String> {
    let reference: Reference = image.parse().map_err(|e| format!("`{image}` is not an image reference ({e})"))?;
    let mut options = registry.clone();
    options.max_retries = 0;
    options.connect_timeout = std::time::Duration::from_secs(5);
    options.timeout = std::time::Duration::from_secs(10);
    let client = RegistryClient::new(options).map_err(|e| format!("no registry client ({e})"))?;
    let fetched = client.fetch_manifest(&reference).map_err(|e| format!("{} unreachable ({e})", reference.registry))?;
    let resolved = client
        .resolve_platform(&reference, fetched, "linux", "amd64")
        .map_err(|e| format!("{image}: no linux/amd64 manifest ({e})"))?;
    Ok(resolved.bytes)
}

fn app_layer(spec: &Spec) -> Result<LayerEstimate, GatherError> {
    let root = &spec.app.root;
    let config_file = spec.source.path.file_name().map(PathBuf::from).into_iter().collect::<Vec<_>>();
    let selection = appfiles::select_app_files(root, &spec.app.include, &spec.app.exclude, &config_file)
        .map_err(GatherError::AppFiles)?;
    let paths: Vec<PathBuf> = selection.files.iter().map(|f| root.join(f)).collect();
    let sizes: Vec<u64> = paths.iter().map(|p| std::fs::symlink_metadata(p).map(|m| m.len()).unwrap_or(0)).collect();
    // Build compresses the app layer with gzip under `auto` (sample ratio 0 there).
    let setting = if spec.compression == spec::Compression::Auto { spec::Compression::Gzip } else { spec.compression };
    let ratio = if paths.is_empty() { 1.0 } else { sampled_ratio(&paths) };
    Ok(LayerEstimate::from_files("app files".into(), &sizes, ratio, setting))
}

fn weights_input(entry: &WeightsEntry, spec: &Spec, remote_ratio: f64) -> Result<WeightsInput, GatherError> {
    let (files, ratio, ratio_source, local) = match &entry.source {
        WeightsSource::Local { path } => {
            let files = local_files(entry, path)?;
            let paths: Vec<PathBuf> = files
                .iter()
                .filter_map(|f| match &f.content {
                    WeightsContent::Local(path) => Some(path.clone()),
                    WeightsContent::Remote(_) => None,
                })
                .collect();
            (files, sampled_ratio(&paths), "sampled: zstd -1 over up to 8 MiB of the files".to_string(), true)
        }
        _ => {
            let client = crate::weights::source::SourceClient::for_entry(entry).map_err(|source| {
                GatherError::Weights { origin: entry.origin.clone(), uri: entry.uri.clone(), source }
            })?;
            let listing = client.list(entry).map_err(|source| GatherError::Weights {
                origin: entry.origin.clone(),
                uri: entry.uri.clone(),
                source,
            })?;
            // hf-cache: build bakes the blobs (in the cache tree's order) under
            // their blob paths; plain: the files as listed.
            let files = match entry.layout {
                WeightsLayout::HfCache => crate::weights::hf_cache::tree(entry, &listing)
                    .blobs
                    .into_iter()
                    .map(|(f, blob)| WeightsFile { size: f.size, content: WeightsContent::Remote(f), relative: blob })
                    .collect(),
                WeightsLayout::Plain => listing
                    .files
                    .iter()
                    .map(|f| WeightsFile {
                        content: WeightsContent::Remote(f.clone()),
                        relative: f.path.clone(),
                        size: f.size,
                    })
                    .collect(),
            };
            let (ratio, how) = match listing.files.iter().max_by_key(|f| f.size) {
                Some(largest) => match sample_remote(&client, largest) {
                    Ok((ratio, sampled)) => {
                        (ratio, format!("sampled: zstd -1 over {sampled} bytes of {} (the largest file)", largest.path))
                    }
                    Err(error) => (
                        remote_ratio,
                        format!("profile: remote_weights_ratio (sampling {} failed: {error})", largest.path),
                    ),
                },
                None => (remote_ratio, "profile: remote_weights_ratio (no files)".into()),
            };
            (files, ratio, how, false)
        }
    };
    let bytes = files.iter().map(|f| f.size).sum();
    let count = files.len();
    let file_sizes = files.iter().map(|f| f.size).collect();
    let layers = weights_layers(entry, spec, files, ratio);
    let remote_plain = matches!(entry.source, WeightsSource::Hf { .. }) && entry.layout == WeightsLayout::Plain;
    let volume_blocker = if local {
        Some("a local directory is already on the build machine; volume mode needs a remote source".to_string())
    } else if !remote_plain {
        Some("volume mode is available for hf:// sources with layout \"plain\" only in this version".to_string())
    } else if spec.runtime.entrypoint.is_empty() {
        Some("volume mode wraps the config's entrypoint with the prefetch hook, but the config has none".to_string())
    } else {
        None
    };
    Ok(WeightsInput {
        origin: entry.origin.clone(),
        uri: entry.uri.clone(),
        mount: entry.mount.clone(),
        mode: entry.mode,
        local,
        files: count,
        bytes,
        ratio,
        ratio_source,
        layers,
        file_sizes,
        volume_blocker,
    })
}

/// Reads up to [`REMOTE_SAMPLE_BYTES`] of a remote file's data (after a
/// safetensors header, which is JSON and would flatter the ratio) and
/// returns its zstd-1 ratio and the bytes sampled.
fn sample_remote(
    client: &crate::weights::source::SourceClient,
    file: &crate::weights::RemoteFile,
) -> Result<(f64, usize), String> {
    use std::io::Read;
    let mut reader = client.open(file).map_err(|e| e.to_string())?;
    if file.path.ends_with(".safetensors") {
        let mut length = [0u8; 8];
        reader.read_exact(&mut length).map_err(|e| e.to_string())?;
        let header = u64::from_le_bytes(length);
        // Not a real header (too large): sample what follows as it is.
        if header <= MAX_SAFETENSORS_HEADER {
            std::io::copy(&mut (&mut reader).take(header), &mut std::io::sink()).map_err(|e| e.to_string())?;
        }
    }
    let mut sample = Vec::new();
    reader.take(REMOTE_SAMPLE_BYTES).read_to_end(&mut sample).map_err(|e| e.to_string())?;
    if sample.is_empty() {
        return Err("no data".into());
    }
    Ok((crate::execute::layers::compression_ratio(&sample), sample.len()))
}

/// The layers build makes for these files (src/execute/layers.rs weights_layers;
/// hf-cache adds one small layer of snapshot links and refs).
pub fn weights_layers(entry: &WeightsEntry, spec: &Spec, files: Vec<WeightsFile>, ratio: f64) -> Vec<LayerEstimate> {
    let groups = split_into_layers(files, spec.weights_split_size);
    let parts = groups.len();
    let mut layers: Vec<LayerEstimate> = groups
        .iter()
        .enumerate()
        .map(|(index, group)| {
            let what = if parts == 1 {
                format!("weights {}", entry.mount)
            } else {
                format!("weights {} {}/{parts}", entry.mount, index + 1)
            };
            let sizes: Vec<u64> = group.iter().map(|f| f.size).collect();
            LayerEstimate::from_files(what, &sizes, ratio, spec.compression)
        })
        .collect();
    if entry.layout == WeightsLayout::HfCache && !matches!(entry.source, WeightsSource::Local { .. }) {
        // One symlink per file and a ref: headers only, always gzip (src/execute/remote.rs).
        let links = vec![0u64; groups.iter().map(Vec::len).sum::<usize>() + 1];
        let what = format!("weights {} snapshot", entry.mount);
        layers.push(LayerEstimate::from_files(what, &links, 0.1, spec::Compression::Gzip));
    }
    layers
}

fn local_files(entry: &WeightsEntry, root: &Path) -> Result<Vec<WeightsFile>, GatherError> {
    let filter = PathFilter::new(&entry.allow_patterns, &entry.ignore_patterns)
        .map_err(|message| GatherError::Pattern { origin: entry.origin.clone(), message })?;
    let mut files = Vec::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name() {
        let item = item.map_err(|e| GatherError::Walk {
            origin: entry.origin.clone(),
            path: e.path().unwrap_or(root).to_path_buf(),
            source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed")),
        })?;
        if item.file_type().is_dir() {
            continue;
        }
        let relative = item.path().strip_prefix(root).unwrap_or(item.path()).to_string_lossy().into_owned();
        if !filter.matches(&relative) {
            continue;
        }
        let size = std::fs::metadata(item.path()).map(|m| m.len()).unwrap_or(0);
        files.push(WeightsFile { content: WeightsContent::Local(item.path().to_path_buf()), relative, size });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tar_of_two_files_counts_headers_padding_and_the_end_blocks() {
        // 1 byte → 512 header + 512 data; 1024 bytes → 512 + 1024; + 1024 end.
        assert_eq!(tar_size(&[1, 1024]), 512 + 512 + 512 + 1024 + 1024);
    }

    #[test]
    fn auto_codec_matches_build() {
        assert_eq!(codec_for(spec::Compression::Auto, 0.95), Codec::None);
        assert_eq!(codec_for(spec::Compression::Auto, 0.5), Codec::Gzip);
        assert_eq!(codec_for(spec::Compression::Zstd, 0.95), Codec::Zstd);
        let layer = LayerEstimate::from_files("w".into(), &[1 << 20], 0.5, spec::Compression::Auto);
        assert_eq!(layer.compressed, (layer.uncompressed as f64 * 0.5).ceil() as u64);
    }
}
