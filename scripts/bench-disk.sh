#!/usr/bin/env bash
# Direct I/O against buffered writes, on this machine's disk: what writing a
# 1 GiB layer durably costs when the blocks are freshly allocated (the usual
# case on a thin-provisioned VM disk mounted with `discard`: files deleted a
# few seconds ago have had their blocks handed back to the host).
#
#   dd conv=fsync          buffered writes, then fsync (what most tools do)
#   dd oflag=direct        the same GiB with O_DIRECT, 1 MiB writes
#   imgbake buffered       `imgbake build` of a 1 GiB file, compression none,
#                          with IMGBAKE_NO_DIRECT_IO=1
#   imgbake direct         the same build as shipped (O_DIRECT past 8 MiB)
#   openssl dgst -sha256   the hash every layer needs, for scale
#
# Before every timed step the previous output is deleted, `sync`ed, and the
# disk gets $BENCH_SETTLE seconds (default 12) so that the deleted blocks are
# discarded; each step then writes into fresh blocks. Medians of $BENCH_RUNS
# runs (default 3). Usage: scripts/bench-disk.sh [WORK_DIR]
set -euo pipefail

cd "$(dirname "$0")/.."
repo_root=$PWD
work="${1:-${TMPDIR:-/tmp}/imgbake-bench-disk}"
runs="${BENCH_RUNS:-3}"
settle="${BENCH_SETTLE:-12}"
# shellcheck source=scripts/bench-lib.sh
source "$repo_root/scripts/bench-lib.sh"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"

bench_project
sed -i 's/^compression = .*/compression = "none"/' "$project/cerebrium.toml"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(df -h --output=source,fstype "$work" | tail -1), mount options: $(findmnt -no OPTIONS -T "$work")"
echo "runs: $runs, settle: ${settle}s before each step"

fresh() { rm -rf "$work/out" "$work/cache" "$work/dd"; sync; sleep "$settle"; }
build=("$imgbake" build "$project" --base scratch --output "oci:$work/out:bench" --cache-dir "$work/cache" --json)
for _ in $(seq "$runs"); do
  fresh; run_timed dd-fsync dd if=/dev/zero of="$work/dd" bs=1M count=1024 conv=fsync status=none
  fresh; run_timed dd-direct dd if=/dev/zero of="$work/dd" bs=1M count=1024 oflag=direct status=none
  fresh; run_timed imgbake-buffered env IMGBAKE_NO_DIRECT_IO=1 "${build[@]}"
  fresh; run_timed imgbake-direct "${build[@]}"
  run_timed openssl openssl dgst -sha256 "$weights"
done

echo
printf '%-40s %10s %11s  %s\n' "write 1 GiB into fresh blocks" "median" "peak RSS" "runs (s)"
row() { printf '%-40s %10s %11s  %s\n' "$1" "$(ms "$(median "$2")")" "$(mib "$(peak "$2")")" "$(runs_s "$2")"; }
row "dd bs=1M conv=fsync"                 dd-fsync
row "dd bs=1M oflag=direct"               dd-direct
row "imgbake build, IMGBAKE_NO_DIRECT_IO=1" imgbake-buffered
row "imgbake build (direct I/O)"          imgbake-direct
row "openssl dgst -sha256 (page cache)"   openssl
echo
echo "imgbake buffered / direct: $(ratio imgbake-buffered imgbake-direct)x;  dd fsync / direct: $(ratio dd-fsync dd-direct)x"
echo "imgbake direct / dd direct: $(ratio imgbake-direct dd-direct)x;  imgbake direct / openssl dgst: $(ratio imgbake-direct openssl)x"
