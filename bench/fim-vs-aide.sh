#!/usr/bin/env bash
# Benchmark: `plumb fim` against AIDE on the same trees, with the machine's
# SHA-256 limit (openssl, two processes) for reference.
#
#   bench/fim-vs-aide.sh            # copy of /usr + 200,000 generated small files
#   SMALL_FILES=50000 bench/fim-vs-aide.sh
#   AIDE_MT=1 bench/fim-vs-aide.sh  # also time AIDE with num_workers=100%
#
# Everything lives in a temporary directory that is removed at exit. The
# host's AIDE configuration and /var/lib/aide are never touched: AIDE runs
# with --config=FILE naming its own database paths. Caches are not dropped:
# every tool runs on a warm page cache (the first pass, openssl, warms it).
# Installs aide and time with apt-get when missing.
set -euo pipefail

SMALL_FILES=${SMALL_FILES:-200000}
USR_SRC=${USR_SRC:-/usr}
REPO=$(cd "$(dirname "$0")/.." && pwd)

need() { command -v "$1" >/dev/null 2>&1; }
if ! need aide || [ ! -x /usr/bin/time ]; then
    echo "installing aide and time with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends aide time >/dev/null
fi
need openssl || { echo "openssl is required" >&2; exit 2; }
need python3 || { echo "python3 is required" >&2; exit 2; }

echo "building plumb (release)" >&2
(cd "$REPO" && cargo build --release -q -p plumb-agent)
PLUMB="$REPO/target/release/plumb"

TMP=$(mktemp -d /var/tmp/fimbenchXXXXXX)
trap 'rm -rf "$TMP"' EXIT
ROOT="$TMP/root"
mkdir -p "$ROOT" "$TMP/plumb" "$TMP/aide" "$TMP/times"

# --- trees -------------------------------------------------------------------
need_kb=$(du -sk "$USR_SRC" 2>/dev/null | cut -f1)
free_kb=$(df -Pk "$TMP" | awk 'NR==2 {print $4}')
if [ "$free_kb" -gt $((need_kb * 2 + 4 * 1024 * 1024)) ]; then
    echo "copying $USR_SRC ($((need_kb / 1024)) MiB)" >&2
    cp -a "$USR_SRC" "$ROOT/usr"
else
    echo "disk is short: copying $USR_SRC/lib and $USR_SRC/bin only" >&2
    mkdir -p "$ROOT/usr"
    cp -a "$USR_SRC/lib" "$USR_SRC/bin" "$ROOT/usr/"
fi
echo "generating $SMALL_FILES small files" >&2
python3 - "$ROOT/small" "$SMALL_FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
random.seed(42)
per_dir = 1000
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // per_dir))
    if i % per_dir == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%04d" % (i % per_dir)), "wb") as f:
        f.write(os.urandom(random.randint(64, 4096)))
EOF
ENTRIES=$(find "$ROOT" | wc -l)
BYTES=$(du -sb "$ROOT" | cut -f1)
echo "tree: $ENTRIES entries, $((BYTES / 1024 / 1024)) MiB" >&2

# --- configurations ----------------------------------------------------------
cat >"$TMP/baseline.toml" <<'EOF'
schema = 1
id = "bench"
version = 1
[[fim]]
path = "/usr"
attributes = ["sha256", "mode", "uid", "gid", "size", "mtime", "ctime", "inode", "nlink", "type", "link_target", "xattrs"]
[[fim]]
path = "/small"
attributes = ["sha256", "mode", "uid", "gid", "size", "mtime", "ctime", "inode", "nlink", "type", "link_target", "xattrs"]
EOF
aide_conf() { # $1 = num_workers
    cat <<EOF
database_in=file:$TMP/aide/aide.db
database_out=file:$TMP/aide/aide.db.new
gzip_dbout=no
root_prefix=$ROOT
num_workers=$1
log_level=error
report_url=stdout
report_level=list_entries
Same = p+i+n+u+g+s+m+c+l+sha256+xattrs+ftype
/usr Same
/small Same
EOF
}
aide_conf 1 >"$TMP/aide/aide.conf"
aide_conf 100% >"$TMP/aide/aide-mt.conf"

# --- timing ------------------------------------------------------------------
declare -A WALL CPU RSS
# run NAME CMD...: times CMD (exit codes 0-7 accepted: both tools exit non-zero on changes)
run() {
    local name=$1
    shift
    local tf="$TMP/times/$name"
    set +e
    /usr/bin/time -f "%e %U %S %M" -o "$tf" "$@" >"$TMP/times/$name.out" 2>"$TMP/times/$name.err"
    local rc=$?
    set -e
    if [ "$rc" -gt 7 ]; then
        echo "$name failed (exit $rc):" >&2
        tail -5 "$TMP/times/$name.err" >&2
        exit 1
    fi
    read -r w u s m < <(tail -n 1 "$tf")
    WALL[$name]=$w
    CPU[$name]=$(echo "$u + $s" | bc -l)
    RSS[$name]=$m
    printf '  %-28s wall %8.2f s  cpu %8.2f s  rss %8d KiB  (exit %d)\n' "$name" "$w" "${CPU[$name]}" "$m" "$rc" >&2
}
need bc || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null; }

