#!/usr/bin/env bash
# The ML-stack race (issue 18): fixtures/cerebrium-torch-transformers (FastAPI
# + torch + transformers + accelerate + safetensors, the nvidia-* CUDA wheels
# from PyPI, Python 3.11 on the debootstrap bookworm base, a tiny GPT-2 baked
# from generated safetensors) built and pushed to Debian's docker-registry on
# 127.0.0.1 by each builder, cold (empty caches, fresh builder storage, fresh
# registry), then changed and rebuilt:
#
#   imgbake       `imgbake build --push`
#   buildah-uv    `buildah bud` of a conventional Dockerfile:
#                 `RUN uv pip install --system -r requirements.txt`, UV_COMPILE_BYTECODE=1
#   buildah-pip   the same with `RUN pip install -r requirements.txt`
#   buildah-ctx   `imgbake dockerfile` + `buildah bud` of its context
#   (each buildah variant then `buildah push`es)
#
# For each: cold build + push (time, peak RSS, bytes uploaded); rebuild + push
# after an app-code change and after adding one small package (time, bytes
# uploaded); a "node" pull (`skopeo copy`) of the changed image into an OCI
# layout holding the first (bytes transferred). imgbake also: a second app
# with the same lock (bytes uploaded), two builds give one digest, the image
# imports torch and transformers with no module compiled (PYTHONVERBOSE in a
# chroot of the unpacked image), and `imgbake run` cold starts under runc with
# and without bytecode (PYTHONPYCACHEPREFIX pointing at an empty directory),
# the plan's imports term beside the measured one when the plan has it.
#
# Bytes are counted on the wire by scripts/bench-ml/count_proxy.py in front
# of the registry, the same way for every tool. Every builder resolves and
# downloads the same wheels from scripts/bench-ml/wheel_index.py on
# 127.0.0.1 (a PEP 503 index over <target>/ml-wheels/<set>, filled once from
# PyPI with `pip download`), so "cold" means empty tool caches, not PyPI's
# bandwidth of the day.
#
# Usage: scripts/bench-ml.sh [--runs N] [--variants LIST] [--quick] [--debug]
#                            [--work DIR [--keep]] [--storage-driver overlay|vfs]
#                            [--registry-tmpfs SIZE] [--starts N]
#   --runs N         cold runs per variant (default $BENCH_RUNS or 3); the
#                    changes, pulls and starts follow each run
#   --variants LIST  comma-separated, default imgbake,buildah-uv,buildah-pip,buildah-ctx;
#                    a buildah variant as NAME:cold runs its cold build + push and
#                    its start only (when time is short: the rebuilds take the longest)
#   --quick          a small app (fastapi, uvicorn, requests: small wheels,
#                    bytecode), one run, imgbake only: what .ci/run runs
#   --debug          use target/debug/imgbake (built here) instead of a release build
#   --work DIR       where everything goes (default: a new directory under $TMPDIR or /tmp);
#                    removed at the end
#   --storage-driver buildah's (default overlay: vfs copies the whole tree per
#                    layer, 7 GB each here)
#   --registry-tmpfs SIZE  the registry's storage on a tmpfs of SIZE (e.g. 8g), when
#                    the disk cannot hold it beside the builders' trees
#   --starts N       cold starts of each image per run (default 3; import times
#                    vary more than build times)
#   --keep           keep the measurements in --work (the big trees are removed);
#                    another run with the same --work adds its variants, and its
#                    report covers all of them
# IMGBAKE=PATH uses that binary instead of building one.
# Exits 1 when a check fails (a build, a start, a digest, a compiled module);
# a missed target is reported, not an error. Needs root (runc, chroot).
set -euo pipefail

cd "$(dirname "$0")/.."
repo_root=$PWD
runs="${BENCH_RUNS:-3}"
variants="imgbake,buildah-uv,buildah-pip,buildah-ctx"
quick=no
profile=release
work="${BENCH_WORK:-}"
storage_driver=overlay
keep=no
registry_tmpfs=""
starts=3
usage() { sed -n '/^# Usage/,/^# Exits/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
    --quick) quick=yes; runs=1; starts=1; variants=imgbake; shift ;;
    --debug) profile=debug; shift ;;
    --work) work=$2; shift 2 ;;
    --storage-driver) storage_driver=$2; shift 2 ;;
    --keep) keep=yes; shift ;;
    --registry-tmpfs) registry_tmpfs=$2; shift 2 ;;
    --starts) starts=$2; shift 2 ;;
    *) usage ;;
  esac
