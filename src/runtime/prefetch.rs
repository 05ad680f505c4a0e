//! `imgbake prefetch`: the in-image start-up hook for volume mode. Reads the
//! weights manifest, makes every listed file present **and verified** on the
//! volume, then `exec`s the app (which so replaces the hook and gets its
//! signals). The byte-level work (ranges, resume, retries, verification) is
//! in [`super::download`]; this module plans it: disk space, locks,
//! verification records, hf-cache links, ready files.
//!
//! A file counts as present only when its size and sha256 match the
//! manifest. Re-hashing every file at every start would cost a full read of
//! the weights, so a verified file gets a record (size, mtime, inode,
//! sha256) beside the folder; a later start trusts the file without hashing
//! only while all four still match.
//!
//! Several files download at once (`--jobs`), and large files in parallel
//! ranges, all within one budget of `--jobs` connections. Each file is taken
//! under an advisory lock (`flock` on `<name>.lock`): when replicas sharing a
//! volume start together, one downloads a file while the others wait, then
//! find it verified.

use super::download::{self, Budget, Context, RetryPolicy};
use super::events::Events;
use super::remote::Remote;
use crate::plumbing::fs::write_atomic;
use crate::spec::{WeightsLayout, WeightsSource};
use crate::weights::manifest::{ManifestEntry, ManifestFile, WeightsManifest};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Suffix of the file written beside each entry's volume folder once every
/// file is verified (`/persistent-storage/imgbake/tiny.imgbake-ready`); beside,
/// not inside, so an app listing its weights folder never sees it.
pub const READY_SUFFIX: &str = ".imgbake-ready";

/// Suffix of the directory beside each volume folder that holds the per-file
/// locks, progress records of partial downloads and verification records.
pub const LOCKS_SUFFIX: &str = ".imgbake-locks";

/// Suffix added to `--ready-file` for the failure file.
pub const FAILED_SUFFIX: &str = ".failed";
/// Suffix added to `--ready-file` for the metrics JSON.
pub const METRICS_SUFFIX: &str = ".metrics.json";

/// Default read timeout: a connection silent this long is a stall.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The ready marker of a volume folder.
pub fn ready_marker(root: &Path) -> PathBuf {
    download::suffixed(root, READY_SUFFIX)
}

