# Shared helpers for the benchmark scripts (sourced, not run). Expects $work.
#
#   run_timed NAME CMD...   runs CMD once; appends "ms peak_kib" to $work/NAME.runs
#   median NAME             median wall time in ms
#   peak NAME               highest peak RSS in KiB
#   runs_s NAME             every run's time in s
#   ratio A B               median(A) / median(B), two decimals
#   ms MS, mib KIB          formatting
#   verdict VALUE LIMIT     "met" when VALUE <= LIMIT, else "MISSED"
#   bench_project           release build; $imgbake, and $project: a copy of
#                           fixtures/cerebrium-local-weights in $work with the
#                           1 GiB bf16-like file $weights added

run_timed() {
  local name=$1; shift
  local start end
  start=$(date +%s%N)
  /usr/bin/time -f "%M" -o "$work/rss.txt" "$@" >"$work/last.out" 2>"$work/last.err" || {
    echo "error: $name failed:" >&2; cat "$work/last.err" >&2; exit 1; }
  end=$(date +%s%N)
  echo "$(( (end - start) / 1000000 )) $(cat "$work/rss.txt")" >> "$work/$name.runs"
}

median() { awk '{print $1}' "$work/$1.runs" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
peak() { awk '$2 > m {m = $2} END {print m}' "$work/$1.runs"; }
runs_s() { awk '{printf "%s%.3f", (NR > 1 ? " " : ""), $1 / 1000}' "$work/$1.runs"; }
ratio() { awk -v a="$(median "$1")" -v b="$(median "$2")" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v v="$1" 'BEGIN { printf "%.3f s", v / 1000 }'; }
mib() { awk -v v="$1" 'BEGIN { printf "%.1f MiB", v / 1024 }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t ? "met" : "MISSED") }'; }

bench_project() {
  cargo build --release --quiet --bin imgbake --example gen_bf16
  # shellcheck source=scripts/target-dir.sh
  source "$repo_root/scripts/target-dir.sh"
  imgbake="$target_dir/release/imgbake"
  project="$work/project"
  cp -r "$repo_root/fixtures/cerebrium-local-weights" "$project"
  weights="$project/weights/tiny/model-1g.bf16"
  "$target_dir/release/examples/gen_bf16" "$weights" 1024   # MiB
  sync
}
