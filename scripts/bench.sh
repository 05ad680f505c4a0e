#!/usr/bin/env bash
# The race, in one run: imgbake against the tools users would otherwise use,
# on the same 1 GiB bf16-like weights file and the same fixture
# (fixtures/cerebrium-local-weights with the file added to its weights dir).
#
#   bake 1 GiB:  imgbake build (compression none, zstd), cold cache
#                vs openssl dgst -sha256, zstd -1 -T2, pigz -1, tar | gzip,
#                and buildah bud of `imgbake dockerfile`'s context then
#                buildah push to an OCI dir (fresh vfs storage each run)
#   then:        scripts/bench-build.sh (no-op rebuild, push vs skopeo copy,
#                re-push) and scripts/bench-prefetch.sh (prefetch vs
#                curl + sha256sum and `hf download`), when present
#
# Prints medians of $BENCH_RUNS runs (default 3), peak RSS and ratios.
# BENCH_ONLY_BAKE=1 stops after the bake race.
# Usage: scripts/bench.sh [WORK_DIR]   (root; needs buildah, pigz, zstd,
#        openssl, /usr/bin/time: apt-get install buildah pigz zstd time)
set -euo pipefail

cd "$(dirname "$0")/.."
repo_root=$PWD
work="${1:-${TMPDIR:-/tmp}/imgbake-bench}"
runs="${BENCH_RUNS:-3}"
for tool in /usr/bin/time buildah pigz zstd openssl gzip tar; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (apt-get install buildah pigz zstd time)" >&2; exit 1; }
done
# shellcheck source=scripts/bench-lib.sh
source "$repo_root/scripts/bench-lib.sh"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"

bench_project
set_compression() {
  sed -i "s/^compression = .*/compression = \"$1\"/" "$project/cerebrium.toml"
  grep -q "^compression = \"$1\"" "$project/cerebrium.toml"
}
cache="$work/cache"
out="$work/out"
build=("$imgbake" build "$project" --base scratch --output "oci:$out:bench" --cache-dir "$cache" --json)

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(df -h --output=source,fstype "$work" | tail -1)"
echo "weights: $(stat -c %s "$weights") bytes bf16-like; $runs runs each"

# The generated Dockerfile context (base scratch, same compression as the layer default).
set_compression none
"$imgbake" dockerfile "$project" -o "$work/context" --base scratch >/dev/null
storage="$work/buildah"
buildah_flags=(--root "$storage/root" --runroot "$storage/run" --storage-driver vfs)
export BENCH_OUT="$work/buildah-out"

for _ in $(seq "$runs"); do
  # imgbake: a cold build each time (cache and output removed).
  for compression in none zstd; do
    set_compression "$compression"
    rm -rf "$cache" "$out"; sync
    run_timed "imgbake-$compression" "${build[@]}"
  done
  # The single-purpose tools on the same file (page cache warm, like the builds).
  run_timed openssl openssl dgst -sha256 "$weights"
  run_timed zstd sh -c 'zstd -q -1 -T2 -c "$1" >/dev/null' sh "$weights"
  run_timed pigz sh -c 'pigz -1 -c "$1" >/dev/null' sh "$weights"
  run_timed tar-gzip sh -c 'tar -C "$(dirname "$1")" -cf - "$(basename "$1")" | gzip -c >/dev/null' sh "$weights"
  # buildah: bud into fresh vfs storage, then push to an OCI layout (gzip, as it does by default).
  rm -rf "$storage" "$work/buildah-out"; sync
  run_timed buildah sh -c '
    buildah "$@" bud --quiet --isolation chroot -t bench:latest "$0" >/dev/null &&
    buildah "$@" push --quiet bench:latest "oci:$BENCH_OUT:bench" >/dev/null' \
    "$work/context" "${buildah_flags[@]}"
done
rm -rf "$storage"

echo
printf '%-44s %10s %11s  %s\n' "bake 1 GiB" "median" "peak RSS" "runs (s)"
row() { printf '%-44s %10s %11s  %s\n' "$1" "$(ms "$(median "$2")")" "$(mib "$(peak "$2")")" "$(runs_s "$2")"; }
row "imgbake build, compression none"       imgbake-none
row "imgbake build, compression zstd"       imgbake-zstd
row "openssl dgst -sha256"                  openssl
row "zstd -1 -T2"                           zstd
row "pigz -1"                               pigz
row "tar | gzip"                            tar-gzip
row "buildah bud + push (generated context)" buildah
echo
echo "buildah / imgbake none: $(ratio buildah imgbake-none)x   (target ≥ 20: $(verdict 20 "$(ratio buildah imgbake-none)"))"
echo "buildah / imgbake zstd: $(ratio buildah imgbake-zstd)x"
echo "imgbake none / openssl dgst: $(ratio imgbake-none openssl)x;  imgbake zstd / zstd -1 -T2: $(ratio imgbake-zstd zstd)x"
echo "imgbake zstd / pigz -1: $(ratio imgbake-zstd pigz)x;  imgbake zstd / tar | gzip: $(ratio imgbake-zstd tar-gzip)x"

# The rest of the race: builds, pushes and prefetches, each with its own table.
if [[ "${BENCH_ONLY_BAKE:-}" == 1 ]]; then
  exit 0
fi
echo
bash scripts/bench-build.sh "$work/build"
if [[ -f scripts/bench-prefetch.sh ]]; then
  echo
  bash scripts/bench-prefetch.sh "$runs"   # its argument is the run count
fi
