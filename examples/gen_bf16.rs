//! Writes N MiB of bf16-like data (normal(0, 0.02) values, as model weights
//! are, truncated to bf16) to a file: `gen_bf16 OUT MIB [SEED]`.
//! A tiny xorshift + Box-Muller, so no numpy is needed.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gen_bf16 OUT MIB [SEED]");
        std::process::exit(2);
    }
    let mib: usize = args[2].parse().expect("MIB is a number");
    let mut state: u64 = args.get(3).map_or(0x9e37_79b9_7f4a_7c15, |s| s.parse().expect("SEED"));
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // 53 random bits in (0, 1]
        ((state >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&args[1]).expect("create OUT"));
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for pair in chunk.chunks_exact_mut(4) {
            let (u1, u2) = (next(), next());
            let radius = (-2.0 * u1.ln()).sqrt() * 0.02;
            let angle = std::f64::consts::TAU * u2;
            for (i, value) in [radius * angle.cos(), radius * angle.sin()].into_iter().enumerate() {
                let bf16 = ((value as f32).to_bits() >> 16) as u16;
                pair[2 * i..2 * i + 2].copy_from_slice(&bf16.to_le_bytes());
            }
        }
        out.write_all(&chunk).expect("write OUT");
    }
    out.flush().expect("flush OUT");
}