done
[[ -n $work ]] || work=$(mktemp -d "${TMPDIR:-/tmp}/imgbake-bench-ml.XXXXXX")
has_variant() { [[ ",$variants," == *",$1,"* || ",$variants," == *",$1:cold,"* ]]; }
cold_only() { [[ ",$variants," == *",$1:cold,"* ]]; }

for tool in /usr/bin/time /usr/bin/docker-registry curl python3 skopeo runc tar zstd chroot unshare; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done
if [[ $variants == *buildah* ]] && ! command -v buildah >/dev/null; then
  echo "error: buildah is missing (apt-get install buildah), or pass --variants imgbake" >&2; exit 1
fi
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
command -v uv >/dev/null || { echo "error: uv is missing (pip install uv)" >&2; exit 1; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  stop_registry
  umount "$work/registry" 2>/dev/null || true
  # buildah's overlay storage holds mounts; unmount before removing.
  if [[ -d $work/buildah ]]; then
    buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver "$storage_driver" \
      rm --all >/dev/null 2>&1 || true
    umount -R "$work/buildah/root/overlay" 2>/dev/null || true
  fi
  if [[ $keep == yes ]]; then
    rm -rf "$work"/{registry,cache,uv-cache,out,out-*,app,second,ctx,node,unpacked,run-cache,buildah}
  else
    rm -rf "$work"
  fi
}
registry_pid=""
stop_registry() {
  if [[ -n $registry_pid ]]; then
    kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; registry_pid=""
  fi
}
trap cleanup EXIT
mkdir -p "$work"

# shellcheck source=scripts/bench-lib.sh
source "$repo_root/scripts/bench-lib.sh"
# shellcheck source=scripts/target-dir.sh
source "$repo_root/scripts/target-dir.sh"
if [[ -n ${IMGBAKE:-} ]]; then
  :  # a given binary (a long race keeps its own copy while the tree is rebuilt)
elif [[ $profile == release ]]; then
  cargo build --release --quiet --bin imgbake
else
  cargo build --quiet --bin imgbake
fi
imgbake="${IMGBAKE:-$target_dir/$profile/imgbake}"
base_layout="$target_dir/imgbake-fixtures/bookworm-python-oci"
[[ -f $base_layout/index.json ]] || bash scripts/make-base-rootfs.sh >&2

# ------------------------------------------------------------------ the apps
fixture="$repo_root/fixtures/cerebrium-torch-transformers"
if [[ $quick == yes ]]; then
  set_name=quick
  requirements=("fastapi==0.165.0" "uvicorn==0.55.0" "requests==2.34.2")
else
  set_name=torch
  requirements=("torch==2.15.0" "transformers==5.25.0" "accelerate==1.16.0" "safetensors==0.8.0"
    "fastapi==0.165.0" "uvicorn==0.55.0")
fi
small_package="cachetools==8.0.2"

# make_app DIR NAME: the fixture (quick: its config with the small set and
# an app that imports it), with generated weights.
make_app() {
  local dir=$1 name=$2
  rm -rf "$dir"; mkdir -p "$dir"
  cp "$fixture/cerebrium.toml" "$fixture/main.py" "$dir/"
  python3 "$fixture/make_weights.py" "$dir/weights/tiny-gpt2"
  sed -i "s/^name = .*/name = \"$name\"/" "$dir/cerebrium.toml"
  if [[ $quick == yes ]]; then
    python3 - "$dir/cerebrium.toml" "${requirements[@]}" <<'EOF'
import re, sys
path, pins = sys.argv[1], sys.argv[2:]
text = open(path).read()
deps = "".join(f'{p.split("==")[0]} = "{p.split("==")[1]}"\n' for p in pins)
text = re.sub(r"(\[cerebrium\.dependencies\.pip\]\n)(?:[^\[\n][^\n]*\n)*", lambda m: m.group(1) + deps + "\n", text)
open(path, "w").write(text)
EOF
    cat > "$dir/main.py" <<'EOF'
"""The quick race's app: FastAPI + requests, small wheels with bytecode."""
import json
import os

import requests  # noqa: F401
from fastapi import FastAPI

MODEL_DIR = os.environ.get("MODEL_DIR", "/app/model_cache/tiny-gpt2")
config = json.load(open(os.path.join(MODEL_DIR, "config.json")))
app = FastAPI()


@app.get("/health")
def health():
    return {"status": "ok", "layers": config["n_layer"]}
EOF
  fi
  printf '%s\n' "${requirements[@]}" > "$dir/requirements.txt"
}

