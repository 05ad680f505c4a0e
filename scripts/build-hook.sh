#!/usr/bin/env bash
# Builds the static prefetch hook that `imgbake build` places in volume-mode
# images: glibc linked statically (`+crt-static`), rustls for TLS and
# hickory-dns for name resolution (a static glibc cannot load NSS modules),
# so it starts on any x86_64 Linux base, with or without Python or a libc.
#
# Output: target/hook/x86_64-unknown-linux-gnu/hook/imgbake (path printed on
# the last line). Use it with `IMGBAKE_HOOK_BINARY=<path> imgbake build …`.
# Its own target dir, so it never invalidates the normal build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=x86_64-unknown-linux-gnu
# RUSTFLAGS apply to the target only when --target is given (build scripts
# and proc macros stay dynamic, as they must).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --locked --profile hook --target "$target" --target-dir target/hook --bin imgbake "$@"
binary="target/hook/$target/hook/imgbake"
if ldd "$binary" 2>&1 | grep -q "=>"; then
    echo "build-hook: $binary is dynamically linked" >&2
    exit 1
fi
size=$(stat -c %s "$binary")
if (( size > 20 * 1024 * 1024 )); then
    echo "build-hook: $binary is $size bytes, over the 20 MiB budget" >&2
    exit 1
fi
echo "$binary"
