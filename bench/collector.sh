#!/usr/bin/env bash
# Collector benchmark: release build, throwaway PKI, collectors on loopback,
# plumb-loadgen with 100 and 2,000 concurrent agents (each its own certificate,
# every connection held open), peak RSS of each collector from VmHWM.
#
#   bench/collector.sh                      # SQLite, 20 s per run
#   bench/collector.sh --backend postgres   # PostgreSQL: one collector, then two on one database
#   bench/collector.sh --backend both       # both, side by side in one run
#   BENCH_SECS=60 BENCH_AGENTS="100 500 2000" bench/collector.sh
#   bench/collector.sh --backend both --queries   # also seed 10k hosts / 10M events and time the queries
#   SEED_HOSTS=1000 SEED_EVENTS=1000000 bench/collector.sh --backend both --queries --no-ingest
#   BENCH_PROFILE=dev bench/collector.sh ...   # the debug build (see below)
#   BENCH_STORAGE="queue_wait_ms = 2000" bench/collector.sh   # extra [storage] settings
#
# PostgreSQL is a throwaway server started here (Debian's postgresql package):
# initdb as an unprivileged user into a temporary directory, its socket
# there, a free port on 127.0.0.1, fsync and synchronous_commit on (durable
# commits, as in production), stopped at the end. Nothing of the host's is
# touched. With two collectors, each gets half the agents (distinct hosts)
# from its own load generator; events/s is their sum, p99 the worse one,
# RSS the larger one.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=sqlite
QUERIES=0
INGEST=1
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) BACKEND=$2; shift 2 ;;
        --queries) QUERIES=1; shift ;;
        --no-ingest) INGEST=0; shift ;;
        *) echo "usage: $0 [--backend sqlite|postgres|both] [--queries] [--no-ingest]" >&2; exit 2 ;;
    esac
done
case "$BACKEND" in
    sqlite) BACKENDS="sqlite" ;;
    postgres) BACKENDS="postgres" ;;
    both) BACKENDS="sqlite postgres" ;;
    *) echo "--backend: sqlite, postgres or both" >&2; exit 2 ;;
esac

SECS=${BENCH_SECS:-20}
AGENTS=${BENCH_AGENTS:-"100 2000"}
SYNC=${BENCH_SYNC:-full}
SEED_HOSTS=${SEED_HOSTS:-10000}
SEED_EVENTS=${SEED_EVENTS:-10000000}

# 2,000 connections on each side, plus files: raise the descriptor limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# BENCH_PROFILE=dev: the debug build already there (no release build; the
# query times are the database's, the ingestion figures are then low).
if [ "${BENCH_PROFILE:-release}" = dev ]; then
    cargo build -q -p plumb-collector -p plumb-loadgen
    BIN=$PWD/target/debug
else
    cargo build --release -q -p plumb-collector -p plumb-loadgen
    BIN=$PWD/target/release
fi

TMP=$(mktemp -d)
chmod 755 "$TMP"
PIDS=()
PG_DATA=""
PG_BIN=""
as_pg() {
    # PostgreSQL refuses to run as root: the unprivileged nobody runs it.
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=65534 --regid=65534 --clear-groups --reset-env "$@"
    else
        "$@"
    fi
}
cleanup() {
    for p in "${PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_postgres() {
    PG_BIN=${PLUMB_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
        echo "no PostgreSQL server binaries (apt install postgresql-15)" >&2
        exit 1
    fi
    PG_DATA=$TMP/pg
    mkdir -m 700 "$PG_DATA"
    [ "$(id -u)" = 0 ] && chown 65534:65534 "$PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U plumb --auth=trust --encoding=UTF8 --locale=C >"$TMP/initdb.log" 2>&1 || {
        cat "$TMP/initdb.log" >&2; exit 1; }
    PG_PORT=$(free_port)
    cat >>"$PG_DATA/postgresql.auto.conf" <<CONF
fsync = on
synchronous_commit = on
max_connections = 100
shared_buffers = 512MB
max_wal_size = 4GB
CONF
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w \
        -o "-k $PG_DATA -p $PG_PORT -c listen_addresses=127.0.0.1" start >/dev/null
    PG_URL_BASE="host=$PG_DATA port=$PG_PORT user=plumb"
}