# add_small_package DIR: one more dependency, in the config and requirements.txt.
add_small_package() {
  local name=${small_package%%==*} version=${small_package##*==}
  sed -i "/^\[cerebrium\.dependencies\.pip\]/a $name = \"$version\"" "$1/cerebrium.toml"
  echo "$small_package" >> "$1/requirements.txt"
}
change_app_code() { printf '\n\n@app.get("/version")\ndef version():\n    return {"version": 2}\n' >> "$1/main.py"; }

# ------------------------------------------------------- wheels and the index
wheels="$target_dir/ml-wheels/$set_name"
mkdir -p "$wheels"
if [[ ! -f $wheels/.complete ]]; then
  echo "filling $wheels from PyPI (once)" >&2
  printf '%s\n' "${requirements[@]}" "$small_package" > "$work/wanted.in"
  uv pip compile -q --python-version 3.11 --python-platform x86_64-manylinux_2_36 --no-header --no-annotate \
    "$work/wanted.in" -o "$wheels/pins.txt"
  platforms=()
  for minor in $(seq 36 -1 5); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 \
    --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64 \
    -r "$wheels/pins.txt" pip -d "$wheels"
  touch "$wheels/.complete"
fi
python3 scripts/bench-ml/wheel_index.py "$wheels" > "$work/index.port" 2>"$work/index.log" &
pids+=($!)
for _ in $(seq 600); do [[ -s $work/index.port ]] && break; sleep 0.1; done
[[ -s $work/index.port ]] || { cat "$work/index.log" >&2; exit 1; }
index_url="http://127.0.0.1:$(cat "$work/index.port")/simple"
export UV_INDEX_URL=$index_url PIP_INDEX_URL=$index_url
# uv's own cache (imgbake installs each wheel with uv) is emptied with
# imgbake's before every cold build: a warm one holds the wheels unpacked.
export UV_CACHE_DIR="$work/uv-cache"
pip_wheel=$(cd "$wheels" && ls pip-*.whl | head -1)

# --------------------------------------------- the registry behind the proxy
registry_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 scripts/bench-ml/count_proxy.py "$registry_port" > "$work/proxy.ports" 2>"$work/proxy.log" &
pids+=($!)
for _ in $(seq 100); do [[ $(wc -l < "$work/proxy.ports") -ge 2 ]] && break; sleep 0.05; done
registry="127.0.0.1:$(head -1 "$work/proxy.ports")"
stats_url="http://127.0.0.1:$(tail -1 "$work/proxy.ports")/"
base_ref="$registry/base/bookworm-python:1"

# wire up|down: bytes the proxy carried that way so far.
wire() { curl -fsS "$stats_url" | python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }

# fresh_registry: empty storage, the base pushed again (outside the counts' use).
fresh_registry() {
  stop_registry
  umount "$work/registry" 2>/dev/null || true
  rm -rf "$work/registry"
  mkdir -p "$work/registry"
  [[ -n $registry_tmpfs ]] && mount -t tmpfs -o "size=$registry_tmpfs" tmpfs "$work/registry"
  cat > "$work/registry.yml" <<EOF
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $work/registry }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$registry_port }
EOF
  /usr/bin/docker-registry serve "$work/registry.yml" >>"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "http://$registry/v2/" && break; sleep 0.05; done
  skopeo copy -q --dest-tls-verify=false "oci:$base_layout:bookworm-python" "docker://$base_ref"
}

