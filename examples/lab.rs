//! The cold-start lab: builds the bake and the volume image of a small app
//! that loads (reads and sha256s) every weights file, pushes both to a
//! loopback registry, and measures real cold starts on an empty "node":
//! pull (`skopeo copy` to an OCI dir) + unpack (`umoci unpack`) + start
//! under `runc` until `/health` answers; for volume mode with an empty
//! volume and with a warm one. Weights are bf16-like data served by the
//! loopback Hugging Face hub (tests/support/hub_server.py).
//!
//! `cargo run --release --example lab -- [--sizes 256,1024,4096] [--runs N]
//!  [--out FILE.json] [--plan-profile FILE]` (sizes in MiB). Prints one JSON
//! document with every measured term; `scripts/lab.sh` runs it, asks
//! `imgbake plan` for its predictions and compares. Needs root (runc),
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

struct Args {
    sizes_mib: Vec<u64>,
    runs: usize,
    out: Option<PathBuf>,
    imgbake: PathBuf,
    work: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        sizes_mib: vec![256, 1024, 4096],
        runs: 1,
        out: None,
        imgbake: tools::repo_root().join("target/release/imgbake"),
        work: tools::repo_root().join("target/lab"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => args.sizes_mib = value().split(',').map(|s| s.trim().parse().expect("MiB")).collect(),
            "--runs" => args.runs = value().parse().expect("runs"),
            "--out" => args.out = Some(PathBuf::from(value())),
            "--imgbake" => args.imgbake = PathBuf::from(value()),
            "--work" => args.work = PathBuf::from(value()),
            other => panic!("unknown flag {other}"),
        }
    }
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
    for &size in &args.sizes_mib {
        eprintln!("== {size} MiB");
        write_weights(&hub_root, size);
        let project = write_project(&args.work.join(format!("project-{size}")));
        let mut per_mode = serde_json::Map::new();
        for mode in ["bake", "volume"] {
            set_mode(&project, mode);
            let image = format!("{}/lab:{mode}-{size}", registry.host());
            let built = build(&args, &project, &base, &image, &hub);
            let mut runs = Vec::new();
            for run in 0..args.runs {
                eprintln!("   {mode} run {}", run + 1);
                runs.push(cold_starts(&args, &registry, &image, mode, &hub));
            }
            per_mode.insert(mode.to_string(), json!({ "build": built, "runs": runs, "median": median_of(&runs) }));
        }
        results.push(json!({ "size_mib": size, "modes": per_mode, "project": project }));
        // Each size's hub file, store copies and image blobs go before the next size.
        let _ = std::fs::remove_dir_all(args.work.join("cache"));
        let _ = std::fs::remove_dir_all(hub_root.join(REPO.split('/').next().unwrap()));
    }
    let report = json!({
        "schema": "imgbake.lab/v1",
        "machine": machine(),
        "sizes": results,
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    match &args.out {
        Some(path) => std::fs::write(path, &text).unwrap(),
        None => println!("{text}"),
    }
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

fn set_mode(project: &Path, mode: &str) {
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

[cerebrium.runtime.custom.environment]
MODEL_DIR = "{MODEL_DIR}"

[cerebrium.scaling]
min_replicas = 0
max_replicas = 2

[imgbake]
target = "cerebrium"
compression = "auto"

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

fn build(args: &Args, project: &Path, base: &Path, image: &str, hub: &TestHub) -> Value {
    let layout = args.work.join("out");
    let started = Instant::now();
    let output = imgbake(args, hub)
        .arg("build")
        .arg(project)
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
    json!({
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
        let env = [("PORT", port.as_str()), ("HF_ENDPOINT", &hub.endpoint())];
        let mounts: Vec<tools::BindMount> =
            volume.map(|v| tools::BindMount::read_write(v, "/persistent-storage")).into_iter().collect();
        tools::prepare_runc_bundle(bundle, &[], &env, &mounts);
        let _ = std::fs::remove_file(bundle.join("container.log"));
        drop_caches();
        let started = Instant::now();
        let container = tools::runc_run_detached(bundle, &tools::unique_container_id("lab"));
        let status = tools::wait_for_http(&format!("http://127.0.0.1:{port}/health"), START_TIMEOUT);
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(status, 200, "{}", container.log_text());
        (seconds, prefetch_seconds(&container.log_text()))
    };
    let (pull, unpack, bundle) = pull_unpack(&node);
    if mode == "bake" {
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
                let mut values: Vec<f64> = runs.iter().filter_map(|r| at(r, path).as_f64()).collect();
                values.sort_by(|a, b| a.partial_cmp(b).unwrap());
                json!(values[values.len() / 2])
            }
            other => other.clone(),
        }
    }
    walk(&runs[0], runs, &mut Vec::new())
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
