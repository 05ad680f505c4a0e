//! The cold-start lab: builds the bake and the volume image of a small app
//! that loads (reads and sha256s) every weights file (`compression =
//! "auto"`), and the bake image with `compression = "zstd"`, pushes them to
//! a loopback registry, and measures real cold starts on an empty "node":
//! pull (`skopeo copy` to an OCI dir) + unpack (`umoci unpack`, zstd layers
//! decoded to tar first as containerd streams them through its decoder:
//! `tools::decode_zstd_layers`) + start under `runc` until `/health`
//! answers; for volume mode with an empty volume and with a warm one. The
//! page cache is dropped before each pull (a new node), not between unpack
//! and start: a runtime starts the container right after it unpacked the
//! image, so baked weights (and the files the hook just downloaded) are read
//! from memory, as `plan` models it.
//! Weights are bf16-like data served by the loopback Hugging Face hub
//! (tests/support/hub_server.py).
//!
//! Then it asks `imgbake plan` for its predictions of the same scenarios,
//! with a profile calibrated on this machine (`plan --calibrate` against the
//! loopback registry) plus what the lab measures about its own stand-ins
//! (the hub's download rate, the app's start without weights; the volume is
//! a local directory, so volume rates are the disk's), and compares them
//! term by term. The accuracy gate: every scenario's predicted total within
//! ±25% of the median of its measured totals over ≥ 3 runs (the table and
//! the chart show the spread of the runs too).
//!
//! `cargo run --release --example lab -- [--sizes 256,1024,4096] [--runs N]
//!  [--out DIR] [--no-gate]` (sizes in MiB; 3 runs by default, and the gate
//! refuses fewer). Writes DIR/lab.json,
//! DIR/lab.md (the table) and DIR/lab.svg (the chart); exits 1 when the gate
//! fails (unless --no-gate). `scripts/lab.sh` runs it. Needs root (runc),
//! docker-registry, skopeo, umoci, runc and the cached debootstrap base.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{base_image, hub::TestHub, registry::TestRegistry, tools};

const REPO: &str = "lab/model";
const MODEL_DIR: &str = "/app/model_cache/model";
const START_TIMEOUT: Duration = Duration::from_secs(900);

/// Largest |predicted / measured - 1| the gate accepts for a scenario's total.
const GATE: f64 = 0.25;
/// MiB the lab writes to measure the hook's write rate to its volume.
const HOOK_WRITE_SAMPLE_MIB: u64 = 256;
/// Fewest runs per scenario the gate compares a median of.
const GATE_MIN_RUNS: usize = 3;

