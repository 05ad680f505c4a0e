//! Measures where splitting baked weights into more layers stops paying,
//! to choose the default `weights_split_mib`.
//!
//! For each weights shape and split size it builds the image (`imgbake
//! build`, weights only, `compression = "none"`), then pulls every layer
//! blob as containerd would — 3 layers at a time, one connection each —
//! from a loopback blob server that shapes traffic like a registry seen
//! from a node: a cap per connection, a cap on the sum, and a fixed latency
//! before each response's first byte (TLS, redirect to the blob store). It
//! then unpacks the image with `umoci unpack` (serial, one layer after the
//! other; real). Pull time comes from the shaped network, unpack time from
//! this machine; their sum is the cold-start part that the split changes.
//!
//! To keep a run short, file sizes, split sizes and the latency are scaled
//! by `--scale` while the rates are not, and every time is reported divided
//! by the scale: the full-size equivalent. (Unpack's fixed cost per layer is
//! inflated by that division, which counts against more layers.)
//!
//! `cargo run --release --example split_bench -- [--shapes sd,shards]
//!  [--splits 64,128,256,512,1024,0] [--conn-mbs 60] [--total-mbs 125]
//!  [--latency-ms 50] [--scale 0.25] [--out DIR]` (split 0 = one layer per
//! source; the network defaults are the plan's built-in profile). Writes
//! DIR/split.json and prints a Markdown table. `scripts/bench-split.sh`
//! runs it.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{data, tools};

const MIB: u64 = 1 << 20;
/// containerd's default `max_concurrent_downloads`.
const PULL_CONCURRENCY: usize = 3;
/// Bytes sent between two pacing decisions.
const PACE_CHUNK: usize = 256 << 10;

