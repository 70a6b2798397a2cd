#!/usr/bin/env bash
# Benchmarks `plumb check` with the shipped baseline on this host and puts the
# figures next to their targets, a bare `find` over the same trees (the floor
# for the find rules) and one `lynis audit system --quick` run.
#
# Usage: bench/check.sh        (no arguments; run from anywhere in the repo)
# Env:   RUNS (default 20)     runs of each plumb configuration
#        CARGO_TARGET_DIR      honoured, as cargo does
#        FIND_RUNS (default 5) runs of the bare find
#
# Reads the host only. It may install the `time` and `lynis` apt packages if
# they are missing; lynis writes its log and report into a temporary directory.
set -euo pipefail

RUNS=${RUNS:-20}
FIND_RUNS=${FIND_RUNS:-5}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASELINE="$REPO/baselines/issp-linux-server.toml"
TIME=/usr/bin/time
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench: $1 is missing and installing it needs root" >&2
        return 1
    fi
    echo "bench: installing apt package $1" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null 2>&1; }
}

[ -x "$TIME" ] || apt_install time

echo "bench: building plumb (release)" >&2
(cd "$REPO" && cargo build --release -q -p plumb-agent)
PLUMB="${CARGO_TARGET_DIR:-$REPO/target}/release/plumb"
"$PLUMB" baseline lint "$BASELINE" >/dev/null

# The shipped baseline without its find rules: drop every [[rule]] block whose
# check is of kind "find" (a block runs to the next [[rule]] or [[fim]]).
NOFIND="$TMP/no-find.toml"
awk '
    function flush() { if (block != "" && !(is_rule && block ~ /kind = "find"/)) printf "%s", block; block = "" }
    /^\[\[(rule|fim)\]\]/ { flush(); is_rule = ($0 ~ /^\[\[rule\]\]/) }
    { block = block $0 "\n" }
    END { flush() }
' "$BASELINE" >"$NOFIND"
"$PLUMB" baseline lint "$NOFIND" >/dev/null
total_rules=$(grep -c '^\[\[rule\]\]' "$BASELINE")
nofind_rules=$(grep -c '^\[\[rule\]\]' "$NOFIND")

# The trees the find rules walk, e.g. "/" from `paths = ["/"]`.
mapfile -t FIND_PATHS < <(
    grep -o 'kind = "find", paths = \[[^]]*\]' "$BASELINE" |
        sed 's/.*paths = \[//; s/\]$//' | tr ',' '\n' |
        sed 's/^ *"//; s/" *$//' | grep -v '^$' | sort -u
)
[ "${#FIND_PATHS[@]}" -gt 0 ] || FIND_PATHS=(/)
# The bare find gets only the paths that start a filesystem of their own (and
# the first one): with -xdev, /var on the root filesystem is already walked
# as part of /, and walking it twice would flatter plumb.
BARE_PATHS=()
for p in "${FIND_PATHS[@]}"; do
    [ -d "$p" ] || continue
    if [ "${#BARE_PATHS[@]}" -eq 0 ] || [ "$p" = / ] ||
        [ "$(stat -c %d "$p")" != "$(stat -c %d "$(dirname "$p")")" ]; then
        BARE_PATHS+=("$p")
    fi
done

now_ns() { date +%s%N; }

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
max() { sort -n | tail -n 1; }

# measure NAME RUNS CMD...: wall time in ms (from the shell, nanosecond clock)
# and peak RSS in KB (from /usr/bin/time %M) of each run, into $TMP/NAME.{ms,kb}.
# Exit 1 is normal for plumb check (failures exist); 2 and above are not.
measure() {
    local name=$1 runs=$2
    shift 2
    : >"$TMP/$name.ms"
    : >"$TMP/$name.kb"
    local i t0 t1 rc
    for ((i = 0; i < runs; i++)); do
        t0=$(now_ns)
        set +e
        "$TIME" -f "%e %M" -o "$TMP/$name.time" "$@" >/dev/null 2>"$TMP/$name.err"
        rc=$?
        set -e
        t1=$(now_ns)
        if [ "$rc" -gt 1 ]; then
            echo "bench: $name exited $rc:" >&2
            cat "$TMP/$name.err" >&2
            exit 1
        fi
        echo $(((t1 - t0) / 1000000)) >>"$TMP/$name.ms"
        tail -n 1 "$TMP/$name.time" | awk '{ print $2 }' >>"$TMP/$name.kb"
    done
}

