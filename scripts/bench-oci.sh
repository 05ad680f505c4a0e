#!/usr/bin/env bash
# Layer writer benchmark: a 1 GiB bf16-like file (normal(0, 0.02) values as
# bf16), timed as median of 3 runs against `openssl dgst -sha256` and
# `zstd -1 -T2`, plus peak RSS. Output blobs go to $BENCH_OUT_DISK (a real
# disk; commit fsyncs, so the disk's write speed counts) and to
# $BENCH_OUT_TMPFS (tmpfs: fsync is free, so this shows the CPU pipeline).
# Usage: scripts/bench-oci.sh [WORK_DIR]   (needs /usr/bin/time: apt install time)
set -euo pipefail

cd "$(dirname "$0")/.."
work="${1:-${TMPDIR:-/tmp}/imgbake-bench}"
out_disk="${BENCH_OUT_DISK:-$work/out}"
out_tmpfs="${BENCH_OUT_TMPFS:-/dev/shm/imgbake-bench-out}"
runs="${BENCH_RUNS:-3}"
mkdir -p "$work"
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is missing (apt install time)" >&2; exit 1; }

cargo build --release --quiet --example gen_bf16 --example bake_layer
# shellcheck source=scripts/target-dir.sh
source scripts/target-dir.sh
bin="$target_dir/release/examples"
file="$work/weights-1g.bf16"
[ -f "$file" ] || "$bin/gen_bf16" "$file" 1024

# measure NAME CMD...: runs CMD $runs times, prints "NAME median_s max_rss_kib".
measure() {
  local name=$1; shift
  local times=() rss=0
  for _ in $(seq "$runs"); do
    rm -rf "$out_disk" "$out_tmpfs"
    sync
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null
    read -r seconds kib < "$work/time.txt"
    times+=("$seconds")
    (( kib > rss )) && rss=$kib
  done
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
  printf '%-34s %8s s  (runs: %s)  peak RSS %6d KiB\n' "$name" "$median" "${times[*]}" "$rss"
  echo "$median" > "$work/median-$name"
}

echo "file: $file ($(stat -c %s "$file") bytes); $(nproc) cores; sha_ni: $(grep -c -m1 sha_ni /proc/cpuinfo || true)"
measure openssl-sha256 openssl dgst -sha256 "$file"
measure zstd-1-T2 sh -c "zstd -q -1 -T2 -c '$file' >/dev/null"
# The least any durable or tmpfs layer write can cost: hash and copy at once.
measure openssl+cat-tmpfs sh -c "mkdir -p '$out_tmpfs'; openssl dgst -sha256 '$file' >/dev/null & cat '$file' > '$out_tmpfs/copy'; wait"
measure dd-fsync dd if="$file" of="$out_disk.dd" bs=4M conv=fsync status=none
rm -f "$out_disk.dd"
measure layer-none-tmpfs "$bin/bake_layer" "$file" "$out_tmpfs" none
measure layer-zstd1-tmpfs "$bin/bake_layer" "$file" "$out_tmpfs" zstd:1
measure layer-none-disk "$bin/bake_layer" "$file" "$out_disk" none
measure layer-zstd1-disk "$bin/bake_layer" "$file" "$out_disk" zstd:1
rm -rf "$out_tmpfs"

ratio() { awk -v a="$(cat "$work/median-$1")" -v b="$(cat "$work/median-$2")" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "none  (tmpfs) / openssl dgst: $(ratio layer-none-tmpfs openssl-sha256)x   (target <= 1.3x)"
echo "none  (tmpfs) / (openssl dgst & cat > tmpfs): $(ratio layer-none-tmpfs openssl+cat-tmpfs)x"
echo "zstd1 (tmpfs) / zstd -1 -T2:  $(ratio layer-zstd1-tmpfs zstd-1-T2)x   (target <= 1.1x)"
echo "none  (disk)  / openssl dgst: $(ratio layer-none-disk openssl-sha256)x;  / dd conv=fsync: $(ratio layer-none-disk dd-fsync)x"
echo "zstd1 (disk)  / zstd -1 -T2:  $(ratio layer-zstd1-disk zstd-1-T2)x"

# Memory does not grow with file size: a 4 GiB (sparse) file.
big="$work/sparse-4g"
truncate -s 4G "$big"
rm -rf "$out_disk"
/usr/bin/time -f "%e %M" -o "$work/time.txt" "$bin/bake_layer" "$big" "$out_disk" zstd:1 >/dev/null
read -r seconds kib < "$work/time.txt"
echo "4 GiB file, zstd:1: ${seconds} s, peak RSS ${kib} KiB (limit 150 MiB = 153600 KiB)"
rm -rf "$out_disk" "$big"
