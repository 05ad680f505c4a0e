//! `imgbake prefetch`: the in-image start-up hook for volume mode. Reads the
//! weights manifest, makes every listed file present **and verified** on the
//! volume, then `exec`s the app (which so replaces the hook and gets its
//! signals).
//!
//! A file counts as present only when its size and sha256 match the manifest
//! (a half-written or corrupted file from an earlier crash is downloaded
//! again). Downloads go to `<name>.partial`, are hashed while streaming, and
//! are renamed into place only when complete and verified.
//!
//! Several files download at once (`--jobs`). Each file is taken under an
//! advisory lock (`flock` on `<name>.lock`): when replicas sharing a volume
//! start together, one downloads a file while the others wait, then find it
//! verified. Still to come (the prefetch issue): ranged parallel downloads of
//! one large file, resume, background mode.

use crate::weights::hf::{self, HfClient};
use crate::weights::manifest::{ManifestEntry, ManifestFile, WeightsManifest};
use crate::weights::{RemoteFile, Secret};
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Suffix of the file written beside each entry's volume folder once every
/// file is verified (`/persistent-storage/imgbake/tiny.imgbake-ready`); beside,
/// not inside, so an app listing its weights folder never sees it.
pub const READY_SUFFIX: &str = ".imgbake-ready";

/// Suffix of the directory beside each volume folder that holds the per-file locks.
pub const LOCKS_SUFFIX: &str = ".imgbake-locks";

/// The ready marker of a volume folder.
pub fn ready_marker(root: &Path) -> PathBuf {
    let mut name = root.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(READY_SUFFIX);
    root.with_file_name(name)
}

