//! The cost model: pure functions from layer sizes and a profile's numbers to
//! seconds and bytes. No I/O; every term has a unit test on a hand-computed case.
//!
//! Pull follows containerd: `pull_concurrency` layers download at once, one
//! connection each, each capped at `layer_bandwidth` and all together at
//! `registry_bandwidth`; layers are unpacked one at a time, in order, each as
//! soon as it has arrived and the one before it is unpacked.

use super::estimate::{Codec, ImportsInput, LayerEstimate};
use super::profile::Params;
use serde::Serialize;

/// One layer's part in a pull.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PullLayer {
    pub compressed: u64,
    pub uncompressed: u64,
    pub codec: Codec,
    pub entries: u64,
}

impl From<&LayerEstimate> for PullLayer {
    fn from(layer: &LayerEstimate) -> Self {
        PullLayer {
            compressed: layer.compressed,
            uncompressed: layer.uncompressed,
            codec: layer.codec,
            entries: layer.entries,
        }
    }
}

/// When the last layer has downloaded, and when the last one is unpacked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PullTimes {
    pub download: f64,
    pub unpacked: f64,
}

/// Download finish time of every layer (seconds from the start of the pull).
pub fn download_finish_times(layers: &[PullLayer], params: &Params) -> Vec<f64> {
    let slots = params.pull_concurrency.max(1.0) as usize;
    let mut finish = vec![0.0; layers.len()];
    let mut active: Vec<(usize, f64)> = Vec::new();
    let mut next = 0;
    let mut now = 0.0;
    loop {
        while active.len() < slots && next < layers.len() {
            active.push((next, layers[next].compressed as f64));
            next += 1;
        }
        if active.is_empty() {
            return finish;
        }
        let rate = params.layer_bandwidth.min(params.registry_bandwidth / active.len() as f64);
        let step = active.iter().map(|(_, left)| left / rate).fold(f64::INFINITY, f64::min);
        now += step;
        for (_, left) in active.iter_mut() {
            *left -= step * rate;
        }
        active.retain(|&(index, left)| {
            // Within a byte is done: floating-point steps leave crumbs.
            let done = left < 0.5;
            if done {
                finish[index] = now;
            }
            !done
        });
    }
}

pub fn unpack_rate(codec: Codec, params: &Params) -> f64 {
    match codec {
        Codec::Gzip => params.unpack_gzip,
        Codec::Zstd => params.unpack_zstd,
        Codec::None => params.unpack_none,
    }
}

/// Download and serial unpack of `layers` in manifest order.
pub fn pull_and_unpack(layers: &[PullLayer], params: &Params) -> PullTimes {
    let finish = download_finish_times(layers, params);
    let download = finish.iter().copied().fold(0.0, f64::max);
    let overlap = params.unpack_overlaps_pull >= 0.5;
    let mut unpacked: f64 = if overlap { 0.0 } else { download };
    for (layer, arrived) in layers.iter().zip(&finish) {
        let start = if overlap { unpacked.max(*arrived) } else { unpacked };
        unpacked = start
            + layer.uncompressed as f64 / unpack_rate(layer.codec, params)
            + layer.entries as f64 * params.unpack_entry_seconds;
    }
    PullTimes { download, unpacked: unpacked.max(download) }
}

/// A cold start split into its terms (seconds); they add up to the total.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Terms {
    /// Until the last layer has downloaded.
    pub pull: f64,
    /// Unpacking left after the last download (the rest overlaps the pull).
    pub unpack: f64,
    /// The prefetch hook: download to a cold volume, or verify a warm one.
    pub prefetch: f64,
    pub app_start: f64,
    /// The app's imports: the packages' share of `.py` read (and compiled
    /// without bytecode) and of compiled libraries mapped, the app's own modules.
    pub imports: f64,
    /// Negative: time the app's imports run during the prefetch (0 with imgbake's hook, which execs the app after).
    pub import_overlap: f64,
    /// Reading the weights: from the page cache what this start just wrote
    /// (up to `page_cache_bytes`), the rest from local disk when baked, from
    /// the volume otherwise.
    pub load: f64,
}

impl Terms {
    pub fn total(&self) -> f64 {
        self.pull + self.unpack + self.prefetch + self.app_start + self.imports + self.import_overlap + self.load
    }
}

