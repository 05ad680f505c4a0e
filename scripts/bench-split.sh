#!/usr/bin/env bash
# Where splitting baked weights into more layers stops paying: builds two
# weights shapes (an SDXL-like diffusers layout, a model in 8 shards) with
# several `weights_split_mib` values, pulls each image 3 layers at a time
# through a shaped loopback blob server (60 MB/s per connection, 125 MB/s in
# all, 50 ms to the first byte: the plan's built-in profile) and unpacks it
# with umoci. See examples/split_bench.rs; results in docs/benchmarks.md.
#
# Usage: scripts/bench-split.sh [--shapes sd,shards] [--splits 64,128,256,512,1024,0]
#          [--conn-mbs 60] [--total-mbs 125] [--latency-ms 50] [--scale 0.25]
# Writes <cargo target dir>/split-results/split.json. Needs umoci (bash .ci/run installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin imgbake --example split_bench
# shellcheck source=scripts/target-dir.sh
source scripts/target-dir.sh
exec "$target_dir/release/examples/split_bench" --imgbake "$target_dir/release/imgbake" --out "$target_dir/split-results" "$@"
