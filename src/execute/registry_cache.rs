//! The registry build cache in a build (`--cache-from` / `--cache-to`,
//! both the push repository by default). Before any layer is built, each
//! planned layer with a key (`crate::layout::key`) is looked up; a hit is
//! used only when the registry the image goes to holds the recorded blob
//! with the recorded size (mounted first from the cache repository when
//! that is another repository of the same registry). A hit is neither
//! downloaded from its source nor built. After the push, the layers built
//! here are recorded. The layers of `mode = "artifact"` sources are keyed
//! the same way (their key is that of a weights layer: its files by etag or
//! sha256, its paths, no compression), looked up where the artifact is
//! pushed, and recorded from there. The cache is an optimisation only: a
//! registry that fails to answer is a warning and the layer is built.

use super::layers::BuiltLayer;
use crate::image::digest::Digest;
use crate::image::layer::LayerOptions;
use crate::layout::key::{layer_key, KeyFacts, LayerKey};
use crate::layout::ImagePlan;
use crate::registry::layer_cache::CacheEntry;
use crate::registry::parallel::for_each_parallel;
use crate::registry::{Reference, RegistryClient};
use std::collections::BTreeMap;

/// Where the cache is read and written; `None` turns that side off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryCacheOptions {
    pub from: Option<Reference>,
    pub to: Option<Reference>,
}

impl RegistryCacheOptions {
    pub fn is_off(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
}

/// A layer the cache supplied: its entry, and the repository its blob is
/// in (to fetch it into an OCI layout).
#[derive(Debug, Clone)]
pub struct Hit {
    pub entry: CacheEntry,
    pub repository: Reference,
}

/// The key of every planned layer (`None` for layers without one).
fn plan_keys(plan: &ImagePlan, facts: &KeyFacts) -> Vec<Option<LayerKey>> {
    plan.layers.iter().map(|layer| layer_key(layer, &LayerOptions::from_env(layer.compression), facts)).collect()
}

/// The key of every layer of every planned artifact, by artifact.
fn artifact_keys(plan: &ImagePlan, facts: &KeyFacts) -> Vec<Vec<Option<LayerKey>>> {
    plan.artifacts
        .iter()
        .map(|artifact| {
            artifact
                .layers
                .iter()
                .map(|planned| {
                    let options = LayerOptions::from_env(planned.layer.compression);
                    layer_key(&planned.layer, &options, facts)
                })
                .collect()
        })
        .collect()
}

/// The registry cache over one build: the keys, the hits, and the client.
pub struct RegistryCache {
    /// Hits by layer index.
    pub hits: BTreeMap<usize, Hit>,
    /// Hits of artifact layers, by artifact index and then layer index.
    pub artifact_hits: Vec<BTreeMap<usize, Hit>>,
    client: Option<crate::registry::RegistryClient>,
    options: RegistryCacheOptions,
    keys: Vec<Option<LayerKey>>,
    artifact_keys: Vec<Vec<Option<LayerKey>>>,
}

impl RegistryCache {
    /// Keys the plan's layers and looks them up (unless `--no-cache`).
    pub fn start(
        spec: &crate::spec::Spec,
        resolved: &crate::resolve::Resolved,
        plan: &ImagePlan,
        options: &super::BuildOptions,
        compiler: Option<&crate::deps::python::bytecode::Compiler>,
        warnings: &mut Vec<String>,
    ) -> Result<RegistryCache, super::BuildError> {
        let mut run = RegistryCache {
            client: None,
            options: options.registry_cache.clone(),
            keys: Vec::new(),
            hits: BTreeMap::new(),
            artifact_keys: Vec::new(),
            artifact_hits: plan.artifacts.iter().map(|_| BTreeMap::new()).collect(),
        };
        if run.options.is_off() {
            return Ok(run);
        }
        let client = match crate::registry::RegistryClient::new(options.registry.clone()) {
            Ok(client) => client,
            Err(error) => {
                warnings.push(format!("registry cache off: {}", crate::plumbing::errors::one_line(&error)));
                return Ok(run);
            }
        };
        let bytecode_compiler = compiler.map(|compiler| format!("CPython {}", compiler.version));
        let apt_base = match &resolved.lock.apt {
            Some(_) => Some(super::deps::apt_base_text(&resolved.facts)?),
            None => None,
        };
        let facts = crate::layout::key::KeyFacts { lock: Some(&resolved.lock), bytecode_compiler, apt_base };
        run.keys = plan_keys(plan, &facts);
        run.artifact_keys = artifact_keys(plan, &facts);
        if let (Some(from), false) = (&run.options.from, options.no_cache) {
            let parallel = options.registry.parallel_transfers;
            run.hits = lookup(&client, &run.keys, from, options.push.as_ref(), parallel, warnings);
            for (index, keys) in run.artifact_keys.iter().enumerate() {
                // An artifact's blobs are where the artifact is pushed, not the image.
                let target = options.push.as_ref().map(|image| artifact_target(spec, plan, index, image));
                run.artifact_hits[index] = lookup(&client, keys, from, target.as_ref(), parallel, warnings);
            }
        }
        run.client = Some(client);
        Ok(run)
    }