P_ARGS=(--baseline "$TMP/baseline.toml" --root "$ROOT" --db "$TMP/plumb/fim.db")
echo "timing (warm cache; $(nproc) cores)" >&2
(cd "$ROOT" && find . -type f -print0 >"$TMP/files.list")
run openssl-2proc sh -c "cd '$ROOT' && xargs -0 -P2 -n 2000 openssl dgst -sha256 <'$TMP/files.list' >/dev/null"
run plumb-init "$PLUMB" fim init "${P_ARGS[@]}"
run aide-init aide --config="$TMP/aide/aide.conf" --init
mv "$TMP/aide/aide.db.new" "$TMP/aide/aide.db"
run plumb-check-full "$PLUMB" fim check "${P_ARGS[@]}" --verify full
run plumb-check-metadata "$PLUMB" fim check "${P_ARGS[@]}" --verify metadata
run aide-check aide --config="$TMP/aide/aide.conf" --check
if [ -n "${AIDE_MT:-}" ]; then
    run aide-init-mt aide --config="$TMP/aide/aide-mt.conf" --init
    rm -f "$TMP/aide/aide.db.new"
    run aide-check-mt aide --config="$TMP/aide/aide-mt.conf" --check
fi

# --- same findings -----------------------------------------------------------
echo "mutating both trees" >&2
S="$ROOT/small"
echo "appended" >>"$S/d000/f0001"                                  # content
f="$S/d000/f0002"; t=$(stat -c %Y "$f"); sz=$(stat -c %s "$f")     # content, mtime restored
head -c "$sz" /dev/zero >"$f"; touch -d "@$t" "$f"
chmod 600 "$S/d000/f0003"                                            # chmod
echo new >"$S/d001/added"                                            # add
rm "$S/d001/f0004"                                                   # remove
mv "$S/d002/f0005" "$S/d002/f0005.renamed"                           # rename
rm "$S/d003/f0006"; ln -s /etc/hostname "$S/d003/f0006"              # replaced by a symlink
u=$(find "$ROOT/usr" -type f -size +10k | sort | sed -n 1p)
echo x >>"$u"                                                        # content in /usr
run plumb-check-mutated "$PLUMB" fim check "${P_ARGS[@]}" --format json
run aide-check-mutated aide --config="$TMP/aide/aide.conf" --check
python3 - "$TMP/times/plumb-check-mutated.out" >"$TMP/plumb.paths" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for c in r["changes"]:
    p = c["path"] if isinstance(c["path"], str) else "hex:" + c["path"]["hex"]
    print(p)
EOF
sed -n 's/^[fdlcbps!][^:]*: \(\/.*\)$/\1/p' "$TMP/times/aide-check-mutated.out" | sort -u >"$TMP/aide.paths"
sort -u -o "$TMP/plumb.paths" "$TMP/plumb.paths"
echo "changed paths reported by plumb:" && sed 's/^/  /' "$TMP/plumb.paths"
echo "changed paths reported by aide:" && sed 's/^/  /' "$TMP/aide.paths"
if cmp -s "$TMP/plumb.paths" "$TMP/aide.paths"; then
    echo "agree: yes ($(wc -l <"$TMP/plumb.paths") paths)"
else
    echo "agree: NO"; diff "$TMP/plumb.paths" "$TMP/aide.paths" || true
fi

# --- summary -----------------------------------------------------------------
r() { echo "scale=2; $1 / $2" | bc -l; }
echo
echo "tree: $ENTRIES entries, $((BYTES / 1024 / 1024)) MiB; $(nproc) cores; warm page cache"
printf '%-24s %10s %10s %12s\n' tool "wall s" "cpu s" "peak RSS KiB"
for n in openssl-2proc plumb-init aide-init aide-init-mt plumb-check-full plumb-check-metadata aide-check aide-check-mt; do
    [ -n "${WALL[$n]:-}" ] || continue
    printf '%-24s %10.2f %10.2f %12d\n' "$n" "${WALL[$n]}" "${CPU[$n]}" "${RSS[$n]}"
done
echo
echo "ratios (wall time; targets in brackets)"
echo "  plumb init / openssl limit:           $(r "${WALL[plumb-init]}" "${WALL[openssl-2proc]}")   [<= 1.5]"
echo "  aide init / plumb init:               $(r "${WALL[aide-init]}" "${WALL[plumb-init]}")   [>= 5]"
echo "  aide check / plumb check full:        $(r "${WALL[aide-check]}" "${WALL[plumb-check-full]}")   [>= 8]"
echo "  aide check / plumb check metadata:    $(r "${WALL[aide-check]}" "${WALL[plumb-check-metadata]}")   [>= 30]"
echo "  plumb init RSS / aide init RSS:       $(r "${RSS[plumb-init]}" "${RSS[aide-init]}")   [< 0.33]"
echo "  plumb check RSS / aide check RSS:     $(r "${RSS[plumb-check-full]}" "${RSS[aide-check]}")   [< 0.33]"
[ -z "${AIDE_MT:-}" ] || echo "  (multi-threaded aide, num_workers=100%: init / plumb init $(r "${WALL[aide-init-mt]}" "${WALL[plumb-init]}"), check / plumb full $(r "${WALL[aide-check-mt]}" "${WALL[plumb-check-full]}"))"