echo "bench: warming the page cache" >&2
"$PLUMB" check --format json >/dev/null 2>&1 || true
find "${BARE_PATHS[@]}" -xdev -print >/dev/null 2>&1 || true

echo "bench: plumb check, $RUNS runs each" >&2
measure full "$RUNS" "$PLUMB" check --format json
measure nofind "$RUNS" "$PLUMB" check --format json --baseline "$NOFIND"

echo "bench: bare find over ${BARE_PATHS[*]}, $FIND_RUNS runs" >&2
measure find "$FIND_RUNS" find "${BARE_PATHS[@]}" -xdev \
    \( -perm -0002 -o -perm /6000 -o -nouser -o -nogroup \) -print

lynis_ok=1
if ! command -v lynis >/dev/null 2>&1; then
    apt_install lynis || lynis_ok=0
fi
if [ "$lynis_ok" -eq 1 ] && command -v lynis >/dev/null 2>&1; then
    echo "bench: lynis audit system --quick, 1 run" >&2
    measure lynis 1 lynis audit system --quick --no-colors \
        --logfile "$TMP/lynis.log" --report-file "$TMP/lynis-report.dat"
else
    lynis_ok=0
fi

full_ms=$(median <"$TMP/full.ms")
full_kb=$(max <"$TMP/full.kb")
nofind_ms=$(median <"$TMP/nofind.ms")
nofind_kb=$(max <"$TMP/nofind.kb")
find_ms=$(median <"$TMP/find.ms")
find_kb=$(max <"$TMP/find.kb")

verdict() { if awk "BEGIN { exit !($1) }"; then echo "ok"; else echo "MISSED"; fi; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "n/a"; else printf "%.2fx", a / b }'; }

echo
echo "host: $(hostname)  kernel: $(uname -r)  cores: $(nproc)"
echo "baseline: $BASELINE ($total_rules rules; $nofind_rules without find rules)"
echo "find rules walk: ${FIND_PATHS[*]}"
echo "separate filesystems among them (the bare find walks these): ${BARE_PATHS[*]}"
echo
printf '%-34s %10s %10s   %s\n' "configuration" "wall(med)" "peak RSS" "targets"
printf '%-34s %8s ms %10s   wall < 100 ms: %s; RSS < 15 MB: %s\n' \
    "plumb check, no find rules" "$nofind_ms" "$(mb "$nofind_kb")" \
    "$(verdict "$nofind_ms < 100")" "$(verdict "$nofind_kb < 15360")"
printf '%-34s %8s ms %10s   wall <= 1.5x bare find (%s): %s; RSS < 15 MB: %s\n' \
    "plumb check, full baseline" "$full_ms" "$(mb "$full_kb")" \
    "$(ratio "$full_ms" "$find_ms")" "$(verdict "$full_ms <= 1.5 * $find_ms")" \
    "$(verdict "$full_kb < 15360")"
printf '%-34s %8s ms %10s   the floor for the find rules\n' \
    "bare find (median of $FIND_RUNS)" "$find_ms" "$(mb "$find_kb")"
if [ "$lynis_ok" -eq 1 ]; then
    lynis_ms=$(median <"$TMP/lynis.ms")
    lynis_kb=$(max <"$TMP/lynis.kb")
    printf '%-34s %8s ms %10s   lynis/plumb wall: %s (peak RSS of lynis'"'"'s largest process)\n' \
        "lynis audit system --quick" "$lynis_ms" "$(mb "$lynis_kb")" \
        "$(ratio "$lynis_ms" "$full_ms")"
else
    echo "lynis: not available (could not install it), no comparison"
fi