# timed_push NAME CMD...: run_timed, and the bytes it sent to the registry.
timed_push() {
  local name=$1; shift
  local before; before=$(wire up)
  run_timed "$name" "$@"
  echo $(( $(wire up) - before )) >> "$work/$name.sent"
}
# node_pull NAME OLD NEW: skopeo copy OLD into a fresh layout, then NEW into
# the same layout; the bytes NEW brought.
node_pull() {
  local name=$1 old=$2 new=$3 node="$work/node"
  rm -rf "$node"
  skopeo copy -q --src-tls-verify=false "docker://$old" "oci:$node:old"
  local before; before=$(wire down)
  skopeo copy -q --src-tls-verify=false "docker://$new" "oci:$node:new"
  echo $(( $(wire down) - before )) >> "$work/$name.received"
  rm -rf "$node"
}
# median_of FILE: the median of its numbers (one a line).
median_of() { sort -g "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
human() { awk -v b="$1" 'BEGIN { if (b >= 1e9) printf "%.2f GB", b/1e9; else if (b >= 1e6) printf "%.1f MB", b/1e6; else if (b >= 1e3) printf "%.1f kB", b/1e3; else printf "%d B", b }'; }
json_field() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"v": v}))' "$@"; }

# ------------------------------------------------------------ cold starts
# start NAME PROJECT IMAGE [ENV...]: `imgbake run`, the measured phases kept.
start() {
  local name=$1 project=$2 image=$3; shift 3
  local env_args=()
  for e in "$@"; do env_args+=(-e "$e"); done
  "$imgbake" run "$project" --image "$image" --insecure-registry "$registry" --cache-dir "$work/run-cache" \
    --workdir "$work" --timeout 600 --json "${env_args[@]}" > "$work/run-$name.json" 2>"$work/run-$name.err" || {
    echo "error: imgbake run of $image ($name) failed:" >&2; cat "$work/run-$name.err" "$work/run-$name.json" >&2; exit 1; }
  local phase
  phase() { json_field "$work/run-$name.json" "[p for p in v['phases'] if p['phase'] == '$1'][0]['$2']"; }
  phase imports seconds >> "$work/$name.imports"
  phase ready seconds >> "$work/$name.ready"
  phase imports plan_seconds > "$work/$name.plan-imports"
  rm -rf "$work/run-cache"
}

# no_compile_check IMAGE_LAYOUT: unpack the image's layers and import the
# app's modules in a chroot with PYTHONVERBOSE; a module compiled from source
# prints "code object from <file>.py" (importlib's SourceLoader.get_code).
no_compile_check() {
  local layout=$1 rootfs="$work/unpacked"
  rm -rf "$rootfs"; mkdir -p "$rootfs"
  local manifest; manifest=$(json_field "$layout/index.json" "v['manifests'][0]['digest'].split(':')[1]")
  local layer
  for layer in $(json_field "$layout/blobs/sha256/$manifest" "' '.join(l['digest'].split(':')[1] for l in v['layers'])"); do
    tar --zstd -xf "$layout/blobs/sha256/$layer" -C "$rootfs" 2>/dev/null ||
      tar -xzf "$layout/blobs/sha256/$layer" -C "$rootfs" 2>/dev/null ||
      tar -xf "$layout/blobs/sha256/$layer" -C "$rootfs"
  done
  local modules="fastapi, uvicorn"
  [[ $quick == yes ]] && modules="$modules, requests" || modules="$modules, torch, transformers, accelerate, safetensors"
  unshare -m --propagation private sh -c 'mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" &&
    exec chroot "$1" env PYTHONVERBOSE=1 python3 -B -c "import $2; print(\"imported\")"' sh "$rootfs" "$modules" \
    > "$work/verbose.out" 2> "$work/verbose.err" || { tail -20 "$work/verbose.err" >&2; exit 1; }
  grep -q imported "$work/verbose.out"
  # The packages' modules (the layers imgbake installs) apart from the base's
  # standard library: the debootstrap base ships it without .pyc
  # (scripts/make-base-rootfs.sh removes them, as the python:* images do), and
  # imgbake compiles it into a layer of its own (docs/deps.md).
  echo "$(grep -c '^# .*-packages/.* matches ' "$work/verbose.err" || true)" \
    "$(grep -c '^# code object from .*-packages/.*\.py$' "$work/verbose.err" || true)" \
    "$(grep '^# code object from .*\.py$' "$work/verbose.err" | grep -vc -- '-packages/' || true)" > "$work/no-compile"
  [[ -n ${BENCH_KEEP_UNPACKED:-} ]] || rm -rf "$rootfs"
}

