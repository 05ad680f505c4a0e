//! The native, daemonless build: Spec → base image → new layers → image
//! config and manifest → OCI layout directory (and, optionally, a registry).
//!
//! Each step lives in its own module: `base` finds the base image and its
//! blobs, `layers` turns app files and local weights into cached layers,
//! `output` writes the layout and pushes. This module only sequences them
//! and refuses, with one clear line, what is not built natively yet.

pub mod base;
pub mod layers;
pub mod output;
pub mod remote;
pub mod volume;

use crate::image::assemble::{self, ImageSettings, NewLayer};
use crate::image::cache::{CacheStats, LayerCache};
use crate::image::layout::OciRef;
use crate::registry::{Reference, RegistryClientOptions};
use crate::spec::{Spec, WeightsMode, WeightsSource};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `--base rootfs:DIR`: a root filesystem directory becomes the first layer.
pub const ROOTFS_PREFIX: &str = "rootfs:";
const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything `build` needs besides the Spec; made from CLI flags in one place.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where the image goes: an OCI layout directory and tag.
    pub output: OciRef,
    /// Also push to this registry reference.
    pub push: Option<Reference>,
    /// Use this base instead of the config's (`scratch`, `oci:DIR[:TAG]`, or a reference).
    pub base_override: Option<String>,
    /// Layer cache directory (default `$XDG_CACHE_HOME/imgbake`).
    pub cache_dir: Option<PathBuf>,
    pub registry: RegistryClientOptions,
}

