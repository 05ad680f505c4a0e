//! One manifest file onto the volume without ever accepting a wrong byte:
//! parallel byte ranges written in place into `<name>.partial`, resumed
//! from an earlier run's completed ranges, verified by the sha256 of the
//! whole file, then fsynced and renamed into place (and the directory fsynced).
//!
//! Ranges arrive out of order, so the hash cannot be fed by the network
//! streams. We chose positioned writes (`pwrite`) per range plus one
//! verification pass over the file, rather than hashing in order through a
//! reorder buffer: a reorder buffer holds up to (ranges × range size) bytes
//! in memory when one range lags, while positioned writes keep memory at one
//! read buffer per connection. The verification pass does not wait for the
//! end: a hasher thread follows the completed prefix of the file (ranges are
//! taken in order, so the prefix grows steadily) and reads those bytes back
//! from the page cache, so a file is verified moments after its last byte.
//!
//! Safety rules: a byte region, once the hasher may have read it, is never
//! written again in the same attempt (a body that starts before the wanted
//! offset is skipped, not rewritten); the progress record of completed
//! ranges is only a hint for resuming — the whole-file hash decides, and a
//! mismatch deletes the partial and fetches the file again from the source.

use super::events::Events;
use super::remote::{self, Body, Failure, Remote};
use crate::weights::manifest::ManifestFile;
use sha2::{Digest as _, Sha256};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Bytes per range request. Large enough that request overhead is small on
/// a fast link, small enough that a 1 GiB file spreads over 16+ connections
/// and that a resume loses at most one range per connection.
pub const RANGE_SIZE: u64 = 16 << 20;
/// Downloads of a file whose content hashes wrong before giving up.
const VERIFY_ATTEMPTS: u32 = 2;
const READ_BUFFER: usize = 1 << 20;
const HASH_BUFFER: usize = 4 << 20;

/// Retries of one range (the shared policy); an attempt that moved bytes
/// forward does not count.
pub use crate::plumbing::retry::RetryPolicy;

/// Limits open connections across all files of one hook (std has no
/// semaphore; this is the usual mutex + condvar one).
pub struct Budget {
    free: Mutex<usize>,
    changed: Condvar,
}

impl Budget {
    pub fn new(permits: usize) -> Budget {
        Budget { free: Mutex::new(permits.max(1)), changed: Condvar::new() }
    }

    fn take(&self) -> Permit<'_> {
        let mut free = self.free.lock().expect("budget lock");
        while *free == 0 {
            free = self.changed.wait(free).expect("budget lock");
        }
        *free -= 1;
        Permit { budget: self }
    }
}

struct Permit<'a> {
    budget: &'a Budget,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.budget.free.lock().expect("budget lock") += 1;
        self.budget.changed.notify_one();
    }
}

/// Everything a download needs besides the file itself.
pub struct Context<'a> {
    pub remote: &'a Remote,
    pub budget: &'a Budget,
    pub events: &'a Events,
    pub origin: &'a str,
    pub policy: RetryPolicy,
    /// Connections one file may use at once.
    pub ranges: usize,
}

/// Bytes that came over the network, and bytes reused from a partial.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub fetched: u64,
    pub resumed: u64,
}

/// `target` downloaded, verified and renamed into place. `state` is where
/// the progress record lives (beside the weights folder, not in it).
pub fn download(ctx: &Context, file: &ManifestFile, target: &Path, state: &Path) -> Result<Outcome, String> {
    let partial = suffixed(target, ".partial");
    let mut total = Outcome::default();
    for attempt in 1..=VERIFY_ATTEMPTS {
        let (outcome, actual) = fetch_once(ctx, file, &partial, state)?;
        total.fetched += outcome.fetched;
        total.resumed += outcome.resumed;
        if actual == file.sha256 {
            let out = File::open(&partial).map_err(|e| format!("cannot open {}: {e}", partial.display()))?;
            out.sync_all().map_err(|e| format!("cannot fsync {}: {e}", partial.display()))?;
            fs::rename(&partial, target).map_err(|e| format!("cannot rename {}: {e}", partial.display()))?;
            crate::plumbing::fs::sync_parent(target);
            let _ = fs::remove_file(state);
            return Ok(total);
        }
        let _ = fs::remove_file(&partial);
        let _ = fs::remove_file(state);
        ctx.events.retry(ctx.origin, &file.path, &file.url, &format!("content has sha256 {actual}"), attempt, 0.0);
        if attempt == VERIFY_ATTEMPTS {
            return Err(format!(
                "content has sha256 {actual} after {VERIFY_ATTEMPTS} downloads, the manifest says {}; \
                 the source serves different bytes than at build time",
                file.sha256
            ));
        }
    }
    unreachable!("the last attempt returns")
}

pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Which ranges of a partial are complete; rewritten after each range.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProgressRecord {
    size: u64,
    sha256: String,
    range_size: u64,
    done: Vec<usize>,
}

struct State {
    done: Vec<bool>,
    pending: VecDeque<usize>,
    /// Bytes from offset 0 that are complete (what the hasher may read).
    contiguous: u64,
    next_contiguous: usize,
    failed: Option<String>,
}

struct Shared<'a> {
    ctx: &'a Context<'a>,
    file: &'a ManifestFile,
    out: File,
    state: Mutex<State>,
    changed: Condvar,
    fetched: AtomicU64,
    whole: AtomicBool,
    record: &'a Path,
    record_lock: Mutex<()>,
}

impl Shared<'_> {
    fn bounds(&self, index: usize) -> (u64, u64) {
        let start = index as u64 * RANGE_SIZE;
        (start, (start + RANGE_SIZE).min(self.file.size))
    }

    fn failed(&self) -> bool {
        self.state.lock().expect("state lock").failed.is_some()
    }

    fn fail(&self, message: String) {
        let mut state = self.state.lock().expect("state lock");
        state.failed.get_or_insert(message);
        self.changed.notify_all();
    }

    /// Marks ranges complete, moves the hashable prefix, saves the record.
    fn mark_done(&self, indices: impl IntoIterator<Item = usize>) {
        let done: Vec<usize> = {
            let mut state = self.state.lock().expect("state lock");
            for index in indices {
                state.done[index] = true;
            }
            while state.next_contiguous < state.done.len() && state.done[state.next_contiguous] {
                state.contiguous = self.bounds(state.next_contiguous).1;
                state.next_contiguous += 1;
            }
            self.changed.notify_all();
            state.done.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| i).collect()
        };
        // Serialized so an older list never overwrites a newer one.
        let _guard = self.record_lock.lock().expect("record lock");
        let record =
            ProgressRecord { size: self.file.size, sha256: self.file.sha256.clone(), range_size: RANGE_SIZE, done };
        let temp = suffixed(self.record, ".tmp");
        if fs::write(&temp, serde_json::to_vec(&record).unwrap_or_default()).is_ok() {
            let _ = fs::rename(&temp, self.record);
        }
    }

    /// Takes the next range to fetch, if any and if nothing failed.
    fn next_range(&self) -> Option<usize> {
        let mut state = self.state.lock().expect("state lock");
        if state.failed.is_some() {
            return None;
        }
        state.pending.pop_front()
    }
}

/// One pass: fetch the missing ranges, hash the file; returns the hash.
fn fetch_once(ctx: &Context, file: &ManifestFile, partial: &Path, record: &Path) -> Result<(Outcome, String), String> {
    let ranges = file.size.div_ceil(RANGE_SIZE) as usize;
    let io = |what: &str, error: std::io::Error| format!("cannot {what} {}: {error}", partial.display());
    let mut done = vec![false; ranges];
    let resumable = fs::metadata(partial).is_ok_and(|m| m.len() == file.size);
    if let Some(previous) = fs::read(record).ok().and_then(|b| serde_json::from_slice::<ProgressRecord>(&b).ok()) {
        if resumable
            && previous.size == file.size
            && previous.sha256 == file.sha256
            && previous.range_size == RANGE_SIZE
        {
            for index in previous.done.into_iter().filter(|i| *i < ranges) {
                done[index] = true;
            }
        }
    }
    if !done.iter().any(|d| *d) {
        let _ = fs::remove_file(record);
    }
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)
        .map_err(|e| io("open", e))?;
    out.set_len(file.size).map_err(|e| io("size", e))?;
    reserve(&out, file.size).map_err(|e| io("reserve disk space for", e))?;
    let resumed: u64 = done.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| range_len(file.size, i)).sum();
    let pending: VecDeque<usize> = (0..ranges).filter(|i| !done[*i]).collect();
    let shared = Shared {
        ctx,
        file,
        out,
        state: Mutex::new(State { done, pending, contiguous: 0, next_contiguous: 0, failed: None }),
        changed: Condvar::new(),
        fetched: AtomicU64::new(0),
        whole: AtomicBool::new(false),
        record,
        record_lock: Mutex::new(()),
    };
    shared.mark_done([]);
    let hash = std::thread::scope(|scope| {
        let hasher = scope.spawn(|| hash_behind(&shared));
        match fetch_ranges(&shared, scope) {
            Err(message) => shared.fail(message),
            // Never leave the hasher waiting for bytes nobody will write.
            Ok(()) if shared.state.lock().expect("state lock").contiguous < file.size => {
                shared.fail("not every range of the file was fetched".to_string())
            }
            Ok(()) => {}
        }
        hasher.join().expect("the hasher panicked")
    });
    let state = shared.state.into_inner().expect("state lock");
    if let Some(message) = state.failed {
        return Err(message);
    }
    let hash = hash.map_err(|e| io("read back", e))?;
    Ok((Outcome { fetched: shared.fetched.into_inner(), resumed }, hash))
}

