//! The native, daemonless build: Spec → base image → new layers → image
//! config and manifest → OCI layout directory (and, optionally, a registry).
//!
//! Each step lives in its own module: `base` finds the base image and its
//! blobs, `layers` turns app files and local weights into cached layers,
//! `remote` and `stream` bake remote weights (streamed from the source into
//! the layer), `volume` makes the volume-mode layer, `output` writes the
//! layout and pushes. This module only sequences them, records sha256s
//! computed on the way into imgbake.lock, and refuses, with one clear line,
//! what is not built natively yet.

pub mod deps;
pub mod entrypoint;
pub mod layers;
pub mod output;
pub mod remote;
pub mod stream;
pub mod volume;

use crate::image::assemble::{self, ImageSettings, NewLayer};
use crate::image::cache::{CacheStats, LayerCache};
use crate::image::layout::OciRef;
use crate::registry::{Reference, RegistryClientOptions};
use crate::resolve::{base, basefs};
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
    /// How `imgbake.lock` is used (`--locked` forbids updating it).
    pub lock_policy: crate::resolve::LockPolicy,
    /// The cost profile that decides `mode = "auto"` (`--profile`; default:
    /// the target's built-in one), so build follows `imgbake plan --profile`.
    pub profile: Option<crate::cost::profile::Profile>,
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
    /// `imgbake.lock` was (re)written by this build.
    pub lock_written: bool,
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
    #[error(transparent)]
    Lock(#[from] crate::resolve::ResolveError),
    #[error("cannot read the base image's files")]
    BaseFs(#[from] basefs::BaseFsError),
    #[error(transparent)]
    Deps(#[from] Box<deps::DepsError>),
    #[error("cannot assemble the image config")]
    Assemble(#[source] crate::image::assemble::AssembleError),
    #[error("cannot decide `mode = \"auto\"` with the plan's cost model")]
    Plan(#[source] crate::cost::inputs::GatherError),
    #[error(transparent)]
    Entrypoint(#[from] entrypoint::MissingProgram),
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
            "{} run commands inside the image and need a container builder; the native build does not run them (use `imgbake build --builder buildah`, or `imgbake dockerfile` and your own builder)",
            needs_builder.join(", ")
        ));
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
    // A current lock pins a registry base to the digest it was resolved with.
    let pinned_base = match &options.base_override {
        Some(_) => None,
        None => current_lock(spec).and_then(|lock| lock.base.pinned),
    };
    let base_ref = match (&rootfs, &pinned_base) {
        (Some(_), _) => "scratch",
        (None, Some(pinned)) => pinned.as_str(),
        (None, None) => base_text.as_str(),
    };
    let base = base::resolve(base_ref, &cache, &options.registry)?;
    let facts = match &rootfs {
        Some(root) => basefs::facts_of_rootfs(root)?,
        None => basefs::facts_of_base(&base, &cache_dir)?,
    };

    let mut warnings = Vec::new();
    let (mut lock, mut lock_written) =
        crate::resolve::lock_for_build(spec, &base, &facts, &cache_dir, options.lock_policy, &mut warnings)?;
    let mut built = Vec::new();
    if let Some(root) = &rootfs {
        built.push(layers::rootfs_layer(root, &cache)?);
    }
    if let Some(apt) = &lock.apt {
        built.push(deps::apt_layer(apt, &facts, &cache_dir, &cache, &mut warnings).map_err(Box::new)?);
    }
    if let Some(python) = &lock.python {
        built.extend(deps::python_layers(spec, python, &cache_dir, &cache, &mut warnings).map_err(Box::new)?);
    }
    if let Some(conda) = &lock.conda {
        built.push(deps::conda_layer(conda, &cache_dir, &cache).map_err(Box::new)?);
    }
    built.push(layers::app_files_layer(spec, &cache, &mut warnings)?);
    // A bare root filesystem has no image config; give it the usual PATH so
    // runtimes that do not add one (runc, umoci) still find the entrypoint.
    let base_env = if rootfs.is_some() { Some(vec![DEFAULT_PATH_ENV.to_string()]) } else { base.config_env() };
    let mut settings = image_settings(spec, base_env.as_deref());
    if rootfs.is_some() && settings.env.is_none() {
        settings.env = base_env.clone();
    }
    if let Some(conda) = &lock.conda {
        // The conda environment comes first on PATH, as `conda activate` would put it.
        let mut env = settings.env.clone().or_else(|| base_env.clone()).unwrap_or_default();
        prepend_path(&mut env, &format!("{}/bin", conda.target.prefix));
        env.retain(|kv| !kv.starts_with("CONDA_PREFIX="));
        env.push(format!("CONDA_PREFIX={}", conda.target.prefix));
        settings.env = Some(env);
    }
    let image_env = settings.env.as_deref().or(base_env.as_deref());
    let scratch_override = options.base_override.as_deref() == Some("scratch");
    // Before the weights: a missing program must not cost their download first
    // (weights layers hold no programs).
    entrypoint::check_build(spec, &facts, &built, image_env, scratch_override, &mut warnings)?;

    let store = crate::weights::store::WeightsStore::open(&cache_dir)
        .map_err(|e| BuildError::Layers(layers::LayerBuildError::Store(e)))?;
    let mut pinned_weights = Vec::new();
    let mut volume_entries = Vec::new();
    // sha256s computed for weights files whose source gives none, by source.
    let mut computed_hashes = Vec::new();
    // `mode = "auto"`: the plan's decision (the same as `imgbake plan` prints with the same profile).
    let auto = auto_decisions(spec, options)?;
    for entry in &spec.weights {
        let entry = &crate::lock::pinned_entry(entry, &lock);
        if matches!(entry.source, WeightsSource::Local { .. }) {
            built.extend(layers::local_weights_layers(entry, spec, &cache, &mut warnings)?);
            continue;
        }
        let decided = auto.iter().find(|d| d.origin == entry.origin);
        if let Some(decision) = decided {
            warnings.push(format!("mode auto: {}", decision.reason));
        }
        let on_volume =
            entry.mode == WeightsMode::Volume || decided.is_some_and(|d| d.chosen == crate::cost::Placement::Volume);
        if on_volume {
            let (manifest_entry, computed) = volume::manifest_entry(entry, Some(&lock), &store, &mut warnings)?;
            volume_entries.push(manifest_entry);
            computed_hashes.push((entry.uri.clone(), computed));
            continue;
        }
        let baked = remote::bake(entry, spec, &cache, &lock, &store, &mut warnings)?;
        computed_hashes.push((entry.uri.clone(), baked.computed.clone()));
        let locked_revision = lock.weights.iter().find(|f| f.source == entry.uri).and_then(|f| f.revision.as_ref());
        if let (Some(locked), Some(now)) = (locked_revision, &baked.listing.revision) {
            if locked != now {
                warnings.push(format!(
                    "{}: {} is at {now}, imgbake.lock has {locked}; run `imgbake lock` to record the new revision",
                    entry.origin, entry.uri
                ));
            }
        }
        pinned_weights.push(format!("{} → {}", entry.uri, baked.listing.revision.as_deref().unwrap_or("-")));
        built.extend(baked.layers);
    }

    lock_written |= record_computed_hashes(spec, &mut lock, &computed_hashes, options.lock_policy, &mut warnings)?;

    let volume_mode = !volume_entries.is_empty();
    if volume_mode {
        for entry in &volume_entries {
            pinned_weights.push(format!("{} → {}", entry.source, entry.revision.as_deref().unwrap_or("-")));
        }
        let manifest = crate::weights::manifest::WeightsManifest::new(spec, volume_entries);
        built.push(volume::volume_layer(&manifest, &store, &cache)?);
    }

    if volume_mode {
        settings.entrypoint = Some(volume::wrap_entrypoint(&spec.runtime.entrypoint));
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
        lock_written,
    })
}

/// Writes sha256s computed during this build into imgbake.lock (entries
/// that had none), so a later `build --locked` verifies those bytes too.
/// Under `--locked` the lock is left as it is, with a warning. Returns
/// whether the lock was written.
fn record_computed_hashes(
    spec: &Spec,
    lock: &mut crate::lock::Lock,
    computed: &[(String, Vec<(crate::weights::RemoteFile, crate::image::digest::Digest)>)],
    policy: crate::resolve::LockPolicy,
    warnings: &mut Vec<String>,
) -> Result<bool, BuildError> {
    let mut updated = lock.clone();
    let added: usize = computed.iter().map(|(uri, files)| updated.record_weights_hashes(uri, files)).sum();
    if added == 0 {
        return Ok(false);
    }
    let path = crate::lock::lock_path(spec);
    if policy == crate::resolve::LockPolicy::Locked {
        warnings.push(format!(
            "{}: computed the sha256 of {added} weights file(s) the source gives none for; --locked leaves the lock \
             as it is (a build without --locked records them)",
            path.display()
        ));
        return Ok(false);
    }
    updated.write(&path).map_err(|e| BuildError::Lock(e.into()))?;
    *lock = updated;
    Ok(true)
}

/// The lock beside the config when it answers the Spec's current inputs.
fn current_lock(spec: &Spec) -> Option<crate::lock::Lock> {
    let lock = crate::lock::Lock::read(&crate::lock::lock_path(spec)).ok()??;
    let inputs = crate::lock::inputs_of(spec).ok()?;
    lock.is_current(&inputs).then_some(lock)
}

/// The plan's decisions for remote `mode = "auto"` entries (empty when there are none).
fn auto_decisions(spec: &Spec, options: &BuildOptions) -> Result<Vec<crate::cost::decision::Decision>, BuildError> {
    let any_auto =
        spec.weights.iter().any(|e| e.mode == WeightsMode::Auto && !matches!(e.source, WeightsSource::Local { .. }));
    if !any_auto {
        return Ok(Vec::new());
    }
    let gather = crate::cost::inputs::GatherOptions {
        base_override: options.base_override.clone(),
        skip_base_lookup: false,
        registry: options.registry.clone(),
        remote_weights_ratio: 0.0,
    };
    let decisions = crate::cost::auto_modes(spec, &gather, options.profile.as_ref()).map_err(BuildError::Plan)?;
    Ok(decisions.into_iter().filter(|d| d.configured == WeightsMode::Auto).collect())
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

/// Puts `dir` first in the `PATH=` entry (adding one when there is none).
fn prepend_path(env: &mut Vec<String>, dir: &str) {
    match env.iter_mut().find(|kv| kv.starts_with("PATH=")) {
        Some(path) => *path = format!("PATH={dir}:{}", &path["PATH=".len()..]),
        None => env.push(format!("PATH={dir}:{}", &DEFAULT_PATH_ENV["PATH=".len()..])),
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
    fn conda_bin_goes_first_on_path() {
        let mut env = vec!["PATH=/usr/bin:/bin".to_string()];
        prepend_path(&mut env, "/opt/conda/bin");
        assert_eq!(env, ["PATH=/opt/conda/bin:/usr/bin:/bin"]);
        let mut empty = Vec::new();
        prepend_path(&mut empty, "/opt/conda/bin");
        assert!(empty[0].starts_with("PATH=/opt/conda/bin:/usr/local/sbin"), "{empty:?}");
    }

    #[test]
    fn our_env_overrides_the_base_and_keeps_the_rest() {
        let base = vec!["PATH=/usr/bin".to_string(), "LANG=C".to_string()];
        let ours = BTreeMap::from([("LANG".to_string(), "C.UTF-8".to_string()), ("A".to_string(), "1".to_string())]);
        assert_eq!(merge_env(&base, &ours), ["PATH=/usr/bin", "A=1", "LANG=C.UTF-8"]);
    }
}
