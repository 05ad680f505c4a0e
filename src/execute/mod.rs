//! The native, daemonless build: executes an ImagePlan. Each planned layer
//! is written (or found in the layer cache) in order on top of the resolved
//! base, then the image config and manifest go to an OCI layout directory
//! (and, optionally, a registry).
//!
//! Each step lives in its own module: `layers` writes app files and
//! weights layers, `deps` installs the lock's packages, `stdlib` compiles
//! the base's standard library when it has no bytecode (both with the
//! base's own interpreter, from `base_python`, when it runs here), `remote` and
//! `stream` bake remote weights (streamed from the source into the layer),
//! `volume` makes the volume-mode layer, `entrypoint` checks the command
//! exists, `early_push` uploads each new layer while the next are built,
//! `output` writes the layout and pushes. This module only
//! sequences them, records sha256s computed on the way into imgbake.lock,
//! and refuses, with one clear line, what is not built natively yet.

pub mod artifact;
pub mod base_python;
pub mod deps;
pub mod early_push;
pub mod entrypoint;
pub mod layers;
pub mod output;
pub mod registry_cache;
pub mod remote;
pub mod stdlib;
pub mod stream;
pub mod volume;

use crate::image::assemble::{self, ImageSettings, NewLayer};
use crate::image::cache::{CacheStats, LayerCache};
use crate::image::layout::OciRef;
use crate::layout::{ImagePlan, LayerContent};
use crate::plumbing::timeline::Timeline;
use crate::registry::{Reference, RegistryClientOptions};
use crate::resolve::Resolved;
use crate::spec::Spec;
use std::collections::BTreeMap;

