//! Remote weights (hf://, s3://, gs://, azure://, https://) baked into
//! layers: list the source at its pinned revision, fill in the sha256s
//! imgbake.lock (or an earlier download) knows, then split and compress like
//! local weights, streaming every file from the source straight into its
//! layer (see [`super::stream`]): no copy on the build machine's disk, and
//! a rebuild with the same listing hits the layer cache and downloads
//! nothing. With `layout = "hf-cache"` the files are laid out as a Hugging
//! Face hub cache.

use super::layers::{self, BuiltLayer, LayerBuildError, WeightsContent, WeightsFile};
use super::stream::RemoteStreams;
use crate::image::cache::LayerCache;
use crate::image::digest::Digest;
use crate::image::entries::{self, LayerEntry};
use crate::image::layer::{Compression, LayerOptions};
use crate::lock::Lock;
use crate::spec::{Spec, WeightsEntry, WeightsLayout, WeightsSource};
use crate::weights::source::SourceClient;
use crate::weights::store::WeightsStore;
use crate::weights::{hf_cache, Listing, RemoteFile};
use std::collections::HashSet;

/// What baking one remote source made, and the revision it was pinned to.
pub struct RemoteBake {
    pub layers: Vec<BuiltLayer>,
    pub listing: Listing,
    /// sha256s computed for files the source gave none for (for the lock).
    pub computed: Vec<(RemoteFile, Digest)>,
}

/// The source's listing at its pinned revision, with a warning when a
/// branch or tag was pinned to a commit.
pub fn list(entry: &WeightsEntry, warnings: &mut Vec<String>) -> Result<Listing, LayerBuildError> {
    let client = SourceClient::for_entry(entry).map_err(LayerBuildError::Weights)?;
    let listing = client.list(entry).map_err(LayerBuildError::Weights)?;
    if let (Some(commit), WeightsSource::Hf { revision, .. }) = (&listing.revision, &entry.source) {
        if commit != revision {
            warnings.push(format!("{}: revision `{revision}` pinned to commit {commit}", entry.origin));
        }
    }
    Ok(listing)
}

/// Fills in the sha256 of files the source lists without one: from
/// imgbake.lock (same path, size and etag), else from the store's record
/// of an earlier download. Returns the paths filled from the lock.
pub fn fill_known_hashes(
    entry: &WeightsEntry,
    listing: &mut Listing,
    lock: Option<&Lock>,
    store: Option<&WeightsStore>,
) -> HashSet<String> {
    let mut from_lock = HashSet::new();
    for file in listing.files.iter_mut().filter(|f| f.sha256.is_none()) {
        if let Some(locked) = lock.and_then(|lock| lock.weights_sha256(&entry.uri, file)) {
            file.sha256 = Some(locked);
            from_lock.insert(file.path.clone());
        } else {
            file.sha256 = store.and_then(|store| store.known_sha256(file));
        }
    }
    from_lock
}

pub fn bake(
    entry: &WeightsEntry,
    spec: &Spec,
    cache: &LayerCache,
    lock: &Lock,
    store: &WeightsStore,
    warnings: &mut Vec<String>,
) -> Result<RemoteBake, LayerBuildError> {
    let mut listing = list(entry, warnings)?;
    let from_lock = fill_known_hashes(entry, &mut listing, Some(lock), Some(store));
    let streams = RemoteStreams::new(entry, &listing.files, from_lock, store).map_err(LayerBuildError::Weights)?;
    let layers = match entry.layout {
        WeightsLayout::Plain => {
            let files = listing
                .files
                .iter()
                .map(|file| WeightsFile {
                    content: WeightsContent::Remote(file.clone()),
                    relative: file.path.clone(),
                    size: file.size,
                })
                .collect();
            layers::weights_layers(entry, spec, files, cache, Some(&streams))?
        }
        WeightsLayout::HfCache => hf_cache_layers(entry, spec, &listing, cache, store, &streams)?,
    };
    let computed = streams.into_computed();
    record_computed_hashes(&mut listing, &computed, store)?;
    Ok(RemoteBake { layers, listing, computed })
}

/// Puts sha256s computed while the bytes passed into the listing and the
/// store's index (so later builds and `imgbake lock` know them).
pub fn record_computed_hashes(
    listing: &mut Listing,
    computed: &[(RemoteFile, Digest)],
    store: &WeightsStore,
) -> Result<(), LayerBuildError> {
    for (file, digest) in computed {
        store.remember_sha256(file, digest).map_err(LayerBuildError::Store)?;
    }
    for file in listing.files.iter_mut().filter(|f| f.sha256.is_none()) {
        file.sha256 = computed.iter().find(|(f, _)| f.path == file.path).map(|(_, d)| d.clone());
    }
    Ok(())
}

/// Blobs split like any weights; the snapshot links and refs in one small layer.
fn hf_cache_layers(
    entry: &WeightsEntry,
    spec: &Spec,
    listing: &Listing,
    cache: &LayerCache,
    store: &WeightsStore,
    streams: &RemoteStreams,
) -> Result<Vec<BuiltLayer>, LayerBuildError> {
    let tree = hf_cache::tree(entry, listing);
    let blobs = tree
        .blobs
        .iter()
        .map(|(file, blob_path)| WeightsFile {
            content: WeightsContent::Remote(file.clone()),
            relative: blob_path.clone(),
            size: file.size,
        })
        .collect();
    let mut built = layers::weights_layers(entry, spec, blobs, cache, Some(streams))?;
    let root = entry.path.trim_start_matches('/');
    let what = format!("weights {} snapshot", entry.mount);
    let mut index: Vec<LayerEntry> =
        tree.links.iter().map(|(link, target)| LayerEntry::symlink(&format!("{root}/{link}"), target)).collect();
    let mut refs = Vec::new();
    for (path, commit) in &tree.refs {
        let source = store.put_bytes(commit.as_bytes()).map_err(LayerBuildError::Store)?;
        refs.push((source, format!("{root}/{path}")));
    }
    // Ref files come from private temp files (0600); every user must read them.
    let ref_entries =
        entries::entries_from_files(&refs).map_err(|source| LayerBuildError::Entries { what: what.clone(), source })?;
    index.extend(ref_entries.into_iter().map(|entry| {
        if entry.is_file() {
            LayerEntry { mode: 0o644, ..entry }
        } else {
            entry
        }
    }));
    let index =
        entries::finish_entries(index).map_err(|source| LayerBuildError::Entries { what: what.clone(), source })?;
    let options = LayerOptions::from_env(Compression::Gzip { level: 6 });
    let history = format!("imgbake: hf-cache snapshot links and refs of {} at {}", entry.uri, entry.path);
    built.push(layers::build_cached_layer(cache, &index, &options, what, history, tree.links.len())?);
    Ok(built)
}
