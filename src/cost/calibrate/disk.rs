//! Disk and page-cache measurements of `plan --calibrate`, and the rules
//! that turn samples at several sizes into the one rate a profile keeps.
//!
//! A virtual disk serves its first tens of MiB from a cache or a burst
//! allowance and then settles, and weights are GBs: so reads and writes are
//! timed at several sizes and the rate past the smaller ones is kept
//! ([`sustained_rate`]). The test data is stamped per 4 KiB block so that a
//! deduplicating disk cannot skip any of it.
//!
//! Writes are timed the way build writes a blob (direct I/O), reads on files
//! written the way a node writes the files an app reads (an unpack or the
//! prefetch hook: buffered, then fsync). The two read at different rates on
//! some machines: on this project's firecracker VM a 4 GiB file written with
//! direct I/O read back at about 400 MB/s and one written through the page
//! cache at about 900 MB/s (docs/plan.md, "Calibration").

use super::{bf16_like, io, timed, CalibrateError};
use sha2::{Digest as _, Sha256};
use std::io::Read;

/// Sizes of the disk write samples, MiB: the small one shows a device's
/// fast start, the large ones what a GB of weights sees.
pub const DISK_SAMPLES_MIB: [u64; 3] = [32, 256, 1024];

/// Sizes of the cold-read samples, MiB: as the writes, and 4 GiB, the size
/// of a 2B-parameter model in bf16, where a disk's caches are left behind.
/// A size the disk has no room for (it and [`FREE_SPACE_KEPT`]) is skipped.
pub const READ_SAMPLES_MIB: [u64; 4] = [32, 256, 1024, 4096];

/// Free space a read sample leaves on the disk it is written to.
const FREE_SPACE_KEPT: u64 = 2 << 30;

/// The largest sample read again from the page cache: large enough to
/// leave the CPU caches behind, small enough for any node's memory.
const CACHED_READ_MAX_MIB: u64 = 1024;

/// One timed transfer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub bytes: u64,
    pub seconds: f64,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        self.bytes as f64 / self.seconds.max(1e-9)
    }
}

/// The rate a transfer of GBs sees: what each byte past the second-largest
/// sample cost (the marginal rate between the two largest), which leaves a
/// device's fast start and any fixed cost behind. Two close times can make
/// that quotient absurd, so it is kept between half and all of the largest
/// sample's own rate; with one sample, its rate.
pub fn sustained_rate(samples: &[Sample]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.bytes);
    let Some(largest) = sorted.last().copied() else {
        return 0.0;
    };
    let average = largest.rate();
    let Some(smaller) = sorted.len().checked_sub(2).map(|i| sorted[i]) else {
        return average;
    };
    let (bytes, seconds) = (largest.bytes.saturating_sub(smaller.bytes), largest.seconds - smaller.seconds);
    if bytes == 0 || seconds <= 0.0 {
        return average;
    }
    (bytes as f64 / seconds).clamp(average / 2.0, average)
}

/// Seconds per entry from unpacks of different entry counts: the extra time
/// over the extra entries of the two largest (a fixed cost drops out), or
/// the largest's average when noise makes that difference ≤ 0.
pub fn per_entry_seconds(samples: &[Sample]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.bytes);
    match sorted.as_slice() {
        [.., smaller, larger] if larger.bytes > smaller.bytes && larger.seconds > smaller.seconds => {
            (larger.seconds - smaller.seconds) / (larger.bytes - smaller.bytes) as f64
        }
        [.., larger] if larger.bytes > 0 => larger.seconds / larger.bytes as f64,
        _ => 0.0,
    }
}

/// "32 MiB 1.02 GB/s, 1024 MiB 0.61 GB/s": every sample's rate.
pub fn describe_samples(samples: &[Sample]) -> String {
    let rates: Vec<String> =
        samples.iter().map(|s| format!("{} MiB {:.2} GB/s", s.bytes >> 20, s.rate() / 1e9)).collect();
    rates.join(", ")
}

/// Bytes the page cache can hold for files written now: `MemAvailable`,
/// capped by this process's cgroup (v2) room (`memory.max - memory.current`).
pub fn page_cache_room(meminfo: &str, cgroup_max: Option<&str>, cgroup_current: Option<&str>) -> Option<u64> {
    let available = meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemAvailable:")?;
        rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kib| kib * 1024)
    })?;
    let number = |text: Option<&str>| text.and_then(|t| t.trim().parse::<u64>().ok());
    let cgroup_room = match (number(cgroup_max), number(cgroup_current)) {
        (Some(max), Some(current)) => Some(max.saturating_sub(current)),
        _ => None,
    };
    Some(cgroup_room.map_or(available, |room| room.min(available)))
}