psql_() {
    as_pg "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_DATA" -p "$PG_PORT" -U plumb -d "$1" -c "$2"
}

fresh_db() {
    psql_ postgres "DROP DATABASE IF EXISTS $1" >/dev/null 2>&1
    psql_ postgres "CREATE DATABASE $1" >/dev/null
}

# storage_toml BACKEND DB: the [storage] section.
storage_toml() {
    # BENCH_STORAGE: extra [storage] settings, e.g. "queue_wait_ms = 2000".
    [ -n "${BENCH_STORAGE:-}" ] && printf '%s\n' "$BENCH_STORAGE"
    if [ "$1" = sqlite ]; then
        printf 'path = "%s"\nsynchronous = "%s"\n' "$TMP/lite/$2.db" "$SYNC"
    else
        printf 'backend = "postgres"\n[storage.postgres]\nurl = "%s dbname=%s"\n' "$PG_URL_BASE" "$2"
    fi
}

# start_collector NAME BACKEND DB: starts it, sets ADDR and appends its pid.
start_collector() {
    cat >"$TMP/$1.toml" <<TOML
[server]
listen = "127.0.0.1:0"
max_connections = 5000
# Every simulated agent connects from 127.0.0.1: the per-address handshake
# cap (32, against one address flooding handshakes) would refuse most of
# 2,000 agents connecting at once, which real agents, each from its own
# address, never meet.
max_handshakes_per_address = 4096
max_handshakes = 4096
[tls]
ca = "pki/ca.pem"
cert = "pki/servers/localhost.pem"
key = "pki/servers/localhost.key"
crl = ["pki/crl.pem"]
[storage]
$(storage_toml "$2" "$3")
TOML
    PLUMB_LOG=warn,plumb_collector::server=info "$BIN/plumb-collector" serve --config "$TMP/$1.toml" 2>"$TMP/$1.log" &
    PIDS+=($!)
    ADDR=""
    for _ in $(seq 200); do
        ADDR=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$TMP/$1.log" | head -1)
        [ -n "$ADDR" ] && break
        sleep 0.1
    done
    if [ -z "$ADDR" ]; then
        echo "collector $1 did not start:" >&2
        cat "$TMP/$1.log" >&2
        exit 1
    fi
}

get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# ingest BACKEND AGENTS COLLECTORS: one line of figures.
ingest() {
    local backend=$1 n=$2 k=$3 db="bench_${2}_$3"
    if [ "$backend" = postgres ]; then fresh_db "$db"; else rm -f "$TMP/lite/$db".db*; fi
    local addrs=() pids=() i
    PIDS=()
    for i in $(seq "$k"); do
        start_collector "c$i" "$backend" "$db"
        addrs+=("$ADDR")
        pids+=("${PIDS[-1]}")
    done
    local per=$((n / k)) lg=()
    for i in $(seq "$k"); do
        "$BIN/plumb-loadgen" --addr "${addrs[$((i - 1))]}" --pki "$TMP/pki" --agents "$per" \
            --first $(((i - 1) * per)) --duration "$SECS" >"$TMP/lg$i.out" 2>"$TMP/lg$i.log" &
        lg+=($!)
    done
    for p in "${lg[@]}"; do
        wait "$p" || { cat "$TMP"/lg*.log >&2; exit 1; }
    done
    local events=0 rate=0 p50=0 p99=0 thr=0 err=0 rss=0 r
    for i in $(seq "$k"); do
        r=$(grep '^RESULT' "$TMP/lg$i.out")
        grep '^error:' "$TMP/lg$i.log" >&2 || true
        events=$((events + $(get "$r" events)))
        rate=$((rate + $(get "$r" events_per_s)))
        thr=$((thr + $(get "$r" throttled)))
        err=$((err + $(get "$r" errors)))
        p50=$(echo "$p50 $(get "$r" p50_ms)" | awk '{print ($2 > $1) ? $2 : $1}')
        p99=$(echo "$p99 $(get "$r" p99_ms)" | awk '{print ($2 > $1) ? $2 : $1}')
        local kb
        kb=$(awk '/VmHWM/ {print $2}' "/proc/${pids[$((i - 1))]}/status")
        [ "$kb" -gt "$rss" ] && rss=$kb
    done
    for p in "${pids[@]}"; do kill "$p"; wait "$p" || true; done
    PIDS=()
    printf '%-9s %10s %7s %10s %12s %8s %8s %9s %7s %12s\n' "$backend" "$k" "$n" "$events" "$rate" \
        "$p50" "$p99" "$thr" "$err" "$((rss / 1024))"
}

