#!/usr/bin/env bash
# Builds imgbake and runs its main job on a fixture project.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
./target/release/imgbake validate fixtures/cerebrium-gpu-weights