/// [`page_cache_room`] of this machine and this process's cgroup.
pub(super) fn this_page_cache_room() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let dir = cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
    let read = |name: &str| dir.as_ref().and_then(|d| std::fs::read_to_string(d.join(name)).ok());
    page_cache_room(&meminfo, read("memory.max").as_deref(), read("memory.current").as_deref())
}

/// Whether this machine's kernel hands free memory to a host (free page
/// reporting, as a virtio balloon or a firecracker guest kernel do): the
/// reporting order is one the allocator has (mainline kernels read
/// 4294967295 until a device registers) and, where the kernel counts it,
/// something was reported. Such a host backs a page again only when it is
/// used, so page-cache growth, and every rate measured here, runs at the
/// host's rate rather than the disk's.
pub fn reports_memory_to_host(order: Option<&str>, reported_kib: Option<&str>) -> bool {
    let order = order.and_then(|text| text.trim().parse::<u64>().ok());
    let reported = reported_kib.and_then(|text| text.trim().parse::<u64>().ok());
    matches!(order, Some(order) if order <= 10) && reported != Some(0)
}

/// [`reports_memory_to_host`] of this machine.
pub(super) fn this_machine_reports_memory() -> bool {
    let read = |name: &str| std::fs::read_to_string(format!("/sys/module/page_reporting/parameters/{name}")).ok();
    reports_memory_to_host(read("page_reporting_order").as_deref(), read("reported_kib").as_deref())
}

/// `bytes` of bf16-like data made from `chunk`, each 4 KiB block stamped
/// with its position and `seed`, so that no two blocks of a sample (or of
/// two samples) are equal and a deduplicating disk cannot skip them.
pub(super) struct Stamped<'a> {
    chunk: &'a [u8],
    seed: u64,
    left: u64,
    block: u64,
    buffer: Vec<u8>,
    at: usize,
}

impl<'a> Stamped<'a> {
    pub(super) fn new(chunk: &'a [u8], bytes: u64, seed: u64) -> Self {
        Stamped { chunk, seed, left: bytes, block: 0, buffer: Vec::new(), at: 0 }
    }

    /// The next piece (at most `chunk.len()` bytes), or `None` at the end.
    fn next_piece(&mut self) -> Option<&[u8]> {
        if self.left == 0 {
            return None;
        }
        let take = (self.chunk.len() as u64).min(self.left) as usize;
        self.buffer.clear();
        self.buffer.extend_from_slice(&self.chunk[..take]);
        for block in self.buffer.chunks_mut(4096) {
            let stamp = (self.seed << 40) ^ self.block;
            let n = block.len().min(8);
            block[..n].copy_from_slice(&stamp.to_le_bytes()[..n]);
            self.block += 1;
        }
        self.left -= take as u64;
        Some(&self.buffer)
    }
}

impl Read for Stamped<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buffer.len() {
            self.at = 0;
            if self.next_piece().is_none() {
                self.buffer.clear();
                return Ok(0);
            }
        }
        let n = out.len().min(self.buffer.len() - self.at);
        out[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Asks the kernel to drop `path`'s pages from the page cache, so that the
/// next read comes from the disk.
fn drop_from_page_cache(path: &std::path::Path) {
    if let Ok(file) = std::fs::File::open(path) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; fadvise only hints the kernel.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

/// Reads `path` to the end in 1 MiB pieces, as an app reads its weights.
fn read_through(path: &std::path::Path) -> Result<u64, CalibrateError> {
    let mut file = std::fs::File::open(path).map_err(io("reading a test file"))?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io("reading a test file"))?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Disk writes and cold reads at each size, and one file read again from
/// the page cache.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSamples {
    pub writes: Vec<Sample>,
    pub reads: Vec<Sample>,
    pub cached_read: Sample,
}

/// Times the disk: [`write_samples`] at `write_sizes_mib` and
/// [`read_samples`] at `read_sizes_mib`.
pub fn disk_samples(
    dir: &std::path::Path,
    write_sizes_mib: &[u64],
    read_sizes_mib: &[u64],
) -> Result<DiskSamples, CalibrateError> {
    let chunk = bf16_like(8 << 20, 3);
    let writes = write_samples(dir, &chunk, write_sizes_mib)?;
    let (reads, cached_read) = read_samples(dir, &chunk, read_sizes_mib)?;
    Ok(DiskSamples { writes, reads, cached_read })
}

/// Writes a new file of each size the way build writes an uncompressed
/// layer's blob: the first 8 MiB buffered, the rest with direct I/O, then
/// fsync and rename (fresh blocks, as a node's unpack and the hook write).
fn write_samples(dir: &std::path::Path, chunk: &[u8], sizes_mib: &[u64]) -> Result<Vec<Sample>, CalibrateError> {
    let store_dir = tempfile::tempdir_in(dir).map_err(io("creating a directory"))?;
    let blob_error = |doing: &'static str| {
        move |error: crate::image::blobs::BlobError| CalibrateError::Io { doing, source: std::io::Error::other(error) }
    };
    let store = crate::image::blobs::BlobStore::open(store_dir.path()).map_err(blob_error("opening a blob store"))?;
    let mut writes = Vec::new();
    for (index, &mib) in sizes_mib.iter().enumerate() {
        let bytes = mib << 20;
        let name = crate::image::digest::Digest::from_sha256_bytes(&Sha256::digest(format!("calibrate-{index}")));
        let mut data = Stamped::new(chunk, bytes, index as u64);
        let (_, seconds) = timed(|| {
            let mut writer = store.writer_unhashed().map_err(blob_error("writing a test blob"))?;
            while let Some(piece) = data.next_piece() {
                writer.write_all_blob(piece).map_err(blob_error("writing a test blob"))?;
            }
            writer.commit_as(&name).map_err(blob_error("committing a test blob"))
        })?;
        writes.push(Sample { bytes, seconds });
        std::fs::remove_file(store.path(&name)).map_err(io("removing a test blob"))?;
    }
    Ok(writes)
}