struct Args {
    shapes: Vec<String>,
    splits_mib: Vec<u64>,
    connection_bytes_per_second: f64,
    total_bytes_per_second: f64,
    latency: Duration,
    scale: f64,
    out: PathBuf,
    imgbake: PathBuf,
    work: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        shapes: vec!["sd".into(), "shards".into()],
        splits_mib: vec![64, 128, 256, 512, 1024, 0],
        connection_bytes_per_second: 60e6,
        total_bytes_per_second: 125e6,
        latency: Duration::from_millis(50),
        scale: 0.25,
        out: tools::repo_root().join("target/split-results"),
        imgbake: tools::repo_root().join("target/release/imgbake"),
        work: tools::repo_root().join("target/split-bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--shapes" => args.shapes = value().split(',').map(str::to_string).collect(),
            "--splits" => args.splits_mib = value().split(',').map(|s| s.trim().parse().expect("MiB")).collect(),
            "--conn-mbs" => args.connection_bytes_per_second = value().parse::<f64>().expect("MB/s") * 1e6,
            "--total-mbs" => args.total_bytes_per_second = value().parse::<f64>().expect("MB/s") * 1e6,
            "--latency-ms" => args.latency = Duration::from_millis(value().parse().expect("ms")),
            "--scale" => args.scale = value().parse().expect("scale"),
            "--out" => args.out = PathBuf::from(value()),
            "--imgbake" => args.imgbake = PathBuf::from(value()),
            "--work" => args.work = PathBuf::from(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// File sizes (MiB, before scaling) of a weights shape.
fn shape(name: &str) -> Vec<(String, u64)> {
    match name {
        // stable-diffusion-xl-base-1.0, fp16 safetensors of the diffusers layout.
        "sd" => [
            ("text_encoder/model.fp16.safetensors", 235),
            ("text_encoder_2/model.fp16.safetensors", 1325),
            ("unet/diffusion_pytorch_model.fp16.safetensors", 4897),
            ("vae/diffusion_pytorch_model.fp16.safetensors", 160),
            ("vae_decoder/model.fp16.safetensors", 95),
            ("tokenizer/vocab.json", 1),
            ("tokenizer_2/vocab.json", 1),
        ]
        .iter()
        .map(|(path, mib)| (path.to_string(), *mib))
        .collect(),
        // A model saved with max_shard_size="1GB": 8 similar shards.
        "shards" => (1..=8)
            .map(|i| (format!("model-{i:05}-of-00008.safetensors"), 950))
            .chain([("config.json".to_string(), 1), ("tokenizer.json".to_string(), 1)])
            .collect(),
        other => panic!("unknown shape {other} (sd, shards)"),
    }
}

fn main() {
    let args = parse_args();
    assert!(args.imgbake.is_file(), "{} is missing: cargo build --release", args.imgbake.display());
    let _ = std::fs::remove_dir_all(&args.work);
    std::fs::create_dir_all(&args.work).unwrap();
    let mut rows = Vec::new();
    for shape_name in &args.shapes {
        let project = args.work.join(format!("project-{shape_name}"));
        let weights = project.join("weights");
        let mut total = 0u64;
        for (index, (path, mib)) in shape(shape_name).into_iter().enumerate() {
            let size = ((mib as f64 * args.scale) * MIB as f64) as u64;
            let file = weights.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            write_random(&file, size.max(4096), index as u64 + 1);
            total += size.max(4096);
        }
        let total = (total as f64 / args.scale) as u64;
        eprintln!("== {shape_name}: {:.0} MiB", total as f64 / MIB as f64);
        for &split in &args.splits_mib {
            let layout = args.work.join(format!("out-{shape_name}-{split}"));
            let scaled_split = (split as f64 * args.scale).round() as u64;
            let layers = build(&args, &project, scaled_split, &layout);
            let blobs: Vec<PathBuf> = layers.iter().map(|(digest, _)| blob_path(&layout, digest)).collect();
            let pull = pull_seconds(&args, &blobs) / args.scale;
            let unpack = unpack_seconds(&layout, &args.work.join("bundle")) / args.scale;
            let largest = (layers.iter().map(|(_, size)| *size).max().unwrap_or(0) as f64 / args.scale) as u64;
            eprintln!(
                "   split {split:>5} MiB: {} layers, largest {:.0} MiB, pull {pull:.2} s, unpack {unpack:.2} s",
                layers.len(),
                largest as f64 / MIB as f64
            );
            rows.push(json!({
                "shape": shape_name,
                "total_bytes": total,
                "split_mib": split,
                "layers": layers.len(),
                "largest_layer_bytes": largest,
                "pull_seconds": pull,
                "unpack_seconds": unpack,
                "total_seconds": pull + unpack,
            }));
            let _ = std::fs::remove_dir_all(&layout);
        }
        let _ = std::fs::remove_dir_all(&project);
        let _ = std::fs::remove_dir_all(args.work.join("cache"));
    }
    let report = json!({
        "schema": "imgbake.split-bench/v1",
        "network": {
            "connection_bytes_per_second": args.connection_bytes_per_second,
            "total_bytes_per_second": args.total_bytes_per_second,
            "latency_seconds": args.latency.as_secs_f64(),
            "pull_concurrency": PULL_CONCURRENCY,
        },
        "scale": args.scale,
        "rows": rows,
    });
    std::fs::create_dir_all(&args.out).unwrap();
    std::fs::write(args.out.join("split.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("{}", markdown(&rows));
}

/// Incompressible bytes (bf16 weights are close to it), written in 8 MiB pieces.
fn write_random(path: &Path, size: u64, seed: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut written = 0;
    let mut piece = 0;
    while written < size {
        let n = (size - written).min(8 * MIB) as usize;
        out.write_all(&data::random_bytes(n, seed * 1_000_003 + piece)).unwrap();
        written += n as u64;
        piece += 1;
    }
    out.flush().unwrap();
}

/// Builds the weights-only image; returns (digest, size) of each weights layer.
fn build(args: &Args, project: &Path, split_mib: u64, layout: &Path) -> Vec<(String, u64)> {
    // 0 = one layer per source: a split larger than any source.
    let split = if split_mib == 0 { 1 << 20 } else { split_mib };
    let config = format!(
        "[cerebrium.deployment]\nname = \"split-bench\"\nexclude = [\"weights/\"]\n\n\
         [imgbake]\ncompression = \"none\"\nweights_split_mib = {split}\n\n\
         [[imgbake.weights]]\nsource = \"./weights\"\nmount = \"model\"\nmode = \"bake\"\n"
    );
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
    let output = Command::new(&args.imgbake)
        .args(["build", "--json", "--base", "scratch"])
        .arg(project)
        .arg("--output")
        .arg(format!("oci:{}:split", layout.display()))
        .arg("--cache-dir")
        .arg(args.work.join("cache"))
        .output()
        .unwrap();
    assert!(output.status.success(), "build failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    result["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["what"].as_str().unwrap_or("").starts_with("weights"))
        .map(|l| (l["digest"].as_str().unwrap().to_string(), l["size"].as_u64().unwrap()))
        .collect()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// Pacing shared by every connection of the server: a virtual clock per
/// connection and one for the sum, each advanced by what was sent.
struct Shaper {
    connection_rate: f64,
    total_rate: f64,
    total_next: Mutex<Instant>,
}

impl Shaper {
    /// Sleeps until `n` more bytes may leave on a connection whose own clock is `next`.
    fn pace(&self, next: &mut Instant, n: usize) {
        let now = Instant::now();
        let own = (*next).max(now) + Duration::from_secs_f64(n as f64 / self.connection_rate);
        let shared = {
            let mut total = self.total_next.lock().unwrap();
            *total = (*total).max(now) + Duration::from_secs_f64(n as f64 / self.total_rate);
            *total
        };
        *next = own;
        let until = own.max(shared);
        if until > now {
            std::thread::sleep(until - now);
        }
    }
}

/// Serves `GET /<index>` as the bytes of `blobs[index]`, shaped; one request per connection.
fn serve(listener: TcpListener, blobs: Arc<Vec<PathBuf>>, shaper: Arc<Shaper>, latency: Duration) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { break };
        let (blobs, shaper) = (blobs.clone(), shaper.clone());
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            if request.starts_with("QUIT") {
                return;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let index: usize = request.split_whitespace().nth(1).unwrap().trim_start_matches('/').parse().unwrap();
            std::thread::sleep(latency);
            let mut file = std::fs::File::open(&blobs[index]).unwrap();
            let size = file.metadata().unwrap().len();
            let mut out = stream;
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n").unwrap();
            let mut buffer = vec![0u8; PACE_CHUNK];
            let mut next = Instant::now();
            loop {
                let n = file.read(&mut buffer).unwrap();
                if n == 0 {
                    break;
                }
                shaper.pace(&mut next, n);
                if out.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        });
    }
}

/// Pulls every blob, `PULL_CONCURRENCY` at a time in layer order, through the shaped server.
fn pull_seconds(args: &Args, blobs: &[PathBuf]) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let shaper = Arc::new(Shaper {
        connection_rate: args.connection_bytes_per_second,
        total_rate: args.total_bytes_per_second,
        total_next: Mutex::new(Instant::now()),
    });
    let served = Arc::new(blobs.to_vec());
    let latency = args.latency.mul_f64(args.scale);
    let server = std::thread::spawn(move || serve(listener, served, shaper, latency));
    let queue = Mutex::new(0..blobs.len());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..PULL_CONCURRENCY {
            scope.spawn(|| loop {
                let Some(index) = queue.lock().unwrap().next() else { break };
                let mut stream = TcpStream::connect(address).unwrap();
                write!(stream, "GET /{index} HTTP/1.1\r\nHost: blobs\r\n\r\n").unwrap();
                let received = std::io::copy(&mut stream, &mut std::io::sink()).unwrap();
                let expected = std::fs::metadata(&blobs[index]).unwrap().len();
                assert!(received > expected, "blob {index}: {received} bytes for {expected}");
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    // Stops the accept loop: it exits when a connection says QUIT and the listener is dropped.
    drop(TcpStream::connect(address).map(|mut s| s.write_all(b"QUIT\r\n")));
    drop(server);
    seconds
}

/// `umoci unpack` of the layout (rootless when not root), timed.
fn unpack_seconds(layout: &Path, bundle: &Path) -> f64 {
    let _ = std::fs::remove_dir_all(bundle);
    let started = Instant::now();
    tools::umoci_unpack(layout, "split", bundle);
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(bundle);
    seconds
}

fn markdown(rows: &[Value]) -> String {
    let mut text = String::from(
        "| shape | split (MiB) | layers | largest layer (MiB) | pull (s) | unpack (s) | pull + unpack (s) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let split = row["split_mib"].as_u64().unwrap();
        text.push_str(&format!(
            "| {} ({:.0} MiB) | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
            row["shape"].as_str().unwrap(),
            row["total_bytes"].as_f64().unwrap() / MIB as f64,
            if split == 0 { "none".to_string() } else { split.to_string() },
            row["layers"],
            row["largest_layer_bytes"].as_f64().unwrap() / MIB as f64,
            row["pull_seconds"].as_f64().unwrap(),
            row["unpack_seconds"].as_f64().unwrap(),
            row["total_seconds"].as_f64().unwrap(),
        ));
    }
    text
}
