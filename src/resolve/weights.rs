//! Remote weights sources, resolved once per command: each source listed
//! at its pinned revision (the lock's when it is current), the sha256s the
//! source does not give filled in from imgbake.lock or an earlier build,
//! and its compressibility sampled with range requests from the middle of
//! its files (remembered in the weights store, so a rebuild fetches no
//! sample). `lock`, `build`, `plan` and `dockerfile` all read this; none
//! lists a source again.

use super::ResolveError;
use crate::image::sample::{compression_ratio, MIN_PER_FILE, REMOTE_SAMPLE_BYTES};
use crate::lock::Lock;
use crate::runtime::remote::Remote;
use crate::spec::{Spec, WeightsEntry, WeightsSource};
use crate::weights::manifest::{self, ManifestFile};
use crate::weights::source::SourceClient;
use crate::weights::store::WeightsStore;
use crate::weights::{Listing, RemoteFile};
use std::collections::HashSet;
use std::io::Read;
use std::time::Duration;

/// A sample read that gives nothing for this long is given up (the ratio
/// then falls back to "compressible").
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One remote weights source as resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSource {
    /// The config entry, with its revision pinned to the lock's when the lock is current.
    pub entry: WeightsEntry,
    pub listing: Listing,
    /// Paths whose sha256 came from imgbake.lock (not the source), for clearer errors.
    pub hashes_from_lock: HashSet<String>,
    /// zstd -1 compressed/original of a sample of the files.
    pub ratio: f64,
    /// How `ratio` was found, for reports.
    pub ratio_source: String,
}

/// Every remote source of `spec`, in config order. `lock` pins revisions and
/// gives sha256s; `store` gives sha256s computed by earlier builds and
/// remembers samples (both optional: `plan` reads, never writes, a cache).
pub fn resolve_sources(
    spec: &Spec,
    lock: Option<&Lock>,
    store: Option<&WeightsStore>,
    warnings: &mut Vec<String>,
) -> Result<Vec<ResolvedSource>, ResolveError> {
    let mut resolved = Vec::new();
    for entry in &spec.weights {
        if matches!(entry.source, WeightsSource::Local { .. }) {
            continue;
        }
        let entry = match lock {
            Some(lock) => crate::lock::pinned_entry(entry, lock),
            None => entry.clone(),
        };
        let fail = |source| ResolveError::Weights { origin: entry.origin.clone(), source };
        let mut listing = SourceClient::for_entry(&entry).and_then(|client| client.list(&entry)).map_err(fail)?;
        if let (Some(commit), WeightsSource::Hf { revision, .. }) = (&listing.revision, &entry.source) {
            if commit != revision {
                warnings.push(format!("{}: revision `{revision}` pinned to commit {commit}", entry.origin));
            }
        }
        let hashes_from_lock = fill_known_hashes(&entry, &mut listing, lock, store);
        let (ratio, ratio_source) = sample(&entry, &listing.files, store);
        resolved.push(ResolvedSource { entry, listing, hashes_from_lock, ratio, ratio_source });
    }
    Ok(resolved)
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

/// What names a remote file's content for caches (layer cache, samples):
/// the pinned URL, the source's etag and the size. Not the sha256: it is
/// filled in once computed, and the cached item must still be found then.
pub fn content_key(file: &RemoteFile) -> String {
    format!("{}\n{}\n{}", file.url, file.etag.as_deref().unwrap_or(""), file.size)
}

/// The ratio of [`REMOTE_SAMPLE_BYTES`] read from the middle of the files
/// (past any safetensors header), remembered by the store.
fn sample(entry: &WeightsEntry, files: &[RemoteFile], store: Option<&WeightsStore>) -> (f64, String) {
    if files.iter().all(|f| f.size == 0) {
        return (0.0, "no bytes to sample".to_string());
    }
    let how = format!("sampled: zstd -1 over up to {REMOTE_SAMPLE_BYTES} bytes from the middle of the files");
    let keys: Vec<String> = files.iter().map(content_key).collect();
    let read = || read_sample(entry, files);
    let ratio = match store {
        Some(store) => store.sampled_ratio(&keys, read),
        None => read(),
    };
    (ratio, how)
}

fn read_sample(entry: &WeightsEntry, files: &[RemoteFile]) -> f64 {
    // The range reader takes its source, kind and credential name from a manifest entry.
    let no_files = Listing { uri: entry.uri.clone(), revision: None, files: Vec::new() };
    let Ok(described) = manifest::entry(entry, &no_files) else { return 0.0 };
    let Ok(remote) = Remote::for_entry(&described, SAMPLE_TIMEOUT) else { return 0.0 };
    let per_file = (REMOTE_SAMPLE_BYTES / files.len().max(1) as u64).max(MIN_PER_FILE);
    let mut sample = Vec::new();
    for file in files {
        if sample.len() as u64 >= REMOTE_SAMPLE_BYTES || file.size == 0 {
            continue;
        }
        let len = per_file.min(file.size);
        let start = (file.size - len) / 2;
        if let Ok(body) = remote.open(&ManifestFile::unverified(file), start, start + len) {
            if body.from == start {
                let _ = body.reader.take(len).read_to_end(&mut sample);
            }
        }
    }
    compression_ratio(&sample)
}