# --------------------------------------------------------------- imgbake
cache="$work/cache"
imgbake_variant() {
  local app="$work/app" second="$work/second" out="$work/out"
  # Defaults otherwise: the registry cache is each app's push repository, so
  # the second app finds its layers through the cache directory's push record.
  local build=("$imgbake" build --base "$base_ref" --insecure-registry "$registry" --cache-dir "$cache" --json)
  make_app "$app" torch-transformers
  for run in $(seq "$runs"); do
    fresh_registry
    rm -rf "$cache" "$UV_CACHE_DIR" "$out" "$app/imgbake.lock"; sync
    timed_push imgbake-cold "${build[@]}" "$app" --output "oci:$out:v1" --push "$registry/ml/imgbake:v1"
    json_field "$work/last.out" "v['manifest_digest']" >> "$work/digests"
    cp "$work/last.out" "$work/imgbake-cold.$run.json"
    cp "$app/imgbake.lock" "$work/v1.lock"
    echo "  imgbake run $run: cold $(ms "$(tail -1 "$work/imgbake-cold.runs" | cut -d' ' -f1)"), digest $(tail -1 "$work/digests")" >&2

    change_app_code "$app"
    timed_push imgbake-app "${build[@]}" "$app" --output "oci:$work/out-v2:v2" --push "$registry/ml/imgbake:v2"
    add_small_package "$app"
    timed_push imgbake-pkg "${build[@]}" "$app" --output "oci:$work/out-v3:v3" --push "$registry/ml/imgbake:v3"
    rm -rf "$work/out-v2" "$work/out-v3"

    # A second app: its own code and name, the first app's lock.
    make_app "$second" second-app
    sed -i 's/"parameters": model.num_parameters()/"app": "second"/' "$second/main.py"
    cp "$work/v1.lock" "$second/imgbake.lock"
    timed_push imgbake-second "${build[@]}" "$second" --output "oci:$work/out-second:v1" --push "$registry/ml/second:v1"
    rm -rf "$work/out-second" "$cache" "$UV_CACHE_DIR"  # the disk for the pull's layout and the starts' trees
    node_pull imgbake "$registry/ml/imgbake:v1" "$registry/ml/imgbake:v3"

    # The starts run the first version: its config and lock.
    make_app "$app" torch-transformers
    cp "$work/v1.lock" "$app/imgbake.lock"
    for _ in $(seq "$starts"); do
      start imgbake "$app" "oci:$out:v1"
      start imgbake-nopyc "$app" "oci:$out:v1" PYTHONPYCACHEPREFIX=/tmp/no-bytecode
    done
    if [[ $run == 1 ]]; then
      cp "$work/run-imgbake.json" "$work/run-imgbake.first.json"
      no_compile_check "$out"
    fi
  done
  if [[ $runs == 1 ]]; then
    # One timed run: another cold build (not timed, not pushed) for a second digest.
    rm -rf "$out" "$app/imgbake.lock"
    "${build[@]}" "$app" --output "oci:$work/out-again:v1" > "$work/again.json" 2>"$work/again.err" ||
      { cat "$work/again.err" >&2; exit 1; }
    json_field "$work/again.json" "v['manifest_digest']" >> "$work/digests"
    echo "2 cold builds (the second one not timed)" > "$work/digest-note"
    rm -rf "$work/out-again" "$cache" "$UV_CACHE_DIR"
  else
    echo "$runs cold builds" > "$work/digest-note"
  fi
  rm -rf "$cache" "$out"
}