/// What a build produced, for the CLI to print and tests to check.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub manifest_digest: crate::image::digest::Digest,
    pub output: OciRef,
    pub base: String,
    /// The base image's manifest digest when it came from a registry.
    pub base_pinned: Option<String>,
    pub layers: Vec<layers::BuiltLayer>,
    pub pushed: Option<String>,
    /// `source → pinned revision` of every remote weights source.
    pub pinned_weights: Vec<String>,
    pub cache: CacheStats,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting that needs something not built yet; exit status 2.
    #[error("{0}")]
    NotAvailable(String),
    #[error(transparent)]
    Base(#[from] base::BaseError),
    #[error(transparent)]
    Layers(#[from] layers::LayerBuildError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
    #[error("cannot open the layer cache")]
    Cache(#[source] crate::image::cache::CacheError),
    #[error("cannot assemble the image config")]
    Assemble(#[source] crate::image::assemble::AssembleError),
}

/// Says which settings of the Spec the native build cannot honour yet.
pub fn unsupported_settings(spec: &Spec) -> Option<String> {
    let build = &spec.build;
    let needs_builder: Vec<&str> = [
        ("pre_build_commands", !build.pre_build_commands.is_empty()),
        ("shell_commands", !build.shell_commands.is_empty()),
        ("build_commands", !build.build_commands.is_empty()),
        ("dockerfile_path", build.dockerfile_path.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| *name)
    .collect();
    if !needs_builder.is_empty() {
        return Some(format!(
            "{} run commands inside the image and need a container builder; the native build does not run them (use `imgbake dockerfile` with buildah or docker)",
            needs_builder.join(", ")
        ));
    }
    let deps = &spec.dependencies;
    let managers: Vec<&str> = [
        ("pip", !deps.pip.is_empty() || deps.pip_file.is_some()),
        ("apt", !deps.apt.is_empty() || deps.apt_file.is_some()),
        ("conda", !deps.conda.is_empty() || deps.conda_file.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| *name)
    .collect();
    if !managers.is_empty() {
        return Some(format!("installing {} dependencies is not available yet in this version", managers.join("/")));
    }
    for entry in &spec.weights {
        if entry.mode == WeightsMode::Volume && matches!(entry.source, WeightsSource::Local { .. }) {
            return Some(format!(
                "volume mode for {} needs a remote source (hf://, s3://, gs://, azure://, https://); \
                 a local directory is only baked",
                entry.origin
            ));
        }
        if entry.mode == WeightsMode::Volume && spec.runtime.entrypoint.is_empty() {
            return Some(format!(
                "volume mode for {} wraps the config's entrypoint with the prefetch hook, but the config has none",
                entry.origin
            ));
        }
    }
    None
}

pub fn build(spec: &Spec, options: &BuildOptions) -> Result<BuildOutcome, BuildError> {
    if let Some(message) = unsupported_settings(spec) {
        return Err(BuildError::NotAvailable(message));
    }
    let cache_dir = match &options.cache_dir {
        Some(dir) => dir.clone(),
        None => LayerCache::default_dir().map_err(BuildError::Cache)?,
    };
    let cache = LayerCache::open(&cache_dir).map_err(BuildError::Cache)?;
    let base_text = options.base_override.clone().unwrap_or_else(|| spec.base.image.clone());
    let rootfs = base_text.strip_prefix(ROOTFS_PREFIX).map(PathBuf::from);
    let base = base::resolve(if rootfs.is_some() { "scratch" } else { &base_text }, &cache, &options.registry)?;

    let mut warnings = Vec::new();
    let mut built = Vec::new();
    if let Some(root) = &rootfs {
        built.push(layers::rootfs_layer(root, &cache)?);
    }
    built.push(layers::app_files_layer(spec, &cache, &mut warnings)?);
    let store = crate::weights::store::WeightsStore::open(&cache_dir)
        .map_err(|e| BuildError::Layers(layers::LayerBuildError::Store(e)))?;
    let mut pinned_weights = Vec::new();
    let mut volume_entries = Vec::new();
    for entry in &spec.weights {
        if matches!(entry.source, WeightsSource::Local { .. }) {
            built.extend(layers::local_weights_layers(entry, spec, &cache, &mut warnings)?);
            continue;
        }
        if entry.mode == WeightsMode::Volume {
            volume_entries.push(volume::manifest_entry(entry, &store, &mut warnings)?);
            continue;
        }
        if entry.mode == WeightsMode::Auto {
            warnings.push(format!("{}: mode auto bakes it (the plan's cost model is not built yet)", entry.origin));
        }
        let baked = remote::bake(entry, spec, &cache, &store, &mut warnings)?;
        pinned_weights.push(format!("{} → {}", entry.uri, baked.listing.revision.as_deref().unwrap_or("-")));
        built.extend(baked.layers);
    }

    let volume_mode = !volume_entries.is_empty();
    if volume_mode {
        for entry in &volume_entries {
            pinned_weights.push(format!("{} → {}", entry.source, entry.revision.as_deref().unwrap_or("-")));
        }
        let manifest = crate::weights::manifest::WeightsManifest::new(spec, volume_entries);
        built.push(volume::volume_layer(&manifest, &store, &cache)?);
    }

    // A bare root filesystem has no image config; give it the usual PATH so
    // runtimes that do not add one (runc, umoci) still find the entrypoint.
    let base_env = if rootfs.is_some() { Some(vec![DEFAULT_PATH_ENV.to_string()]) } else { base.config_env() };
    let mut settings = image_settings(spec, base_env.as_deref());
    if volume_mode {
        settings.entrypoint = Some(volume::wrap_entrypoint(&spec.runtime.entrypoint));
    }
    if rootfs.is_some() && settings.env.is_none() {
        settings.env = base_env;
    }
    let new_layers: Vec<NewLayer> =
        built.iter().map(|b| NewLayer { layer: b.layer.clone(), history: b.history.clone() }).collect();
    let image = assemble::assemble(base.image.as_ref(), &new_layers, &settings, &assemble::created_timestamp())
        .map_err(BuildError::Assemble)?;
    output::write_layout(&options.output, &image, &base, &built, &cache)?;
    let pushed = match &options.push {
        Some(reference) => Some(output::push(&options.output, &image, &base, reference, &options.registry)?),
        None => None,
    };
    Ok(BuildOutcome {
        manifest_digest: image.manifest_digest.clone(),
        output: options.output.clone(),
        base: base_text,
        base_pinned: base.pinned.clone(),
        layers: built,
        pushed,
        pinned_weights,
        cache: cache.stats(),
        warnings,
    })
}

/// The image's runtime settings from the Spec; `None` keeps the base's value.
fn image_settings(spec: &Spec, base_env: Option<&[String]>) -> ImageSettings {
    let mut environment = spec.runtime.environment.clone();
    // huggingface_hub / transformers find an hf-cache layout through HF_HUB_CACHE.
    if let Some(entry) = spec.weights.iter().find(|e| e.layout == crate::spec::WeightsLayout::HfCache) {
        environment.entry("HF_HUB_CACHE".to_string()).or_insert_with(|| entry.path.clone());
    }
    let mut labels = BTreeMap::new();
    labels.insert("org.opencontainers.image.title".to_string(), spec.name.clone());
    labels.insert("dev.imgbake.version".to_string(), env!("CARGO_PKG_VERSION").to_string());
    let config_name = spec.source.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    labels.insert("dev.imgbake.config".to_string(), config_name);
    let env = (!environment.is_empty()).then(|| merge_env(base_env.unwrap_or(&[]), &environment));
    let (entrypoint, cmd) = if spec.runtime.entrypoint.is_empty() {
        (None, None)
    } else {
        // An empty Cmd, so the base's Cmd is not appended to our entrypoint.
        (Some(spec.runtime.entrypoint.clone()), Some(Vec::new()))
    };
    ImageSettings {
        env,
        entrypoint,
        cmd,
        working_dir: Some(spec.app.workdir.clone()),
        exposed_ports: spec.runtime.port.map(|p| vec![format!("{p}/tcp")]),
        labels: Some(labels),
    }
}

/// The base's `KEY=value` list with ours set on top (ours win, order kept).
fn merge_env(base: &[String], ours: &BTreeMap<String, String>) -> Vec<String> {
    let mut merged: Vec<String> = base
        .iter()
        .filter(|kv| !ours.contains_key(kv.split_once('=').map(|(k, _)| k).unwrap_or(kv)))
        .cloned()
        .collect();
    merged.extend(ours.iter().map(|(k, v)| format!("{k}={v}")));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_env_overrides_the_base_and_keeps_the_rest() {
        let base = vec!["PATH=/usr/bin".to_string(), "LANG=C".to_string()];
        let ours = BTreeMap::from([("LANG".to_string(), "C.UTF-8".to_string()), ("A".to_string(), "1".to_string())]);
        assert_eq!(merge_env(&base, &ours), ["PATH=/usr/bin", "A=1", "LANG=C.UTF-8"]);
    }
}
