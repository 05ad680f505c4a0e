//! Volume mode: the image carries no weights bytes, only the weights
//! manifest, the prefetch hook (`$IMGBAKE_HOOK_BINARY`, else this very
//! binary) and a symlink from the app's path to the volume, for any remote
//! source (hub, object store, URL; plain or hf-cache layout). The layout
//! wraps the entrypoint as `imgbake prefetch --manifest
//! /etc/imgbake/weights.json -- <entrypoint>`.

use super::layers::{self, BuiltLayer, LayerBuildError};
use super::stream::RemoteStreams;
use crate::image::cache::LayerCache;
use crate::image::digest::Digest;
use crate::image::entries::{self, LayerEntry};
use crate::image::layer::LayerOptions;
use crate::layout::{PlannedLayer, VolumePlan, HOOK_PATH};
use crate::weights::manifest::{WeightsManifest, MANIFEST_PATH};
use crate::weights::store::WeightsStore;
use crate::weights::RemoteFile;

/// Fills in the sha256 of every volume file the source gave none for (and
/// neither imgbake.lock nor an earlier build knew) by reading the bytes
/// through once, nothing kept, so that the hook can verify every byte.
/// Returns the sha256s computed, by source, for the lock.
pub fn complete_hashes(
    volume: &mut VolumePlan,
    store: &WeightsStore,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, Vec<(RemoteFile, Digest)>)>, LayerBuildError> {
    let mut all = Vec::new();
    for source in &mut volume.sources {
        let unknown: Vec<RemoteFile> = source.listing.files.iter().filter(|f| f.sha256.is_none()).cloned().collect();
        let mut computed = Vec::new();
        if !unknown.is_empty() {
            let streams =
                RemoteStreams::new(&source.entry, &unknown, Default::default()).map_err(LayerBuildError::Weights)?;
            for file in &unknown {
                let digest =
                    streams.hash(file).map_err(|source| LayerBuildError::Hash { path: file.url.clone(), source })?;
                computed.push((file.clone(), digest));
            }
            super::remote::record_computed_hashes(&mut source.listing, &computed, store)?;
        }
        all.push((source.entry.uri.clone(), computed));
    }
    if let Some(warning) = crate::resolve::hook::hook_warning() {
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    Ok(all)
}

/// The layer with the manifest, the hook and the app-path symlinks.
pub fn volume_layer(
    layer: &PlannedLayer,
    volume: &VolumePlan,
    manifest: &WeightsManifest,
    store: &WeightsStore,
    cache: &LayerCache,
) -> Result<BuiltLayer, LayerBuildError> {
    let what = layer.name.clone();
    let entries_error = |source| LayerBuildError::Entries { what: what.clone(), source };
    let manifest_file = store.put_bytes(&manifest.to_bytes()).map_err(LayerBuildError::Store)?;
    let files = vec![
        (manifest_file, MANIFEST_PATH.trim_start_matches('/').to_string()),
        (volume.hook.clone(), HOOK_PATH.trim_start_matches('/').to_string()),
    ];
    let mut all = entries::entries_from_files(&files).map_err(entries_error)?;
    // The manifest comes from a private temp file (0600); in the image every
    // user, not only root, must read it.
    for entry in all.iter_mut().filter(|e| e.path == MANIFEST_PATH.trim_start_matches('/')) {
        entry.mode = 0o644;
    }
    all.extend(volume.links.iter().map(|(path, target)| LayerEntry::symlink(path, target)));
    let all = entries::finish_entries(all).map_err(entries_error)?;
    let options = LayerOptions::from_env(layer.compression);
    layers::build_cached_layer(cache, &all, &options, what, layer.history.clone(), 2)
}
