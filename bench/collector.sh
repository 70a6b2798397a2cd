#!/usr/bin/env bash
# Collector benchmark: release build, throwaway PKI, the collector on loopback,
# plumb-loadgen with 100 and 2,000 concurrent agents (each its own certificate,
# every connection held open), peak RSS of the collector from VmHWM.
#
#   bench/collector.sh            # 20 s per run
#   BENCH_SECS=60 bench/collector.sh
#   BENCH_AGENTS="100 500 2000" bench/collector.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECS:-20}
AGENTS=${BENCH_AGENTS:-"100 2000"}
SYNC=${BENCH_SYNC:-full}

# 2,000 connections on each side, plus files: raise the descriptor limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release -q -p plumb-collector -p plumb-loadgen
BIN=target/release

TMP=$(mktemp -d)
COLLECTOR_PID=""
cleanup() {
    if [ -n "$COLLECTOR_PID" ] && kill -0 "$COLLECTOR_PID" 2>/dev/null; then
        kill "$COLLECTOR_PID" 2>/dev/null || true
        wait "$COLLECTOR_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

"$BIN/plumb-collector" pki init --dir "$TMP/pki" >/dev/null
"$BIN/plumb-collector" pki issue --dir "$TMP/pki" --server localhost >/dev/null

printf '%-7s %10s %12s %8s %8s %9s %7s %12s\n' agents events events/s p50_ms p99_ms throttled errors peak_rss_MB
for n in $AGENTS; do
    rm -f "$TMP"/collector.db*
    cat > "$TMP/collector.toml" <<TOML
[server]
listen = "127.0.0.1:0"
max_connections = 5000
[tls]
ca = "pki/ca.pem"
cert = "pki/servers/localhost.pem"
key = "pki/servers/localhost.key"
crl = ["pki/crl.pem"]
[storage]
path = "collector.db"
synchronous = "$SYNC"
TOML
    PLUMB_LOG=warn,plumb_collector::server=info "$BIN/plumb-collector" serve --config "$TMP/collector.toml" 2>"$TMP/collector.log" &
    COLLECTOR_PID=$!
    addr=""
    for _ in $(seq 100); do
        addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$TMP/collector.log" | head -1)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        echo "collector did not start:" >&2
        cat "$TMP/collector.log" >&2
        exit 1
    fi
    result=$("$BIN/plumb-loadgen" --addr "$addr" --pki "$TMP/pki" --agents "$n" --duration "$SECS" 2>"$TMP/loadgen.log" | grep '^RESULT') || {
        cat "$TMP/loadgen.log" >&2
        exit 1
    }
    # What went wrong, when something did (one line per distinct error).
    grep '^error:' "$TMP/loadgen.log" >&2 || true
    rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$COLLECTOR_PID/status")
    kill "$COLLECTOR_PID"
    wait "$COLLECTOR_PID" || true
    COLLECTOR_PID=""
    get() { echo "$result" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    printf '%-7s %10s %12s %8s %8s %9s %7s %12s\n' "$n" "$(get events)" "$(get events_per_s)" \
        "$(get p50_ms)" "$(get p99_ms)" "$(get throttled)" "$(get errors)" "$((rss_kb / 1024))"
done
echo "(${SECS}s per run, synchronous=$SYNC, batches of 100 events, collector and load generator on the same $(nproc)-core machine)"