# --------------------------------------------------------------- buildah
bflags() { echo --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver "$storage_driver"; }
# conventional_context DIR KIND: requirements.txt, the weights, main.py and a
# Dockerfile that installs with KIND (uv | pip).
conventional_context() {
  local dir=$1 kind=$2 install
  mkdir -p "$dir"
  if [[ $kind == uv ]]; then
    # The uv binary itself (PATH may hold a shim that needs the host).
    cp "$(python3 -c 'import uv; print(uv.find_uv_bin())')" "$dir/uv"
    tool='COPY uv /usr/local/bin/uv'
    install='ENV UV_COMPILE_BYTECODE=1
RUN uv pip install --system --break-system-packages --no-cache -r requirements.txt'
  else
    # The base has no pip: pip runs from its wheel.
    cp "$wheels/$pip_wheel" "$dir/"
    tool="COPY $pip_wheel /tmp/"
    install="RUN python3 /tmp/$pip_wheel/pip install --break-system-packages --no-cache-dir -r requirements.txt"
  fi
  cat > "$dir/Dockerfile" <<EOF
FROM $base_ref
ARG UV_INDEX_URL
ARG PIP_INDEX_URL
$tool
WORKDIR /app
COPY requirements.txt .
$install
COPY weights/tiny-gpt2 /app/model_cache/tiny-gpt2
COPY main.py .
EXPOSE 8000
CMD ["python3", "-m", "uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8000"]
EOF
}

# buildah_build VARIANT APP TAG: the variant's context from APP, bud, push.
buildah_build() {
  local variant=$1 app=$2 tag=$3 ctx="$work/ctx"
  rm -rf "$ctx"
  case $variant in
    buildah-uv) mkdir -p "$ctx"; cp -r "$app/requirements.txt" "$app/main.py" "$app/weights" "$ctx/"; conventional_context "$ctx" uv ;;
    buildah-pip) mkdir -p "$ctx"; cp -r "$app/requirements.txt" "$app/main.py" "$app/weights" "$ctx/"
      conventional_context "$ctx" pip ;;
    buildah-ctx) "$imgbake" dockerfile "$app" -o "$ctx" --base "$base_ref" --insecure-registry "$registry" \
      --cache-dir "$cache" >/dev/null ;;
  esac
  # shellcheck disable=SC2046
  buildah $(bflags) bud --quiet --isolation chroot --layers --tls-verify=false \
    --build-arg "UV_INDEX_URL=$index_url" --build-arg "PIP_INDEX_URL=$index_url" \
    -t "ml-$variant:$tag" "$ctx" >/dev/null
  # shellcheck disable=SC2046
  buildah $(bflags) push --quiet --tls-verify=false "ml-$variant:$tag" "docker://$registry/ml/$variant:$tag" >/dev/null
}
export -f buildah_build conventional_context bflags
# drop_buildah_storage: the variant's images and layers, and their mounts.
drop_buildah_storage() {
  if [[ -d $work/buildah ]]; then
    # shellcheck disable=SC2046
    buildah $(bflags) rm --all >/dev/null 2>&1 || true
    # shellcheck disable=SC2046
    buildah $(bflags) rmi --all --force >/dev/null 2>&1 || true
    umount -R "$work/buildah/root/overlay" 2>/dev/null || true
  fi
  rm -rf "$work/buildah" "$work/ctx"
}
buildah_variant() {
  local variant=$1 app="$work/app"
  export work storage_driver imgbake base_ref registry cache index_url wheels pip_wheel
  for run in $(seq "$runs"); do
    make_app "$app" torch-transformers
    fresh_registry
    drop_buildah_storage
    rm -rf "$cache" "$UV_CACHE_DIR"; sync
    timed_push "$variant-cold" bash -c 'buildah_build "$@"' _ "$variant" "$app" v1
    echo "  $variant run $run: cold $(ms "$(tail -1 "$work/$variant-cold.runs" | cut -d' ' -f1)")" >&2
    if ! cold_only "$variant"; then
      change_app_code "$app"
      timed_push "$variant-app" bash -c 'buildah_build "$@"' _ "$variant" "$app" v2
      add_small_package "$app"
      timed_push "$variant-pkg" bash -c 'buildah_build "$@"' _ "$variant" "$app" v3
    fi
    drop_buildah_storage  # the disk for the pull's layout and the start's tree
    rm -rf "$cache" "$UV_CACHE_DIR"
    cold_only "$variant" || node_pull "$variant" "$registry/ml/$variant:v1" "$registry/ml/$variant:v3"
    make_app "$app" torch-transformers
    if [[ $variant != buildah-ctx ]]; then
      for _ in $(seq "$starts"); do start "$variant" "$app" "$registry/ml/$variant:v1"; done
    fi
  done
  stop_registry; umount "$work/registry" 2>/dev/null || true; rm -rf "$work/registry"
}

