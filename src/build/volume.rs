//! Volume mode: the image carries no weights bytes, only the weights
//! manifest, the prefetch hook (this very binary) and a symlink from the
//! app's path to the volume; its entrypoint becomes
//! `imgbake prefetch --manifest /etc/imgbake/weights.json -- <entrypoint>`.

use super::layers::{self, BuiltLayer, LayerBuildError};
use crate::image::cache::LayerCache;
use crate::image::entries::{self, LayerEntry};
use crate::image::layer::{Compression, LayerOptions};
use crate::spec::WeightsEntry;
use crate::weights::hf::HfClient;
use crate::weights::manifest::{self, ManifestEntry, WeightsManifest, MANIFEST_PATH};
use crate::weights::store::WeightsStore;
use crate::weights::WeightsError;
use std::path::PathBuf;

/// Where the hook binary goes in the image.
pub const HOOK_PATH: &str = "/usr/local/bin/imgbake";

/// The manifest entry of one volume-mode source: listed at its pinned
/// revision; files whose sha256 the source does not give are downloaded
/// once through the store so that the hook can verify every byte.
pub fn manifest_entry(
    entry: &WeightsEntry,
    store: &WeightsStore,
    warnings: &mut Vec<String>,
) -> Result<ManifestEntry, LayerBuildError> {
    let client = HfClient::for_entry(entry);
    let mut listing = client.list_entry(entry).map_err(LayerBuildError::Weights)?;
    if let (Some(commit), crate::spec::WeightsSource::Hf { revision, .. }) = (&listing.revision, &entry.source) {
        if commit != revision {
            warnings.push(format!("{}: revision `{revision}` pinned to commit {commit}", entry.origin));
        }
    }
    for file in listing.files.iter_mut().filter(|f| f.sha256.is_none()) {
        let sha256 = match store.known_sha256(file) {
            Some(known) => known,
            None => store.fetch(file, || client.open(file)).map_err(LayerBuildError::Store)?.sha256,
        };
        file.sha256 = Some(sha256);
    }
    manifest::entry(entry, &listing).map_err(|err| {
        LayerBuildError::Weights(WeightsError::Protocol { source_uri: entry.uri.clone(), message: err.to_string() })
    })
}

/// The layer with the manifest, the hook and the app-path symlinks.
pub fn volume_layer(
    manifest: &WeightsManifest,
    store: &WeightsStore,
    cache: &LayerCache,
) -> Result<BuiltLayer, LayerBuildError> {
    let what = "volume manifest and prefetch hook".to_string();
    let entries_error = |source| LayerBuildError::Entries { what: what.clone(), source };
    let manifest_file = store.put_bytes(&manifest.to_bytes()).map_err(LayerBuildError::Store)?;
    let hook: PathBuf =
        std::env::current_exe().map_err(|source| LayerBuildError::Walk { path: PathBuf::from("imgbake"), source })?;
    let files = vec![
        (manifest_file, MANIFEST_PATH.trim_start_matches('/').to_string()),
        (hook, HOOK_PATH.trim_start_matches('/').to_string()),
    ];
    let mut all = entries::entries_from_files(&files).map_err(entries_error)?;
    for entry in manifest.entries.iter().filter(|e| e.path != e.volume_path) {
        all.push(LayerEntry::symlink(entry.path.trim_start_matches('/'), &entry.volume_path));
    }
    let all = entries::finish_entries(all).map_err(entries_error)?;
    let total: u64 = manifest.entries.iter().map(|e| e.total_size).sum();
    let history = format!(
        "imgbake: volume mode: {MANIFEST_PATH} ({} sources, {total} bytes fetched at start), prefetch hook at {HOOK_PATH}",
        manifest.entries.len()
    );
    let options = LayerOptions::from_env(Compression::Gzip { level: 6 });
    layers::build_cached_layer(cache, &all, &options, what, history, 2)
}

/// `imgbake prefetch --manifest … -- <entrypoint>`.
pub fn wrap_entrypoint(entrypoint: &[String]) -> Vec<String> {
    let mut wrapped: Vec<String> =
        [HOOK_PATH, "prefetch", "--manifest", MANIFEST_PATH, "--"].iter().map(|s| s.to_string()).collect();
    wrapped.extend(entrypoint.iter().cloned());
    wrapped
}