struct Args {
    sizes_mib: Vec<u64>,
    runs: usize,
    out: PathBuf,
    gate: bool,
    imgbake: PathBuf,
    work: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        sizes_mib: vec![256, 1024, 4096],
        runs: GATE_MIN_RUNS,
        out: tools::repo_root().join("target/lab-results"),
        gate: true,
        imgbake: tools::repo_root().join("target/release/imgbake"),
        work: tools::repo_root().join("target/lab"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => args.sizes_mib = value().split(',').map(|s| s.trim().parse().expect("MiB")).collect(),
            "--runs" => args.runs = value().parse().expect("runs"),
            "--out" => args.out = PathBuf::from(value()),
            "--no-gate" => args.gate = false,
            "--imgbake" => args.imgbake = PathBuf::from(value()),
            "--work" => args.work = PathBuf::from(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    if args.gate && args.runs < GATE_MIN_RUNS {
        eprintln!(
            "error: the gate compares the median of at least {GATE_MIN_RUNS} runs per scenario; \
             use --runs {GATE_MIN_RUNS} or more, or --no-gate to only report"
        );
        std::process::exit(2);
    }
    assert!(args.runs >= 1, "--runs must be at least 1");
    args
}

fn main() {
    let args = parse_args();
    assert!(args.imgbake.is_file(), "{} is missing: cargo build --release", args.imgbake.display());
    let _ = std::fs::remove_dir_all(&args.work);
    std::fs::create_dir_all(&args.work).unwrap();
    let base = base_image::base_layout();
    let registry = TestRegistry::start();
    let hub_root = args.work.join("hub");
    let hub = TestHub::start(&hub_root, None);
    let mut results = Vec::new();
    let mut profile: Option<PathBuf> = None;
    let mut comparisons = Vec::new();
    let node_memory = DedicatedMemory::hold(&args.sizes_mib);
    let fill_at_start = page_cache_fill(&args.work);
    for &size in &args.sizes_mib {
        eprintln!("== {size} MiB");
        write_weights(&hub_root, size);
        let project = write_project(&args.work.join(format!("project-{size}")));
        let mut per_mode = serde_json::Map::new();
        for mode in MODES {
            set_mode(&project, mode);
            let image = format!("{}/lab:{mode}-{size}", registry.host());
            let mut built = build(&args, &project, &base, &image, &hub, profile.as_deref());
            if profile.is_none() {
                // Calibrate on this first image, then build it again with the
                // calibrated profile: `compression = "auto"` chooses codecs from
                // the profile, and the plan predicts the image it describes.
                profile = Some(calibrate(&args, &registry, &project, &base, &image, &hub));
                built = build(&args, &project, &base, &image, &hub, profile.as_deref());
            }
            let mut runs = Vec::new();
            for run in 0..args.runs {
                eprintln!("   {mode} run {}", run + 1);
                runs.push(cold_starts(&args, &registry, &image, mode, &hub));
            }
            let median = median_of(&runs);
            let plan = plan_json(&args, &project, &base, profile.as_ref().expect("calibrated"), &hub);
            comparisons.extend(compare(size, mode, &plan, &median, &runs));
            per_mode.insert(mode.to_string(), json!({ "build": built, "runs": runs, "median": median }));
        }
        results.push(json!({ "size_mib": size, "modes": per_mode, "project": project }));
        // Each size's hub file, store copies and image blobs go before the next size.
        let _ = std::fs::remove_dir_all(args.work.join("cache"));
        let _ = std::fs::remove_dir_all(hub_root.join(REPO.split('/').next().unwrap()));
    }
    let passed = comparisons.iter().all(|c| c.within_gate());
    let report = json!({
        "schema": "imgbake.lab/v1",
        "machine": machine(),
        "node_memory": node_memory.to_json(),
        "page_cache_fill": { "start": fill_at_start, "end": page_cache_fill(&args.work) },
        "gate": GATE,
        "passed": passed,
        "comparisons": comparisons.iter().map(Comparison::to_json).collect::<Vec<_>>(),
        "profile": profile.as_ref().map(|p| std::fs::read_to_string(p).unwrap_or_default()),
        "sizes": results,
    });
    std::fs::create_dir_all(&args.out).unwrap();
    std::fs::write(args.out.join("lab.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    let mut table = markdown_table(&comparisons);
    table.push_str(&node_memory.note());
    table.push_str(&fill_note(&report["page_cache_fill"]));
    std::fs::write(args.out.join("lab.md"), &table).unwrap();
    std::fs::write(args.out.join("lab.svg"), svg_chart(&comparisons)).unwrap();
    println!("{table}");
    println!(
        "gate (every total within ±{:.0}%): {}; results in {}",
        GATE * 100.0,
        if passed { "passed" } else { "FAILED" },
        args.out.display()
    );
    if args.gate && !passed {
        // exit() skips destructors: stop the registry and the hub and give
        // the node's memory settings back first.
        drop(hub);
        drop(registry);
        drop(node_memory);
        std::process::exit(1);
    }
}

/// `plan --calibrate` against the pushed bake image, then the lab's own
/// measurements of its stand-ins written over the calibrated profile.
fn calibrate(args: &Args, registry: &TestRegistry, project: &Path, base: &Path, image: &str, hub: &TestHub) -> PathBuf {
    let path = args.work.join("lab-profile.toml");
    let host = image.split('/').next().unwrap();
    let output = imgbake(args, hub)
        .arg("plan")
        .arg(project)
        .args(["--calibrate", "--registry", image, "--insecure-registry", host, "-o"])
        .arg(&path)
        // Cold reads timed up to the largest weights the lab starts.
        .args(["--calibrate-read-max", &args.sizes_mib.iter().max().copied().unwrap_or(4096).to_string()])
        .args(["--base", &format!("oci:{}:{}", base.display(), base_image::BASE_TAG)])
        .output()
        .unwrap();
    assert!(output.status.success(), "plan --calibrate failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let mut profile: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let params = profile["params"].as_table().unwrap().clone();
    let number = |key: &str| params[key].as_float().unwrap();
    let (one, parallel) = hub_download_rates(hub);
    let hook_download = hook_download_rate(args, registry, project, base, image, hub);
    let app_start = app_start_seconds(args, image);
    // Earlier writes flushed first, so that only the sample's bytes are timed.
    drop_caches();
    let hook_write = hook_write_rate(&args.work, HOOK_WRITE_SAMPLE_MIB);
    // The lab's app hashes every 1 MiB it reads before it reads the next, so
    // its load runs at the read rate and sha256 in series.
    let sha256 = number("sha256");
    let app_reads = |rate: f64| 1.0 / (1.0 / rate + 1.0 / sha256);
    let (disk_read, page_cache_read) = (app_reads(number("disk_read")), app_reads(number("page_cache_read")));
    let (connection_rate, connection_source) = match hook_download {
        Some((rate, bytes, seconds)) => (
            rate,
            format!(
                "measured by the lab: the hook's prefetch of {bytes} bytes from the loopback hub to an empty volume \
                 in {seconds:.2} s (its `done` event), where one GET into nothing ran at {:.0} MB/s: on this node \
                 the hub's server, the hook's download and its hashing share the same 2 cores",
                one / 1e6
            ),
        ),
        None => (one, "measured by the lab: one GET of the weights from the loopback hub".to_string()),
    };
    let calibrated = profile["sources"].as_table().unwrap().clone();
    let in_series = |key: &str| {
        format!(
            "lab: the app sha256s each 1 MiB it reads: calibrated {key} {:.0} MB/s and sha256 {:.0} MB/s in series \
             ({key} {})",
            number(key) / 1e6,
            sha256 / 1e6,
            calibrated.get(key).and_then(|s| s.as_str()).unwrap_or("not measured")
        )
    };
    let overrides: Vec<(&str, f64, String)> = vec![
        ("unpack_overlaps_pull", 0.0, "lab: skopeo copies every layer, then umoci unpacks them".into()),
        ("disk_read", disk_read, in_series("disk_read")),
        ("page_cache_read", page_cache_read, in_series("page_cache_read")),
        (
            "volume_read",
            disk_read,
            format!(
                "lab: the volume is a directory on this machine's disk (disk_read, as the app reads it: {:.0} MB/s)",
                disk_read / 1e6
            ),
        ),
        (
            "volume_write",
            hook_write,
            format!("measured by the lab: the hook's way (buffered writes + fsync) of a new {HOOK_WRITE_SAMPLE_MIB} MiB file on this machine's disk, where the volume is"),
        ),
        ("source_connection_bandwidth", connection_rate, connection_source),
        ("source_bandwidth", parallel, "measured by the lab: 4 ranged GETs at once from the loopback hub".into()),
        (
            "app_start_seconds",
            app_start,
            "measured by the lab: runc start of the app with no weights until /health".into(),
        ),
        ("pull_concurrency", 3.0, "skopeo copies up to 6 blobs at once; a lab image has at most 3 new layers".into()),
    ];
    for (key, value, source) in overrides {
        profile["params"].as_table_mut().unwrap().insert(key.into(), toml::Value::Float(value));
        profile["sources"].as_table_mut().unwrap().insert(key.into(), toml::Value::String(source));
    }
    std::fs::write(&path, toml::to_string(&profile).unwrap()).unwrap();
    // umoci's cost per entry (it also records every file for `umoci repack`):
    // unpack the base alone and take off its byte term.
    let plan = plan_json(args, project, base, &path, hub);
    let layers = plan["base"]["layers"].as_array().cloned().unwrap_or_default();
    let entries: f64 = layers.iter().map(|l| l["entries"].as_f64().unwrap_or(0.0)).sum();
    let byte_seconds: f64 = layers
        .iter()
        .map(|l| {
            let rate = match l["codec"].as_str() {
                Some("gzip") => number("unpack_gzip"),
                Some("zstd") => number("unpack_zstd"),
                _ => number("unpack_none"),
            };
            l["uncompressed"].as_f64().unwrap_or(0.0) / rate
        })
        .sum();
    let bundle = args.work.join("umoci-base");
    let _ = std::fs::remove_dir_all(&bundle);
    drop_caches();
    let started = Instant::now();
    tools::umoci_unpack(base, base_image::BASE_TAG, &bundle);
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&bundle);
    if entries > 0.0 {
        let per_entry = ((seconds - byte_seconds) / entries).max(0.0);
        profile["params"].as_table_mut().unwrap().insert("unpack_entry_seconds".into(), toml::Value::Float(per_entry));
        profile["sources"].as_table_mut().unwrap().insert(
            "unpack_entry_seconds".into(),
            toml::Value::String(format!(
                "measured by the lab: umoci unpack of the base ({entries} entries) in {seconds:.2} s, minus its byte term"
            )),
        );
        std::fs::write(&path, toml::to_string(&profile).unwrap()).unwrap();
    }
    // skopeo on this (first, smallest) image: the pull rate. Larger sizes
    // are then predicted, not measured.
    let node = args.work.join("node-calibrate");
    let _ = std::fs::remove_dir_all(&node);
    std::fs::create_dir_all(&node).unwrap();
    drop_caches();
    let started = Instant::now();
    tools::skopeo_copy(&format!("docker://{image}"), &format!("oci:{}:img", node.join("layout").display()), &[]);
    let pull = started.elapsed().as_secs_f64();
    let blob_bytes: u64 = walkdir_size(&node.join("layout/blobs"));
    let _ = std::fs::remove_dir_all(&node);
    let pull_rate = blob_bytes as f64 / pull;
    let mut measured = vec![
        (
            "registry_bandwidth",
            pull_rate,
            format!("measured by the lab: skopeo copy of {blob_bytes} bytes in {pull:.2} s"),
        ),
        (
            "layer_bandwidth",
            pull_rate,
            "measured by the lab: as registry_bandwidth (one large layer dominates)".to_string(),
        ),
    ];
    // umoci's rate per codec on this image's new layers, each codec forced
    // in turn (zstd: decoded to tar, then applied), minus the base's share.
    for codec in ["gzip", "zstd", "none"] {
        write_config(project, "bake", codec);
        let tagged = format!("{image}-{codec}");
        let built = build(args, project, base, &tagged, hub, None);
        let new_tar = built["new_uncompressed_bytes"].as_f64().unwrap_or(0.0);
        let node = args.work.join(format!("node-calibrate-{codec}"));
        let _ = std::fs::remove_dir_all(&node);
        std::fs::create_dir_all(&node).unwrap();
        tools::skopeo_copy(&format!("docker://{tagged}"), &format!("oci:{}:img", node.join("layout").display()), &[]);
        drop_caches();
        let started = Instant::now();
        tools::umoci_unpack(&node.join("layout"), "img", &node.join("bundle"));
        let unpack = started.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&node);
        if unpack > seconds && new_tar > 0.0 {
            let node_side = if codec == "zstd" { "decoded to tar, then umoci unpack" } else { "umoci unpack" };
            measured.push((
                match codec {
                    "gzip" => "unpack_gzip",
                    "zstd" => "unpack_zstd",
                    _ => "unpack_none",
                },
                new_tar / (unpack - seconds),
                format!(
                    "measured by the lab: {node_side} of the new {codec} layers ({new_tar} bytes of tar) in {:.2} s",
                    unpack - seconds
                ),
            ));
        }
    }
    set_mode(project, "bake");
    for (key, value, source) in measured {
        profile["params"].as_table_mut().unwrap().insert(key.into(), toml::Value::Float(value));
        profile["sources"].as_table_mut().unwrap().insert(key.into(), toml::Value::String(source));
    }
    std::fs::write(&path, toml::to_string(&profile).unwrap()).unwrap();
    path
}

/// The hook's download rate on this node, as the empty-volume starts see
/// it: one cold start of the volume image of this (smallest) size on an
/// empty volume, the weights' bytes over the hook's own `done` seconds.
/// Taken from the hook, not from a GET into nothing: the lab's hub is a
/// server on this 2-core node, so the hub's sending, the hook's receiving
/// and writing and its hashing thread all share the cores (a 4 GiB prefetch
/// ran at 0.45–0.7 GB/s where one GET and sha256 alone each passed 1.1 GB/s),
/// which a hub on another machine would not take. Returns (bytes/s, bytes,
/// seconds), or None when the hook reported no `done`.
fn hook_download_rate(
    args: &Args,
    registry: &TestRegistry,
    project: &Path,
    base: &Path,
    image: &str,
    hub: &TestHub,
) -> Option<(f64, u64, f64)> {
    set_mode(project, "volume");
    let volume_image = format!("{image}-hook");
    build(args, project, base, &volume_image, hub, None);
    let run = cold_starts(args, registry, &volume_image, "volume", hub);
    set_mode(project, "bake");
    let seconds = run["volume_cold"]["prefetch"].as_f64().filter(|s| *s > 0.0)?;
    // What the hook wrote: the weights and its small verification records.
    let bytes = walkdir_size(&args.work.join("volume"));
    Some((bytes as f64 / seconds, bytes, seconds))
}

fn walkdir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|read| {
            read.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walkdir_size(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Bytes per second from the hub: one connection, and four ranges at once,
/// each with the hub's file out of the page cache.
fn hub_download_rates(hub: &TestHub) -> (f64, f64) {
    let url = format!("{}/{REPO}/resolve/main/model.safetensors", hub.endpoint());
    let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    // The hub answers with a redirect to its CDN that carries the size.
    let no_redirect =
        reqwest::blocking::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let head = no_redirect.head(&url).send().unwrap();
    let size: u64 = head.headers()["x-linked-size"].to_str().unwrap().parse().unwrap();
    let fetch = |from: u64, to: u64| -> u64 {
        let mut response = client.get(&url).header("Range", format!("bytes={from}-{}", to - 1)).send().unwrap();
        std::io::copy(&mut response, &mut std::io::sink()).unwrap()
    };
    let sample = size.min(256 << 20);
    // The cold starts drop the page cache before each pull, so the hook's
    // download finds the hub's file on disk: measure it that way too.
    drop_caches();
    let started = Instant::now();
    let got = fetch(0, sample);
    let one = got as f64 / started.elapsed().as_secs_f64();
    drop_caches();
    let started = Instant::now();
    let quarter = sample / 4;
    let got: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|i| scope.spawn(move || fetch(i * quarter, (i + 1) * quarter))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (one, got as f64 / started.elapsed().as_secs_f64())
}

/// Start of the app without weights: the bake image's process with an empty
/// MODEL_DIR, right after a fresh unpack (as the cold starts run it: a
/// second start from the same bundle runs warmer); the median of three.
fn app_start_seconds(args: &Args, image: &str) -> f64 {
    let node = args.work.join("node-app-start");
    let _ = std::fs::remove_dir_all(&node);
    std::fs::create_dir_all(&node).unwrap();
    drop_caches();
    tools::skopeo_copy(&format!("docker://{image}"), &format!("oci:{}:img", node.join("layout").display()), &[]);
    let mut starts = Vec::new();
    for run in 0..3 {
        let bundle = node.join(format!("bundle-{run}"));
        tools::umoci_unpack(&node.join("layout"), "img", &bundle);
        let port = support::registry::free_port().to_string();
        tools::prepare_runc_bundle(&bundle, &[], &[("PORT", &port), ("MODEL_DIR", "/nonexistent")], &[]);
        let started = Instant::now();
        let container = tools::runc_run_detached(&bundle, &tools::unique_container_id("lab-start"));
        let status = tools::wait_for_http(&format!("http://127.0.0.1:{port}/health"), START_TIMEOUT);
        starts.push(started.elapsed().as_secs_f64());
        assert_eq!(status, 200, "{}", container.log_text());
        drop(container);
        let _ = std::fs::remove_dir_all(&bundle);
    }
    let _ = std::fs::remove_dir_all(&node);
    median(&starts)
}

/// Bytes per second the hook writes to the lab's volume: buffered writes of
/// a new file in 1 MiB pieces, then fsync (src/runtime/download.rs), not the
/// direct I/O of build's blob writer that `disk_write` measures.
fn hook_write_rate(dir: &Path, mib: u64) -> f64 {
    let path = dir.join("hook-write-sample");
    let mut piece = support::data::random_bytes(1 << 20, 21);
    let started = Instant::now();
    let mut file = std::fs::File::create(&path).unwrap();
    for index in 0..mib {
        // A new first word per piece: no two pieces are equal.
        piece[..8].copy_from_slice(&index.to_le_bytes());
        file.write_all(&piece).unwrap();
    }
    file.sync_all().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    (mib << 20) as f64 / seconds
}

fn plan_json(args: &Args, project: &Path, base: &Path, profile: &Path, hub: &TestHub) -> Value {
    let output = imgbake(args, hub)
        .arg("plan")
        .arg(project)
        .args(["--format", "json", "--profile"])
        .arg(profile)
        .args(["--base", &format!("oci:{}:{}", base.display(), base_image::BASE_TAG)])
        .output()
        .unwrap();
    assert!(output.status.success(), "plan failed:\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// One scenario: predicted terms, the median of each measured term, and
/// every run's measured total.
struct Comparison {
    size_mib: u64,
    mode: String,
    scenario: String,
    predicted: [f64; 3],
    measured: [f64; 3],
    run_totals: Vec<f64>,
}

const TERMS: [&str; 3] = ["pull", "unpack", "start"];

impl Comparison {
    fn total(values: &[f64; 3]) -> f64 {
        values.iter().sum()
    }
    /// The median of the runs' totals (not the sum of the terms' medians).
    fn measured_total(&self) -> f64 {
        median(&self.run_totals)
    }
    fn ratio(&self) -> f64 {
        Self::total(&self.predicted) / self.measured_total()
    }
    fn within_gate(&self) -> bool {
        (self.ratio() - 1.0).abs() <= GATE
    }
    fn to_json(&self) -> Value {
        let (low, high) = spread(&self.run_totals);
        json!({
            "size_mib": self.size_mib, "mode": self.mode, "scenario": self.scenario,
            "predicted": { "pull": self.predicted[0], "unpack": self.predicted[1], "start": self.predicted[2],
                           "total": Self::total(&self.predicted) },
            "measured": { "pull": self.measured[0], "unpack": self.measured[1], "start": self.measured[2],
                          "total": self.measured_total(), "runs": self.run_totals, "min": low, "max": high },
            "ratio": self.ratio(),
            "within_gate": self.within_gate(),
        })
    }
}

/// The plan's scenarios that the lab measured: bake on a new node; volume on
/// a new node with a warm volume (`new_node`) and with an empty one (`cold_volume`).
fn compare(size_mib: u64, mode: &str, plan: &Value, median: &Value, runs: &[Value]) -> Vec<Comparison> {
    let option =
        plan["options"].as_array().unwrap().iter().find(|o| o["name"] == option_of(mode)).expect("plan option");
    let predicted = |id: &str| -> [f64; 3] {
        let start = option["cold_starts"].as_array().unwrap().iter().find(|c| c["id"] == id).expect("scenario");
        let t = &start["terms"];
        let f = |k: &str| t[k].as_f64().unwrap_or(0.0);
        [f("pull"), f("unpack"), f("prefetch") + f("app_start") + f("import_overlap") + f("load")]
    };
    let measured = |key: &str| -> [f64; 3] {
        let m = &median[key];
        [m["pull"].as_f64().unwrap(), m["unpack"].as_f64().unwrap(), m["start"].as_f64().unwrap()]
    };
    let row = |plan_id: &str, lab_key: &str, label: &str| Comparison {
        size_mib,
        mode: mode.to_string(),
        scenario: label.to_string(),
        predicted: predicted(plan_id),
        measured: measured(lab_key),
        run_totals: runs.iter().map(|run| run[lab_key]["total"].as_f64().unwrap()).collect(),
    };
    match option_of(mode) {
        "bake" => vec![row("new_node", "new_node", "new node")],
        _ => vec![
            row("new_node", "volume_warm", "new node, warm volume"),
            row("cold_volume", "volume_cold", "new node, empty volume"),
        ],
    }
}

fn markdown_table(rows: &[Comparison]) -> String {
    let mut out = String::from(
        "| weights | option | scenario | pull (pred / meas) | unpack (pred / meas) | start (pred / meas) | total (pred / meas) | runs: min–max (spread) | ratio |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let cell = |i: usize| format!("{:.1} / {:.1} s", row.predicted[i], row.measured[i]);
        let (low, high) = spread(&row.run_totals);
        out.push_str(&format!(
            "| {} MiB | {} | {} | {} | {} | {} | {:.1} / {:.1} s | {}: {:.1}–{:.1} s (±{:.0}%) | {:.2}{} |\n",
            row.size_mib,
            row.mode,
            row.scenario,
            cell(0),
            cell(1),
            cell(2),
            Comparison::total(&row.predicted),
            row.measured_total(),
            row.run_totals.len(),
            low,
            high,
            relative_spread(&row.run_totals) * 100.0,
            row.ratio(),
            if row.within_gate() { "" } else { " ✗" }
        ));
    }
    out.push_str(
        "\nMeasured terms are each term's median over the runs; the measured total (and the ratio) is the \
         median of the runs' totals; spread = half the min–max range over that median.\n",
    );
    out
}

/// Stacked bars (pull, unpack, start) per scenario: predicted beside the
/// measured medians, with a whisker over the measured bar from the fastest
/// to the slowest run's total and a tick at their median.
fn svg_chart(rows: &[Comparison]) -> String {
    let colors = ["#4e79a7", "#f28e2b", "#59a14f"];
    let max = rows
        .iter()
        .flat_map(|r| [Comparison::total(&r.predicted), Comparison::total(&r.measured), spread(&r.run_totals).1])
        .fold(1.0, f64::max);
    let (left, top, bar, gap, height) = (60.0, 30.0, 18.0, 26.0, 300.0);
    // Wide enough for the title when there are few rows.
    let width = (left + rows.len() as f64 * (2.0 * bar + gap) + 40.0).max(600.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"10\">\n\
         <text x=\"{left}\" y=\"16\" font-size=\"13\">Cold start: predicted (P) vs measured (M, median; whisker: fastest–slowest run), seconds</text>\n",
        top + height + 90.0
    );
    for step in 0..=4 {
        let value = max * step as f64 / 4.0;
        let y = top + height - height * step as f64 / 4.0;
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{value:.0}</text>\n",
            width - 20.0, left - 4.0, y + 3.0
        ));
    }
    for (i, row) in rows.iter().enumerate() {
        let x0 = left + 10.0 + i as f64 * (2.0 * bar + gap);
        for (j, (values, tag)) in [(&row.predicted, "P"), (&row.measured, "M")].into_iter().enumerate() {
            let x = x0 + j as f64 * bar;
            let mut y = top + height;
            for (k, value) in values.iter().enumerate() {
                let h = height * value / max;
                y -= h;
                svg.push_str(&format!(
                    "<rect x=\"{x}\" y=\"{y:.1}\" width=\"{}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {} {} {tag}: {} {value:.1} s</title></rect>\n",
                    bar - 2.0, colors[k], row.size_mib, row.mode, row.scenario, TERMS[k]
                ));
            }
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{tag}</text>\n",
                x + bar / 2.0 - 1.0,
                top + height + 12.0
            ));
            if tag == "M" {
                let (low, high) = spread(&row.run_totals);
                let y_of = |value: f64| top + height - height * value / max;
                let (mid, cap) = (x + bar / 2.0 - 1.0, bar / 4.0);
                svg.push_str(&format!(
                    "<g stroke=\"#222\"><title>{} {} {} runs: {:.1}–{:.1} s, median {:.1} s</title>\
                     <line x1=\"{mid}\" x2=\"{mid}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
                     <line x1=\"{}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
                     <line x1=\"{}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
                     <line x1=\"{}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke-width=\"2\"/></g>\n",
                    row.size_mib,
                    row.mode,
                    row.scenario,
                    low,
                    high,
                    row.measured_total(),
                    y_of(low),
                    y_of(high),
                    mid - cap,
                    mid + cap,
                    y_of(low),
                    y_of(low),
                    mid - cap,
                    mid + cap,
                    y_of(high),
                    y_of(high),
                    mid - cap,
                    mid + cap,
                    y_of(row.measured_total()),
                    y_of(row.measured_total()),
                ));
            }
        }
        let label_x = x0 + bar;
        let short = match row.scenario.as_str() {
            "new node" => "new",
            "new node, warm volume" => "warm",
            _ => "cold",
        };
        svg.push_str(&format!(
            "<text x=\"{label_x}\" y=\"{}\" text-anchor=\"middle\">{}M</text><text x=\"{label_x}\" y=\"{}\" text-anchor=\"middle\">{} {short}</text>\n",
            top + height + 26.0, row.size_mib, top + height + 38.0, row.mode
        ));
    }
    for (k, term) in TERMS.iter().enumerate() {
        let x = left + k as f64 * 90.0;
        let y = top + height + 60.0;
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{y}\">{term}</text>\n",
            y - 9.0,
            colors[k],
            x + 14.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// `model.safetensors` of `mib` MiB of bf16-like values plus a config.json, as the `main` branch.
fn write_weights(hub_root: &Path, mib: u64) {
    let commit = format!("{:040x}", mib);
    let dir = hub_root.join(REPO).join(&commit);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), format!("{{\"size_mib\": {mib}}}\n")).unwrap();
    // gen_bf16 is built next to this example (`cargo build --examples`).
    let gen = std::env::current_exe().unwrap().with_file_name("gen_bf16");
    let status = Command::new(gen)
        .arg(dir.join("model.safetensors"))
        .arg(mib.to_string())
        .status()
        .expect("run gen_bf16 (cargo build --release --examples)");
    assert!(status.success());
    let refs = hub_root.join(REPO).join("refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join("main"), &commit).unwrap();
}

fn write_project(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(tools::repo_root().join("fixtures/cerebrium-local-weights/server.py"), dir.join("server.py"))
        .unwrap();
    dir.to_path_buf()
}

/// The lab's images: bake and volume with `compression = "auto"`, and bake
/// with every layer zstd (the codec a zstd-reading node unpacks fastest).
const MODES: [&str; 3] = ["bake", "bake-zstd", "volume"];

/// The plan option a lab mode is priced as.
fn option_of(mode: &str) -> &str {
    mode.split('-').next().unwrap_or(mode)
}

fn set_mode(project: &Path, mode: &str) {
    let compression = if mode == "bake-zstd" { "zstd" } else { "auto" };
    write_config(project, option_of(mode), compression);
}

fn write_config(project: &Path, mode: &str, compression: &str) {
    let config = format!(
        r#"# The cold-start lab's app: loads every weights file, then answers /health.
[cerebrium.deployment]
name = "lab"
python_version = "3.11"
include = ["server.py"]

[cerebrium.runtime.custom]
port = 8080
entrypoint = ["python3", "/app/server.py"]
healthcheck_endpoint = "/health"

[cerebrium.scaling]
min_replicas = 0
max_replicas = 2

[imgbake]
target = "cerebrium"
compression = "{compression}"

[[imgbake.weights]]
source = "hf://{REPO}@main"
mount = "model"
mode = "{mode}"
"#
    );
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
}

fn imgbake(args: &Args, hub: &TestHub) -> Command {
    let mut command = Command::new(&args.imgbake);
    command.env("HF_ENDPOINT", hub.endpoint()).env("IMGBAKE_CACHE_DIR", args.work.join("cache"));
    command
}

fn build(args: &Args, project: &Path, base: &Path, image: &str, hub: &TestHub, profile: Option<&Path>) -> Value {
    let layout = args.work.join("out");
    let started = Instant::now();
    let mut command = imgbake(args, hub);
    command.arg("build").arg(project);
    if let Some(profile) = profile {
        command.arg("--profile").arg(profile);
    }
    let output = command
        .arg("--json")
        .args(["--base", &format!("oci:{}:{}", base.display(), base_image::BASE_TAG)])
        .args(["--output", &format!("oci:{}:lab", layout.display())])
        .args(["--push", image, "--insecure-registry", image.split('/').next().unwrap()])
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(output.status.success(), "build failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    let layers = result["layers"].as_array().unwrap();
    // The codec of the new layers' bytes: the largest layer's.
    let largest = layers.iter().max_by_key(|l| l["uncompressed_size"].as_u64().unwrap_or(0));
    let codec = match largest.and_then(|l| l["media_type"].as_str()) {
        Some(media) if media.ends_with("+zstd") => "zstd",
        Some(media) if media.ends_with("+gzip") => "gzip",
        _ => "none",
    };
    json!({
        "codec": codec,
        "seconds": seconds,
        "new_layers": layers.len(),
        "new_bytes": layers.iter().map(|l| l["size"].as_u64().unwrap()).sum::<u64>(),
        "new_uncompressed_bytes": layers.iter().map(|l| l["uncompressed_size"].as_u64().unwrap()).sum::<u64>(),
    })
}

/// Drops the page cache, so "a new node" reads from disk as a new node would.
/// Returns whether it could (it needs root and a writable /proc/sys).
fn drop_caches() -> bool {
    unsafe { libc::sync() };
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .and_then(|mut f| f.write_all(b"3\n"))
        .is_ok()
}

/// One cold start per scenario of `mode`, each on an empty node directory.
fn cold_starts(args: &Args, registry: &TestRegistry, image: &str, mode: &str, hub: &TestHub) -> Value {
    let node = args.work.join("node");
    let pull_unpack = |node: &Path| -> (f64, f64, PathBuf) {
        let _ = std::fs::remove_dir_all(node);
        std::fs::create_dir_all(node).unwrap();
        drop_caches();
        let started = Instant::now();
        tools::skopeo_copy(&format!("docker://{image}"), &format!("oci:{}:img", node.join("layout").display()), &[]);
        let pull = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let bundle = node.join("bundle");
        tools::umoci_unpack(&node.join("layout"), "img", &bundle);
        let unpack = started.elapsed().as_secs_f64();
        (pull, unpack, bundle)
    };
    let _ = registry;
    let start = |bundle: &Path, volume: Option<&Path>| -> (f64, Option<f64>) {
        let port = support::registry::free_port().to_string();
        let env = [("PORT", port.as_str()), ("HF_ENDPOINT", &hub.endpoint()), ("MODEL_DIR", MODEL_DIR)];
        let mounts: Vec<tools::BindMount> =
            volume.map(|v| tools::BindMount::read_write(v, "/persistent-storage")).into_iter().collect();
        tools::prepare_runc_bundle(bundle, &[], &env, &mounts);
        let _ = std::fs::remove_file(bundle.join("container.log"));
        // No drop_caches here: a runtime starts the container right after
        // the unpack, whose writes (baked weights included) are in memory.
        let started = Instant::now();
        let container = tools::runc_run_detached(bundle, &tools::unique_container_id("lab"));
        let status = tools::wait_for_http(&format!("http://127.0.0.1:{port}/health"), START_TIMEOUT);
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(status, 200, "{}", container.log_text());
        (seconds, prefetch_seconds(&container.log_text()))
    };
    let (pull, unpack, bundle) = pull_unpack(&node);
    if option_of(mode) == "bake" {
        let (seconds, _) = start(&bundle, None);
        return json!({ "new_node": { "pull": pull, "unpack": unpack, "start": seconds, "total": pull + unpack + seconds } });
    }
    let volume = args.work.join("volume");
    let _ = std::fs::remove_dir_all(&volume);
    std::fs::create_dir_all(&volume).unwrap();
    let (cold, prefetch) = start(&bundle, Some(&volume));
    // The warm volume: a new node again (fresh pull and unpack), same volume.
    let (pull2, unpack2, bundle2) = pull_unpack(&args.work.join("node2"));
    let (warm, warm_prefetch) = start(&bundle2, Some(&volume));
    let _ = std::fs::remove_dir_all(args.work.join("node2"));
    json!({
        "volume_cold": { "pull": pull, "unpack": unpack, "start": cold, "prefetch": prefetch, "total": pull + unpack + cold },
        "volume_warm": { "pull": pull2, "unpack": unpack2, "start": warm, "prefetch": warm_prefetch, "total": pull2 + unpack2 + warm },
    })
}

/// The hook's own measure of its work: the `done` event's seconds.
fn prefetch_seconds(log: &str) -> Option<f64> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .filter(|event| event["event"] == "done")
        .find_map(|event| event["seconds"].as_f64())
}

/// Median of every numeric leaf across runs (same shape in each run).
fn median_of(runs: &[Value]) -> Value {
    fn at<'a>(value: &'a Value, path: &[String]) -> &'a Value {
        path.iter().fold(value, |v, key| &v[key.as_str()])
    }
    fn walk(template: &Value, runs: &[Value], path: &mut Vec<String>) -> Value {
        match template {
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for key in map.keys() {
                    path.push(key.clone());
                    out.insert(key.clone(), walk(&map[key], runs, path));
                    path.pop();
                }
                Value::Object(out)
            }
            Value::Number(_) => {
                let values: Vec<f64> = runs.iter().filter_map(|r| at(r, path).as_f64()).collect();
                json!(median(&values))
            }
            other => other.clone(),
        }
    }
    walk(&runs[0], runs, &mut Vec::new())
}

/// The median (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Smallest and largest value.
fn spread(values: &[f64]) -> (f64, f64) {
    values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| (low.min(v), high.max(v)))
}

