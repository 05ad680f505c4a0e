//! Compression rates of the layer writer's codecs on this machine: gzip -6
//! on one stream (flate2, what imgbake wrote before) against the parallel
//! independent-block gzip on 1 and on every core; zstd levels 1, 3 and 6 on
//! one worker and on every core. Each on bf16-like weights and on text-like
//! bytes (source files, configs). Rates are input bytes per second; the
//! ratio is compressed / original.
//!
//! `cargo run --release --example compress_bench -- [--mib 64]`;
//! `scripts/bench-compress.sh` runs it. Prints a Markdown table.

use std::io::Write;
use std::time::Instant;

fn text_like(len: usize) -> Vec<u8> {
    let words = ["import", "torch", "def", "forward(self, x):", "return", "config", "\"hidden_size\": 4096,", "\n"];
    let mut rng = fastrand::Rng::with_seed(3);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        out.extend_from_slice(words[rng.usize(..words.len())].as_bytes());
        out.push(if rng.u8(..) < 30 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn timed(work: impl FnOnce() -> Vec<u8>) -> (usize, f64) {
    let start = Instant::now();
    let out = work();
    (out.len(), start.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.iter().position(|a| a == "--mib").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(64);
    let cores = imgbake::image::pgzip::available_workers();
    let inputs =
        [("bf16-like", imgbake::cost::calibrate::bf16_like(mib << 20, 1)), ("text-like", text_like(mib << 20))];
    println!("{mib} MiB per input, {cores} cores\n");
    println!("| codec | threads | input | MB/s | ratio |");
    println!("|---|---|---|---|---|");
    for (name, data) in &inputs {
        let row = |codec: &str, threads: usize, (size, seconds): (usize, f64)| {
            println!(
                "| {codec} | {threads} | {name} | {:.0} | {:.3} |",
                data.len() as f64 / seconds / 1e6,
                size as f64 / data.len() as f64
            );
        };
        row(
            "gzip -6, one stream (flate2)",
            1,
            timed(|| {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
                encoder.write_all(data).unwrap();
                encoder.finish().unwrap()
            }),
        );
        for threads in [1, cores] {
            row(
                "gzip -6, 1 MiB blocks (imgbake)",
                threads,
                timed(|| {
                    let mut encoder = imgbake::image::pgzip::ParallelGzip::new(Vec::new(), 6, threads);
                    encoder.write_all(data).unwrap();
                    encoder.finish().unwrap()
                }),
            );
        }
        for level in [1, 3, 6] {
            for threads in [1, cores] {
                row(
                    &format!("zstd -{level}"),
                    threads,
                    timed(|| {
                        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
                        encoder.multithread(threads as u32).unwrap();
                        encoder.include_checksum(false).unwrap();
                        encoder.write_all(data).unwrap();
                        encoder.finish().unwrap()
                    }),
                );
            }
        }
    }
}