/// Allocates the partial's blocks up front, so that a disk filled by someone
/// else since the start-up check fails here, clearly, not halfway through.
/// Filesystems without `fallocate` (some network ones) skip it.
fn reserve(out: &File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if size == 0 {
        return Ok(());
    }
    // fallocate(2), not posix_fallocate: glibc's fallback for the latter
    // writes every block, which would double the I/O where it is unsupported.
    // SAFETY: a plain syscall on a file descriptor we own; no memory is passed.
    if unsafe { libc::fallocate(out.as_raw_fd(), 0, 0, size as i64) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENOSYS) => Ok(()),
        _ => Err(error),
    }
}

fn range_len(size: u64, index: usize) -> u64 {
    let start = index as u64 * RANGE_SIZE;
    (start + RANGE_SIZE).min(size) - start
}

/// The first pending range decides the mode: if the server honours Range,
/// up to `ctx.ranges` connections take ranges in order; if it sends the
/// whole file instead, that one stream writes everything still missing.
fn fetch_ranges<'s>(shared: &'s Shared<'s>, scope: &'s std::thread::Scope<'s, '_>) -> Result<(), String> {
    let Some(first) = shared.next_range() else { return Ok(()) };
    let (start, end) = shared.bounds(first);
    let permit = shared.ctx.budget.take();
    let body = open_with_retries(shared, start, end, None)?;
    if body.whole && end < shared.file.size {
        // The server ignored Range: everything from `start` comes in this stream.
        shared.whole.store(true, Ordering::Relaxed);
        {
            let mut state = shared.state.lock().expect("state lock");
            for index in first..state.done.len() {
                state.done[index] = false;
            }
            state.pending.clear();
        }
        return fetch_range(shared, start, shared.file.size, Some(body), permit);
    }
    let pending = shared.state.lock().expect("state lock").pending.len();
    let helpers: Vec<_> = (1..shared.ctx.ranges.min(pending + 1))
        .map(|_| {
            scope.spawn(move || -> Result<(), String> {
                while let Some(index) = shared.next_range() {
                    let (start, end) = shared.bounds(index);
                    fetch_range(shared, start, end, None, shared.ctx.budget.take())?;
                    shared.mark_done([index]);
                }
                Ok(())
            })
        })
        .collect();
    let mut result = fetch_range(shared, start, end, Some(body), permit).map(|()| shared.mark_done([first]));
    while result.is_ok() {
        let Some(index) = shared.next_range() else { break };
        let (start, end) = shared.bounds(index);
        result = fetch_range(shared, start, end, None, shared.ctx.budget.take()).map(|()| shared.mark_done([index]));
    }
    if let Err(message) = &result {
        shared.fail(message.clone());
    }
    for helper in helpers {
        let outcome = helper.join().expect("a range worker panicked");
        if let Err(message) = outcome {
            shared.fail(message);
        }
    }
    match shared.state.lock().expect("state lock").failed.clone() {
        Some(message) => Err(message),
        None => result,
    }
}

/// Opens `start..end`, retrying what can be retried.
fn open_with_retries(shared: &Shared, start: u64, end: u64, attempt: Option<&mut u32>) -> Result<Body, String> {
    let mut local = 0;
    let attempts = match attempt {
        Some(counter) => counter,
        None => &mut local,
    };
    loop {
        if shared.failed() {
            return Err("stopped: another range failed".to_string());
        }
        match shared.ctx.remote.open(shared.file, start, end) {
            Ok(body) => return Ok(body),
            Err(Failure::Fatal(message)) => return Err(message),
            Err(Failure::Retry { message, after }) => pause(shared, attempts, &message, after)?,
        }
    }
}

