#!/usr/bin/env bash
# CI-rebuild benchmark: a fresh runner (empty cache directory, fresh builder
# storage) rebuilds and pushes an unchanged project whose weights come from
# a hub (tests/support/hub_server.py on 127.0.0.1: shards of bf16-like data
# from examples/gen_bf16.rs) to Debian's docker-registry on 127.0.0.1.
#
#   imgbake, registry cache   `imgbake build --push` (cache in the push repository)
#   imgbake, no cache         the same with `--cache-from none --cache-to none`
#   buildah, registry cache   `imgbake dockerfile` (it fetches the weights into
#                             the context) + `buildah bud --layers --cache-from
#                             --cache-to` (fresh vfs storage) + `buildah push`
#
# Each is seeded once (the registry holds the image and its cache), then timed
# over fresh runners: median wall time, peak RSS, and the weights bytes the
# hub sent (its /_stats, the API's JSON left out). Asserts that the cached
# imgbake rebuild fetches no weights byte and gives the same image digest.
#
# Usage: scripts/bench-ci.sh [--size MiB] [--runs N] [--quick] [--debug] [--no-buildah]
#   --quick: 256 MiB, one run, no buildah (what .ci/run runs);
#   --debug: use target/debug/imgbake (already built) instead of a release build.
set -euo pipefail

cd "$(dirname "$0")/.."
repo_root=$PWD
size_mib=4096
runs="${BENCH_RUNS:-3}"
profile=release
with_buildah=yes
while [[ $# -gt 0 ]]; do
  case "$1" in
    --size) size_mib=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --quick) size_mib=256; runs=1; with_buildah=no; shift ;;
    --debug) profile=debug; shift ;;
    --no-buildah) with_buildah=no; shift ;;
    *) echo "usage: scripts/bench-ci.sh [--size MiB] [--runs N] [--quick] [--debug] [--no-buildah]" >&2; exit 2 ;;
  esac
done
work="${BENCH_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/imgbake-bench-ci.XXXXXX")}"
# A free port unless one is given (two runs on one machine do not collide).
port="${BENCH_REGISTRY_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
registry="127.0.0.1:$port"
for tool in /usr/bin/time /usr/bin/docker-registry curl python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done
if [[ $with_buildah == yes ]] && ! command -v buildah >/dev/null; then
  echo "error: buildah is missing (apt-get install buildah), or pass --no-buildah" >&2
  exit 1
fi

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"

# shellcheck source=scripts/bench-lib.sh
source "$repo_root/scripts/bench-lib.sh"
# shellcheck source=scripts/target-dir.sh
source "$repo_root/scripts/target-dir.sh"
if [[ $profile == release ]]; then
  cargo build --release --quiet --bin imgbake --example gen_bf16
else
  cargo build --quiet --bin imgbake --example gen_bf16
fi
imgbake="$target_dir/$profile/imgbake"

# The hub repo: 4 shards (2 under 1 GiB) of bf16-like data and a config.
shards=4
[[ $size_mib -lt 1024 ]] && shards=2
commit=0123456789abcdef0123456789abcdef01234567
repo="$work/hub/org/model"
mkdir -p "$repo/$commit" "$repo/refs"
echo "$commit" > "$repo/refs/main"
for i in $(seq "$shards"); do
  # A seed per shard: identical shards would be downloaded once (the store is content-addressed).
  "$target_dir/$profile/examples/gen_bf16" "$repo/$commit/model-0000$i-of-0000$shards.safetensors" "$((size_mib / shards))" "$i"
done
echo '{"hidden_size": 4096, "num_hidden_layers": 32}' > "$repo/$commit/config.json"
sync

python3 tests/support/hub_server.py --root "$work/hub" --port 0 > "$work/hub.ports" 2>"$work/hub.log" &
pids+=($!)
for _ in $(seq 100); do [[ $(wc -l < "$work/hub.ports") -ge 2 ]] && break; sleep 0.05; done
hub="http://127.0.0.1:$(head -1 "$work/hub.ports")"
export HF_ENDPOINT=$hub

cat > "$work/registry.yml" <<EOF
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $work/registry }, delete: { enabled: true } }
http: { addr: $registry }
EOF
/usr/bin/docker-registry serve "$work/registry.yml" >>"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs -o /dev/null "http://$registry/v2/" && break; sleep 0.05; done

project="$work/project"
mkdir -p "$project"
echo "print('serving')" > "$project/app.py"
cat > "$project/cerebrium.toml" <<EOF
[cerebrium.deployment]
name = "bench-ci"

[cerebrium.runtime.custom]
port = 8080
entrypoint = ["python3", "app.py"]

[[imgbake.weights]]
source = "hf://org/model@main"
mount = "model"
mode = "bake"
EOF

