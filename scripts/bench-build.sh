#!/usr/bin/env bash
# Build-and-push benchmark: `imgbake build` of a copy of
# fixtures/cerebrium-local-weights with a 1 GiB bf16-like weights file
# (examples/gen_bf16.rs), base `scratch`, compression none, to an OCI layout on
# disk, and `--push` to Debian's docker-registry on 127.0.0.1, against
# `skopeo copy` of the same layout. Prints medians of $BENCH_RUNS runs (wall
# time from the shell's clock in ms, peak RSS from /usr/bin/time).
#
#   1. cold build (cache and output removed before each run)      + peak RSS
#   2. no-op rebuild (same cache and output); asserts files_read == 0
#   3. push on an otherwise no-op build to a fresh registry, vs skopeo copy
#      (registry restarted on empty storage before each run; skopeo's blob
#      info cache hidden behind a tmpfs so it cannot mount or reuse blobs)
#   4. re-push of the unchanged image; `imgbake validate` as process start +
#      config load
#   5. peak RSS baking a 4 GiB file (4 different gen_bf16 GiB, real data)
#
# Exits non-zero only on a script error; a missed target is reported.
# Usage: scripts/bench-build.sh [WORK_DIR]   (needs /usr/bin/time, skopeo,
#        docker-registry, unshare; run as root for the skopeo cache tmpfs)
set -euo pipefail

cd "$(dirname "$0")/.."
repo_root=$PWD
work="${1:-${TMPDIR:-/tmp}/imgbake-bench-build}"
runs="${BENCH_RUNS:-3}"
port="${BENCH_REGISTRY_PORT:-5055}"
registry="127.0.0.1:$port"
for tool in /usr/bin/time /usr/bin/docker-registry skopeo unshare curl; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done

registry_pid=""
stop_registry() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=""
  fi
}
cleanup() { stop_registry; rm -rf "$work"; }
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"

# shellcheck source=scripts/bench-lib.sh
source "$repo_root/scripts/bench-lib.sh"
cargo build --release --quiet --bin imgbake --example gen_bf16
# shellcheck source=scripts/target-dir.sh
source "$repo_root/scripts/target-dir.sh"
imgbake="$target_dir/release/imgbake"

# The project: the fixture with compression none and 1 GiB of weights.
project="$work/project"
cp -r fixtures/cerebrium-local-weights "$project"
sed -i 's/^compression = .*/compression = "none"/' "$project/cerebrium.toml"
grep -q '^compression = "none"' "$project/cerebrium.toml"
"$target_dir/release/examples/gen_bf16" "$project/weights/tiny/model-1g.bf16" 1024  # size in MiB
sync

cache="$work/cache"
out="$work/out"
build=("$imgbake" build "$project" --base scratch --output "oci:$out:bench" --cache-dir "$cache")
push_flags=(--push "$registry/bench/imgbake:v1" --insecure-registry "$registry")

# start_registry: a fresh docker-registry on empty storage.
start_registry() {
  stop_registry
  rm -rf "$work/registry"
  cat > "$work/registry.yml" <<EOF
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $work/registry }, delete: { enabled: true } }
http: { addr: $registry }
EOF
  /usr/bin/docker-registry serve "$work/registry.yml" >>"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do
    curl -fs -o /dev/null "http://$registry/v2/" && return 0
    sleep 0.05
  done
  echo "error: docker-registry did not start on $registry (see $work/registry.log)" >&2
  cat "$work/registry.log" >&2
  exit 1
}