/// Counts a failed attempt and sleeps before the next, or gives up.
fn pause(shared: &Shared, attempts: &mut u32, reason: &str, after: Option<Duration>) -> Result<(), String> {
    *attempts += 1;
    let delay = shared.ctx.policy.next_delay(*attempts, after).map_err(|why| format!("{reason} ({why})"))?;
    shared.ctx.events.retry(
        shared.ctx.origin,
        &shared.file.path,
        &shared.file.url,
        reason,
        *attempts,
        delay.as_secs_f64(),
    );
    std::thread::sleep(delay);
    Ok(())
}

/// Writes bytes `start..end` at their offsets, reopening after a reset, a
/// stall or a short body from where the bytes stopped.
fn fetch_range(shared: &Shared, start: u64, end: u64, mut body: Option<Body>, permit: Permit) -> Result<(), String> {
    let _permit = permit;
    let mut position = start;
    let mut attempts = 0u32;
    let mut buffer = vec![0u8; READ_BUFFER];
    while position < end {
        let Body { mut reader, from, .. } = match body.take() {
            Some(body) => body,
            None => open_with_retries(shared, position, end, Some(&mut attempts))?,
        };
        if from > position {
            return Err(format!("the server sent bytes from {from}, but {position} was asked for"));
        }
        // A body from before `position` (no Range support) is read past, never rewritten.
        let mut offset = from;
        let moved_from = position;
        let failure: Option<(String, bool)> = loop {
            if offset >= end {
                break None;
            }
            let want = (buffer.len() as u64).min(end - offset) as usize;
            match reader.read(&mut buffer[..want]) {
                Ok(0) => break Some((format!("the body ended at byte {offset} (wanted up to {end})"), false)),
                Ok(n) => {
                    if offset + n as u64 > position {
                        let skip = position.saturating_sub(offset) as usize;
                        shared
                            .out
                            .write_all_at(&buffer[skip..n], offset + skip as u64)
                            .map_err(|e| format!("cannot write the partial file: {e}"))?;
                        shared.fetched.fetch_add((n - skip) as u64, Ordering::Relaxed);
                        shared.ctx.events.bytes((n - skip) as u64);
                        position = offset + n as u64;
                        if shared.whole.load(Ordering::Relaxed) {
                            mark_whole_progress(shared, position);
                        }
                    }
                    offset += n as u64;
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => break Some((remote::chain(&error), remote::fatal_read_error(&error))),
            }
            if shared.failed() {
                return Err("stopped: another range failed".to_string());
            }
        };
        match failure {
            None => {}
            Some((message, true)) => return Err(message),
            Some((message, false)) => {
                if position > moved_from {
                    attempts = 0;
                }
                pause(shared, &mut attempts, &message, None)?;
            }
        }
    }
    start_writeback(&shared.out, start, end);
    Ok(())
}

/// Asks the kernel to start writing a completed range to disk now, without
/// waiting, so the final fsync finds little left to flush (Linux only; a
/// hint, so its result is ignored).
fn start_writeback(file: &File, start: u64, end: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor we own; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), start as i64, (end - start) as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// In whole-file mode, ranges below `position` are complete.
fn mark_whole_progress(shared: &Shared, position: u64) {
    let newly: Vec<usize> = {
        let state = shared.state.lock().expect("state lock");
        (state.next_contiguous..state.done.len())
            .take_while(|i| shared.bounds(*i).1 <= position)
            .filter(|i| !state.done[*i])
            .collect()
    };
    if !newly.is_empty() {
        shared.mark_done(newly);
    }
}

/// Hashes the complete prefix of the partial as it grows; returns the hex
/// sha256 once the whole file is hashed, or an empty string if the
/// download failed (the caller reports that failure instead).
fn hash_behind(shared: &Shared) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut hashed = 0u64;
    let mut buffer = vec![0u8; HASH_BUFFER];
    let size = shared.file.size;
    while hashed < size {
        let until = {
            let mut state = shared.state.lock().expect("state lock");
            while state.contiguous <= hashed && state.failed.is_none() {
                state = shared.changed.wait(state).expect("state lock");
            }
            if state.failed.is_some() {
                return Ok(String::new());
            }
            state.contiguous
        };
        while hashed < until {
            let n = (buffer.len() as u64).min(until - hashed) as usize;
            shared.out.read_exact_at(&mut buffer[..n], hashed)?;
            hasher.update(&buffer[..n]);
            hashed += n as u64;
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The sha256 of a file on disk (hex).
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut reader = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; HASH_BUFFER];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_bounds_concurrency() {
        let budget = Budget::new(2);
        let busy = AtomicU64::new(0);
        let most = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..6 {
                scope.spawn(|| {
                    let _permit = budget.take();
                    let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    busy.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