/// Half the min–max range over the median: 0.1 when the runs lie within ±10%.
fn relative_spread(values: &[f64]) -> f64 {
    let (low, high) = spread(values);
    (high - low) / 2.0 / median(values)
}

/// Where the kernel says from which block order it reports free memory to
/// the host (free page reporting, as a virtio balloon or firecracker's
/// guest kernel do).
const PAGE_REPORTING_ORDER: &str = "/sys/module/page_reporting/parameters/page_reporting_order";
/// Memory left untouched when the lab backs the rest (the registry, the
/// hub and the lab itself live in it).
const MEMORY_LEFT_UNTOUCHED: u64 = 1 << 30;

/// The node `plan` models has dedicated memory, as GPU nodes do (a GPU passed
/// through to a VM needs its guest memory pinned). A VM whose host takes
/// freed guest memory back does not: its kernel reports free 2 MiB blocks to
/// the host, and the next use of one waits for the host to back it again.
/// Measured on this firecracker VM (docs/benchmarks.md): a 4 GiB buffered
/// write after `drop_caches` ran at 480 MB/s and a cold 4 GiB read at
/// 530 MB/s; with reporting stopped and memory backed, 3.9–4.9 GB/s and
/// 2.7 GB/s. Every start that grows the page cache by GBs (pull, unpack, the
/// hook's writes, a cold read) ran at the host's rate, not the node's.
///
/// So while the lab runs, when it can (root, a kernel with page reporting),
/// it stops the reporting (the smallest reported order set past the largest
/// order the allocator has) and touches the memory its largest start can
/// use once, so that the host backs it; the setting is given back on drop.
/// Memory backed that way stays backed until the host reclaims it some
/// other way.
struct DedicatedMemory {
    /// The setting to give back: the file and its value before the lab.
    restore: Option<String>,
    /// What was done, for lab.json and the note under the table.
    outcome: Value,
}