/// Seconds the app's imports take at a cold start. The packages' `.py`
/// bytes it reads are `import_source_fraction` of the locked ones (read at
/// `import_rate`, and compiled at `compile_rate` too when the image has no
/// bytecode); each of their compiled libraries costs
/// `native_library_seconds` (loading one is relocations and symbol lookups,
/// not bytes: torch's 4.9 GB of CUDA libraries cost per library what
/// numpy's do). The app's own modules are all imported
/// and always compiled: build compiles bytecode for packages only, and a
/// container's writable layer starts empty, so nothing is cached. The
/// standard library's share is `stdlib_import_bytes`, compiled too when the
/// image has no bytecode of it.
pub fn import_seconds(imports: &ImportsInput, params: &Params) -> f64 {
    let source = imports.python_source as f64 * params.import_source_fraction;
    let compiled = if imports.bytecode { 0.0 } else { source };
    let app = imports.app_source as f64;
    let stdlib = params.stdlib_import_bytes;
    let stdlib_compiled = if imports.stdlib_uncompiled { stdlib } else { 0.0 };
    (source + app + stdlib) / params.import_rate
        + (compiled + app + stdlib_compiled) / params.compile_rate
        + imports.native_libraries as f64 * params.native_library_seconds
}

/// Where the weights are at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightsAtStart {
    /// File bytes baked into the image.
    pub baked: u64,
    /// File bytes on the volume.
    pub volume: u64,
    /// Sizes of the files on the volume (the hook downloads them in parallel, one connection each).
    pub volume_files: Vec<u64>,
    /// True when the volume holds them already (only the hook's sha256 check runs).
    pub volume_warm: bool,
    /// True when the runtime unpacked the baked weights during this start
    /// (their layers were pulled), so their pages were just written.
    pub baked_unpacked: bool,
}

/// Seconds to download `files` with `jobs` at once, one connection each,
/// each capped at `per_connection`, all together at `total` (the same
/// sharing as a containerd pull).
pub fn parallel_download_seconds(files: &[u64], jobs: f64, per_connection: f64, total: f64) -> f64 {
    let layers: Vec<PullLayer> = files
        .iter()
        .map(|&size| PullLayer { compressed: size, uncompressed: size, codec: Codec::None, entries: 1 })
        .collect();
    let mut shared = super::profile::builtin("generic").expect("the generic profile").params;
    shared.pull_concurrency = jobs;
    shared.layer_bandwidth = per_connection;
    shared.registry_bandwidth = total;
    download_finish_times(&layers, &shared).into_iter().fold(0.0, f64::max)
}

/// Prefetch: a cold volume downloads every file (`prefetch_jobs` at once,
/// each stream hashed by its own worker, all written to the volume); a warm
/// one reads and hashes every file.
pub fn prefetch_seconds(weights: &WeightsAtStart, params: &Params) -> f64 {
    if weights.volume == 0 {
        return 0.0;
    }
    if weights.volume_warm {
        // The hook trusts a file whose verification record (size, mtime,
        // inode, sha256 of an earlier verified run) matches: a stat, no read.
        return 0.0;
    }
    let one_file = [weights.volume];
    let files = if weights.volume_files.is_empty() { &one_file[..] } else { &weights.volume_files[..] };
    parallel_download_seconds(
        files,
        params.prefetch_jobs,
        params.source_connection_bandwidth.min(params.sha256),
        params.source_bandwidth.min(params.volume_write),
    )
}

/// The weights' bytes by where the app reads them from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSplit {
    /// In the node's page cache: read at memory speed.
    pub cached: u64,
    /// Baked, not cached: read from local disk.
    pub baked_cold: u64,
    /// On the volume, not cached: read from the volume.
    pub volume_cold: u64,
}

/// What the node's memory holds when the app starts reading. Bytes written
/// on this node during this start (baked weights the runtime just unpacked,
/// files the hook just downloaded to the volume) went through the page
/// cache and are still there, up to `page_cache_bytes`; the hook writes
/// after the unpack, so its bytes are the ones kept first. Anything else
/// (a warm volume on a new node, weights beyond the cache) is read cold.
pub fn load_split(weights: &WeightsAtStart, params: &Params) -> LoadSplit {
    let mut room = params.page_cache_bytes.max(0.0) as u64;
    let mut keep = |written: u64| {
        let kept = written.min(room);
        room -= kept;
        kept
    };
    let volume_cached = keep(if weights.volume_warm { 0 } else { weights.volume });
    let baked_cached = keep(if weights.baked_unpacked { weights.baked } else { 0 });
    LoadSplit {
        cached: volume_cached + baked_cached,
        baked_cold: weights.baked - baked_cached,
        volume_cold: weights.volume - volume_cached,
    }
}

