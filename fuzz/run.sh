#!/usr/bin/env bash
# Fuzzes targets for a while each: `fuzz/run.sh SECONDS [TARGET...]` (all
# targets when none is named); `fuzz/run.sh --build-only` only builds them.
# Needs nightly and cargo-fuzz. FUZZ_BUILD holds cargo fuzz's build flags:
# `-O` (release, AddressSanitizer) by default; CI uses `--dev --sanitizer
# none`, which builds in a fraction of the time (docs/fuzzing.md). New inputs go to
# a scratch corpus (target/fuzz-corpus/<target>, seeded from the saved
# fuzz/corpus/<target>); with FUZZ_MERGE=1 inputs that add coverage are
# merged back into fuzz/corpus/<target>, within a size budget. FUZZ_JOBS
# libFuzzer processes at once (1 by default: one core); an input over 1 s is
# a timeout, and a crash or timeout fails the run,
# its input saved under fuzz/artifacts/<target>/. A summary line per target:
# execs, coverage, corpus size.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:?usage: fuzz/run.sh SECONDS [TARGET...] | fuzz/run.sh --build-only}"
shift
read -r -a build_flags <<<"${FUZZ_BUILD:--O}"
if [[ $# -eq 0 ]]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^imgbake-fuzz$')
else
    targets=("$@")
fi

dict_of() {
    case "$1" in
        cerebrium_toml | imgbake_section | lock_file | profile | pylock) echo toml ;;
        truss_yaml) echo yaml ;;
        registry_auth) echo http ;;
        apt_release | apt_packages | deb_control) echo deb822 ;;
        deb_archive | base_layer) echo tar ;;
        *) echo json ;;
    esac
}

# `cargo fuzz build` builds one target or all of them: all, once.
cargo +nightly fuzz build "${build_flags[@]}"
if [[ "$seconds" == --build-only ]]; then
    exit 0
fi
# Keeps the saved corpus small: a set-cover minimisation of saved + scratch
# inputs, of which new inputs are added smallest first while the target's
# directory stays under FUZZ_BUDGET_KB (16 by default) and at most
# FUZZ_BUDGET_FILES (25) are added.
merge_into_saved() {
    local target="$1" scratch="$2" log="$3" minimal="target/fuzz-corpus/$1.min"
    rm -rf "$minimal" && mkdir -p "$minimal"
    cargo +nightly fuzz run "${build_flags[@]}" "$target" "$minimal" "fuzz/corpus/$target" "$scratch" -- -set_cover_merge=1 \
        -timeout=1 -rss_limit_mb=2048 >>"$log" 2>&1 || return 0
    local budget=$((${FUZZ_BUDGET_KB:-16} * 1024)) used known file added=0
    used=$(cat "fuzz/corpus/$target"/* | wc -c)
    known=$(sha1sum "fuzz/corpus/$target"/* | cut -d' ' -f1)
    while read -r _ file; do
        grep -qx "$(basename "$file")" <<<"$known" && continue
        used=$((used + $(wc -c <"$file")))
        [[ $used -gt $budget || $added -ge ${FUZZ_BUDGET_FILES:-25} ]] && break
        cp "$file" "fuzz/corpus/$target/run-$(basename "$file" | cut -c1-16)"
        added=$((added + 1))
    done < <(find "$minimal" -type f -printf '%s %p\n' | sort -n)
}

# One target: fuzz it, print its line of stats (and why it failed), merge
# its new coverage when asked. Exits 1 when libFuzzer found a crash or timeout.
fuzz_target() {
    local target="$1" scratch="target/fuzz-corpus/$1" log="target/fuzz-corpus/$1.log" failed=0
    mkdir -p "$scratch" "fuzz/artifacts/$target"
    if ! cargo +nightly fuzz run "${build_flags[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -print_final_stats=1 \
        -dict="fuzz/dict/$(dict_of "$target").dict" -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1; then
        failed=1
    fi
    local execs rate last cov ft corp report
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
    report=$(printf '%-16s %6ss  execs %-9s (%s/s)  cov %-6s ft %-6s corpus %s' \
        "$target" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")
    if [[ $failed == 1 ]]; then
        report+=$'\n'"FAILED $target (log: $log)"$'\n'
        report+=$(grep -E "^==|ERROR|panicked|Test unit written" "$log" | head -n 12 || true)
    fi
    # One write, so the lines of targets fuzzed at once do not interleave.
    printf '%s\n' "$report"
    if [[ "${FUZZ_MERGE:-}" == 1 ]]; then
        merge_into_saved "$target" "$scratch" "$log"
    fi
    return "$failed"
}

# FUZZ_JOBS libFuzzer processes at once (1 by default; CI uses 2, one per core).
jobs="${FUZZ_JOBS:-1}"
status=0
running=0
for target in "${targets[@]}"; do
    fuzz_target "$target" &
    running=$((running + 1))
    if ((running >= jobs)); then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while ((running > 0)); do
    wait -n || status=1
    running=$((running - 1))
done
exit "$status"