impl DedicatedMemory {
    fn hold(sizes_mib: &[u64]) -> Self {
        let Ok(before) = std::fs::read_to_string(PAGE_REPORTING_ORDER) else {
            return Self { restore: None, outcome: json!({ "reporting": "none" }) };
        };
        let orders = buddy_orders();
        if std::fs::write(PAGE_REPORTING_ORDER, format!("{orders}\n")).is_err() {
            return Self { restore: None, outcome: json!({ "reporting": "on", "stopped": false }) };
        }
        drop_caches();
        // The largest start holds its blob, the unpacked files and, for zstd,
        // the decoded tar in the page cache; the registry and the hub hold
        // another copy or two. Four times the largest size and 4 GiB more.
        let largest = sizes_mib.iter().copied().max().unwrap_or(0) << 20;
        let wanted = 4 * largest + (4 << 30);
        let free = meminfo_bytes("MemFree").saturating_sub(MEMORY_LEFT_UNTOUCHED);
        let (touched, seconds) = touch_memory(wanted.min(free));
        eprintln!(
            "node memory: free page reporting stopped (page_reporting_order {} -> {orders}); {:.1} GiB backed in {seconds:.1} s",
            before.trim(),
            touched as f64 / (1u64 << 30) as f64
        );
        let outcome = json!({
            "reporting": "on",
            "stopped": true,
            "order_before": before.trim(),
            "backed_bytes": touched,
            "backed_seconds": seconds,
        });
        Self { restore: Some(before), outcome }
    }

