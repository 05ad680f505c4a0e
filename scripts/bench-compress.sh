#!/usr/bin/env bash
# Compression rates of the layer writer's codecs on this machine: gzip -6 as
# one stream against imgbake's independent-block gzip on 1 and all cores,
# zstd levels 1/3/6 on 1 and all cores, on bf16-like and text-like bytes.
# See examples/compress_bench.rs; results in docs/benchmarks.md.
#
# Usage: scripts/bench-compress.sh [--mib 64]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example compress_bench
# shellcheck source=scripts/target-dir.sh
source scripts/target-dir.sh
exec "$target_dir/release/examples/compress_bench" "$@"
