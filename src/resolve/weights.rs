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
    /// zstd -1 compressed/original of a sample of each file, by path (the
    /// layout judges each layer by its own files: a text-heavy layer of
    /// small files compresses, a layer of bf16 shards does not).
    pub file_ratios: std::collections::BTreeMap<String, f64>,
    /// The same over the whole source, weighted by size (0 when nothing
    /// could be sampled: see [`ResolvedSource::sampled`]).
    pub ratio: f64,
    /// How `ratio` was found, for reports.
    pub ratio_source: String,
}

/// Every remote source of `spec`, in config order. `lock` pins revisions and
/// gives sha256s; `store` gives sha256s computed by earlier builds and
/// remembers samples (both optional: `plan` reads, never writes, a cache).
/// `pin`: list at the lock's revisions (a build from a current lock);
/// else at the config's (`imgbake lock` moves a branch to where it is now).
pub fn resolve_sources(
    spec: &Spec,
    lock: Option<&Lock>,
    pin: bool,
    store: Option<&WeightsStore>,
    warnings: &mut Vec<String>,
) -> Result<Vec<ResolvedSource>, ResolveError> {
    let mut resolved = Vec::new();
    for entry in &spec.weights {
        if matches!(entry.source, WeightsSource::Local { .. }) {
            continue;
        }
        let entry = match lock.filter(|_| pin) {
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
        let (file_ratios, ratio_source) = sample(&entry, &listing.files, lock, store);
        let ratio = weighted_ratio(&listing.files, &file_ratios);
        resolved.push(ResolvedSource { entry, listing, hashes_from_lock, file_ratios, ratio, ratio_source });
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

/// The most read from one file: enough to tell bf16 from text.
const MAX_PER_FILE: u64 = 256 << 10;
/// Most files of one source sampled (the largest); the rest are judged by
/// the mean of those.
const MAX_SAMPLED_FILES: usize = 64;

impl ResolvedSource {
    /// Whether any file was sampled (not, when no reader could be made here).
    pub fn sampled(&self) -> bool {
        !self.file_ratios.is_empty() || self.listing.files.iter().all(|f| f.size == 0)
    }

    /// The sampled ratio of `files` of this source, weighted by size.
    pub fn ratio_of<'a>(&self, files: impl Iterator<Item = &'a RemoteFile>) -> f64 {
        let files: Vec<RemoteFile> = files.cloned().collect();
        weighted_ratio(&files, &self.file_ratios)
    }
}

/// The size-weighted mean ratio of `files`; a file without a sample counts
/// at the mean of those with one (0, "compressible", when none has one).
fn weighted_ratio(files: &[RemoteFile], ratios: &std::collections::BTreeMap<String, f64>) -> f64 {
    let known: Vec<f64> = ratios.values().copied().collect();
    let fallback = if known.is_empty() { 0.0 } else { known.iter().sum::<f64>() / known.len() as f64 };
    let total: u64 = files.iter().map(|f| f.size).sum();
    if total == 0 {
        return fallback;
    }
    files.iter().map(|f| ratios.get(&f.path).copied().unwrap_or(fallback) * f.size as f64).sum::<f64>() / total as f64
}

/// Every file's ratio over a piece from its middle (past any safetensors
/// header): [`REMOTE_SAMPLE_BYTES`] shared among the largest
/// [`MAX_SAMPLED_FILES`] files, between [`MIN_PER_FILE`] and
/// [`MAX_PER_FILE`] each, fetched as ranges and remembered by the store per
/// file.
fn sample(
    entry: &WeightsEntry,
    files: &[RemoteFile],
    lock: Option<&Lock>,
    store: Option<&WeightsStore>,
) -> (std::collections::BTreeMap<String, f64>, String) {
    let mut largest: Vec<&RemoteFile> = files.iter().filter(|f| f.size > 0).collect();
    largest.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    largest.truncate(MAX_SAMPLED_FILES);
    let how = format!(
        "sampled: zstd -1 over up to {} MiB from the middle of {} of {} files",
        REMOTE_SAMPLE_BYTES >> 20,
        largest.len(),
        files.len()
    );
    if largest.is_empty() {
        return (Default::default(), "no bytes to sample".to_string());
    }
    let per_file = (REMOTE_SAMPLE_BYTES / largest.len() as u64).clamp(MIN_PER_FILE, MAX_PER_FILE);
    let mut remote = None;
    let mut ratios = std::collections::BTreeMap::new();
    for file in largest {
        // A sample imgbake.lock recorded: no request (a fresh CI runner
        // reads no weights byte when every layer is in the registry cache).
        if let Some(ratio) = lock.and_then(|lock| lock.weights_sample(&entry.uri, file)) {
            ratios.insert(file.path.clone(), ratio);
            continue;
        }
        let mut read = || {
            let remote = remote.get_or_insert_with(|| open_remote(entry));
            remote.as_ref().map_or(f64::NAN, |remote| read_sample(remote, file, per_file))
        };
        let ratio = match store {
            Some(store) => store.sampled_ratio(&[content_key(file), per_file.to_string()], read),
            None => read(),
        };
        if ratio.is_nan() {
            // No reader (a credential missing here): nothing is sampled, and the
            // cost model uses the profile's ratio; the layout compresses.
            let why = match &remote {
                Some(Err(why)) => why.clone(),
                _ => "no reader".to_string(),
            };
            return (Default::default(), format!("not sampled ({why})"));
        }
        ratios.insert(file.path.clone(), ratio);
    }
    (ratios, how)
}

/// The range reader for `entry`. When its named credential is not set on
/// this machine, an anonymous reader (as the listing falls back to): a
/// public source is still sampled, a private one fails and is not.
fn open_remote(entry: &WeightsEntry) -> Result<Remote, String> {
    // The range reader takes its source, kind and credential name from a manifest entry.
    let no_files = Listing { uri: entry.uri.clone(), revision: None, files: Vec::new() };
    let mut described = manifest::entry(entry, &no_files).map_err(|e| e.to_string())?;
    Remote::for_entry(&described, SAMPLE_TIMEOUT).or_else(|why| {
        if described.credential.take().is_none() {
            return Err(why);
        }
        Remote::for_entry(&described, SAMPLE_TIMEOUT).map_err(|_| why)
    })
}

/// The ratio of `len` bytes from the middle of `file` (0 when none could be read).
fn read_sample(remote: &Remote, file: &RemoteFile, len: u64) -> f64 {
    let len = len.min(file.size);
    let start = (file.size - len) / 2;
    let mut sample = Vec::new();
    if let Ok(body) = remote.open(&ManifestFile::unverified(file), start, start + len) {
        if body.from == start {
            let _ = body.reader.take(len).read_to_end(&mut sample);
        }
    }
    compression_ratio(&sample)
}
