#!/usr/bin/env bash
# A real-projects check: `imgbake lock` on the requirement sets of ordinary
# ML apps (scripts/real-projects/sets.tsv), once with uv (`use_uv = true`)
# and once with pip (`use_uv = false`), each run bounded in time. Prints one
# line per set and tool: `locked (N wheels, X MB)` or imgbake's reason, with
# whose fault a failure is (scripts/real-projects/reasons.tsv).
#
#   scripts/real-projects.sh [--quick | --sets NAME,NAME] [--out FILE]
#                            [--tools uv,pip] [--timeout SECONDS]
#                            [--work DIR] [--cache-dir DIR] [--report-only] [--no-run]
#
#   --quick        a handful of fast sets (for CI)
#   --sets A,B     only these sets
#   --out FILE     also write the results as a markdown table
#   --tools        uv, pip or both (default uv,pip)
#   --timeout      seconds per `imgbake lock` run (default 600)
#   --work DIR     where the project folders go (default <target>/real-projects)
#   --cache-dir    imgbake's cache, where pip runs download wheels
#                  (default <target>/real-projects/cache; torch sets fill GBs)
#   --report-only  exit 0 even when a run failed for imgbake's own fault
#   --no-run       run nothing: report the outcomes the last run left in the
#                  project folders (after editing reasons.tsv, say)
#
# Exit status: 1 when a run failed for a reason that is imgbake's fault or
# that no rule in reasons.tsv explains (unless --report-only), else 0.
#
# The target interpreter and glibc come from the base (src/resolve/basefs.rs):
# Python 3.11 sets lock against the debootstrap bookworm rootfs that
# scripts/make-base-rootfs.sh builds (Debian's /usr/bin/python3.11, glibc
# 2.36) when it exists; 3.10 and 3.12 sets (and 3.11 without that rootfs)
# lock against a stand-in for python:3.X-slim-bookworm: a directory holding
# only what imgbake reads from such an image (os-release, libc6 2.36 in the
# dpkg status, /usr/local/bin/python3.X). No image is pulled.
#
# The imgbake binary: $IMGBAKE, else the newer of <target>/release/imgbake
# and <target>/debug/imgbake (<target> from `cargo metadata`), else one
# built with `cargo build --release`. uv and python3 -m pip must be on PATH.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data_dir="$repo_root/scripts/real-projects"
sets_file="$data_dir/sets.tsv"
reasons_file="$data_dir/reasons.tsv"
quick_sets="requests,aiohttp,fastapi-uvicorn,transformers,pandas-sklearn"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

die() {
    echo "error: $*" >&2
    exit 2
}

# ---------------------------------------------------------------------------
# Inputs: the binary, the bases, the sets.

target_directory() {
    (cd "$repo_root" && cargo metadata --format-version 1 --no-deps) |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

find_imgbake() {
    local target=$1 release="$1/release/imgbake" debug="$1/debug/imgbake"
    if [[ -n "${IMGBAKE:-}" ]]; then
        [[ -x "$IMGBAKE" ]] || die "IMGBAKE=$IMGBAKE is not an executable"
        echo "$IMGBAKE"
    elif [[ -x "$release" && -x "$debug" ]]; then
        if [[ "$release" -nt "$debug" ]]; then echo "$release"; else echo "$debug"; fi
    elif [[ -x "$release" ]]; then
        echo "$release"
    elif [[ -x "$debug" ]]; then
        echo "$debug"
    else
        echo "no imgbake binary in $target; cargo build --release --bin imgbake" >&2
        (cd "$repo_root" && cargo build --release --bin imgbake >&2)
        echo "$release"
    fi
}

# A directory with what imgbake reads from python:3.X-slim-bookworm.
standin_base() {
    local dir=$1 version=$2
    mkdir -p "$dir/etc" "$dir/var/lib/dpkg" "$dir/usr/local/bin"
    cat >"$dir/etc/os-release" <<'EOF'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
EOF
    cat >"$dir/var/lib/dpkg/status" <<'EOF'
Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u10
EOF
    : >"$dir/usr/local/bin/python$version"
}

base_for() {
    local version=$1
    if [[ "$version" == 3.11 && -f "$bookworm_rootfs/.complete" ]]; then
        echo "rootfs:$bookworm_rootfs"
    else
        local dir="$work/bases/python$version-slim-bookworm"
        standin_base "$dir" "$version"
        echo "rootfs:$dir"
    fi
}

# The data lines of a TSV file (no comments, no header).
data_lines() {
    grep -v '^#' "$1" | grep -v '^[[:space:]]*$' | tail -n +2
}

# ---------------------------------------------------------------------------
# One project folder per set and tool.

write_project() {
    local dir=$1 set=$2 python=$3 config=$4 requirements=$5 tool=$6
    local use_uv=false
    [[ "$tool" == uv ]] && use_uv=true
    rm -rf "$dir"
    mkdir -p "$dir"
    printf 'print("hello from %s")\n' "$set" >"$dir/main.py"
    local -a lines
    read -r -a lines <<<"$requirements"
    case "$config" in
        truss)
            {
                echo "# $set: requirements from the package's own install instructions."
                echo "model_name: $set"
                echo "python_version: py${python/./}"
                echo "requirements:"
                printf '  - "%s"\n' "${lines[@]}"
            } >"$dir/config.yaml"
            ;;
        cerebrium | cerebrium-file)
            {
                echo "# $set: requirements from the package's own install instructions."
                echo "[cerebrium.deployment]"
                echo "name = \"$set\""
                echo "python_version = \"$python\""
                echo "use_uv = $use_uv"
                echo
                echo "[cerebrium.hardware]"
                echo "cpu = 2"
                echo "memory = 8.0"
                echo
                if [[ "$config" == cerebrium-file ]]; then
                    printf '%s\n' "${lines[@]}" >"$dir/requirements.txt"
                    echo "[cerebrium.dependencies.paths]"
                    echo "pip = \"requirements.txt\""
                else
                    echo "[cerebrium.dependencies.pip]"
                    local line name constraint
                    for line in "${lines[@]}"; do
                        # Cerebrium's rule: a value starting with = > < ! ~ is appended as is.
                        name="${line%%[=<>!~]*}"
                        constraint="${line#"$name"}"
                        printf '"%s" = "%s"\n' "$name" "$constraint"
                    done
                fi
            } >"$dir/cerebrium.toml"
            ;;
        *) die "$sets_file: set $set: unknown config \`$config\` (cerebrium, cerebrium-file or truss)" ;;
    esac
}