    /// The blobs of hits, each with the repository to fetch it from into
    /// the output layout, or `None` (with one warning line) when the
    /// layout is left without them.
    pub fn blobs_elsewhere(
        &self,
        complete_output: bool,
        warnings: &mut Vec<String>,
    ) -> BTreeMap<Digest, Option<Reference>> {
        let fetch = complete_output;
        let count = self.all_hits().count();
        if count > 0 && !fetch {
            let bytes: u64 = self.all_hits().map(|hit| hit.entry.layer.size).sum();
            warnings.push(format!(
                "{} layer(s) ({}) came from the registry cache and are only in the registry: the OCI layout holds the \
                 rest (pass --output to have them fetched into it)",
                count,
                crate::plumbing::units::human_bytes(bytes)
            ));
        }
        self.all_hits().map(|hit| (hit.entry.layer.digest.clone(), fetch.then(|| hit.repository.clone()))).collect()
    }

    /// The hits of the image's layers and of the artifacts' layers.
    fn all_hits(&self) -> impl Iterator<Item = &Hit> {
        self.hits.values().chain(self.artifact_hits.iter().flat_map(|hits| hits.values()))
    }

    /// Records every keyed layer built here (not a hit read from `to` itself) in
    /// `--cache-to`: the image's, whose blobs are in `pushed_to` (the pushed
    /// image's repository), and each artifact's, whose blobs are where that
    /// artifact was pushed (`artifacts`, in plan order); a blob is mounted
    /// into the cache repository first when that is another one. Returns
    /// how many were recorded.
    pub fn record(
        &self,
        plan: &ImagePlan,
        built: &[BuiltLayer],
        pushed_to: &Reference,
        artifacts: &[(&[BuiltLayer], Reference)],
        scratch: &std::path::Path,
        warnings: &mut Vec<String>,
    ) -> usize {
        let (Some(client), Some(to)) = (&self.client, &self.options.to) else { return 0 };
        // A hit was read from `--cache-from`: when that is `to`, its entry is there already.
        let read_from_to = self.options.from.as_ref().is_some_and(|from| same_repository(from, to));
        let mut recorded = 0;
        let mut failed = None;
        let image = std::iter::once((&self.keys, &self.hits, built, pushed_to, None));
        let artifact_layers = artifacts.iter().enumerate().map(|(index, (built, pushed_to))| {
            (&self.artifact_keys[index], &self.artifact_hits[index], *built, pushed_to, Some(index))
        });
        for (keys, hits, built, pushed_to, artifact) in image.chain(artifact_layers) {
            for (index, (key, layer)) in keys.iter().zip(built).enumerate() {
                let Some(key) = key else { continue };
                if hits.contains_key(&index) && read_from_to {
                    continue;
                }
                let name = match artifact {
                    Some(artifact) => &plan.artifacts[artifact].layers[index].layer.name,
                    None => &plan.layers[index].name,
                };
                let entry =
                    CacheEntry { layer: layer.layer.clone(), files: layer.files, programs: layer.programs.clone() };
                let outcome = ensure_blob(client, to, pushed_to, &layer.layer.digest)
                    .and_then(|_| client.write_cache_entry(to, &key.0, &entry, name, scratch));
                match outcome {
                    Ok(()) => recorded += 1,
                    Err(error) => failed = Some(error),
                }
            }
        }
        if let Some(error) = failed {
            let error = crate::plumbing::errors::one_line(&error);
            warnings.push(format!("registry cache {to}: cannot record a layer: {error}"));
        }
        recorded
    }
}

/// Where the artifact at `index` of `plan` goes when the image goes to `image`.
pub fn artifact_target(spec: &crate::spec::Spec, plan: &ImagePlan, index: usize, image: &Reference) -> Reference {
    let shared_repo = plan.artifacts.len() > 1;
    super::artifact::push_target(spec.artifact_repo.as_deref(), image, &plan.artifacts[index].mount, shared_repo)
}

/// The hits among `keys`, by layer index. `target` is where the image is
/// pushed (`None`: the blobs are read from the cache repository itself).
fn lookup(
    client: &RegistryClient,
    keys: &[Option<LayerKey>],
    from: &Reference,
    target: Option<&Reference>,
    parallel: usize,
    warnings: &mut Vec<String>,
) -> BTreeMap<usize, Hit> {
    let keyed: Vec<(usize, &LayerKey)> =
        keys.iter().enumerate().filter_map(|(index, key)| Some((index, key.as_ref()?))).collect();
    let found = for_each_parallel(&keyed, parallel.max(1), |(index, key)| {
        Ok::<_, crate::registry::RegistryError>((*index, usable_hit(client, key, from, target)))
    })
    .unwrap_or_default();
    let mut hits = BTreeMap::new();
    let mut failed = None;
    for (index, outcome) in found {
        match outcome {
            Ok(Some(hit)) => {
                hits.insert(index, hit);
            }
            Ok(None) => {}
            Err(error) => failed = Some(error),
        }
    }
    if let Some(error) = failed {
        warnings.push(format!(
            "registry cache {from}: {} (those layers are built)",
            crate::plumbing::errors::one_line(&error)
        ));
    }
    hits
}

/// `key`'s entry when its blob is where the image goes, with its size.
fn usable_hit(
    client: &RegistryClient,
    key: &LayerKey,
    from: &Reference,
    target: Option<&Reference>,
) -> Result<Option<Hit>, crate::registry::RegistryError> {
    let Some(entry) = client.read_cache_entry(from, &key.0)? else {
        return Ok(None);
    };
    let layer = &entry.layer;
    let has = |repository: &Reference| -> Result<bool, crate::registry::RegistryError> {
        Ok(client.blob_size(repository, &layer.digest)? == Some(layer.size))
    };
    let Some(target) = target else {
        return Ok(has(from)?.then(|| Hit { entry: entry.clone(), repository: from.clone() }));
    };
    if has(target)? {
        return Ok(Some(Hit { entry, repository: target.clone() }));
    }
    let same_registry = target.registry == from.registry && target.repository != from.repository;
    if same_registry && has(from)? && client.mount_blob(target, &layer.digest, &from.repository)? && has(target)? {
        return Ok(Some(Hit { entry, repository: target.clone() }));
    }
    Ok(None)
}

/// The layer a hit stands for in the build's report.
pub fn built_from_hit(hit: &Hit, name: &str, history: &str) -> BuiltLayer {
    BuiltLayer {
        layer: hit.entry.layer.clone(),
        history: history.to_string(),
        what: name.to_string(),
        files: hit.entry.files,
        cached: true,
        from_registry_cache: true,
        programs: hit.entry.programs.clone(),
        paths: Vec::new(),
    }
}

fn ensure_blob(
    client: &RegistryClient,
    to: &Reference,
    pushed_to: &Reference,
    digest: &Digest,
) -> Result<(), crate::registry::RegistryError> {
    if same_repository(to, pushed_to) || client.blob_exists(to, digest)? {
        return Ok(());
    }
    if to.registry == pushed_to.registry && client.mount_blob(to, digest, &pushed_to.repository)? {
        return Ok(());
    }
    Err(crate::registry::RegistryError::BlobUnknown {
        registry: to.registry.clone(),
        repository: to.repository.clone(),
        digest: digest.clone(),
    })
}

fn same_repository(a: &Reference, b: &Reference) -> bool {
    a.registry == b.registry && a.repository == b.repository
}