    fn to_json(&self) -> Value {
        self.outcome.clone()
    }

    /// One sentence under the table on what the lab did to the node's memory.
    fn note(&self) -> String {
        match (self.outcome["reporting"].as_str(), self.outcome["stopped"].as_bool()) {
            (Some("on"), Some(true)) => format!(
                "\nNode memory: this VM reports free memory to its host; the lab stopped that for the run and had the \
                 host back {:.1} GiB first ({:.0} MB/s), so that its node has dedicated memory, as the plan models.\n",
                self.outcome["backed_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64,
                self.outcome["backed_bytes"].as_f64().unwrap_or(0.0)
                    / self.outcome["backed_seconds"].as_f64().unwrap_or(f64::INFINITY)
                    / 1e6,
            ),
            (Some("on"), _) => "\nNode memory: this VM reports free memory to its host and the lab could not stop \
                                that (it needs root): rows that grow the page cache by GBs can be slower than the plan.\n"
                .into(),
            _ => String::new(),
        }
    }
}

impl Drop for DedicatedMemory {
    fn drop(&mut self) {
        if let Some(before) = self.restore.take() {
            let _ = std::fs::write(PAGE_REPORTING_ORDER, before);
        }
    }
}

/// How many block orders the page allocator has (the columns of
/// /proc/buddyinfo; 11 on x86_64): no free block reaches that order, so
/// reporting from it reports nothing.
fn buddy_orders() -> usize {
    orders_in_buddyinfo(&std::fs::read_to_string("/proc/buddyinfo").unwrap_or_default())
}

fn orders_in_buddyinfo(text: &str) -> usize {
    text.lines()
        .filter_map(|line| line.split_once("zone").map(|(_, rest)| rest.split_whitespace().count().saturating_sub(1)))
        .max()
        .filter(|&n| n > 0)
        .unwrap_or(11)
}

/// A /proc/meminfo field in bytes.
fn meminfo_bytes(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Allocates `bytes` of anonymous memory, writes one byte in every page so
/// that it is backed, and frees it all at once (held together, so that no
/// page is touched twice). Returns the bytes touched and the seconds taken.
fn touch_memory(bytes: u64) -> (u64, f64) {
    const CHUNK: usize = 256 << 20;
    const PAGE: usize = 4096;
    let started = Instant::now();
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut touched = 0u64;
    while touched + CHUNK as u64 <= bytes {
        let mut chunk = vec![0u8; CHUNK];
        for at in (0..CHUNK).step_by(PAGE) {
            // A volatile write: the compiler may not drop a store to memory
            // that is freed without being read.
            unsafe { std::ptr::write_volatile(chunk.as_mut_ptr().add(at), 1) };
        }
        held.push(chunk);
        touched += CHUNK as u64;
    }
    drop(held);
    (touched, started.elapsed().as_secs_f64())
}

/// Bytes written to time how fast the node's page cache grows.
const FILL_SAMPLE_MIB: u64 = 2048;

/// How fast this machine's page cache takes new pages: a 2 GiB file written
/// (no fsync) after `drop_caches` and 5 s idle, and again right after it is
/// deleted. A VM whose host takes freed guest memory back (free page
/// reporting) fills memory it no longer backs at a fraction of the second
/// rate; the plan models a node with dedicated memory, which GPU nodes have
/// (passthrough pins guest memory), so the lab records this beside its table.
fn page_cache_fill(dir: &Path) -> Value {
    let path = dir.join("page-cache-fill-sample");
    let piece = support::data::random_bytes(1 << 20, 22);
    let write = || {
        let started = Instant::now();
        let mut file = std::fs::File::create(&path).unwrap();
        for _ in 0..FILL_SAMPLE_MIB {
            file.write_all(&piece).unwrap();
        }
        drop(file);
        let rate = (FILL_SAMPLE_MIB << 20) as f64 / started.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&path);
        rate
    };
    if !drop_caches() {
        return json!(null);
    }
    std::thread::sleep(Duration::from_secs(5));
    let after_drop = write();
    let reused = write();
    drop_caches();
    json!({ "bytes": FILL_SAMPLE_MIB << 20, "after_drop_caches": after_drop, "into_freed_memory": reused })
}

/// One paragraph under the table: the page-cache fill rates at the start
/// and end of the run, and what a slow fill means for the 4 GiB rows.
fn fill_note(fill: &Value) -> String {
    let rates = |at: &str| {
        let rate = |key: &str| fill[at][key].as_f64().unwrap_or(0.0) / 1e6;
        (rate("after_drop_caches"), rate("into_freed_memory"))
    };
    let (start, end) = (rates("start"), rates("end"));
    if start.1 == 0.0 {
        return "\nPage-cache fill: not measured (it needs root to drop the page cache).\n".into();
    }
    let lazy = start.0 < start.1 / 4.0 || end.0 < end.1 / 4.0;
    format!(
        "\nPage-cache fill (2 GiB written, no fsync): after drop_caches {:.0} MB/s at the start of the run and {:.0} at \
         the end; into memory just freed {:.0} and {:.0} MB/s.{}\n",
        start.0,
        end.0,
        start.1,
        end.1,
        if lazy {
            " This machine backs freed memory lazily (a VM whose host takes freed guest memory back), so a new \
             node's page cache grows slowly past what it kept: the rows that write GBs on the node (pull, unpack, \
             the hook's writes) are slower than the plan, which models a node with dedicated memory."
        } else {
            ""
        }
    )
}

fn machine() -> Value {
    let text = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = text("/proc/cpuinfo").lines().find(|l| l.starts_with("model name")).unwrap_or("").to_string();
    let mem = text("/proc/meminfo").lines().next().unwrap_or("").to_string();
    json!({
        "cpu": cpu.split(':').nth(1).unwrap_or("").trim(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory": mem.split(':').nth(1).unwrap_or("").trim(),
        "page_cache_dropped": drop_caches(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_has_as_many_orders_as_buddyinfo_has_columns() {
        let text = "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 \n\
                    Node 0, zone   Normal     27     63    304   1015    885    676    483    391    268      4   4008 \n";
        assert_eq!(orders_in_buddyinfo(text), 11);
        assert_eq!(orders_in_buddyinfo(""), 11, "unknown: x86_64's count");
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_run_and_of_an_even_one_the_mean_of_two() {
        assert_eq!(median(&[9.0, 1.0, 5.0]), 5.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 10.0]), 3.5);
        assert_eq!(median(&[2.5]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn the_spread_is_min_to_max_and_relative_to_the_median() {
        let totals = [10.0, 12.0, 8.0];
        assert_eq!(spread(&totals), (8.0, 12.0));
        assert!((relative_spread(&totals) - 0.2).abs() < 1e-12);
    }

    fn row(predicted_total: f64, run_totals: Vec<f64>) -> Comparison {
        Comparison {
            size_mib: 256,
            mode: "volume".into(),
            scenario: "new node, empty volume".into(),
            predicted: [0.0, 0.0, predicted_total],
            measured: [0.0, 0.0, 0.0],
            run_totals,
        }
    }

    #[test]
    fn the_gate_compares_with_the_median_run_so_one_outlier_does_not_decide() {
        // Runs 5.0, 5.2 and an outlier 9.0: median 5.2; predicted 5.5 is 1.06.
        let steady = row(5.5, vec![5.0, 9.0, 5.2]);
        assert!((steady.ratio() - 5.5 / 5.2).abs() < 1e-12 && steady.within_gate());
        // The mean (6.4) would say 0.86; the minimum 1.1; neither is used.
        let off = row(7.0, vec![5.0, 9.0, 5.2]);
        assert!(!off.within_gate(), "7.0 / 5.2 = 1.35");
        let json = off.to_json();
        assert_eq!(json["measured"]["total"], 5.2);
        assert_eq!((json["measured"]["min"].as_f64(), json["measured"]["max"].as_f64()), (Some(5.0), Some(9.0)));
    }

    #[test]
    fn median_of_takes_each_leaf_across_runs() {
        let runs = [
            json!({ "new_node": { "pull": 1.0, "total": 10.0 }, "label": "a" }),
            json!({ "new_node": { "pull": 3.0, "total": 30.0 }, "label": "a" }),
            json!({ "new_node": { "pull": 2.0, "total": 11.0 }, "label": "a" }),
        ];
        let median = median_of(&runs);
        assert_eq!(median, json!({ "new_node": { "pull": 2.0, "total": 11.0 }, "label": "a" }));
    }

    #[test]
    fn the_table_and_chart_show_every_runs_spread() {
        let rows = [row(5.5, vec![5.0, 9.0, 5.2])];
        let table = markdown_table(&rows);
        assert!(table.contains("| 3: 5.0–9.0 s (±38%) | 1.06 |"), "{table}");
        let svg = svg_chart(&rows);
        assert!(svg.contains("runs: 5.0–9.0 s, median 5.2 s"), "{svg}");
    }

    #[test]
    fn the_hooks_write_rate_is_timed_over_new_bytes_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let rate = hook_write_rate(dir.path(), 4);
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