"$BIN/plumb-collector" pki init --dir "$TMP/pki" >/dev/null
"$BIN/plumb-collector" pki issue --dir "$TMP/pki" --server localhost >/dev/null
case " $BACKENDS " in *" postgres "*) start_postgres ;; esac
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "$INGEST" = 1 ]; then
    printf '%-9s %10s %7s %10s %12s %8s %8s %9s %7s %12s\n' backend collectors agents events events/s \
        p50_ms p99_ms throttled errors peak_rss_MB
    for n in $AGENTS; do
        for b in $BACKENDS; do
            ingest "$b" "$n" 1
            [ "$b" = postgres ] && ingest "$b" "$n" 2
        done
    done
    echo "(${SECS}s per run, SQLite synchronous=$SYNC, PostgreSQL fsync=on synchronous_commit=on, batches of 100 events;"
    echo " collectors, database and load generators on the same $(nproc)-core machine; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
fi

# time_ms CMD...: wall milliseconds of the best of three runs (output discarded).
time_ms() {
    local best="" t0 t1 ms
    for _ in 1 2 3; do
        t0=$(date +%s%N)
        "$@" >/dev/null || [ $? = 1 ]
        t1=$(date +%s%N)
        ms=$(((t1 - t0) / 1000000))
        if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
    done
    echo "$best"
}

if [ "$QUERIES" = 1 ]; then
    echo
    echo "queries on a seeded store: $SEED_HOSTS hosts, $SEED_EVENTS events over 35 days, 40 rules per host"
    printf '%-9s %10s %10s %14s %10s %12s\n' backend seed_s hosts_ms drift_host_ms drift_ms report_ms
    for b in $BACKENDS; do
        if [ "$b" = postgres ]; then
            fresh_db seed
            target="$PG_URL_BASE dbname=seed"
        else
            target="sqlite:$TMP/lite/seed.db"
        fi
        seed=$("$BIN/plumb-loadgen" seed --backend "$target" --hosts "$SEED_HOSTS" --events "$SEED_EVENTS" \
            2>"$TMP/seed.log" | grep '^SEED') || { cat "$TMP/seed.log" >&2; exit 1; }
        if [ "$b" = postgres ]; then psql_ seed "VACUUM ANALYZE" >/dev/null; fi
        cat >"$TMP/q.toml" <<TOML
[tls]
ca = "pki/ca.pem"
cert = "pki/servers/localhost.pem"
key = "pki/servers/localhost.key"
[storage]
$(storage_toml "$b" seed)
TOML
        C="$BIN/plumb-collector"
        h=$(time_ms "$C" hosts --config "$TMP/q.toml" --format json)
        dh=$(time_ms "$C" drift --config "$TMP/q.toml" --host seed-00042 --format json)
        d=$(time_ms "$C" drift --config "$TMP/q.toml" --format json)
        r=$(time_ms "$C" report --config "$TMP/q.toml" --format json)
        printf '%-9s %10s %10s %14s %10s %12s\n' "$b" "$(get "$seed" total_s)" "$h" "$dh" "$d" "$r"
        rm -f "$TMP"/lite/seed.db*
        if [ "$b" = postgres ]; then psql_ postgres "DROP DATABASE seed" >/dev/null; fi
    done
    echo "(wall time of the whole command, process start and JSON output included, best of 3;"
    echo " load average now $(cut -d' ' -f1-3 /proc/loadavg))"
fi
