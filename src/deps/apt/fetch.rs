//! Downloads pinned .debs into the cache (`{cache}/apt/debs/{sha256}.deb`),
//! streamed to a temp file while hashing, kept only when sha256 and size
//! match the lock. A cached file is trusted by its name (it was checked when
//! written, and written atomically).

use super::{AptError, LockedDeb};
use crate::plumbing::fs::AtomicFile;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Parallel downloads: enough to hide per-request latency, few enough to be
/// polite to a public mirror.
const DOWNLOAD_THREADS: usize = 4;

pub(crate) fn http_client() -> Result<reqwest::blocking::Client, AptError> {
    // Whole-request bound: a 100 MB .deb on a slow mirror still fits.
    crate::plumbing::http::blocking(Duration::from_secs(30), Duration::from_secs(15 * 60))
        .build()
        .map_err(|source| AptError::Http { url: "(client setup)".into(), source })
}

/// [`crate::plumbing::fs::write_atomic`] with the apt error.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AptError> {
    crate::plumbing::fs::write_atomic(path, bytes).map_err(|source| AptError::Io { path: path.to_path_buf(), source })
}

/// Downloads (or finds in the cache) every .deb; returns their paths in the
/// order of `debs`.
pub fn fetch(debs: &[LockedDeb], cache_dir: &Path) -> Result<Vec<PathBuf>, AptError> {
    let dir = cache_dir.join("apt/debs");
    std::fs::create_dir_all(&dir).map_err(|source| AptError::Io { path: dir.clone(), source })?;
    let client = http_client()?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, PathBuf)>, AptError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..DOWNLOAD_THREADS.min(debs.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(deb) = debs.get(index) else { return Ok(done) };
                        done.push((index, fetch_one(&client, deb, &dir)?));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().expect("download thread panicked")).collect()
    });
    let mut paths = vec![PathBuf::new(); debs.len()];
    for result in results {
        for (index, path) in result? {
            paths[index] = path;
        }
    }
    Ok(paths)
}

fn fetch_one(client: &reqwest::blocking::Client, deb: &LockedDeb, dir: &Path) -> Result<PathBuf, AptError> {
    if deb.sha256.len() != 64 || !deb.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AptError::BadIndex {
            what: format!("lock entry of `{}`", deb.name),
            message: format!("`{}` is not a sha256", deb.sha256),
        });
    }
    let path = dir.join(format!("{}.deb", deb.sha256.to_ascii_lowercase()));
    if path.metadata().is_ok_and(|m| m.len() == deb.size) {
        return Ok(path);
    }
    let io = |source| AptError::Io { path: path.clone(), source };
    let mut response = client.get(&deb.url).send().map_err(|source| AptError::Http { url: deb.url.clone(), source })?;
    if !response.status().is_success() {
        return Err(AptError::HttpStatus { url: deb.url.clone(), status: response.status().as_u16() });
    }
    let mut temp = AtomicFile::new_in(dir).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let read = response.read(&mut buffer).map_err(io)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        temp.write_all(&buffer[..read]).map_err(io)?;
        size += read as u64;
        if size > deb.size {
            break; // longer than the index says: refused below, without reading the rest
        }
    }
    let actual = hex::encode(hasher.finalize());
    if actual != deb.sha256.to_ascii_lowercase() || size != deb.size {
        return Err(AptError::Checksum {
            what: deb.url.clone(),
            actual,
            size,
            expected: deb.sha256.clone(),
            expected_size: deb.size,
            expected_from: "the Packages index (and lock)".into(),
        });
    }
    temp.persist(&path).map_err(io)?;
    Ok(path)
}