/// Writes a new file of each size the way a node writes the files an app
/// then reads (an unpack or the prefetch hook: buffered writes, fsync),
/// drops it from the page cache and times reading it back; the largest
/// file read of at most [`CACHED_READ_MAX_MIB`] is read once more, now from
/// the page cache. Sizes (ascending) without room on the disk are skipped.
fn read_samples(
    dir: &std::path::Path,
    chunk: &[u8],
    sizes_mib: &[u64],
) -> Result<(Vec<Sample>, Sample), CalibrateError> {
    let (mut reads, mut cached_read) = (Vec::new(), None);
    for (index, &mib) in sizes_mib.iter().enumerate() {
        let bytes = mib << 20;
        let free = crate::plumbing::fs::free_bytes(dir).map_err(io("reading the free space"))?;
        if free < bytes.saturating_add(FREE_SPACE_KEPT) && !reads.is_empty() {
            continue;
        }
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io("writing a test file"))?;
        let mut data = Stamped::new(chunk, bytes, 100 + index as u64);
        while let Some(piece) = data.next_piece() {
            std::io::Write::write_all(file.as_file_mut(), piece).map_err(io("writing a test file"))?;
        }
        file.as_file().sync_all().map_err(io("syncing a test file"))?;
        drop_from_page_cache(file.path());
        let (read, seconds) = timed(|| read_through(file.path()))?;
        reads.push(Sample { bytes: read, seconds });
        // Every size up to the cap, so that the last one read is kept even
        // when a larger one was skipped for room (a cached read is 0.1 s).
        if mib <= CACHED_READ_MAX_MIB {
            let (read, seconds) = timed(|| read_through(file.path()))?;
            cached_read = Some(Sample { bytes: read, seconds });
        }
    }
    Ok((reads, cached_read.unwrap_or(Sample { bytes: 0, seconds: 1.0 })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn sample(mb: u64, seconds: f64) -> Sample {
        Sample { bytes: mb * MB, seconds }
    }

    #[test]
    fn a_device_fast_at_first_is_charged_its_rate_past_the_fast_part() {
        // 100 MB at 2 GB/s, then 500 MB/s: 100 MB in 0.05 s, 500 MB in
        // 0.85 s, 1000 MB in 1.85 s. The 1000 MB average (541 MB/s) still
        // carries the fast start; past 500 MB it is 500 MB/s.
        let samples = [sample(100, 0.05), sample(500, 0.85), sample(1000, 1.85)];
        assert!((sustained_rate(&samples) - 500e6).abs() < 1.0);
        assert_eq!(describe_samples(&samples[..1]), "95 MiB 2.00 GB/s");
        // Order does not matter.
        let shuffled = [samples[2], samples[0], samples[1]];
        assert_eq!(sustained_rate(&shuffled), sustained_rate(&samples));
    }

    #[test]
    fn a_fixed_cost_or_noise_keeps_the_largest_samples_own_rate() {
        // 0.1 s of fixed cost, then 1 GB/s: the marginal 1 GB/s is above the
        // 1000 MB average (909 MB/s), which is what 1000 MB really took.
        let fixed = [sample(100, 0.2), sample(1000, 1.1)];
        assert!((sustained_rate(&fixed) - 1000e6 / 1.1).abs() < 1.0);
        // Two near-equal times would give 50 GB/s: the average wins.
        let noisy = [sample(500, 0.85), sample(1000, 0.86)];
        assert!((sustained_rate(&noisy) - 1000e6 / 0.86).abs() < 1.0);
        // A hiccup in the large sample (100 MB more in 9.1 s, 11 MB/s): no
        // less than half the 1000 MB average (100 MB/s) is charged.
        let hiccup = [sample(900, 0.9), sample(1000, 10.0)];
        assert!((sustained_rate(&hiccup) - 50e6).abs() < 1.0);
        assert_eq!(sustained_rate(&[sample(100, 0.5)]), 200e6);
        assert_eq!(sustained_rate(&[]), 0.0);
    }

    #[test]
    fn per_entry_cost_leaves_the_fixed_cost_out() {
        // tar's start and the sync: 0.2 s; 100 µs per entry.
        let samples = [Sample { bytes: 1000, seconds: 0.3 }, Sample { bytes: 4000, seconds: 0.6 }];
        assert!((per_entry_seconds(&samples) - 100e-6).abs() < 1e-12);
        let noisy = [Sample { bytes: 1000, seconds: 0.6 }, Sample { bytes: 4000, seconds: 0.5 }];
        assert!((per_entry_seconds(&noisy) - 0.5 / 4000.0).abs() < 1e-12);
    }

    #[test]
    fn memory_reported_to_a_host_is_told_by_the_reporting_order() {
        assert!(reports_memory_to_host(Some("9\n"), Some("28885876\n")), "firecracker's guest kernel");
        assert!(reports_memory_to_host(Some("9\n"), None), "a mainline kernel with a balloon");
        assert!(!reports_memory_to_host(Some("4294967295\n"), None), "no device registered");
        assert!(!reports_memory_to_host(Some("11\n"), Some("100")), "stopped: no block reaches order 11");
        assert!(!reports_memory_to_host(Some("9"), Some("0")), "nothing reported yet");
        assert!(!reports_memory_to_host(None, None), "no page reporting in the kernel");
    }

    #[test]
    fn the_page_cache_room_is_memavailable_within_the_cgroup() {
        let meminfo = "MemTotal:       24683656 kB\nMemFree:         4000000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(page_cache_room(meminfo, None, None), Some(20_000_000 * 1024));
        assert_eq!(page_cache_room(meminfo, Some("max\n"), Some("1000\n")), Some(20_000_000 * 1024));
        assert_eq!(page_cache_room(meminfo, Some("8000000000\n"), Some("3000000000\n")), Some(5_000_000_000));
        assert_eq!(page_cache_room("MemTotal: 1 kB\n", None, None), None);
    }

    #[test]
    fn disk_samples_time_every_size_and_leave_nothing_behind() {
        // Bounded: 1 to 4 MiB (the command measures 32 MiB to 4 GiB).
        let dir = tempfile::tempdir().unwrap();
        let samples = disk_samples(dir.path(), &[1, 4], &[1, 2, 4]).unwrap();
        let bytes = |samples: &[Sample]| samples.iter().map(|s| s.bytes >> 20).collect::<Vec<_>>();
        assert_eq!(bytes(&samples.writes), [1, 4]);
        assert_eq!(bytes(&samples.reads), [1, 2, 4]);
        assert_eq!(samples.cached_read.bytes, 4 << 20);
        for s in samples.writes.iter().chain(&samples.reads).chain([&samples.cached_read]) {
            assert!(s.seconds > 0.0 && s.rate().is_finite(), "{s:?}");
        }
        assert!(sustained_rate(&samples.reads) > 0.0);
        let left: Vec<_> = walk(dir.path());
        assert!(left.is_empty(), "{left:?}");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                files.extend(walk(&entry.path()));
            } else {
                files.push(entry.path());
            }
        }
        files
    }

    #[test]
    fn stamped_data_has_no_two_equal_blocks() {
        let chunk = bf16_like(16 << 10, 1);
        let mut data = Vec::new();
        Stamped::new(&chunk, 40 << 10, 5).read_to_end(&mut data).unwrap();
        assert_eq!(data.len(), 40 << 10);
        let blocks: std::collections::BTreeSet<&[u8]> = data.chunks(4096).collect();
        assert_eq!(blocks.len(), 10);
        let mut other = Vec::new();
        Stamped::new(&chunk, 4096, 6).read_to_end(&mut other).unwrap();
        assert!(!blocks.contains(&other[..]));
    }
}