#[derive(Debug, Clone)]
pub struct PrefetchOptions {
    pub manifest: PathBuf,
    /// Write every entry under this directory instead of its `volume_path`.
    pub dest: Option<PathBuf>,
    /// Connections at once (default: [`default_jobs`]).
    pub jobs: Option<usize>,
    /// Start the app at once and fetch in a child process.
    pub background: bool,
    /// Written (JSON summary) once every file is verified; `<path>.failed` on error.
    pub ready_file: Option<PathBuf>,
    pub read_timeout: Duration,
    pub command: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrefetchError {
    #[error("cannot read the weights manifest {}", path.display())]
    ReadManifest {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    BadManifest { path: PathBuf, message: String },
    #[error("{origin}: {message}")]
    Source { origin: String, message: String },
    #[error("{origin}: {file} from {url}: {message}")]
    Download { origin: String, file: String, url: String, message: String },
    #[error("{origin}: cannot write {}", path.display())]
    Write {
        origin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "not enough disk space on {}: the weights need {needed} more bytes, {available} are free",
        path.display()
    )]
    DiskFull { path: PathBuf, needed: u64, available: u64 },
    #[error("cannot start the app `{command}`")]
    Exec {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the background prefetch")]
    Spawn(#[source] std::io::Error),
}

impl crate::plumbing::errors::Hint for PrefetchError {
    fn hint(&self) -> Option<String> {
        match self {
            PrefetchError::DiskFull { .. } => Some("give the volume more space or remove stale files".to_string()),
            _ => None,
        }
    }
}

/// Downloads at once by default: network-bound, so more than the cores,
/// bounded so that 64-core nodes do not open hundreds of connections.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(4).clamp(4, 16)
}

/// [`fill`], then the ready file and metrics (or the failure file).
pub fn run(options: &PrefetchOptions) -> Result<serde_json::Value, PrefetchError> {
    let events = Events::new();
    if let Some(ready) = &options.ready_file {
        // A ready file left by an earlier start must not be believed now.
        for stale in [ready.clone(), download::suffixed(ready, FAILED_SUFFIX)] {
            let _ = std::fs::remove_file(stale);
        }
    }
    let result = fill(options, &events);
    let write_error = |path: &Path, source| PrefetchError::Write {
        origin: "--ready-file".to_string(),
        path: path.to_path_buf(),
        source,
    };
    match result {
        Ok(summary) => {
            if let Some(ready) = &options.ready_file {
                let text = format!("{summary}\n");
                let metrics = download::suffixed(ready, METRICS_SUFFIX);
                write_atomic(&metrics, text.as_bytes()).map_err(|e| write_error(&metrics, e))?;
                write_atomic(ready, text.as_bytes()).map_err(|e| write_error(ready, e))?;
            }
            Ok(summary)
        }
        Err(error) => {
            // The failure record carries the hint too: no one sees stderr of a hook.
            let message = match crate::plumbing::errors::Hint::hint(&error) {
                Some(hint) => format!("{}; hint: {hint}", error_chain(&error)),
                None => error_chain(&error),
            };
            events.failed(&message);
            if let Some(ready) = &options.ready_file {
                let summary = events.summary("failed", 0, 0);
                let _ = write_atomic(&download::suffixed(ready, METRICS_SUFFIX), format!("{summary}\n").as_bytes());
                let failed = serde_json::json!({ "status": "failed", "error": message });
                let _ = write_atomic(&download::suffixed(ready, FAILED_SUFFIX), format!("{failed}\n").as_bytes());
            }
            Err(error)
        }
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    super::remote::chain(error)
}

/// Makes every file of the manifest present and verified; returns the summary.
pub fn fill(options: &PrefetchOptions, events: &Events) -> Result<serde_json::Value, PrefetchError> {
    let bytes = std::fs::read(&options.manifest)
        .map_err(|source| PrefetchError::ReadManifest { path: options.manifest.clone(), source })?;
    let manifest = WeightsManifest::from_bytes(&bytes)
        .map_err(|message| PrefetchError::BadManifest { path: options.manifest.clone(), message })?;
    let jobs = options.jobs.unwrap_or_else(default_jobs).max(1);
    let roots: Vec<PathBuf> = manifest
        .entries
        .iter()
        .map(|entry| options.dest.clone().unwrap_or_else(|| PathBuf::from(&entry.volume_path)))
        .collect();
    let mut missing_bytes = 0;
    for (entry, root) in manifest.entries.iter().zip(&roots) {
        std::fs::create_dir_all(root).map_err(|source| PrefetchError::Write {
            origin: entry.origin.clone(),
            path: root.clone(),
            source,
        })?;
        missing_bytes += check_space(entry, root)?;
    }
    let files: usize = manifest.entries.iter().map(|e| e.files.len()).sum();
    let total: u64 = manifest.entries.iter().map(|e| e.total_size).sum();
    events.start(files, total, missing_bytes, jobs);
    let budget = Budget::new(jobs);
    for (entry, root) in manifest.entries.iter().zip(&roots) {
        fill_entry(entry, root, jobs, &budget, events, options.read_timeout)?;
    }
    let summary = events.summary("ready", files, total);
    events.done(&summary);
    Ok(summary)
}

/// Bytes still to download for `entry`; an error when the volume cannot hold them.
fn check_space(entry: &ManifestEntry, root: &Path) -> Result<u64, PrefetchError> {
    let mut needed = 0u64;
    for file in &entry.files {
        let target = root.join(&file.path);
        if std::fs::metadata(&target).is_ok_and(|m| m.len() == file.size) {
            continue;
        }
        // A partial's allocated blocks are already reserved.
        let allocated =
            std::fs::metadata(download::suffixed(&target, ".partial")).map(|m| m.blocks() * 512).unwrap_or(0);
        needed += file.size.saturating_sub(allocated);
    }
    let available = crate::plumbing::fs::free_bytes(root).map_err(|source| PrefetchError::Write {
        origin: entry.origin.clone(),
        path: root.to_path_buf(),
        source,
    })?;
    if needed > available {
        return Err(PrefetchError::DiskFull { path: root.to_path_buf(), needed, available });
    }
    Ok(needed)
}

fn fill_entry(
    entry: &ManifestEntry,
    root: &Path,
    jobs: usize,
    budget: &Budget,
    events: &Events,
    read_timeout: Duration,
) -> Result<(), PrefetchError> {
    let write_error =
        |path: &Path, source| PrefetchError::Write { origin: entry.origin.clone(), path: path.to_path_buf(), source };
    // Locks and records live beside the folder, not in it, so the app never sees them.
    let locks = download::suffixed(root, LOCKS_SUFFIX);
    std::fs::create_dir_all(&locks).map_err(|source| write_error(&locks, source))?;
    let remote = Remote::for_entry(entry, read_timeout)
        .map_err(|message| PrefetchError::Source { origin: entry.origin.clone(), message })?;
    let ctx = Context {
        remote: &remote,
        budget,
        events,
        origin: &entry.origin,
        policy: RetryPolicy::default(),
        ranges: jobs,
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let workers = jobs.min(entry.files.len()).max(1);
    let results: Vec<Result<(), PrefetchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| loop {
                    if failed.load(std::sync::atomic::Ordering::Relaxed) {
                        return Ok(());
                    }
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(file) = entry.files.get(index) else { return Ok(()) };
                    if let Err(error) = fill_file(entry, &ctx, root, &locks, file) {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Err(error);
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a download worker panicked")).collect()
    });
    for result in results {
        result?;
    }
    if entry.layout == WeightsLayout::HfCache {
        link_hf_cache(entry, root)?;
    }
    let marker = ready_marker(root);
    write_atomic(&marker, format!("{}\n", entry.revision.as_deref().unwrap_or("")).as_bytes())
        .map_err(|source| write_error(&marker, source))?;
    Ok(())
}

/// The escaped name of a file's lock and records inside the locks folder.
fn state_name(path: &str) -> String {
    path.replace('%', "%25").replace('/', "%2F")
}

/// One file, under its lock: verified already (by us earlier, or by a
/// replica that held the lock), or downloaded now.
fn fill_file(
    entry: &ManifestEntry,
    ctx: &Context,
    root: &Path,
    locks: &Path,
    file: &ManifestFile,
) -> Result<(), PrefetchError> {
    let target = root.join(&file.path);
    let write_error =
        |path: &Path, source| PrefetchError::Write { origin: entry.origin.clone(), path: path.to_path_buf(), source };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|source| write_error(parent, source))?;
    }
    let name = state_name(&file.path);
    let lock_path = locks.join(format!("{name}.lock"));
    let lock = std::fs::File::create(&lock_path).map_err(|source| write_error(&lock_path, source))?;
    lock.lock().map_err(|source| write_error(&lock_path, source))?;
    let record = locks.join(format!("{name}.verified"));
    if let Some(how) = present(&target, &record, file) {
        ctx.events.present(&entry.origin, &file.path, file.size, how);
        return Ok(());
    }
    let _ = std::fs::remove_file(&record);
    ctx.events.file_started(&entry.origin, &file.path, file.size);
    let started = Instant::now();
    let outcome =
        download::download(ctx, file, &target, &locks.join(format!("{name}.progress"))).map_err(|message| {
            PrefetchError::Download {
                origin: entry.origin.clone(),
                file: file.path.clone(),
                url: file.url.clone(),
                message,
            }
        })?;
    write_record(&target, &record, &file.sha256);
    let seconds = started.elapsed().as_secs_f64();
    ctx.events.downloaded(&entry.origin, &file.path, file.size, outcome.fetched, outcome.resumed, seconds);
    Ok(())
}

/// What a verification record vouches for: this inode, at this size and
/// mtime, had this sha256 when it was written.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq, Debug)]
struct VerifiedRecord {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    sha256: String,
}

fn record_of(target: &Path, sha256: &str) -> Option<VerifiedRecord> {
    let meta = std::fs::metadata(target).ok()?;
    let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
    Some(VerifiedRecord { size: meta.len(), mtime_ns, inode: meta.ino(), sha256: sha256.to_string() })
}

fn write_record(target: &Path, record: &Path, sha256: &str) {
    if let Some(value) = record_of(target, sha256) {
        // Best effort: without a record the next start re-hashes the file.
        let _ = write_atomic(record, &serde_json::to_vec(&value).unwrap_or_default());
    }
}

/// `Some(how)` when `target` holds the manifest's bytes: its record matches
/// (`"record"`), or its content hashes right now (`"sha256"`).
fn present(target: &Path, record: &Path, file: &ManifestFile) -> Option<&'static str> {
    let now = record_of(target, &file.sha256)?;
    if now.size != file.size {
        return None;
    }
    let recorded = std::fs::read(record).ok().and_then(|b| serde_json::from_slice::<VerifiedRecord>(&b).ok());
    if recorded.as_ref() == Some(&now) {
        return Some("record");
    }
    if download::hash_file(target).ok()? == file.sha256 {
        write_record(target, record, &file.sha256);
        return Some("sha256");
    }
    None
}

/// hf-cache: `snapshots/<commit>/<path>` links to each blob, and
/// `refs/<branch>` (no trailing newline) when the source named a branch.
fn link_hf_cache(entry: &ManifestEntry, root: &Path) -> Result<(), PrefetchError> {
    let write_error =
        |path: &Path, source| PrefetchError::Write { origin: entry.origin.clone(), path: path.to_path_buf(), source };
    for file in &entry.files {
        for link in &file.links {
            let path = root.join(link);
            let target = relative_target(link, &file.path);
            if std::fs::read_link(&path).is_ok_and(|t| t == Path::new(&target)) {
                continue;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| write_error(parent, source))?;
            }
            let temp = download::suffixed(&path, &format!(".tmp-{}", std::process::id()));
            let _ = std::fs::remove_file(&temp);
            std::os::unix::fs::symlink(&target, &temp).map_err(|source| write_error(&temp, source))?;
            std::fs::rename(&temp, &path).map_err(|source| write_error(&path, source))?;
        }
    }
    let source = crate::weights::source::parse_source(&entry.source, Path::new("/"));
    if let (Ok(WeightsSource::Hf { repo, revision }), Some(commit)) = (source, &entry.revision) {
        if revision != *commit {
            let reference = root.join(crate::weights::hf_cache::repo_folder(&repo)).join("refs").join(&revision);
            if let Some(parent) = reference.parent() {
                std::fs::create_dir_all(parent).map_err(|source| write_error(parent, source))?;
            }
            write_atomic(&reference, commit.as_bytes()).map_err(|source| write_error(&reference, source))?;
        }
    }
    Ok(())
}

