#!/usr/bin/env bash
# Console page timing on a fleet-sized store: seed once (plumb-loadgen seed:
# 10,000 hosts, 10 million events by default), start the collector with its
# console listener on that store, then time the fleet page (by name, and
# sorted by drift), a host page, a rule page and the baselines page as the
# collector reports them (its Server-Timing header, best of 5).
#
#   bench/console.sh                                  # SQLite
#   CONSOLE_BACKEND=postgres bench/console.sh         # a throwaway PostgreSQL (as bench/collector.sh)
#   SEED_HOSTS=1000 SEED_EVENTS=1000000 bench/console.sh
#
# The console's paths, config section and operator certificate are taken
# from variables, so this script follows the console as it is built:
#   CONSOLE_FLEET_PATH   default /fleet
#   CONSOLE_HOST_PATH    default /host/{name} ({name} replaced by a seeded host)
#   CONSOLE_TOML         config appended to collector.toml (default: [console] listen on 127.0.0.1:0)
#   CONSOLE_LISTEN_RE    sed pattern whose \1 is the console address in the log
#   CONSOLE_CERT_CMD     command issuing the operator certificate into $PKI (run with PKI set);
#                        it must leave $PKI/operator.pem and $PKI/operator.key
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=${CONSOLE_BACKEND:-sqlite}
SEED_HOSTS=${SEED_HOSTS:-10000}
SEED_EVENTS=${SEED_EVENTS:-10000000}
FLEET_PATH=${CONSOLE_FLEET_PATH:-/fleet}
HOST_PATH=${CONSOLE_HOST_PATH:-/hosts/{name\}}
CONSOLE_TOML=${CONSOLE_TOML-$'[console]\nlisten = "127.0.0.1:0"'}
LISTEN_RE=${CONSOLE_LISTEN_RE:-'.*console on \([0-9.:]*\).*'}
CERT_CMD=${CONSOLE_CERT_CMD:-'"$BIN/plumb-collector" pki issue --dir "$PKI" --operator bench-operator && cp "$PKI"/operators/bench-operator.pem "$PKI/operator.pem" && cp "$PKI"/operators/bench-operator.key "$PKI/operator.key"'}

if [ "${BENCH_PROFILE:-release}" = dev ]; then
    cargo build -q -p plumb-collector -p plumb-loadgen
    BIN=$PWD/target/debug
else
    cargo build --release -q -p plumb-collector -p plumb-loadgen
    BIN=$PWD/target/release
fi

TMP=$(mktemp -d)
chmod 755 "$TMP"
PKI=$TMP/pki
COLLECTOR_PID=""
PG_DATA=""
PG_BIN=""
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=65534 --regid=65534 --clear-groups --reset-env "$@"
    else
        "$@"
    fi
}
cleanup() {
    if [ -n "$COLLECTOR_PID" ] && kill -0 "$COLLECTOR_PID" 2>/dev/null; then
        kill "$COLLECTOR_PID" 2>/dev/null || true
        wait "$COLLECTOR_PID" 2>/dev/null || true
    fi
    if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

"$BIN/plumb-collector" pki init --dir "$PKI" >/dev/null
"$BIN/plumb-collector" pki issue --dir "$PKI" --server localhost >/dev/null
eval "$CERT_CMD" >/dev/null || { echo "the operator certificate command failed (CONSOLE_CERT_CMD)" >&2; exit 1; }

if [ "$BACKEND" = postgres ]; then
    PG_BIN=${PLUMB_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
    PG_DATA=$TMP/pg
    mkdir -m 700 "$PG_DATA"
    [ "$(id -u)" = 0 ] && chown 65534:65534 "$PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U plumb --auth=trust --encoding=UTF8 --locale=C >/dev/null
    PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'shared_buffers = 512MB\nmax_wal_size = 4GB\n' >>"$PG_DATA/postgresql.auto.conf"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w \
        -o "-k $PG_DATA -p $PG_PORT -c listen_addresses=127.0.0.1" start >/dev/null
    as_pg "$PG_BIN/psql" -X -q -h "$PG_DATA" -p "$PG_PORT" -U plumb -d postgres -c "CREATE DATABASE seed"
    URL="host=$PG_DATA port=$PG_PORT user=plumb dbname=seed"
    TARGET=$URL
    STORAGE=$(printf 'backend = "postgres"\n[storage.postgres]\nurl = "%s"\n' "$URL")
else
    TARGET="sqlite:$TMP/lite/seed.db"
    STORAGE=$(printf 'path = "%s"\n' "$TMP/lite/seed.db")
fi

echo "seeding $SEED_HOSTS hosts, $SEED_EVENTS events ($BACKEND)..."
"$BIN/plumb-loadgen" seed --backend "$TARGET" --hosts "$SEED_HOSTS" --events "$SEED_EVENTS" 2>"$TMP/seed.log" | grep '^SEED'

cat >"$TMP/collector.toml" <<TOML
[server]
listen = "127.0.0.1:0"
[tls]
ca = "pki/ca.pem"
cert = "pki/servers/localhost.pem"
key = "pki/servers/localhost.key"
crl = ["pki/crl.pem"]
[storage]
$STORAGE
$CONSOLE_TOML
TOML
"$BIN/plumb-collector" serve --config "$TMP/collector.toml" 2>"$TMP/collector.log" &
COLLECTOR_PID=$!
ADDR=""
for _ in $(seq 100); do
    ADDR=$(sed -n "s/$LISTEN_RE/\1/p" "$TMP/collector.log" | head -1)
    [ -n "$ADDR" ] && break
    sleep 0.1
done
if [ -z "$ADDR" ]; then
    echo "no console address in the collector's log (CONSOLE_TOML, CONSOLE_LISTEN_RE):" >&2
    cat "$TMP/collector.log" >&2
    exit 1
fi

# server_ms PATH: best of 5 of the collector's own time (its
# `Server-Timing: app;dur=MS` header), in milliseconds.
server_ms() {
    local best="" t code
    for _ in 1 2 3 4 5; do
        read -r code t < <(curl -s -o /dev/null -D - --cacert "$PKI/ca.pem" --cert "$PKI/operator.pem" \
            --key "$PKI/operator.key" --resolve "localhost:${ADDR##*:}:127.0.0.1" \
            "https://localhost:${ADDR##*:}$1" | tr -d '\r' |
            awk '/^HTTP/ {code=$2} tolower($1) == "server-timing:" {split($2, a, "dur="); ms=a[2]}
                 END {printf "%s %d\n", code, ms}')
        if [ "$code" != 200 ]; then
            echo "GET $1: HTTP $code" >&2
            exit 1
        fi
        if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
    done
    echo "$best"
}

host_path=${HOST_PATH//\{name\}/seed-00042}
printf '%-9s %8s %10s %9s %15s %8s %8s %12s\n' backend hosts events fleet_ms fleet_drift_ms host_ms rule_ms baselines_ms
printf '%-9s %8s %10s %9s %15s %8s %8s %12s\n' "$BACKEND" "$SEED_HOSTS" "$SEED_EVENTS" "$(server_ms "$FLEET_PATH")" \
    "$(server_ms "$FLEET_PATH?sort=drift&dir=desc")" "$(server_ms "$host_path")" "$(server_ms /rules/seed.rule-007)" \
    "$(server_ms /baselines)"
echo "(collector time from Server-Timing, best of 5; load average $(cut -d' ' -f1-3 /proc/loadavg))"