# ---------------------------------------------------------------------------
# Reading a run's outcome.

# "N wheels, X MB; name version, …" from an imgbake.lock, naming the
# versions locked for the set's own requirements (an old version is a sign
# that newer ones have no wheel for the target).
lock_summary() {
    python3 - "$1" "$2" <<'EOF'
import re, sys, tomllib
with open(sys.argv[1], "rb") as file:
    packages = tomllib.load(file).get("python", {}).get("packages", [])
normalize = lambda name: re.sub(r"[-_.]+", "-", name).lower()
versions = {normalize(p["name"]): p["version"] for p in packages}
wanted = []
for line in sys.argv[2].split():
    name = normalize(re.split(r"[\[=<>!~;@ ]", line, maxsplit=1)[0])
    if "://" not in line and name in versions:
        wanted.append(f"{name} {versions[name]}")
size = sum(p.get("size", 0) for p in packages) / 1e6
print(f"{len(packages)} wheels, {size:.1f} MB" + ("; " + ", ".join(wanted) if wanted else ""))
EOF
}

# One line that says why a failed run failed: imgbake's first error line,
# the resolver's own reason when there is one (uv: its first `cause:`,
# pip: its first `ERROR:`), else imgbake's first cause, and imgbake's hint
# (the last `hint:` line; uv's own hint comes before it).
failure_reason() {
    local err=$1 first detail hint
    first="$(grep -m1 '^error: ' "$err" | sed 's/^error: //' || true)"
    first="${first%:}"
    detail="$(grep -m1 -E '^ *cause: |^ERROR: ' "$err" | sed -E 's/^ *(cause|ERROR): //' || true)"
    # uv names every package that has no wheel in a hint of its own; a
    # failed git fetch ends with git's `fatal:` line.
    local no_wheel fatal
    no_wheel="$(grep -oE '^hint: Wheels are required for `[^`]+`' "$err" | sed -E 's/.*`([^`]+)`/\1/' | paste -sd, - | sed 's/,/, /g' || true)"
    fatal="$(grep -m1 -E '^ *fatal: ' "$err" | sed -E 's/^ *//' || true)"
    # Other uv errors (a failed download): uv's own error line and its
    # innermost cause.
    local uv_error last_cause
    uv_error="$(grep '^error: ' "$err" | sed -n 2p | sed 's/^error: //' || true)"
    last_cause="$(grep -E '^ *cause: ' "$err" | tail -n 1 | sed -E 's/^ *cause: //' || true)"
    if [[ -n "$no_wheel" ]]; then
        detail="no usable wheel for the target: $no_wheel"
    elif [[ -n "$fatal" ]]; then
        detail="$uv_error: $fatal"
    elif [[ -n "$uv_error" && "$uv_error" != "No solution found"* ]]; then
        detail="$uv_error${last_cause:+: $last_cause}"
    fi
    if [[ -z "$detail" ]]; then
        detail="$(grep '^error: ' "$err" | sed -n 2p | sed 's/^error: //' || true)"
    fi
    if [[ -z "$detail" ]]; then
        detail="$(grep -m1 '^  Caused by: ' "$err" | sed 's/^  Caused by: //' || true)"
    fi
    hint="$(grep '^hint: ' "$err" | tail -n 1 | sed 's/^hint: //' || true)"
    local reason="$first"
    [[ -n "$detail" ]] && reason="$reason — $detail"
    [[ -n "$hint" ]] && reason="$reason (hint: $hint)"
    [[ -n "$reason" ]] || reason="failed without an error line: $(tail -n 1 "$err")"
    printf '%s' "$reason" | tr '\n\t' '  '
}

