#!/usr/bin/env bash
# Benchmarks `plumb check` with the shipped baseline on this host and puts the
# figures next to their targets: the rules without the find-like ones (find,
# package_files; target < 100 ms, < 15 MB), the package_files rules alone
# next to a bare md5sum of the files they hash, the full baseline next to a
# bare `find` over the same trees (the floor for the find rules), and one
# `lynis audit system --quick` run. Wall time, user+sys CPU time (what to
# compare on a loaded machine) and peak RSS, with the load average.
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

# The shipped baseline without its find-like rules, the set the 100 ms target
# is about: drop every [[rule]] block whose check is of kind "find" or
# "package_files" (a block runs to the next [[rule]] or [[fim]]). Why
# package_files counts as find-like: such a rule reads and hashes every byte
# of the files its packages shipped (coreutils, systemd, PAM, sudo, ssh, the
# kernel image and its modules: about 1,800 files and 44 MB on a Debian 12
# server), so its cost follows the data installed, like a tree walk, not the
# number of rules. It is not hidden: it has its own line below, next to a bare
# md5sum of the same files (its floor).
# keep_rules KIND_REGEX FILE: the [[rule]] blocks whose check kind matches,
# with the header; drop_rules KIND_REGEX FILE: every block but those.
filter_rules() {
    awk -v kinds="$1" -v keep="$2" '
        function flush() {
            if (block != "") {
                hit = is_rule && match(block, "check = \\{ kind = \"(" kinds ")\"")
                if (!started || (keep ? hit : !hit)) printf "%s", block
            }
            block = ""
        }
        /^\[\[(rule|fim)\]\]/ { flush(); started = 1; is_rule = ($0 ~ /^\[\[rule\]\]/) }
        { block = block $0 "\n" }
        END { flush() }
    ' "$3"
}
NOFIND="$TMP/no-find.toml"
filter_rules 'find|package_files' 0 "$BASELINE" >"$NOFIND"
PKGFILES="$TMP/package-files.toml"
filter_rules 'package_files' 1 "$BASELINE" >"$PKGFILES"
"$PLUMB" baseline lint "$NOFIND" >/dev/null
"$PLUMB" baseline lint "$PKGFILES" >/dev/null
total_rules=$(grep -c '^\[\[rule\]\]' "$BASELINE")
nofind_rules=$(grep -c '^\[\[rule\]\]' "$NOFIND")
pkgfiles_rules=$(grep -c '^\[\[rule\]\]' "$PKGFILES")

# The files the package_files rules hash (their packages' md5sums lists),
# for the bare md5sum floor.
PKGFILES_LIST="$TMP/package-files.list"
: >"$PKGFILES_LIST"
if command -v dpkg-query >/dev/null 2>&1; then
    mapfile -t PKG_GLOBS < <(
        grep -o 'kind = "package_files", packages = \[[^]]*\]' "$BASELINE" |
            sed 's/.*packages = \[//; s/\]$//' | tr ',' '\n' |
            sed 's/^ *"//; s/" *$//' | grep -v '^$' | sort -u
    )
    # dpkg-query exits 1 when a pattern matches no package: not an error here.
    { dpkg-query -W -f '${binary:Package} ${db:Status-Status}\n' "${PKG_GLOBS[@]}" 2>/dev/null || true; } |
        awk '$2 == "installed" { print $1 }' |
        while read -r pkg; do
            list=$(dpkg-query --control-path "$pkg" md5sums 2>/dev/null || true)
            if [ -n "$list" ] && [ -f "$list" ]; then sed 's/^[0-9a-f]* *//; s|^|/|' "$list"; fi
        done | sort -u >"$PKGFILES_LIST"
fi
pkgfiles_count=$(wc -l <"$PKGFILES_LIST")
pkgfiles_bytes=$(tr '\n' '\0' <"$PKGFILES_LIST" | xargs -0 -r stat -c %s -- 2>/dev/null |
    awk '{ s += $1 } END { print s + 0 }')

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

