#!/usr/bin/env bash
# Fails when a source module is missing from docs/ARCHITECTURE.md, so the
# map of the code stays true: every `.rs` file of the shipped crates must be
# named there, by its path (`agent/src/fim/diff.rs`) or by its directory and
# file name on one line (`agent/src/fim/` … `diff.rs`). lib.rs and main.rs
# are the crate roots and need no entry.
set -euo pipefail
cd "$(dirname "$0")/.."
doc=docs/ARCHITECTURE.md
missing=0
while IFS= read -r f; do
    base=${f##*/}
    case $base in lib.rs | main.rs) continue ;; esac
    dir=${f%/*}/
    grep -qF -- "$f" "$doc" && continue
    if [ "$base" = mod.rs ]; then
        grep -qF -- "$dir" "$doc" && continue
    else
        grep -F -- "$dir" "$doc" | grep -qF -- "$base" && continue
    fi
    echo "$doc does not name $f" >&2
    missing=1
done < <(find os/src core/src agent/src collector/src bench/loadgen/src -name '*.rs' | sort)
exit $missing
