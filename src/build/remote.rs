//! Remote weights (hf://, s3://, gs://, azure://, https://) baked into
//! layers: list the source at its pinned revision,
//! fetch every file through the verified download store (so a rebuild
//! downloads nothing), then split and compress like local weights. With
//! `layout = "hf-cache"` the files are laid out as a Hugging Face hub cache.

use super::layers::{self, BuiltLayer, LayerBuildError, WeightsFile};
use crate::image::cache::LayerCache;
use crate::image::entries::{self, LayerEntry};
use crate::image::layer::{Compression, LayerOptions};
use crate::spec::{Spec, WeightsEntry, WeightsLayout, WeightsSource};
use crate::weights::source::SourceClient;
use crate::weights::store::WeightsStore;
use crate::weights::{hf_cache, Listing, RemoteFile};

/// What baking one remote source made, and the revision it was pinned to.
pub struct RemoteBake {
    pub layers: Vec<BuiltLayer>,
    pub listing: Listing,
}

pub fn bake(
    entry: &WeightsEntry,
    spec: &Spec,
    cache: &LayerCache,
    store: &WeightsStore,
    warnings: &mut Vec<String>,
) -> Result<RemoteBake, LayerBuildError> {
    let client = SourceClient::for_entry(entry).map_err(LayerBuildError::Weights)?;
    let listing = client.list(entry).map_err(LayerBuildError::Weights)?;
    if let (Some(commit), WeightsSource::Hf { revision, .. }) = (&listing.revision, &entry.source) {
        if commit != revision {
            warnings.push(format!("{}: revision `{revision}` pinned to commit {commit}", entry.origin));
        }
    }
    let mut local = Vec::with_capacity(listing.files.len());
    for file in &listing.files {
        let copy = store.fetch(file, || client.open(file)).map_err(LayerBuildError::Store)?;
        local.push((file.clone(), copy.path));
    }
    let layers = match entry.layout {
        WeightsLayout::Plain => {
            let files = local
                .into_iter()
                .map(|(file, source)| WeightsFile { source, relative: file.path.clone(), size: file.size })
                .collect();
            layers::weights_layers(entry, spec, files, cache)?
        }
        WeightsLayout::HfCache => hf_cache_layers(entry, spec, &listing, &local, cache, store)?,
    };
    Ok(RemoteBake { layers, listing })
}

/// Blobs split like any weights; the snapshot links and refs in one small layer.
fn hf_cache_layers(
    entry: &WeightsEntry,
    spec: &Spec,
    listing: &Listing,
    local: &[(RemoteFile, std::path::PathBuf)],
    cache: &LayerCache,
    store: &WeightsStore,
) -> Result<Vec<BuiltLayer>, LayerBuildError> {
    let tree = hf_cache::tree(entry, listing);
    let blobs = tree
        .blobs
        .iter()
        .map(|(file, blob_path)| {
            let source = local.iter().find(|(f, _)| f.path == file.path).map(|(_, p)| p.clone()).expect("fetched");
            WeightsFile { source, relative: blob_path.clone(), size: file.size }
        })
        .collect();
    let mut built = layers::weights_layers(entry, spec, blobs, cache)?;
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