# ------------------------------------------------------------------ run
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(df -h --output=source,fstype "$work" | tail -1 | tr -s ' ')"
echo "app: $set_name set ($(wc -l < "$wheels/pins.txt") pinned wheels, $(du -sh --exclude=.sha256 "$wheels/" | cut -f1) of wheels); $runs cold run(s) per variant; imgbake $profile build; buildah storage $storage_driver"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) variants $variants, runs $runs, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >> "$work/invocations"
has_variant imgbake && imgbake_variant
for variant in buildah-uv buildah-pip buildah-ctx; do
  has_variant "$variant" && buildah_variant "$variant"
done

# ---------------------------------------------------------------- report
echo
sed 's/^/invocation: /' "$work/invocations"
printf '| %-44s | %10s | %10s | %14s | %s\n' "$set_name app, build + push" "median" "peak RSS" "bytes uploaded" "runs (s)"
row() {  # LABEL NAME
  [[ -f $work/$2.runs ]] || return 0
  local note=""
  # A package added but (almost) nothing uploaded: the builder kept its old
  # install layer. buildah caches a `RUN --mount=type=bind` step by its text
  # alone, whatever the mounted files hold (buildah#5400).
  [[ $2 == *-pkg && $(median_of "$work/$2.sent") -lt 65536 ]] && note=" STALE: no new layer (the old install was reused)"
  printf '| %-44s | %10s | %10s | %14s | %s%s\n' "$1" "$(ms "$(median "$2")")" "$(mib "$(peak "$2")")" \
    "$(human "$(median_of "$work/$2.sent")")" "$(runs_s "$2")" "$note"
}
for variant in imgbake buildah-uv buildah-pip buildah-ctx; do
  row "$variant: cold" "$variant-cold"
  row "$variant: after an app-code change" "$variant-app"
  row "$variant: after adding $small_package" "$variant-pkg"
done
row "imgbake: a second app, same lock" imgbake-second
echo
for variant in imgbake buildah-uv buildah-pip buildah-ctx; do
  [[ -f $work/$variant.received ]] &&
    echo "node pull (skopeo copy) of the changed image into a layout holding the first, $variant: $(human "$(median_of "$work/$variant.received")")"
done
for name in imgbake imgbake-nopyc buildah-uv buildah-pip; do
  [[ -f $work/$name.imports ]] || continue
  line="cold start under runc, $name: imports $(median_of "$work/$name.imports") s, ready $(median_of "$work/$name.ready") s"
  [[ $(cat "$work/$name.plan-imports") != None ]] && line="$line (plan's imports: $(cat "$work/$name.plan-imports") s)"
  echo "$line"
done
[[ -f $work/run-imgbake.first.json ]] && { echo; echo "imgbake run (first run):"; python3 - "$work/run-imgbake.first.json" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
fmt = lambda s: "—" if s is None else f"{s:.2f} s"
print(f"  {'phase':<10} {'measured':>9} {'plan':>9}  note")
for p in run["phases"]:
    print(f"  {p['phase']:<10} {fmt(p['seconds']):>9} {fmt(p.get('plan_seconds')):>9}  {p.get('note') or ''}")
EOF
}