# measure NAME RUNS CMD...: wall time in ms (from the shell, nanosecond clock),
# user+sys CPU time in ms and peak RSS in KB (from /usr/bin/time %U %S %M) of
# each run, into $TMP/NAME.{ms,cpu,kb}. CPU time is what to compare when the
# machine is loaded: waiting for a core inflates the wall time, not it.
# Exit 1 is normal for plumb check (failures exist); 2 and above are not.
measure() {
    local name=$1 runs=$2
    shift 2
    : >"$TMP/$name.ms"
    : >"$TMP/$name.cpu"
    : >"$TMP/$name.kb"
    local i t0 t1 rc
    for ((i = 0; i < runs; i++)); do
        t0=$(now_ns)
        set +e
        "$TIME" -f "%e %M %U %S" -o "$TMP/$name.time" "$@" >/dev/null 2>"$TMP/$name.err"
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
        tail -n 1 "$TMP/$name.time" | awk '{ printf "%d\n", ($3 + $4) * 1000 }' >>"$TMP/$name.cpu"
    done
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: warming the page cache" >&2
"$PLUMB" check --format json >/dev/null 2>&1 || true
find "${BARE_PATHS[@]}" -xdev -print >/dev/null 2>&1 || true

echo "bench: plumb check, $RUNS runs each" >&2
measure full "$RUNS" "$PLUMB" check --format json
measure nofind "$RUNS" "$PLUMB" check --format json --baseline "$NOFIND"
measure pkgfiles "$RUNS" "$PLUMB" check --format json --baseline "$PKGFILES"
if [ "$pkgfiles_count" -gt 0 ]; then
    echo "bench: bare md5sum of the $pkgfiles_count files the package_files rules hash, $FIND_RUNS runs" >&2
    tr '\n' '\0' <"$PKGFILES_LIST" >"$TMP/package-files.nul"
    # Files missing on this host make md5sum exit 1: the floor still counts.
    measure md5sum "$FIND_RUNS" sh -c 'xargs -0 -r -a "$1" md5sum -- >/dev/null 2>&1; exit 0' \
        sh "$TMP/package-files.nul"
fi

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
full_cpu=$(median <"$TMP/full.cpu")
nofind_cpu=$(median <"$TMP/nofind.cpu")
pkgfiles_ms=$(median <"$TMP/pkgfiles.ms")
pkgfiles_cpu=$(median <"$TMP/pkgfiles.cpu")
pkgfiles_kb=$(max <"$TMP/pkgfiles.kb")
full_kb=$(max <"$TMP/full.kb")
nofind_ms=$(median <"$TMP/nofind.ms")
nofind_kb=$(max <"$TMP/nofind.kb")
find_ms=$(median <"$TMP/find.ms")
find_kb=$(max <"$TMP/find.kb")

verdict() { if awk "BEGIN { exit !($1) }"; then echo "ok"; else echo "MISSED"; fi; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "n/a"; else printf "%.2fx", a / b }'; }

echo
echo "host: $(hostname)  kernel: $(uname -r)  cores: $(nproc)  load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "baseline: $BASELINE ($total_rules rules; $nofind_rules without find and package_files rules; $pkgfiles_rules package_files rules)"
echo "find rules walk: ${FIND_PATHS[*]}"
echo "separate filesystems among them (the bare find walks these): ${BARE_PATHS[*]}"
echo "package_files rules hash: $pkgfiles_count files, $(mb "$((pkgfiles_bytes / 1024))")"
echo
printf '%-38s %10s %10s %10s   %s\n' "configuration" "wall(med)" "cpu(med)" "peak RSS" "targets"
printf '%-38s %8s ms %7s ms %10s   wall < 100 ms: %s; RSS < 15 MB: %s\n' \
    "plumb check, no find(-like) rules" "$nofind_ms" "$nofind_cpu" "$(mb "$nofind_kb")" \
    "$(verdict "$nofind_ms < 100")" "$(verdict "$nofind_kb < 15360")"
printf '%-38s %8s ms %7s ms %10s   no target; compare with the md5sum floor\n' \
    "plumb check, package_files rules only" "$pkgfiles_ms" "$pkgfiles_cpu" "$(mb "$pkgfiles_kb")"
if [ "$pkgfiles_count" -gt 0 ]; then
    printf '%-38s %8s ms %7s ms %10s   the floor for the package_files rules\n' \
        "bare md5sum (median of $FIND_RUNS)" "$(median <"$TMP/md5sum.ms")" \
        "$(median <"$TMP/md5sum.cpu")" "$(mb "$(max <"$TMP/md5sum.kb")")"
fi
printf '%-38s %8s ms %7s ms %10s   wall <= 1.5x bare find (%s): %s; RSS < 15 MB: %s\n' \
    "plumb check, full baseline" "$full_ms" "$full_cpu" "$(mb "$full_kb")" \
    "$(ratio "$full_ms" "$find_ms")" "$(verdict "$full_ms <= 1.5 * $find_ms")" \
    "$(verdict "$full_kb < 15360")"
printf '%-38s %8s ms %7s ms %10s   the floor for the find rules\n' \
    "bare find (median of $FIND_RUNS)" "$find_ms" "$(median <"$TMP/find.cpu")" "$(mb "$find_kb")"
if [ "$lynis_ok" -eq 1 ]; then
    lynis_ms=$(median <"$TMP/lynis.ms")
    lynis_kb=$(max <"$TMP/lynis.kb")
    printf '%-38s %8s ms %7s ms %10s   lynis/plumb wall: %s (peak RSS of lynis'"'"'s largest process)\n' \
        "lynis audit system --quick" "$lynis_ms" "$(median <"$TMP/lynis.cpu")" "$(mb "$lynis_kb")" \
        "$(ratio "$lynis_ms" "$full_ms")"
else
    echo "lynis: not available (could not install it), no comparison"
fi
