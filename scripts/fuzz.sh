#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for SECONDS (default
# 30) from its corpus in fuzz/corpus/<target>, failing on the first crash,
# panic, timeout or out-of-memory (docs/fuzzing.md). New inputs the run finds
# go to a temporary directory, not into the repository; a crashing input is
# left in fuzz/artifacts/<target>/ and its path printed.
#
#   scripts/fuzz.sh [SECONDS] [TARGET]...
#
# cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them. No sanitizer (-s none): the code under test is safe
# Rust, and the build and the runs are several times faster; debug
# assertions and overflow checks are on (-a).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
flags=(-O -a -s none --target-dir "$PWD/target/fuzz")
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build "${flags[@]}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in "${targets[@]}"; do
  echo "== fuzz $t (${secs}s)"
  mkdir -p "$tmp/$t" "fuzz/corpus/$t"
  # A target's dictionary (fuzz/dicts/<target>.dict: its keywords) when it has one.
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=(-dict="fuzz/dicts/$t.dict")
  if ! cargo fuzz run "${flags[@]}" "$t" "$tmp/$t" "fuzz/corpus/$t" -- "${dict[@]}" \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$tmp/$t.log" 2>&1; then
    tail -n 60 "$tmp/$t.log" >&2
    echo "fuzz target $t failed (input in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+[[:space:]]+DONE' "$tmp/$t.log" || true
done
