#!/usr/bin/env bash
# Prefetch benchmark: a verified download of 1 GiB as one file and as 64
# files from the loopback hub (tests/support/hub_server.py: the hub redirects
# LFS files to its CDN port, which honours Range), side by side:
#
#   imgbake   the static hook (scripts/build-hook.sh): imgbake prefetch --manifest … --dest …
#   curl      curl -o each file, then sha256sum it and compare (sequential)
#   hf        hf download (huggingface_hub CLI) with HF_ENDPOINT at the same server
#
# Each case runs RUNS times (default 3), rotating the order; the median wall
# time, the ratio to curl+sha256sum and the peak RSS (GNU time -v, "Maximum
# resident set size") are printed as a Markdown table. One extra imgbake run
# fetches a 4 GiB file to measure its peak RSS at that size.
#
# Usage: scripts/bench-prefetch.sh [RUNS]   (IMGBAKE_HOOK_BINARY to use another binary)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs="${1:-3}"
hook="${IMGBAKE_HOOK_BINARY:-$(scripts/build-hook.sh | tail -1)}"
hook="$(realpath "$hook")"
work="$(realpath -m target/bench-prefetch)"
rm -rf "$work"
mkdir -p "$work"
results="$work/results.tsv"
: > "$results"

server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work/hub" "$work/dest" "$work/hf-home"
}
trap cleanup EXIT

commit_one=1111111111111111111111111111111111111111
commit_many=2222222222222222222222222222222222222222
commit_big=3333333333333333333333333333333333333333
make_repo() { # name commit
    mkdir -p "$work/hub/org/$1/$2" "$work/hub/org/$1/refs"
    printf '%s' "$2" > "$work/hub/org/$1/refs/main"
}
echo "generating data in $work/hub ..." >&2
make_repo one "$commit_one"
head -c $((1 << 30)) /dev/urandom > "$work/hub/org/one/$commit_one/model.safetensors"
make_repo many "$commit_many"
split -b $((16 << 20)) -d -a 2 --additional-suffix=.safetensors \
    "$work/hub/org/one/$commit_one/model.safetensors" "$work/hub/org/many/$commit_many/shard-"
make_repo big "$commit_big"
head -c $((4 << 30)) /dev/urandom > "$work/hub/org/big/$commit_big/model.safetensors"

python3 tests/support/hub_server.py --root "$work/hub" > "$work/ports" &
server_pid=$!
for _ in $(seq 100); do [[ $(wc -l < "$work/ports") -ge 2 ]] && break; sleep 0.1; done
endpoint="http://127.0.0.1:$(head -1 "$work/ports")"

manifest() { # repo commit -> path of a manifest for every file of the repo
    python3 - "$work/hub/org/$1/$2" "$endpoint/org/$1/resolve/$2" "$work/$1.json" <<'EOF'
import hashlib, json, os, sys
folder, base, out = sys.argv[1:]
files = []
for name in sorted(os.listdir(folder)):
    h = hashlib.sha256()
    with open(os.path.join(folder, name), "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    size = os.path.getsize(os.path.join(folder, name))
    files.append({"path": name, "size": size, "sha256": h.hexdigest(), "url": f"{base}/{name}"})
entry = {"origin": "bench", "source": "hf://org/x@main", "kind": "hf", "revision": None, "path": "/m",
         "volume_path": "/m", "layout": "plain", "credential": None,
         "total_size": sum(f["size"] for f in files), "files": files}
json.dump({"schema": "imgbake.weights-manifest/v1", "app": "bench", "target": "generic", "entries": [entry]},
          open(out, "w"))
print(out)
EOF
}

# Runs "$@" under GNU time; appends "case dataset seconds rss_kib" to results.
measure() { # case dataset command...
    local case="$1" dataset="$2"
    shift 2
    rm -rf "$work/dest" "$work/hf-home"
    mkdir -p "$work/dest"
    sync
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$work/time.txt" "$@" > "$work/out.log" 2>&1 || {
        echo "$case on $dataset failed:" >&2
        tail -20 "$work/out.log" >&2
        exit 1
    }
    end=$(date +%s.%N)
    local rss
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
    printf '%s\t%s\t%s\t%s\n' "$case" "$dataset" "$(echo "$end - $start" | bc)" "$rss" | tee -a "$results" >&2
}

curl_and_hash() { # manifest: sequential curl, then sha256sum, compare
    python3 -c '
import json, sys
for f in json.load(open(sys.argv[1]))["entries"][0]["files"]:
    print(f["url"], f["path"], f["sha256"])' "$1" | while read -r url path sha; do
        curl -sSfL -o "$work/dest/$path" "$url"
        [[ "$(sha256sum "$work/dest/$path" | cut -d' ' -f1)" == "$sha" ]] || { echo "bad sha256 $path"; exit 1; }
    done
}
export -f curl_and_hash
export work

imgbake_case() { measure imgbake "$1" "$hook" prefetch --manifest "$2" --dest "$work/dest"; }
curl_case() { measure curl+sha256sum "$1" bash -c 'curl_and_hash "$0"' "$2"; }
hf_case() {
    measure "hf download" "$1" env HF_ENDPOINT="$endpoint" HF_HOME="$work/hf-home" HF_HUB_DISABLE_PROGRESS_BARS=1 \
        HF_HUB_ENABLE_HF_TRANSFER=0 hf download "org/$3" --local-dir "$work/dest"
}

one=$(manifest one "$commit_one")
many=$(manifest many "$commit_many")
big=$(manifest big "$commit_big")
for run in $(seq "$runs"); do
    order=(imgbake_case curl_case hf_case)
    shift_by=$(( (run - 1) % 3 ))
    order=("${order[@]:$shift_by}" "${order[@]:0:$shift_by}")
    for case in "${order[@]}"; do
        "$case" "1 GiB, 1 file" "$one" one
        "$case" "1 GiB, 64 files" "$many" many
    done
done
imgbake_case "4 GiB, 1 file" "$big" big

python3 - "$results" <<'EOF'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
by = {}
for case, dataset, seconds, rss in rows:
    by.setdefault((dataset, case), []).append((float(seconds), int(rss)))
print("| data | tool | runs | median s | vs curl+sha256sum | peak RSS MiB |")
print("|---|---|---|---|---|---|")
for dataset in dict.fromkeys(d for d, _ in by):
    base = by.get((dataset, "curl+sha256sum"))
    base_median = statistics.median(s for s, _ in base) if base else None
    for case in ("imgbake", "curl+sha256sum", "hf download"):
        if (dataset, case) not in by:
            continue
        values = by[(dataset, case)]
        median = statistics.median(s for s, _ in values)
        ratio = f"{median / base_median:.2f}×" if base_median else "–"
        rss = max(r for _, r in values) / 1024
        print(f"| {dataset} | {case} | {len(values)} | {median:.2f} | {ratio} | {rss:.0f} |")
EOF
