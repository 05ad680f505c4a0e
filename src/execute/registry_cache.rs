//! The registry build cache in a build (`--cache-from` / `--cache-to`,
//! both the push repository by default). Before any layer is built, each
//! planned layer with a key (`crate::layout::key`) is looked up; a hit is
//! used only when the registry the image goes to holds the recorded blob
//! with the recorded size (mounted first from the cache repository when
//! that is another repository of the same registry). A hit is neither
//! downloaded from its source nor built. After the push, the layers built
//! here are recorded. The cache is an optimisation only: a registry that
//! fails to answer is a warning and the layer is built.

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

/// The registry cache over one build: the keys, the hits, and the client.
pub struct RegistryCache {
    /// Hits by layer index.
    pub hits: BTreeMap<usize, Hit>,
    client: Option<crate::registry::RegistryClient>,
    options: RegistryCacheOptions,
    keys: Vec<Option<LayerKey>>,
}

impl RegistryCache {
    /// Keys the plan's layers and looks them up (unless `--no-cache`).
    pub fn start(
        spec: &crate::spec::Spec,
        resolved: &crate::resolve::Resolved,
        plan: &ImagePlan,
        options: &super::BuildOptions,
        warnings: &mut Vec<String>,
    ) -> Result<RegistryCache, super::BuildError> {
        let mut run = RegistryCache {
            client: None,
            options: options.registry_cache.clone(),
            keys: Vec::new(),
            hits: BTreeMap::new(),
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
        let bytecode_compiler = match resolved.lock.python.as_ref().filter(|_| spec.python.bytecode) {
            Some(python) => crate::deps::python::bytecode::find_compiler(&python.target.python_version)
                .map(|compiler| format!("CPython {}", compiler.version)),
            None => None,
        };
        let apt_base = match &resolved.lock.apt {
            Some(_) => Some(super::deps::apt_base_text(&resolved.facts)?),
            None => None,
        };
        let facts = crate::layout::key::KeyFacts { lock: Some(&resolved.lock), bytecode_compiler, apt_base };
        run.keys = plan_keys(plan, &facts);
        if let (Some(from), false) = (&run.options.from, options.no_cache) {
            let parallel = options.registry.parallel_transfers;
            run.hits = lookup(&client, &run.keys, from, options.push.as_ref(), parallel, warnings);
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
        if !self.hits.is_empty() && !fetch {
            let bytes: u64 = self.hits.values().map(|hit| hit.entry.layer.size).sum();
            warnings.push(format!(
                "{} layer(s) ({}) came from the registry cache and are only in the registry: the OCI layout holds the \
                 rest (pass --output to have them fetched into it)",
                self.hits.len(),
                crate::registry::human_bytes(bytes)
            ));
        }
        self.hits.values().map(|hit| (hit.entry.layer.digest.clone(), fetch.then(|| hit.repository.clone()))).collect()
    }

    /// Records the layers built here in `--cache-to`.
    /// Records every keyed layer built here (not a hit from `to` itself) in
    /// `--cache-to`. The blobs are in `pushed_to` (the pushed image's
    /// repository), mounted into the cache repository first when that is
    /// another one. Returns how many were recorded.
    pub fn record(
        &self,
        plan: &ImagePlan,
        built: &[BuiltLayer],
        pushed_to: &Reference,
        scratch: &std::path::Path,
        warnings: &mut Vec<String>,
    ) -> usize {
        let (Some(client), Some(to)) = (&self.client, &self.options.to) else { return 0 };
        let mut recorded = 0;
        let mut failed = None;
        for (index, (key, layer)) in self.keys.iter().zip(built).enumerate() {
            let Some(key) = key else { continue };
            if self.hits.get(&index).is_some_and(|hit| same_repository(&hit.repository, to)) {
                continue;
            }
            let entry = CacheEntry { layer: layer.layer.clone(), files: layer.files, programs: layer.programs.clone() };
            let outcome = ensure_blob(client, to, pushed_to, &layer.layer.digest)
                .and_then(|_| client.write_cache_entry(to, &key.0, &entry, &plan.layers[index].name, scratch));
            match outcome {
                Ok(()) => recorded += 1,
                Err(error) => failed = Some(error),
            }
        }
        if let Some(error) = failed {
            let error = crate::plumbing::errors::one_line(&error);
            warnings.push(format!("registry cache {to}: cannot record a layer: {error}"));
        }
        recorded
    }
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
