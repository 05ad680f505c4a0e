# Sourced by the scripts that run what cargo built (not run on its own).
# Sets $target_dir to the directory cargo builds into: CARGO_TARGET_DIR,
# `build.target-dir` of a .cargo/config.toml, or ./target. cargo itself
# answers (`cargo metadata`), so every way of moving it is honoured; when
# that fails, CARGO_TARGET_DIR or ./target is used.
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null) ||
  target_dir=""
if [[ -z "$target_dir" ]]; then
  target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
fi
