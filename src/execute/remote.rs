//! Remote weights (hf://, s3://, gs://, azure://, https://) baked as the
//! ImagePlan splits them: every file streamed from the source straight into
//! its layer (see [`super::stream`]), no copy on the build machine's disk,
//! and a rebuild with the same listing hits the layer cache and downloads
//! nothing. With `layout = "hf-cache"`, one more small layer holds the
//! snapshot links and refs.

use super::layers::{self, BuiltLayer, LayerBuildError};
use super::stream::RemoteStreams;
use crate::image::cache::LayerCache;
use crate::image::digest::Digest;
use crate::image::entries::{self, LayerEntry};
use crate::image::layer::LayerOptions;
use crate::layout::PlannedLayer;
use crate::weights::store::WeightsStore;
use crate::weights::{Listing, RemoteFile};

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

/// The hf-cache snapshot links and refs of one source, in one small layer.
pub fn snapshot_layer(
    layer: &PlannedLayer,
    links: &[(String, String)],
    refs: &[(String, String)],
    cache: &LayerCache,
    store: &WeightsStore,
) -> Result<BuiltLayer, LayerBuildError> {
    let what = layer.name.clone();
    let mut index: Vec<LayerEntry> = links.iter().map(|(link, target)| LayerEntry::symlink(link, target)).collect();
    let mut ref_files = Vec::new();
    for (path, commit) in refs {
        let source = store.put_bytes(commit.as_bytes()).map_err(LayerBuildError::Store)?;
        ref_files.push((source, path.clone()));
    }
    // Ref files come from private temp files (0600); every user must read them.
    let ref_entries = entries::entries_from_files(&ref_files)
        .map_err(|source| LayerBuildError::Entries { what: what.clone(), source })?;
    index.extend(ref_entries.into_iter().map(|entry| {
        if entry.is_file() {
            LayerEntry { mode: 0o644, ..entry }
        } else {
            entry
        }
    }));
    let index =
        entries::finish_entries(index).map_err(|source| LayerBuildError::Entries { what: what.clone(), source })?;
    let options = LayerOptions::from_env(layer.compression);
    layers::build_cached_layer(cache, &index, &options, what, layer.history.clone(), links.len())
}

/// Streams for every file of `source`'s listing.
pub fn streams_for(source: &crate::resolve::weights::ResolvedSource) -> Result<RemoteStreams, LayerBuildError> {
    RemoteStreams::new(&source.entry, &source.listing.files, source.hashes_from_lock.clone())
        .map_err(LayerBuildError::Weights)
}