/// Load: cached bytes at `page_cache_read`, the rest of the baked weights
/// from local disk, the rest of the volume's from the volume.
pub fn load_seconds(weights: &WeightsAtStart, params: &Params) -> f64 {
    let split = load_split(weights, params);
    split.cached as f64 / params.page_cache_read
        + split.baked_cold as f64 / params.disk_read
        + split.volume_cold as f64 / params.volume_read
}

/// One cold start: pull and unpack `layers` (those not on the node), run the
/// hook, start the app, import, load the weights.
pub fn cold_start(layers: &[PullLayer], weights: &WeightsAtStart, imports: &ImportsInput, params: &Params) -> Terms {
    let times = pull_and_unpack(layers, params);
    Terms {
        pull: times.download,
        unpack: times.unpacked - times.download,
        prefetch: prefetch_seconds(weights, params),
        app_start: params.app_start_seconds,
        imports: import_seconds(imports, params),
        // imgbake's hook verifies every file, then execs the app: no overlap.
        import_overlap: 0.0,
        load: load_seconds(weights, params),
    }
}

/// Build time from an empty cache, split into its terms (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct BuildTerms {
    /// Remote weights baked: streamed from the source, one file at a time.
    pub fetch: f64,
    /// New layers: tar, hash and compress.
    pub layers: f64,
    /// Time the fetch and the writing of the remote weights' own layers run
    /// together: build writes such a layer as its bytes arrive, so the
    /// slower of the two decides and the smaller is not paid twice.
    pub overlap: f64,
    /// New layers' blobs to the registry.
    pub push: f64,
}

impl BuildTerms {
    pub fn total(&self) -> f64 {
        self.fetch + self.layers - self.overlap + self.push
    }
}

pub fn compress_rate(codec: Codec, params: &Params) -> f64 {
    let rate = match codec {
        Codec::Gzip => params.compress_gzip,
        Codec::Zstd => params.compress_zstd,
        Codec::None => params.disk_write,
    };
    rate.min(params.sha256)
}

fn write_seconds(layers: &[PullLayer], params: &Params) -> f64 {
    layers.iter().map(|l| l.uncompressed as f64 / compress_rate(l.codec, params)).sum()
}