# Whose fault a failure is, from the first rule of reasons.tsv whose pattern
# matches imgbake's stderr: `imgbake: why` or `not imgbake: why`.
classify() {
    local err=$1 pattern fault why regex
    while IFS=$'\t' read -r pattern fault why; do
        regex="$(rule_regex "$pattern")"
        if grep -qiE -- "$regex" "$err"; then
            printf '%s: %s' "$fault" "$why"
            return
        fi
    done < <(data_lines "$reasons_file")
    printf 'unclassified'
}

# A rule's pattern as an extended regex. `no-wheel:NAME` stands for the ways
# uv and pip say that package NAME has no wheel for the target.
rule_regex() {
    local pattern=$1
    if [[ "$pattern" == no-wheel:* ]]; then
        local name="${pattern#no-wheel:}"
        name="${name//[-_.]/[-_.]}"
        printf '%s' "(^|[^a-z0-9_.-])$name(\[[^]]*\])?([<>=!~][^ ]*)? (have|has) no (usable wheels|wheels with a matching)|satisfies the requirement $name(\[[^]]*\])?([<>=!~,][^ ]*)?( |$)"
    else
        printf '%s' "$pattern"
    fi
}

# ---------------------------------------------------------------------------

main() {
    local selected="" out="" tools="uv,pip" timeout_seconds=600 report_only="" no_run=""
    work="" cache_dir=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --quick) selected="$quick_sets" ;;
            --sets) selected="${2:?--sets needs a list}"; shift ;;
            --out) out="${2:?--out needs a file}"; shift ;;
            --tools) tools="${2:?--tools needs uv, pip or uv,pip}"; shift ;;
            --timeout) timeout_seconds="${2:?--timeout needs seconds}"; shift ;;
            --work) work="${2:?--work needs a directory}"; shift ;;
            --cache-dir) cache_dir="${2:?--cache-dir needs a directory}"; shift ;;
            --report-only) report_only=1 ;;
            --no-run) no_run=1 ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument \`$1\`" ;;
        esac
        shift
    done
    [[ "$tools" =~ ^(uv|pip)(,(uv|pip))?$ ]] || die "--tools takes uv, pip or uv,pip, not \`$tools\`"

    local scripts_dir target imgbake
    scripts_dir="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    export PATH="$PATH:$scripts_dir"
    command -v uv >/dev/null || die "uv is not on PATH (pip install uv)"
    target="$(target_directory)"
    imgbake="(not run: --no-run)"
    [[ -n "$no_run" ]] || imgbake="$(find_imgbake "$target")"
    work="${work:-$target/real-projects}"
    cache_dir="${cache_dir:-$work/cache}"
    bookworm_rootfs="$target/imgbake-fixtures/bookworm-python-rootfs"
    mkdir -p "$work" "$cache_dir"
    work="$(cd "$work" && pwd)"

    # The sets to run, in the file's order.
    local -a rows=()
    local row name
    while IFS= read -r row; do
        name="${row%%$'\t'*}"
        if [[ -z "$selected" || ",$selected," == *",$name,"* ]]; then
            rows+=("$row")
        fi
    done < <(data_lines "$sets_file")
    if [[ -n "$selected" ]]; then
        local wanted
        for wanted in ${selected//,/ }; do
            grep -q "^$wanted"$'\t' "$sets_file" || die "no set \`$wanted\` in $sets_file"
        done
    fi

    local uv_version pip_version date
    uv_version="$(uv --version)"
    pip_version="$(python3 -m pip --version | awk '{print $1, $2}')"
    date="$(date -u +%Y-%m-%d)"
    echo "imgbake:  $imgbake"
    echo "resolver: $uv_version; $pip_version (python3 $(python3 -c 'import platform; print(platform.python_version())'))"
    echo "bases:    3.11 → $(base_for 3.11 | sed 's/^rootfs://'); 3.10/3.12 → python:3.X-slim-bookworm stand-ins in $work/bases"
    echo "sets:     ${#rows[@]}, tools: $tools, timeout ${timeout_seconds}s per run"
    echo

    local -a table=() failures=()
    local blocking=0 set python config requirements source tool dir base status started seconds result fault cells
    for row in "${rows[@]}"; do
        IFS=$'\t' read -r set python config requirements source <<<"$row"
        [[ "$python" =~ ^3\.1[0-2]$ ]] || die "$sets_file: set $set: python must be 3.10, 3.11 or 3.12, not \`$python\`"
        base="$(base_for "$python")"
        cells=""
        for tool in uv pip; do
            if [[ ",$tools," != *",$tool,"* ]]; then
                cells+=" | (not run)"
                continue
            fi
            if [[ "$tool" == pip && "$config" == truss ]]; then
                cells+=" | n/a (Truss resolves with uv)"
                printf '%-24s %-5s %-4s n/a (Truss configs always resolve with uv)\n' "$set" "$python" "$tool"
                continue
            fi
            dir="$work/projects/$set/$tool"
            if [[ -n "$no_run" ]]; then
                # The outcome the last run left in the folder.
                if [[ ! -f "$dir/lock.status" ]]; then
                    printf '%-24s %-5s %-4s not run\n' "$set" "$python" "$tool"
                    cells+=" | (not run)"
                    continue
                fi
                read -r status seconds <"$dir/lock.status"
            else
                write_project "$dir" "$set" "$python" "$config" "$requirements" "$tool"
                started=$SECONDS
                status=0
                timeout --kill-after=15 "$timeout_seconds" \
                    "$imgbake" lock --base "$base" --cache-dir "$cache_dir" "$dir" \
                    >"$dir/lock.stdout" 2>"$dir/lock.stderr" </dev/null || status=$?
                seconds=$((SECONDS - started))
                echo "$status $seconds" >"$dir/lock.status"
            fi
            if [[ $status -eq 0 ]]; then
                result="locked ($(lock_summary "$dir/imgbake.lock" "$requirements"))"
                fault=""
            elif [[ $status -eq 124 || $status -eq 137 ]]; then
                result="timed out after ${timeout_seconds}s"
                fault="unclassified"
            else
                result="$(failure_reason "$dir/lock.stderr")"
                fault="$(classify "$dir/lock.stderr")"
            fi
            printf '%-24s %-5s %-4s %s (%ss)\n' "$set" "$python" "$tool" "$result" "$seconds"
            if [[ -n "$fault" ]]; then
                printf '%-35s → %s\n' "" "$fault"
                failures+=("$set|$python|$tool|$fault|$result")
                case "$fault" in
                    imgbake:* | unclassified) blocking=$((blocking + 1)) ;;
                esac
                cells+=" | ✗ ${fault%%:*}"
            else
                cells+=" | ${result}"
            fi
        done
        table+=("| $set | $python | $config | \`${requirements// /\` \`}\`$cells |")
    done

    if [[ -n "$out" ]]; then
        {
            echo "Run on $date with $uv_version and $pip_version; \`imgbake lock\` per set and tool,"
            echo "at most ${timeout_seconds}s each (\`scripts/real-projects.sh\`)."
            echo
            echo "| set | Python | config | requirements | uv | pip |"
            echo "|---|---|---|---|---|---|"
            printf '%s\n' "${table[@]}"
            if [[ ${#failures[@]} -gt 0 ]]; then
                echo
                echo "Failures (✗ above), with imgbake's reason:"
                echo
                echo "| set | Python | tool | whose fault | imgbake's reason |"
                echo "|---|---|---|---|---|"
                local failure f_set f_python f_tool f_fault f_result
                for failure in "${failures[@]}"; do
                    IFS='|' read -r f_set f_python f_tool f_fault f_result <<<"$failure"
                    printf '| %s | %s | %s | %s | %s |\n' "$f_set" "$f_python" "$f_tool" "$f_fault" "${f_result//|/\\|}"
                done
            fi
        } >"$out"
        echo
        echo "wrote $out"
    fi

    echo
    echo "${#failures[@]} failed runs, $blocking of them imgbake's fault or unclassified"
    if [[ $blocking -gt 0 && -z "$report_only" ]]; then
        exit 1
    fi
}

# Sourcing the file (to try a function) does not run it.
# `exit` inside the block: bash has read all of it before running main, so
# editing this file while it runs cannot change what it does next.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
    exit
fi