/// The relative symlink target from the link at `link` to `blob` (both
/// relative to the same root).
fn relative_target(link: &str, blob: &str) -> String {
    let from: Vec<&str> = link.split('/').collect();
    let from = &from[..from.len() - 1];
    let to: Vec<&str> = blob.split('/').collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}

/// Replaces this process with the app. Returns only on failure.
pub fn exec(command: &[String]) -> PrefetchError {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new(&command[0]).args(&command[1..]).exec();
    PrefetchError::Exec { command: command.join(" "), source: error }
}

/// `--background`: the same hook without the app and without
/// `--background`, as a child process that outlives this one's `exec`.
pub fn spawn_background(options: &PrefetchOptions) -> Result<std::process::Child, PrefetchError> {
    let exe = std::env::current_exe().map_err(PrefetchError::Spawn)?;
    let mut command = std::process::Command::new(exe);
    command.arg("prefetch").arg("--manifest").arg(&options.manifest);
    if let Some(dest) = &options.dest {
        command.arg("--dest").arg(dest);
    }
    if let Some(jobs) = options.jobs {
        command.arg("--jobs").arg(jobs.to_string());
    }
    if let Some(ready) = &options.ready_file {
        command.arg("--ready-file").arg(ready);
    }
    command.arg("--read-timeout").arg(options.read_timeout.as_secs_f64().to_string());
    command.stdin(std::process::Stdio::null()).spawn().map_err(PrefetchError::Spawn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_climb_to_the_blob() {
        let link = format!("models--o--n/snapshots/{}/unet/model.safetensors", "c".repeat(40));
        assert_eq!(relative_target(&link, "models--o--n/blobs/e2"), "../../../blobs/e2");
        assert_eq!(relative_target("models--o--n/snapshots/c/config.json", "models--o--n/blobs/e1"), "../../blobs/e1");
    }

    #[test]
    fn a_record_is_trusted_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("w.bin");
        let record = dir.path().join("w.verified");
        std::fs::write(&target, b"hello").unwrap();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"hello"));
        let file = ManifestFile { path: "w.bin".into(), size: 5, sha256: sha, url: String::new(), links: vec![] };
        assert_eq!(present(&target, &record, &file), Some("sha256"));
        assert_eq!(present(&target, &record, &file), Some("record"));
        // Same size, new content: the mtime moves, so the record no longer vouches.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&target, b"jello").unwrap();
        assert_eq!(present(&target, &record, &file), None);
        // A forged record with the right size but another hash is not believed either.
        let forged = VerifiedRecord { sha256: "0".repeat(64), ..record_of(&target, "").unwrap() };
        std::fs::write(&record, serde_json::to_vec(&forged).unwrap()).unwrap();
        assert_eq!(present(&target, &record, &file), None);
    }
}