# skopeo keeps a blob info cache (/var/lib/containers/cache) that remembers
# where a blob was pushed and then mounts or reuses it; hide it per run.
skopeo_cold=(unshare -m sh -c 'mkdir -p /var/lib/containers/cache &&
  mount -t tmpfs none /var/lib/containers/cache && exec skopeo "$@"' skopeo)

files_read() { sed -n 's/.*"files_read": \([0-9]*\).*/\1/p' "$work/last.out"; }

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(df -h --output=source,fstype "$work" | tail -1)"
echo "weights: $(stat -c %s "$project/weights/tiny/model-1g.bf16") bytes bf16-like; $runs runs each"

# 1. Cold build.
for _ in $(seq "$runs"); do
  rm -rf "$cache" "$out"; sync
  run_timed cold-none "${build[@]}" --json
done
# 1b. Same, zstd (second row).
sed -i 's/^compression = .*/compression = "zstd"/' "$project/cerebrium.toml"
for _ in $(seq "$runs"); do
  rm -rf "$cache" "$out"; sync
  run_timed cold-zstd "${build[@]}" --json
done
sed -i 's/^compression = .*/compression = "none"/' "$project/cerebrium.toml"
rm -rf "$cache" "$out"
"${build[@]}" >/dev/null

# 2. No-op rebuild.
noop_files_read_ok=yes
for _ in $(seq "$runs"); do
  run_timed noop "${build[@]}" --json
  [ "$(files_read)" = 0 ] || { noop_files_read_ok="no (files_read=$(files_read))"; }
done
run_timed validate-warmup "$imgbake" validate "$project"
for _ in $(seq "$runs"); do run_timed validate "$imgbake" validate "$project"; done

"${build[@]}" --json > "$work/build.json"
layer_digest=$(sed -n 's/.*"digest": "\(sha256:[0-9a-f]*\)".*/\1/p' "$work/build.json" | tail -1)
[ "$(stat -c %s "$out/blobs/sha256/${layer_digest#sha256:}")" -gt 1000000000 ] || { echo "error: no 1 GiB layer" >&2; exit 1; }

# 3. Cold push: imgbake (no-op build + push) vs skopeo, each to a fresh registry.
for _ in $(seq "$runs"); do
  start_registry
  run_timed push "${build[@]}" "${push_flags[@]}" --json
  # 4. Re-push of the unchanged image: same command again, same registry.
  run_timed repush "${build[@]}" "${push_flags[@]}" --json
  grep -q '"pushed": "' "$work/last.out" || { echo "error: re-push printed no pushed ref" >&2; exit 1; }
  start_registry
  run_timed skopeo "${skopeo_cold[@]}" copy -q --preserve-digests --dest-tls-verify=false \
    "oci:$out:bench" "docker://$registry/other/skopeo:v1"
  # The registry's own floor: one monolithic PUT of the same blob with curl.
  start_registry
  run_timed curl-put sh -c 'location=$(curl -fsS -D - -o /dev/null -X POST "http://$1/v2/floor/curl/blobs/uploads/" |
      sed -n "s/^[Ll]ocation: *//p" | tr -d "\r") &&
    curl -fsS -o /dev/null -X PUT -H "Content-Type: application/octet-stream" -T "$2" "$location&digest=$3"' \
    sh "$registry" "$out/blobs/sha256/${layer_digest#sha256:}" "$layer_digest"
  start_registry
  run_timed skopeo-gzip "${skopeo_cold[@]}" copy -q --dest-tls-verify=false \
    "oci:$out:bench" "docker://$registry/other/skopeo:v1"
done
# More re-push samples (cheap): push once to a fresh registry, then again.
start_registry
"${build[@]}" "${push_flags[@]}" >/dev/null 2>&1
for _ in $(seq $(( runs * 2 ))); do run_timed repush "${build[@]}" "${push_flags[@]}" --json; done
"${skopeo_cold[@]}" copy -q --preserve-digests --dest-tls-verify=false \
  "oci:$out:bench" "docker://$registry/other/skopeo:v1"
for _ in $(seq "$runs"); do
  run_timed skopeo-repush "${skopeo_cold[@]}" copy -q --preserve-digests --dest-tls-verify=false \
    "oci:$out:bench" "docker://$registry/other/skopeo:v1"
done
stop_registry
rm -rf "$work/registry"

# 5. A 4 GiB file: four different GiB of gen_bf16 data (not sparse).
rm -f "$project/weights/tiny/model-1g.bf16"
for seed in 1 2 3 4; do
  "$target_dir/release/examples/gen_bf16" "$work/part-$seed" 1024 "$seed"
done
cat "$work"/part-{1,2,3,4} > "$project/weights/tiny/model-4g.bf16"
rm -f "$work"/part-*
rm -rf "$cache" "$out"; sync
run_timed big-none "${build[@]}" --json
big_size=$(stat -c %s "$project/weights/tiny/model-4g.bf16")


echo
printf '%-42s %10s %11s  %-20s %s\n' "what" "median" "peak RSS" "target" "runs (s)"
row() { printf '%-42s %10s %11s  %-20s %s\n' "$1" "$(ms "$(median "$2")")" "$(mib "$(peak "$2")")" "$3" "$(runs_s "$2")"; }
row "1. cold build, none"                cold-none  "—"
row "1b. cold build, zstd"               cold-zstd  "—"
row "2. no-op rebuild"                   noop       "≤ 0.5 s: $(verdict "$(median noop)" 500)"
row "   imgbake validate (start+config)" validate   "—"
row "3. build --push, fresh registry"    push       "≤ skopeo: $(verdict "$(ratio push skopeo)" 1)"
row "   skopeo copy --preserve-digests"  skopeo     "—"
row "   skopeo copy (default: gzips)"    skopeo-gzip "—"
row "   curl PUT of the 1 GiB blob alone"  curl-put   "—"
row "4. re-push (build --push again)"    repush     "≤ 0.3 s: $(verdict "$(median repush)" 300)"
row "   skopeo copy again"               skopeo-repush "—"
row "5. cold build, 4 GiB file, none"    big-none   "≤ 150 MiB: $(verdict "$(peak big-none)" 153600)"
echo
echo "no-op rebuild files_read == 0 in every run: $noop_files_read_ok"
echo "push / skopeo --preserve-digests: $(ratio push skopeo)x;  push / skopeo (gzip): $(ratio push skopeo-gzip)x"
echo "push / curl PUT of the layer blob: $(ratio push curl-put)x;  skopeo --preserve-digests / curl PUT: $(ratio skopeo curl-put)x"
echo "re-push / skopeo again: $(ratio repush skopeo-repush)x;  re-push - validate: $(( $(median repush) - $(median validate) )) ms"
echo "4 GiB file: $big_size bytes"