# Where imgbake's cold build spent its time: `build --json`'s timings of the
# median run (phases that overlap show it: the wheels download while others
# install, layers upload while the next ones are built).
median_run=""
[[ -f $work/imgbake-cold.runs ]] &&
  median_run=$(awk '{print NR, $1}' "$work/imgbake-cold.runs" | sort -k2 -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
if [[ -n $median_run && -f $work/imgbake-cold.$median_run.json ]]; then
  echo; echo "imgbake cold build, phases of the median run (run $median_run; start and length, s):"
  python3 - "$work/imgbake-cold.$median_run.json" <<'EOF'
import json, sys
spans = json.load(open(sys.argv[1])).get("timings", [])
short = [s for s in spans if s["phase"].startswith("layer ") and s["seconds"] < 5]
for span in spans:
    if span not in short:
        print(f"  {span['start']:7.2f} {span['seconds']:7.2f}  {span['phase']}")
if short:
    print(f"  {short[0]['start']:7.2f} {sum(s['seconds'] for s in short):7.2f}  {len(short)} more layers (each under 5 s)")
EOF
fi

echo
status=0
if [[ -f $work/imgbake-cold.runs ]]; then
  read -r loaded_from_pyc compiled compiled_base < "$work/no-compile"
  echo "no-compile check (PYTHONVERBOSE, python3 -B): $loaded_from_pyc package modules loaded from .pyc, $compiled compiled from source; the base's standard library (which ships no .pyc): $compiled_base compiled"
  [[ $compiled == 0 ]] || { echo "error: $compiled modules were compiled at import" >&2; status=1; }
  [[ $compiled_base == 0 ]] || { echo "error: $compiled_base standard-library modules were compiled at import" >&2; status=1; }
  if [[ $(sort -u "$work/digests" | wc -l) == 1 ]]; then
    echo "one digest from $(cat "$work/digest-note"): $(head -1 "$work/digests")"
  else
    echo "error: $(cat "$work/digest-note") gave different digests: $(tr '\n' ' ' < "$work/digests")" >&2; status=1
  fi
  echo "imgbake peak RSS: $(mib "$(peak imgbake-cold)") (target ≤ 300 MiB: $(verdict "$(peak imgbake-cold)" 307200))"
  fastest=""
  for variant in buildah-uv buildah-pip buildah-ctx; do
    [[ -f $work/$variant-cold.runs ]] || continue
    if [[ -z $fastest || $(median "$variant-cold") -lt $(median "$fastest-cold") ]]; then fastest=$variant; fi
  done
  if [[ -n $fastest ]]; then
    speedup=$(ratio "$fastest-cold" imgbake-cold)
    echo "cold build + push: fastest buildah variant ($fastest) / imgbake = ${speedup}x (target ≥ 3: $(verdict 3 "$speedup"))"
  fi
  for variant in buildah-uv buildah-pip buildah-ctx; do
    [[ -f $work/$variant-pkg.sent ]] || continue
    theirs=$(median_of "$work/$variant-pkg.sent")
    if [[ $theirs -lt 65536 ]]; then
      echo "bytes uploaded after adding a package, $variant: not compared ($variant kept its old install layer)"
      continue
    fi
    share=$(awk -v a="$(median_of "$work/imgbake-pkg.sent")" -v b="$theirs" 'BEGIN { printf "%.4f", a / b }')
    echo "bytes uploaded after adding a package: imgbake / $variant = $(awk -v s="$share" 'BEGIN { printf "%.2f%%", s * 100 }') (target ≤ 5%: $(verdict "$share" 0.05))"
  done
  second=$(awk -v a="$(median_of "$work/imgbake-second.sent")" -v b="$(median_of "$work/imgbake-cold.sent")" 'BEGIN { printf "%.4f", a / b }')
  echo "second app / first app, bytes uploaded: $(awk -v s="$second" 'BEGIN { printf "%.2f%%", s * 100 }') (target ≤ 5%: $(verdict "$second" 0.05))"
  if [[ -f $work/buildah-pip.imports ]]; then
    import_ratio=$(awk -v a="$(median_of "$work/imgbake.imports")" -v b="$(median_of "$work/buildah-pip.imports")" 'BEGIN { printf "%.2f", a / b }')
    echo "cold imports, imgbake / pip install image: ${import_ratio}x (target ≤ 1.05: $(verdict "$import_ratio" 1.05))"
  fi
fi
exit $status