# Weights bytes the hub and its CDN sent so far (the API's JSON left out).
hub_bytes() {
  curl -fs "$hub/_stats" | python3 -c 'import json, sys
sent = json.load(sys.stdin).get("bytes_sent", {})
print(sum(n for path, n in sent.items() if "/api/" not in path))'
}
digest_of() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifest_digest"])' "$1"; }

push="$registry/bench/app:v1"
imgbake_build=("$imgbake" build "$project" --base scratch --push "$push" --insecure-registry "$registry" --json)
runner="$work/runner"
fresh_runner() { rm -rf "$runner"; mkdir -p "$runner"; sync; }

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(df -h --output=source,fstype "$work" | tail -1)"
echo "weights: $size_mib MiB in $shards bf16-like shards on the loopback hub; $runs fresh-runner runs each; imgbake $profile build"

# Seed: the first build locks, pushes and records the cache.
fresh_runner
(cd "$runner" && "${imgbake_build[@]}" --cache-dir "$runner/cache" > "$work/seed.json" 2>"$work/seed.err") || {
  cat "$work/seed.err" >&2; exit 1; }
seed_digest=$(digest_of "$work/seed.json")

declare -A source_bytes
timed_fresh() {  # NAME CMD...: one fresh-runner run; adds the hub bytes it caused
  local name=$1; shift
  fresh_runner
  local before; before=$(hub_bytes)
  (cd "$runner" && run_timed "$name" "$@")
  source_bytes[$name]=$(( ${source_bytes[$name]:-0} + $(hub_bytes) - before ))
}

for _ in $(seq "$runs"); do
  timed_fresh imgbake-cache "${imgbake_build[@]}" --cache-dir "$runner/cache"
  digest=$(digest_of "$work/last.out")
  [[ $digest == "$seed_digest" ]] || { echo "error: the cached rebuild gave $digest, not $seed_digest" >&2; exit 1; }
  timed_fresh imgbake-nocache "${imgbake_build[@]}" --cache-dir "$runner/cache" --cache-from none --cache-to none
done
[[ ${source_bytes[imgbake-cache]} == 0 ]] || {
  echo "error: the cached rebuild fetched ${source_bytes[imgbake-cache]} weights bytes from the hub" >&2; exit 1; }

if [[ $with_buildah == yes ]]; then
  cache_repo="$registry/bench/buildah-cache"
  buildah_run() {  # one fresh runner: fetch into a context, bud with the registry cache, push
    local storage="$runner/buildah"
    local flags=(--root "$storage/root" --runroot "$storage/run" --storage-driver vfs)
    "$imgbake" dockerfile "$project" -o "$runner/context" --base scratch --cache-dir "$runner/cache" >/dev/null &&
      buildah "${flags[@]}" bud --quiet --isolation chroot --layers --tls-verify=false \
        --cache-from "$cache_repo" --cache-to "$cache_repo" -t bench-ci:latest "$runner/context" >/dev/null &&
      buildah "${flags[@]}" push --quiet --tls-verify=false bench-ci:latest "docker://$registry/bench/buildah:v1" >/dev/null
  }
  export -f buildah_run
  export imgbake project runner registry cache_repo
  fresh_runner
  bash -c buildah_run > "$work/buildah-seed.out" 2>&1 || { cat "$work/buildah-seed.out" >&2; exit 1; }
  for _ in $(seq "$runs"); do
    timed_fresh buildah-cache bash -c buildah_run
  done
fi

echo
printf '%-46s %10s %11s %14s  %s\n' "fresh-runner rebuild + push, unchanged" "median" "peak RSS" "hub bytes/run" "runs (s)"
row() {
  printf '%-46s %10s %11s %14s  %s\n' "$1" "$(ms "$(median "$2")")" "$(mib "$(peak "$2")")" \
    "$(( ${source_bytes[$2]} / runs ))" "$(runs_s "$2")"
}
row "imgbake build, registry cache" imgbake-cache
row "imgbake build, --cache-from none" imgbake-nocache
[[ $with_buildah == yes ]] && row "imgbake dockerfile + buildah bud --layers, registry cache" buildah-cache
echo
echo "imgbake no cache / registry cache: $(ratio imgbake-nocache imgbake-cache)x"
cache_s=$(awk -v v="$(median imgbake-cache)" 'BEGIN { printf "%.2f", v / 1000 }')
echo "imgbake registry cache: $cache_s s (target ≤ 5 s: $(verdict "$cache_s" 5)), 0 weights bytes from the hub"
if [[ $with_buildah == yes ]]; then
  echo "buildah registry cache / imgbake registry cache: $(ratio buildah-cache imgbake-cache)x (target ≥ 20: $(verdict 20 "$(ratio buildah-cache imgbake-cache)"))"
fi