#[derive(Debug, Clone)]
pub struct PrefetchOptions {
    pub manifest: PathBuf,
    /// Write every entry under this directory instead of its `volume_path`.
    pub dest: Option<PathBuf>,
    /// Files downloaded at once (default: [`default_jobs`]).
    pub jobs: Option<usize>,
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
    #[error("{origin}: {kind} sources are not available yet in the prefetch hook")]
    UnsupportedKind { origin: String, kind: String },
    #[error("{origin}: {file} from {url}")]
    Download {
        origin: String,
        file: String,
        url: String,
        #[source]
        source: Box<crate::weights::WeightsError>,
    },
    #[error("{origin}: cannot write {}", path.display())]
    Write {
        origin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the app `{command}`")]
    Exec {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// One line per event on stderr (JSON), so platform logs can be parsed.
fn event(kind: &str, fields: serde_json::Value) {
    let mut line = serde_json::json!({ "event": kind });
    if let (Some(line), Some(fields)) = (line.as_object_mut(), fields.as_object()) {
        line.extend(fields.clone());
    }
    eprintln!("{line}");
}

/// Makes every file of the manifest present and verified; returns bytes downloaded.
pub fn fill(options: &PrefetchOptions) -> Result<u64, PrefetchError> {
    let bytes = std::fs::read(&options.manifest)
        .map_err(|source| PrefetchError::ReadManifest { path: options.manifest.clone(), source })?;
    let manifest = WeightsManifest::from_bytes(&bytes)
        .map_err(|message| PrefetchError::BadManifest { path: options.manifest.clone(), message })?;
    let started = Instant::now();
    let mut downloaded = 0;
    let jobs = options.jobs.unwrap_or_else(default_jobs).max(1);
    for entry in &manifest.entries {
        downloaded += fill_entry(entry, options.dest.as_deref(), jobs)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    event("done", serde_json::json!({ "downloaded_bytes": downloaded, "seconds": seconds }));
    Ok(downloaded)
}

/// Downloads at once by default: network-bound, so more than the cores,
/// bounded so that 64-core nodes do not open hundreds of connections.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(4).clamp(4, 16)
}

fn fill_entry(entry: &ManifestEntry, dest: Option<&Path>, jobs: usize) -> Result<u64, PrefetchError> {
    if entry.kind != "hf" || entry.layout != crate::spec::WeightsLayout::Plain {
        let kind = if entry.kind == "hf" { "hf-cache layout".to_string() } else { entry.kind.clone() };
        return Err(PrefetchError::UnsupportedKind { origin: entry.origin.clone(), kind });
    }
    let root = dest.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(&entry.volume_path));
    let write_error =
        |path: &Path, source| PrefetchError::Write { origin: entry.origin.clone(), path: path.to_path_buf(), source };
    std::fs::create_dir_all(&root).map_err(|source| write_error(&root, source))?;
    // The credential's value is read here, at run time, by its name only.
    let token = entry.credential.as_deref().and_then(|name| Secret::from_env(&[name])).or_else(|| hf::token_for(None));
    let client = HfClient::new(None, token).with_credential_name(&hf::credential_name(entry.credential.as_deref()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = jobs.min(entry.files.len()).max(1);
    let results: Vec<Result<u64, PrefetchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut bytes = 0;
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(file) = entry.files.get(index) else { return Ok(bytes) };
                        bytes += fill_file(entry, &client, &root, file)?;
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a download worker panicked")).collect()
    });
    let mut downloaded = 0;
    for result in results {
        downloaded += result?;
    }
    let marker = ready_marker(&root);
    std::fs::write(&marker, format!("{}\n", entry.revision.as_deref().unwrap_or("")))
        .map_err(|source| write_error(&marker, source))?;
    Ok(downloaded)
}

/// One file, under its lock: verified already (by us earlier, or by a
/// replica that held the lock), or downloaded now. Returns bytes downloaded.
fn fill_file(entry: &ManifestEntry, client: &HfClient, root: &Path, file: &ManifestFile) -> Result<u64, PrefetchError> {
    let target = root.join(&file.path);
    let write_error =
        |path: &Path, source| PrefetchError::Write { origin: entry.origin.clone(), path: path.to_path_buf(), source };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|source| write_error(parent, source))?;
    }
    // Locks live beside the folder, not in it, so the app never sees them.
    let mut locks_name = root.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    locks_name.push(LOCKS_SUFFIX);
    let locks = root.with_file_name(locks_name);
    std::fs::create_dir_all(&locks).map_err(|source| write_error(&locks, source))?;
    let lock_path = locks.join(format!("{}.lock", file.path.replace('/', "%2F")));
    let lock = std::fs::File::create(&lock_path).map_err(|source| write_error(&lock_path, source))?;
    lock.lock().map_err(|source| write_error(&lock_path, source))?;
    if verified(&target, file) {
        event("present", serde_json::json!({ "origin": entry.origin, "file": file.path, "bytes": file.size }));
        return Ok(0);
    }
    let started = Instant::now();
    let remote = RemoteFile {
        path: file.path.clone(),
        size: file.size,
        sha256: format!("sha256:{}", file.sha256).parse().ok(),
        etag: None,
        url: file.url.clone(),
    };
    client.download_to(&remote, &target).map_err(|source| PrefetchError::Download {
        origin: entry.origin.clone(),
        file: file.path.clone(),
        url: file.url.clone(),
        source: Box::new(source),
    })?;
    let seconds = started.elapsed().as_secs_f64();
    event(
        "downloaded",
        serde_json::json!({ "origin": entry.origin, "file": file.path, "bytes": file.size, "seconds": seconds }),
    );
    Ok(file.size)
}

/// True when `path` has the manifest's size and sha256.
fn verified(path: &Path, file: &ManifestFile) -> bool {
    if std::fs::metadata(path).map(|m| m.len()).ok() != Some(file.size) {
        return false;
    }
    let Ok(mut reader) = std::fs::File::open(path) else { return false };
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(_) => return false,
        }
    }
    hex::encode(hasher.finalize()) == file.sha256
}

/// Replaces this process with the app. Returns only on failure.
pub fn exec(command: &[String]) -> PrefetchError {
    use std::os::unix::process::CommandExt;
    let error = std::process::Command::new(&command[0]).args(&command[1..]).exec();
    PrefetchError::Exec { command: command.join(" "), source: error }
}
