#!/usr/bin/env bash
# Build (once) a minimal Debian bookworm rootfs with python3, used by the
# integration tests as a base image and as a runc bundle root.
#
#   scripts/make-base-rootfs.sh [DEST]
#
# DEST defaults to target/imgbake-fixtures/bookworm-python-rootfs under the
# repository root (where tests/support/tools.rs looks for it). The rootfs
# is built in a temporary sibling directory and renamed into place only when
# debootstrap succeeded and DEST/.complete was written, so a half-built tree
# never looks complete. A second run with DEST/.complete present does nothing.
# Concurrent runs for the same DEST (parallel tests) take a lock next to it:
# one builds, the others wait and then find it complete.
#
# The mirror is the machine's configured Debian mirror (read from
# /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list), because the
# build machines can only reach that mirror. Override with IMGBAKE_DEBIAN_MIRROR.
set -euo pipefail

# The first configured Debian mirror that carries the main suite (not
# -security, not -updates, not third-party repositories).
find_mirror() {
    local file uri
    # deb822 files: a stanza whose URIs point at a Debian archive and whose
    # Suites include the bare suite name.
    for file in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$file" ]] || continue
        uri="$(awk -v suite="$suite" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; suites = ""; enabled = 1
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/)    { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
                    if ($i ~ /^Suites:/)  { suites = " " $i " "; sub(/^ Suites:/, "", suites) }
                    if ($i ~ /^Enabled:[ \t]*no/) { enabled = 0 }
                }
                if (enabled && uris != "" && suites ~ ("[ \t]" suite "[ \t]")) {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$file")"
        if [[ -n "$uri" ]]; then echo "$uri"; return; fi
    done
    # One-line format: deb [options] URI SUITE COMPONENTS...
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$file" ]] || continue
        uri="$(awk -v suite="$suite" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$file")"
        if [[ -n "$uri" ]]; then echo "$uri"; return; fi
    done
}

suite="bookworm"

main() {
    local repo_root dest parent mirror start attempt
    repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    dest="${1:-$repo_root/target/imgbake-fixtures/bookworm-python-rootfs}"
    if [[ -e "$dest/.complete" ]]; then
        echo "base rootfs: $dest is complete (cached)"
        return 0
    fi

    if [[ "$(id -u)" != 0 ]]; then
        echo "error: debootstrap needs root" >&2
        return 1
    fi
    command -v debootstrap >/dev/null || {
        echo "error: debootstrap is not installed: run \`bash .ci/run\` or apt-get install debootstrap" >&2
        return 1
    }

    mirror="${IMGBAKE_DEBIAN_MIRROR:-$(find_mirror)}"
    if [[ -z "$mirror" ]]; then
        echo "error: no Debian mirror for $suite in /etc/apt/sources.list{,.d/}; set IMGBAKE_DEBIAN_MIRROR" >&2
        return 1
    fi

    parent="$(dirname "$dest")"
    mkdir -p "$parent"
    exec 9>"$parent/.$(basename "$dest").lock"
    if ! flock --wait 1800 9; then
        echo "error: timed out waiting for another build of $dest" >&2
        return 1
    fi
    if [[ -e "$dest/.complete" ]]; then
        echo "base rootfs: $dest was built by a concurrent run"
        return 0
    fi

    tmp="$(mktemp -d "$parent/.$(basename "$dest").partial.XXXXXX")"
    chmod 0755 "$tmp" # mktemp makes it 0700; it becomes the container's /
    # debootstrap mounts proc/sys inside the target on some paths; unmount before
    # removing so a failed run never deletes host files through a mount.
    cleanup() {
        if [[ -n "${tmp:-}" && -d "$tmp" ]]; then
            umount -R "$tmp/proc" "$tmp/sys" 2>/dev/null || true
            rm -rf --one-file-system "$tmp"
        fi
    }
    trap cleanup EXIT

    echo "base rootfs: debootstrap --variant=minbase --include=python3 $suite from $mirror"
    start=$SECONDS
    # One retry: a mirror hiccup should not fail a whole CI run.
    for attempt in 1 2; do
        if debootstrap --variant=minbase --include=python3 "$suite" "$tmp" "$mirror"; then
            break
        fi
        if [[ $attempt == 2 ]]; then
            echo "error: debootstrap failed twice" >&2
            return 1
        fi
        echo "base rootfs: debootstrap failed; retrying once from scratch" >&2
        cleanup
        mkdir -m 0755 "$tmp"
    done

    # Keep it small: package caches and lists are not needed at run time.
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/cache/apt/*.bin \
        "$tmp"/var/lib/apt/lists/* "$tmp"/var/log/*.log "$tmp"/var/cache/debconf/*-old \
        "$tmp"/usr/share/doc/* "$tmp"/usr/share/man/* "$tmp"/usr/share/info/*
    find "$tmp" -name __pycache__ -prune -exec rm -rf {} +

    date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/.complete"
    rm -rf --one-file-system "$dest"
    mv -T "$tmp" "$dest"
    tmp=""
    echo "base rootfs: $dest ready in $((SECONDS - start))s ($(du -sh "$dest" | cut -f1))"
}

# Everything runs from inside main, so editing this file while it runs
# cannot change what a running build does.
main "$@"
exit
