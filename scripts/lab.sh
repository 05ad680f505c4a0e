#!/usr/bin/env bash
# The cold-start lab, one command: for bf16-like weights of 256 MiB, 1 GiB
# and 4 GiB, build the bake and the volume image of a small app that loads
# every weights file, push both to a loopback registry, measure real cold
# starts (skopeo copy + umoci unpack + runc until /health; volume mode with
# an empty and a warm volume), then compare with `imgbake plan`'s
# predictions from a profile calibrated on this machine. See examples/lab.rs.
#
# Usage: scripts/lab.sh [--sizes 256,1024,4096] [--runs N] [--no-gate] [--debug]
#   --runs N   cold starts per scenario (default 3); the gate compares each
#              scenario's median run and refuses fewer than 3
#   --debug    use debug binaries (what CI has already built)
#   --no-gate  report, but exit 0 even when a median is off by > 25%
# Writes <cargo target dir>/lab-results/{lab.json,lab.md,lab.svg}. Needs root, and
# docker-registry, skopeo, umoci and runc (bash .ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
args=()
for arg in "$@"; do
  if [[ "$arg" == --debug ]]; then profile=debug; else args+=("$arg"); fi
done
if [[ "$profile" == release ]]; then
  cargo build --release --quiet --bin imgbake --example lab --example gen_bf16
else
  cargo build --quiet --bin imgbake --example lab --example gen_bf16
fi
# The volume images carry the hook; use the static one that ships (a debug
# imgbake is ~200 MB and would dominate the volume image's unpack).
if [[ -z "${IMGBAKE_HOOK_BINARY:-}" ]]; then
  IMGBAKE_HOOK_BINARY="$(realpath "$(scripts/build-hook.sh | tail -n 1)")"
  export IMGBAKE_HOOK_BINARY
fi
# shellcheck source=scripts/target-dir.sh
source scripts/target-dir.sh
exec "$target_dir/$profile/examples/lab" --imgbake "$target_dir/$profile/imgbake" --out "$target_dir/lab-results" "${args[@]}"