const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the image goes; made from CLI flags in one place.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// An OCI layout directory and tag.
    pub output: OciRef,
    /// Also push to this registry reference.
    pub push: Option<Reference>,
    pub registry: RegistryClientOptions,
    /// How `imgbake.lock` is used (`--locked` forbids updating it).
    pub lock_policy: crate::resolve::LockPolicy,
    /// `--base scratch`: a missing entrypoint program is a warning, not an error.
    pub scratch_override: bool,
    /// The registry build cache (`--cache-from` / `--cache-to`).
    pub registry_cache: registry_cache::RegistryCacheOptions,
    /// `--no-cache`: read neither the local layer cache nor the registry's
    /// (both are still written).
    pub no_cache: bool,
    /// Layers the registry cache supplied are fetched into the output
    /// layout (`--output` given, or no push); else the layout holds the
    /// image's manifest and config and the blobs built here.
    pub complete_output: bool,
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
    /// Layers recorded in the registry cache (`--cache-to`) after the push.
    pub registry_cache_recorded: usize,
    /// The ModelPack artifacts of `mode = "artifact"` sources.
    pub artifacts: Vec<artifact::BuiltArtifact>,
    /// What compiled the `.pyc` files (`base_python::describe`), when any were.
    pub bytecode_compiler: Option<String>,
    /// Where the build's time went, phase by phase.
    pub timings: Vec<crate::plumbing::timeline::Span>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting that needs something not built yet; exit status 2.
    #[error("{0}")]
    NotAvailable(String),
    #[error(transparent)]
    Resolve(#[from] crate::resolve::ResolveError),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error(transparent)]
    Layers(#[from] layers::LayerBuildError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
    #[error("cannot open the layer cache")]
    Cache(#[source] crate::image::cache::CacheError),
    #[error(transparent)]
    Deps(#[from] Box<deps::DepsError>),
    #[error("cannot assemble the image config")]
    Assemble(#[source] crate::image::assemble::AssembleError),
    #[error("cannot decide `mode = \"auto\"` with the plan's cost model")]
    Plan(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Entrypoint(#[from] entrypoint::MissingProgram),
}

impl crate::plumbing::errors::Hint for BuildError {
    fn hint(&self) -> Option<String> {
        match self {
            BuildError::Resolve(error) => error.hint(),
            BuildError::Entrypoint(error) => crate::plumbing::errors::Hint::hint(error),
            _ => None,
        }
    }
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
    (!needs_builder.is_empty()).then(|| {
        format!(
            "{} run commands inside the image and need a container builder; the native build does not run them (use `imgbake build --builder buildah`, or `imgbake dockerfile` and your own builder)",
            needs_builder.join(", ")
        )
    })
}

/// Writes every layer of `plan` on top of the resolved base, then the image.
pub fn build(
    spec: &Spec,
    resolved: &mut Resolved,
    plan: &ImagePlan,
    options: &BuildOptions,
    timeline: &Timeline,
) -> Result<BuildOutcome, BuildError> {
    let mut cache = LayerCache::open(&resolved.cache_dir).map_err(BuildError::Cache)?;
    if options.no_cache {
        cache.stop_reading();
    }
    let store = crate::weights::store::WeightsStore::open(&resolved.cache_dir)
        .map_err(|e| BuildError::Layers(layers::LayerBuildError::Store(e)))?;
    let mut warnings = std::mem::take(&mut resolved.warnings);
    warnings.extend(plan.warnings.iter().cloned());
    let lock = resolved.lock.clone();
    if let Some(warning) = stdlib::unrecorded_warning(spec, &lock, &resolved.facts) {
        warnings.push(warning);
    }
    // A bare root filesystem has no image config; give it the usual PATH so
    // runtimes that do not add one (runc, umoci) still find the entrypoint.
    let base_env =
        if resolved.rootfs.is_some() { Some(vec![DEFAULT_PATH_ENV.to_string()]) } else { resolved.base.config_env() };
    let settings = image_settings(plan, base_env.as_deref());
    let image_env = settings.env.clone().or(base_env.clone());

    let check_entrypoint = |built: &[layers::BuiltLayer], warnings: &mut Vec<String>| {
        let env = image_env.as_deref();
        let base = resolved.base_text.as_str();
        entrypoint::check_build(spec, &resolved.facts, built, env, base, options.scratch_override, warnings)
    };
    let compiler =
        timeline.time("bytecode compiler", || base_python::build_compiler(spec, &lock, resolved, &mut warnings));
    let registry_cache = timeline.time("registry cache lookup", || {
        registry_cache::RegistryCache::start(spec, resolved, plan, options, compiler.as_ref(), &mut warnings)
    })?;
    let early_push = early_push::EarlyPush::start(
        options.push.as_ref(),
        &options.registry,
        crate::registry::push_record::PushRecord::new(&resolved.cache_dir),
    );
    let mut built: Vec<layers::BuiltLayer> = Vec::new();
    let mut streams: BTreeMap<String, stream::RemoteStreams> = BTreeMap::new();
    let mut entrypoint_checked = false;
    // sha256s computed for weights files whose source gives none, by source.
    let mut computed = Vec::new();
    // The wheels install on a thread of their own while the layers of the
    // ones already installed are written and uploaded.
    let staging_warnings = std::thread::scope(|scope| -> Result<Vec<String>, BuildError> {
        let mut python_staging: Option<deps::PythonStaging> = None;
        for (index, layer) in plan.layers.iter().enumerate() {
            if let Some(hit) = registry_cache.hits.get(&index) {
                built.push(registry_cache::built_from_hit(hit, &layer.name, &layer.history));
                continue;
            }
            let weights = matches!(
                layer.content,
                LayerContent::Weights { .. } | LayerContent::HfSnapshot { .. } | LayerContent::Volume
            );
            if weights && !entrypoint_checked {
                // Before the weights: a missing program must not cost their
                // download first (weights layers hold no programs).
                check_entrypoint(&built, &mut warnings)?;
                entrypoint_checked = true;
            }
            let layer_started = std::time::Instant::now();
            let made = match &layer.content {
                LayerContent::Rootfs { root } => layers::rootfs_layer(layer, root, &cache)?,
                LayerContent::StdlibBytecode => {
                    let python = lock.python.as_ref().expect("a stdlib layer is planned from the lock's Python");
                    let stdlib = python.stdlib.as_ref().expect("a stdlib layer is planned from the lock's stdlib");
                    stdlib::stdlib_layer(layer, stdlib, compiler.as_ref(), resolved, &cache).map_err(Box::new)?
                }
                LayerContent::Apt => {
                    let apt = lock.apt.as_ref().expect("an apt layer is planned from the lock's apt packages");
                    deps::apt_layer(layer, apt, &resolved.facts, &resolved.cache_dir, &cache, &mut warnings)
                        .map_err(Box::new)?
                }
                LayerContent::Python { packages, part } => {
                    let python = lock.python.as_ref().expect("a Python layer is planned from the lock's wheels");
                    let staging = python_staging.get_or_insert_with(|| {
                        deps::PythonStaging::start(
                            scope,
                            spec,
                            python,
                            &resolved.cache_dir,
                            compiler.as_ref(),
                            timeline,
                        )
                    });
                    let staged = staging.wait_for(packages).map_err(Box::new)?;
                    deps::python_layer(layer, packages, *part, staged, python, &cache).map_err(Box::new)?
                }
                LayerContent::Conda => {
                    let conda = lock.conda.as_ref().expect("a conda layer is planned from the lock's packages");
                    deps::conda_layer(layer, conda, &resolved.cache_dir, &cache).map_err(Box::new)?
                }
                LayerContent::AppFiles { files } => layers::app_files_layer(layer, files, &spec.app.workdir, &cache)?,
                LayerContent::Weights { origin, files, .. } => {
                    let remote = files
                        .iter()
                        .any(|f| matches!(f.file.content, crate::layout::weights::WeightsContent::Remote(_)));
                    if remote && !streams.contains_key(origin) {
                        let source = resolved.sources.iter().find(|s| &s.entry.origin == origin).ok_or_else(|| {
                            crate::layout::LayoutError::Unresolved { origin: origin.clone(), uri: String::new() }
                        })?;
                        streams.insert(origin.clone(), remote::streams_for(source)?);
                    }
                    layers::weights_layer(layer, files, &cache, streams.get(origin))?
                }
                LayerContent::HfSnapshot { links, refs, .. } => {
                    remote::snapshot_layer(layer, links, refs, &cache, &store)?
                }
                LayerContent::Volume => {
                    let mut volume = plan.volume.clone().expect("a volume layer is planned with its sources");
                    computed.extend(volume::complete_hashes(&mut volume, &store, &mut warnings)?);
                    let manifest = volume.manifest(spec).map_err(|e| {
                        layers::LayerBuildError::Weights(crate::weights::WeightsError::Protocol {
                            source_uri: e.origin.clone(),
                            message: e.to_string(),
                        })
                    })?;
                    volume::volume_layer(layer, &volume, &manifest, &store, &cache)?
                }
            };
            timeline.record(format!("layer {}", layer.name), layer_started);
            if let (Some(early), false) = (&early_push, made.cached) {
                early.offer(&made.layer.digest, made.layer.size, cache.blobs().path(&made.layer.digest));
            }
            built.push(made);
        }
        match python_staging {
            Some(mut staging) => Ok(staging.finish().map_err(Box::new)?),
            None => Ok(Vec::new()),
        }
    })?;
    warnings.extend(staging_warnings);
    if !entrypoint_checked {
        check_entrypoint(&built, &mut warnings)?;
    }
    let mut artifacts = Vec::new();
    for (index, planned) in plan.artifacts.iter().enumerate() {
        let hits = &registry_cache.artifact_hits[index];
        // Only the layers the registry cache does not supply are fetched.
        let remote = planned.layers.iter().enumerate().filter(|(layer, _)| !hits.contains_key(layer)).any(|(_, l)| {
            match &l.layer.content {
                LayerContent::Weights { files, .. } => {
                    files.iter().any(|f| matches!(f.file.content, crate::layout::weights::WeightsContent::Remote(_)))
                }
                _ => false,
            }
        });
        if remote && !streams.contains_key(&planned.origin) {
            let source = resolved.sources.iter().find(|s| s.entry.origin == planned.origin).ok_or_else(|| {
                crate::layout::LayoutError::Unresolved { origin: planned.origin.clone(), uri: planned.uri.clone() }
            })?;
            streams.insert(planned.origin.clone(), remote::streams_for(source)?);
        }
        let streams = streams.get(&planned.origin);
        artifacts.push(artifact::build(spec, planned, &options.output.tag, &cache, streams, hits)?);
    }

    for (origin, streams) in streams {
        let files = streams.into_computed();
        if let Some(source) = resolved.sources.iter_mut().find(|s| s.entry.origin == origin) {
            remote::record_computed_hashes(&mut source.listing, &files, &store)?;
            computed.push((source.entry.uri.clone(), files));
        }
    }
    record_computed_hashes(spec, resolved, &computed, options.lock_policy, &mut warnings)?;
    record_artifacts(spec, resolved, &artifacts, options.lock_policy, &mut warnings)?;
    let mut pinned_weights = Vec::new();
    for source in &resolved.sources {
        let uri = &source.entry.uri;
        let now = source.listing.revision.as_deref();
        let locked = resolved.lock.weights.iter().find(|f| &f.source == uri).and_then(|f| f.revision.as_deref());
        if let (Some(locked), Some(now)) = (locked, now) {
            if locked != now {
                warnings.push(format!(
                    "{}: {uri} is at {now}, imgbake.lock has {locked}; run `imgbake lock` to record the new revision",
                    source.entry.origin
                ));
            }
        }
        pinned_weights.push(format!("{uri} → {}", now.unwrap_or("-")));
    }
    for placed in &plan.placements {
        if placed.configured == crate::spec::WeightsMode::Auto {
            if let Some(reason) = &placed.reason {
                warnings.push(format!("mode auto: {reason}"));
            }
        }
    }

    let new_layers: Vec<NewLayer> =
        built.iter().map(|b| NewLayer { layer: b.layer.clone(), history: b.history.clone() }).collect();
    let image =
        assemble::assemble(resolved.base.image.as_ref(), &new_layers, &settings, &assemble::created_timestamp())
            .map_err(BuildError::Assemble)?;
    let from_registry = registry_cache.blobs_elsewhere(options.complete_output, &mut warnings);
    timeline.time("write layout", || {
        output::write_layout(&options.output, &image, &resolved.base, &built, &cache, &from_registry, &options.registry)
    })?;
    for artifact in &artifacts {
        output::write_artifact(&options.output, artifact, &cache, &from_registry, &options.registry)?;
    }
    if let Some(early) = early_push {
        timeline.time("wait for early uploads", || early.finish());
    }
    let pushed = match &options.push {
        Some(reference) => {
            let record = crate::registry::push_record::PushRecord::new(&resolved.cache_dir);
            let pushed = timeline.time("push", || {
                output::push(&options.output, &image, &resolved.base, &record, reference, &options.registry)
            })?;
            Some(pushed)
        }
        None => None,
    };
    let mut artifact_targets = Vec::new();
    if let Some(reference) = &options.push {
        for (index, artifact) in artifacts.iter_mut().enumerate() {
            let target = registry_cache::artifact_target(spec, plan, index, reference);
            artifact.pushed = Some(output::push_artifact(&options.output, artifact, &target, &options.registry)?);
            artifact_targets.push((artifact.layers.as_slice(), target));
        }
    }
    let registry_cache_recorded = match &options.push {
        Some(reference) => {
            registry_cache.record(plan, &built, reference, &artifact_targets, &resolved.cache_dir, &mut warnings)
        }
        None => 0,
    };
    Ok(BuildOutcome {
        manifest_digest: image.manifest_digest.clone(),
        output: options.output.clone(),
        base: resolved.base_text.clone(),
        base_pinned: resolved.base.pinned.clone(),
        layers: built,
        pushed,
        pinned_weights,
        cache: cache.stats(),
        warnings,
        lock_written: resolved.lock_written,
        registry_cache_recorded,
        artifacts,
        bytecode_compiler: compiler.as_ref().map(base_python::describe),
        timings: timeline.spans(),
    })
}

/// Records each artifact's digest in imgbake.lock when it is new or moved
/// (under `--locked`, a warning instead).
fn record_artifacts(
    spec: &Spec,
    resolved: &mut Resolved,
    artifacts: &[artifact::BuiltArtifact],
    policy: crate::resolve::LockPolicy,
    warnings: &mut Vec<String>,
) -> Result<(), BuildError> {
    let recorded: Vec<crate::lock::LockedArtifact> = artifacts
        .iter()
        .map(|a| crate::lock::LockedArtifact {
            source: a.uri.clone(),
            mount: a.mount.clone(),
            digest: a.digest().to_string(),
        })
        .collect();
    if recorded == resolved.lock.artifacts {
        return Ok(());
    }
    let path = crate::lock::lock_path(spec);
    if policy == crate::resolve::LockPolicy::Locked {
        warnings.push(format!(
            "{}: the weights artifacts differ from the ones recorded; --locked leaves the lock as it is",
            path.display()
        ));
        return Ok(());
    }
    let mut updated = resolved.lock.clone();
    updated.artifacts = recorded;
    updated.write(&path).map_err(|e| BuildError::Resolve(e.into()))?;
    resolved.lock = updated;
    resolved.lock_written = true;
    Ok(())
}

/// Writes sha256s computed during this build into imgbake.lock (entries
/// that had none), so a later `build --locked` verifies those bytes too.
/// Under `--locked` the lock is left as it is, with a warning.
fn record_computed_hashes(
    spec: &Spec,
    resolved: &mut Resolved,
    computed: &[volume::ComputedHashes],
    policy: crate::resolve::LockPolicy,
    warnings: &mut Vec<String>,
) -> Result<(), BuildError> {
    let lock = &mut resolved.lock;
    let mut updated = lock.clone();
    let added: usize = computed.iter().map(|(uri, files)| updated.record_weights_hashes(uri, files)).sum();
    if added == 0 {
        return Ok(());
    }
    let path = crate::lock::lock_path(spec);
    if policy == crate::resolve::LockPolicy::Locked {
        warnings.push(format!(
            "{}: computed the sha256 of {added} weights file(s) the source gives none for; --locked leaves the lock \
             as it is (a build without --locked records them)",
            path.display()
        ));
        return Ok(());
    }
    updated.write(&path).map_err(|e| BuildError::Resolve(e.into()))?;
    *lock = updated;
    resolved.lock_written = true;
    Ok(())
}

/// The image's runtime settings from the plan, on top of the base's env.
fn image_settings(plan: &ImagePlan, base_env: Option<&[String]>) -> ImageSettings {
    let config = &plan.config;
    let mut env = (!config.env.is_empty()).then(|| merge_env(base_env.unwrap_or(&[]), &config.env));
    if let Some(prefix) = &config.conda_prefix {
        // The conda environment comes first on PATH, as `conda activate` would put it.
        let mut with_conda = env.clone().or_else(|| base_env.map(<[String]>::to_vec)).unwrap_or_default();
        prepend_path(&mut with_conda, &format!("{prefix}/bin"));
        with_conda.retain(|kv| !kv.starts_with("CONDA_PREFIX="));
        with_conda.push(format!("CONDA_PREFIX={prefix}"));
        env = Some(with_conda);
    }
    if env.is_none()
        && base_env.is_some()
        && plan.layers.iter().any(|l| matches!(l.content, LayerContent::Rootfs { .. }))
    {
        env = base_env.map(<[String]>::to_vec);
    }
    let (entrypoint, cmd) = if config.entrypoint.is_empty() {
        (None, None)
    } else {
        // An empty Cmd, so the base's Cmd is not appended to our entrypoint.
        (Some(config.entrypoint.clone()), Some(Vec::new()))
    };
    ImageSettings {
        env,
        entrypoint,
        cmd,
        working_dir: Some(config.workdir.clone()),
        exposed_ports: config.port.map(|p| vec![format!("{p}/tcp")]),
        labels: Some(config.labels.clone()),
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
