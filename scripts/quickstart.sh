#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: build imgbake, make a small
# Debian base (debootstrap, cached under target/), and build a fixture
# project into an OCI image layout directory — no Docker daemon involved.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in debootstrap skopeo; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ca-certificates >/dev/null
fi

echo "== building imgbake (release)"
cargo build --release --quiet

# shellcheck source=scripts/target-dir.sh
source scripts/target-dir.sh
imgbake="$target_dir/release/imgbake"

echo "== base root filesystem (debootstrap bookworm + python3, cached)"
rootfs=target/imgbake-fixtures/bookworm-python-rootfs
bash scripts/make-base-rootfs.sh "$rootfs"

echo "== imgbake validate fixtures/cerebrium-local-weights"
"$imgbake" validate fixtures/cerebrium-local-weights

echo "== imgbake build fixtures/cerebrium-local-weights → oci:imgbake-out:local-weights"
"$imgbake" build fixtures/cerebrium-local-weights \
  --base "rootfs:$rootfs" --output oci:imgbake-out:local-weights

echo "== skopeo inspect oci:imgbake-out:local-weights"
skopeo inspect oci:imgbake-out:local-weights