/// `remote_files` fetched (build fetches one file after another) and streamed
/// into `streamed_layers` (a part of `new_layers`), `new_layers` written,
/// their blobs pushed.
pub fn build_seconds(
    remote_files: &[u64],
    streamed_layers: &[PullLayer],
    new_layers: &[PullLayer],
    params: &Params,
) -> BuildTerms {
    let per_file = params.source_connection_bandwidth.min(params.source_bandwidth).min(params.sha256);
    let fetch = remote_files.iter().map(|&size| size as f64 / per_file).sum();
    BuildTerms {
        fetch,
        layers: write_seconds(new_layers, params),
        overlap: write_seconds(streamed_layers, params).min(fetch),
        push: new_layers.iter().map(|l| l.compressed as f64).sum::<f64>() / params.push_bandwidth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::profile::builtin;

    const MB: u64 = 1_000_000;

    fn params() -> Params {
        let mut p = builtin("generic").unwrap().params;
        p.registry_bandwidth = 100e6;
        p.layer_bandwidth = 50e6;
        p.pull_concurrency = 3.0;
        p.unpack_overlaps_pull = 1.0;
        p.unpack_gzip = 100e6;
        p.unpack_zstd = 400e6;
        p.unpack_none = 1000e6;
        p.disk_read = 2e9;
        p.page_cache_bytes = 8e9;
        p.page_cache_read = 4e9;
        p.volume_read = 1e9;
        p.stdlib_import_bytes = 0.0;
        p.volume_write = 500e6;
        p.source_bandwidth = 100e6;
        p.source_connection_bandwidth = 50e6;
        p.prefetch_jobs = 4.0;
        p.sha256 = 1e9;
        p.app_start_seconds = 5.0;
        p.import_source_fraction = 0.2;
        p.import_rate = 40e6;
        p.compress_gzip = 50e6;
        p.compress_zstd = 250e6;
        p.disk_write = 800e6;
        p.push_bandwidth = 100e6;
        p
    }

    fn layer(compressed: u64, uncompressed: u64, codec: Codec) -> PullLayer {
        PullLayer { compressed: compressed * MB, uncompressed: uncompressed * MB, codec, entries: 0 }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn pull_one_layer_is_capped_by_the_per_connection_bandwidth() {
        // 100 MB at min(50, 100/1) MB/s = 2 s.
        let finish = download_finish_times(&[layer(100, 100, Codec::None)], &params());
        assert!(close(finish[0], 2.0), "{finish:?}");
    }

    #[test]
    fn pull_three_layers_share_the_registry_bandwidth() {
        // 3 × 100 MB at min(50, 100/3) = 33.3 MB/s each: all done at 3 s.
        let layers = [layer(100, 100, Codec::None); 3];
        let finish = download_finish_times(&layers, &params());
        assert!(finish.iter().all(|t| close(*t, 3.0)), "{finish:?}");
    }

    #[test]
    fn pull_a_fourth_layer_waits_for_a_free_slot() {
        // Layers 60, 100, 100, 100 MB. Three at 33.3 MB/s: the 60 MB one ends
        // at 1.8 s (others have 40 MB left). Then 3 active again: 40 MB at
        // 33.3 → +1.2 s = 3.0 s for layers 2, 3 (the fourth has 60 left);
        // alone at 50 MB/s: +1.2 s = 4.2 s.
        let layers = [
            layer(60, 60, Codec::None),
            layer(100, 100, Codec::None),
            layer(100, 100, Codec::None),
            layer(100, 100, Codec::None),
        ];
        let finish = download_finish_times(&layers, &params());
        assert!(close(finish[0], 1.8) && close(finish[1], 3.0) && close(finish[3], 4.2), "{finish:?}");
    }

    #[test]
    fn splitting_one_big_layer_pulls_it_faster() {
        let one = pull_and_unpack(&[layer(300, 300, Codec::None)], &params());
        let three = pull_and_unpack(&[layer(100, 100, Codec::None); 3], &params());
        // 300 MB at 50 MB/s = 6 s; three at 100 MB/s together = 3 s.
        assert!(close(one.download, 6.0) && close(three.download, 3.0));
    }

    #[test]
    fn unpack_is_serial_per_codec_and_overlaps_later_downloads() {
        // Layer 1: 50 MB gzip (100 MB unpacked), layer 2: 100 MB none.
        // Both at 50 MB/s: layer 1 arrives at 1 s, layer 2 at 2 s.
        // Unpack 1: 1 s + 100/100 = 2 s; unpack 2: max(2, 2) + 100/1000 = 2.1 s.
        let layers = [layer(50, 100, Codec::Gzip), layer(100, 100, Codec::None)];
        let times = pull_and_unpack(&layers, &params());
        assert!(close(times.download, 2.0) && close(times.unpacked, 2.1), "{times:?}");
        // Without overlap: 2 s + 1 s + 0.1 s.
        let mut p = params();
        p.unpack_overlaps_pull = 0.0;
        let times = pull_and_unpack(&layers, &p);
        assert!(close(times.unpacked, 3.1), "{times:?}");
        // zstd: 400 MB unpacked at 400 MB/s = 1 s after the 1 s download.
        let times = pull_and_unpack(&[layer(50, 400, Codec::Zstd)], &params());
        assert!(close(times.unpacked, 2.0), "{times:?}");
    }

    #[test]
    fn unpack_pays_per_entry_beside_the_bytes() {
        // 100 MB none (0.1 s at 1000 MB/s) with 4000 entries at 0.5 ms: 2 s more.
        let mut p = params();
        p.unpack_overlaps_pull = 0.0;
        p.unpack_entry_seconds = 0.5e-3;
        let many_files = PullLayer { entries: 4000, ..layer(100, 100, Codec::None) };
        let times = pull_and_unpack(&[many_files], &p);
        // Download 100 MB at 50 MB/s = 2 s, then 0.1 s + 2 s.
        assert!(close(times.unpacked, 4.1), "{times:?}");
    }

    #[test]
    fn prefetch_cold_downloads_files_in_parallel_one_connection_each() {
        // One 1 GB file: one connection at min(50, sha 1000) MB/s = 20 s.
        let weights = WeightsAtStart {
            baked: 0,
            volume: 1000 * MB,
            volume_files: vec![1000 * MB],
            volume_warm: false,
            baked_unpacked: true,
        };
        assert!(close(prefetch_seconds(&weights, &params()), 20.0));
        // Four 250 MB files, 4 jobs: each at min(50, min(100, 500)/4) = 25 MB/s → 10 s.
        let weights = WeightsAtStart { volume_files: vec![250 * MB; 4], ..weights };
        assert!(close(prefetch_seconds(&weights, &params()), 10.0));
    }

    #[test]
    fn prefetch_warm_trusts_the_verification_records() {
        // Files verified by an earlier run are only stat'ed: no read, no hash.
        let weights = WeightsAtStart {
            baked: 0,
            volume: 1000 * MB,
            volume_files: vec![1000 * MB],
            volume_warm: true,
            baked_unpacked: true,
        };
        assert!(close(prefetch_seconds(&weights, &params()), 0.0));
        assert_eq!(
            prefetch_seconds(
                &WeightsAtStart { baked: 5, volume: 0, volume_files: vec![], volume_warm: true, baked_unpacked: true },
                &params()
            ),
            0.0
        );
    }

    #[test]
    fn load_reads_baked_weights_from_disk_and_the_rest_from_the_volume() {
        // Nothing written during this start (an image already unpacked, a warm
        // volume): 2 GB at 2 GB/s + 1 GB at 1 GB/s = 2 s.
        let weights = WeightsAtStart {
            baked: 2000 * MB,
            volume: 1000 * MB,
            volume_files: vec![1000 * MB],
            volume_warm: true,
            baked_unpacked: false,
        };
        assert!(close(load_seconds(&weights, &params()), 2.0));
    }

    #[test]
    fn files_the_hook_just_wrote_are_read_from_the_page_cache() {
        // 1 GB downloaded by the hook, 8 GB of cache: 1 GB at 4 GB/s = 0.25 s
        // (a warm volume on a new node reads the same GB at 1 GB/s: 1 s).
        let cold = WeightsAtStart {
            baked: 0,
            volume: 1000 * MB,
            volume_files: vec![1000 * MB],
            volume_warm: false,
            baked_unpacked: true,
        };
        assert!(close(load_seconds(&cold, &params()), 0.25));
        let warm = WeightsAtStart { volume_warm: true, ..cold.clone() };
        assert!(close(load_seconds(&warm, &params()), 1.0));
        // 3 GB prefetched, 1 GB of cache: min(N, C) / memory + the rest / cold
        // = 1000/4000 + 2000/1000 = 2.25 s.
        let mut small_cache = params();
        small_cache.page_cache_bytes = 1e9;
        let big = WeightsAtStart { volume: 3000 * MB, volume_files: vec![3000 * MB], ..cold };
        let split = load_split(&big, &small_cache);
        assert_eq!((split.cached, split.volume_cold), (1000 * MB, 2000 * MB));
        assert!(close(load_seconds(&big, &small_cache), 2.25));
    }

    #[test]
    fn baked_weights_just_unpacked_are_cached_after_the_hooks_bytes() {
        // 2 GB baked and unpacked: 2000/4000 = 0.5 s from memory.
        let baked = WeightsAtStart {
            baked: 2000 * MB,
            volume: 0,
            volume_files: vec![],
            volume_warm: false,
            baked_unpacked: true,
        };
        assert!(close(load_seconds(&baked, &params()), 0.5));
        // With 1 GB the hook wrote after the unpack and 2 GB of cache, the
        // hook's GB and 1 GB of the baked stay: 2 GB at 4 GB/s + the other
        // baked GB at 2 GB/s = 0.5 + 0.5 s.
        let mut p = params();
        p.page_cache_bytes = 2e9;
        let both = WeightsAtStart { volume: 1000 * MB, volume_files: vec![1000 * MB], ..baked };
        let split = load_split(&both, &p);
        assert_eq!(split, LoadSplit { cached: 2000 * MB, baked_cold: 1000 * MB, volume_cold: 0 });
        assert!(close(load_seconds(&both, &p), 1.0));
        // No cache at all: the old model, 1 s + 1 s.
        p.page_cache_bytes = 0.0;
        assert!(close(load_seconds(&both, &p), 2.0));
    }

    #[test]
    fn a_cold_start_adds_its_terms_and_imports_do_not_overlap_the_hook() {
        // pull 2 s (100 MB at 50), unpack 0.1 s, prefetch warm 0 s (records), app 5 s, load 1 s.
        let weights = WeightsAtStart {
            baked: 0,
            volume: 1000 * MB,
            volume_files: vec![1000 * MB],
            volume_warm: true,
            baked_unpacked: true,
        };
        // imports: 100 MB of .py × 0.2 = 20 MB at 40 MB/s = 0.5 s (bytecode).
        let imports = ImportsInput {
            python_source: 100 * MB,
            native_libraries: 0,
            app_source: 0,
            bytecode: true,
            stdlib_uncompiled: false,
        };
        let terms = cold_start(&[layer(100, 100, Codec::None)], &weights, &imports, &params());
        assert_eq!(terms.import_overlap, 0.0);
        assert!(close(terms.imports, 0.5), "{terms:?}");
        assert!(close(terms.pull, 2.0) && close(terms.unpack, 0.1) && close(terms.total(), 8.6), "{terms:?}");
    }

    #[test]
    fn imports_compile_without_bytecode_and_load_each_library() {
        let mut p = params();
        p.import_source_fraction = 0.2;
        p.import_rate = 40e6;
        p.compile_rate = 4e6;
        p.native_library_seconds = 0.02;
        // 20 MB of .py read at 40 MB/s (0.5 s), 50 libraries at 20 ms (1 s).
        let mut imports = ImportsInput {
            python_source: 100 * MB,
            native_libraries: 50,
            app_source: 0,
            bytecode: true,
            stdlib_uncompiled: false,
        };
        assert!(close(import_seconds(&imports, &p), 1.5));
        // Without bytecode the 20 MB are compiled too: + 5 s.
        imports.bytecode = false;
        assert!(close(import_seconds(&imports, &p), 6.5));
        // The app's own 4 MB are read and compiled at every start: + 0.1 s + 1 s.
        imports = ImportsInput {
            python_source: 0,
            native_libraries: 0,
            app_source: 4 * MB,
            bytecode: true,
            stdlib_uncompiled: false,
        };
        assert!(close(import_seconds(&imports, &p), 1.1));
        // 2 MB of the standard library: read (0.05 s), and compiled when the image has no bytecode of it (+ 0.5 s).
        p.stdlib_import_bytes = 2e6;
        imports = ImportsInput { app_source: 0, ..imports };
        assert!(close(import_seconds(&imports, &p), 0.05));
        imports.stdlib_uncompiled = true;
        assert!(close(import_seconds(&imports, &p), 0.55));
    }

    #[test]
    fn build_fetches_compresses_and_pushes() {
        // fetch two 500 MB files one after another at min(50, 100, 1000) = 20 s;
        // gzip 100 MB at 50 = 2 s and none 800 MB at min(800, 1000) = 1 s;
        // push (50 + 800) MB at 100 = 8.5 s.
        let layers = [layer(50, 100, Codec::Gzip), layer(800, 800, Codec::None)];
        let terms = build_seconds(&[500 * MB, 500 * MB], &[], &layers, &params());
        assert!(close(terms.fetch, 20.0) && close(terms.layers, 3.0) && close(terms.push, 8.5), "{terms:?}");
        assert!(close(terms.total(), 31.5), "{terms:?}");
    }

    #[test]
    fn remote_weights_are_written_while_they_arrive() {
        // The 800 MB layer holds the fetched files: its 1 s of writing runs
        // inside the 20 s fetch, so only the gzip layer's 2 s adds to it.
        let layers = [layer(50, 100, Codec::Gzip), layer(800, 800, Codec::None)];
        let terms = build_seconds(&[500 * MB, 500 * MB], &layers[1..], &layers, &params());
        assert!(close(terms.overlap, 1.0) && close(terms.total(), 30.5), "{terms:?}");
        // A fetch faster than its layer's writing hides behind the writing instead.
        let slow_gzip = [layer(400, 800, Codec::Gzip)];
        let terms = build_seconds(&[100 * MB], &slow_gzip, &slow_gzip, &params());
        assert!(close(terms.fetch, 2.0) && close(terms.layers, 16.0) && close(terms.overlap, 2.0), "{terms:?}");
    }
}
