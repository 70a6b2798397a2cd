#!/usr/bin/env bash
# Forwarding benchmark: release build, throwaway PKI, the collector on
# loopback, events stored by plumb-loadgen (as in bench/collector.sh), then
# forwarded to a real rsyslog (TLS, OpenSSL driver; started here with its own
# temporary config, never the host's service) and to an HTTPS receiver
# (python3, TLS, answers 200 to every POST). Two figures per sink:
#
#   drain:  a backlog of stored events forwarded from a standing start:
#           events / seconds until the receiver has them all;
#   lag:    forwarding while the load generator runs (BENCH_AGENTS agents,
#           BENCH_SECS s): the receiver's clock minus each event's
#           received_at (HTTP sink, 1 s resolution), p50 and max.
#
#   bench/forward.sh
#   BENCH_SECS=30 BENCH_AGENTS=200 bench/forward.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECS:-15}
AGENTS=${BENCH_AGENTS:-100}
BATCH=${BENCH_FORWARD_BATCH:-1000}
PROFILE=${BENCH_PROFILE:-release}
command -v /usr/sbin/rsyslogd >/dev/null || { echo "needs rsyslogd (apt install rsyslog rsyslog-openssl)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$PROFILE" = release ]; then
    cargo build --release -q -p plumb-collector -p plumb-loadgen
    BIN=target/release
else
    cargo build -q -p plumb-collector -p plumb-loadgen
    BIN=target/debug
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

"$BIN/plumb-collector" pki init --dir "$TMP/pki" >/dev/null
"$BIN/plumb-collector" pki issue --dir "$TMP/pki" --server localhost >/dev/null

# rsyslog: imtcp over TLS on a free port, every message one line in a file.
mkdir "$TMP/rs" "$TMP/rs/work"
cat > "$TMP/rs/rsyslog.conf" <<CONF
global(workDirectory="$TMP/rs/work" defaultNetstreamDriver="ossl"
       defaultNetstreamDriverCAFile="$TMP/pki/ca.pem"
       defaultNetstreamDriverCertFile="$TMP/pki/servers/localhost.pem"
       defaultNetstreamDriverKeyFile="$TMP/pki/servers/localhost.key")
module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="raw" type="string" string="%rawmsg%\n")
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="$TMP/rs/port" ruleset="siem")
ruleset(name="siem") { action(type="omfile" file="$TMP/rs/messages.log" template="raw") }
CONF
/usr/sbin/rsyslogd -n -f "$TMP/rs/rsyslog.conf" -i "$TMP/rs/pid" &
PIDS+=($!)

# HTTPS receiver: counts events (lines), records each one's lag.
cat > "$TMP/receiver.py" <<'PY'
import http.server, ssl, sys, json, time, threading, calendar
tmp = sys.argv[1]
count = 0
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers["content-length"]))
        now = time.time()
        lines = [l for l in body.split(b"\n") if l]
        with lock:
            count += len(lines)
            lags = []
            for l in lines[:: max(1, len(lines) // 50)]:
                t = json.loads(l)["received_at"]
                lags.append(now - calendar.timegm(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")))
            open(tmp + "/http.count", "w").write(str(count))
            with open(tmp + "/http.lags", "a") as f:
                f.write("".join("%.1f\n" % x for x in lags))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(tmp + "/pki/servers/localhost.pem", tmp + "/pki/servers/localhost.key")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
open(tmp + "/http.port", "w").write(str(s.server_address[1]))
s.serve_forever()
PY
python3 "$TMP/receiver.py" "$TMP" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$TMP/rs/port" ] && [ -s "$TMP/http.port" ] && break; sleep 0.1; done
RS_PORT=$(cat "$TMP/rs/port")
HTTP_PORT=$(cat "$TMP/http.port")

# $1: extra TOML (the sink, or nothing)
config() {
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
$1
TOML
}
sink_syslog="[[forward]]
name = \"rsyslog\"
type = \"syslog\"
address = \"127.0.0.1:$RS_PORT\"
server_name = \"localhost\"
ca = \"pki/ca.pem\"
batch_events = $BATCH
poll_interval_ms = 200"
sink_http="[[forward]]
name = \"http\"
type = \"http\"
url = \"https://localhost:$HTTP_PORT/ingest\"
ca = \"pki/ca.pem\"
batch_events = $BATCH
poll_interval_ms = 200"

COLLECTOR_PID=""
start_collector() {
    PLUMB_LOG=warn,plumb_collector=info "$BIN/plumb-collector" serve --config "$TMP/collector.toml" 2>"$TMP/collector.log" &
    COLLECTOR_PID=$!
    PIDS+=("$COLLECTOR_PID")
    ADDR=""
    for _ in $(seq 100); do
        ADDR=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$TMP/collector.log" | head -1)
        [ -n "$ADDR" ] && break
        sleep 0.1
    done
    [ -n "$ADDR" ] || { cat "$TMP/collector.log" >&2; exit 1; }
}
stop_collector() {
    kill "$COLLECTOR_PID"; wait "$COLLECTOR_PID" || true
}
load() {
    "$BIN/plumb-loadgen" --addr "$ADDR" --pki "$TMP/pki" --agents "$AGENTS" --duration "$SECS" 2>"$TMP/loadgen.log" |
        sed -n 's/^RESULT.* events=\([0-9]*\) .*/\1/p'
}
received() {
    case $1 in
        rsyslog) v=$(wc -l < "$TMP/rs/messages.log" 2>/dev/null || true); echo "${v:-0}" ;;
        # The receiver rewrites the file: an empty read is "not yet".
        http) v=$(cat "$TMP/http.count" 2>/dev/null || true); echo "${v:-0}" ;;
    esac
}
# Waits until sink $1 has $2 events; prints the seconds it took from $3 (epoch ns).
wait_for() {
    while [ "$(received "$1")" -lt "$2" ]; do
        sleep 0.05
        if ! kill -0 "$COLLECTOR_PID" 2>/dev/null; then cat "$TMP/collector.log" >&2; exit 1; fi
    done
    echo "$(( $(date +%s%N) - $3 ))" | awk '{printf "%.2f", $1 / 1e9}'
}

# The backlog: stored once, without sinks.
config ""
start_collector
stored=$(load)
stop_collector

printf '%-8s %10s %9s %10s\n' sink events seconds events/s
for s in rsyslog http; do
    if [ $s = rsyslog ]; then config "$sink_syslog"; else config "$sink_http"; fi
    t0=$(date +%s%N)
    start_collector
    secs=$(wait_for $s "$stored" "$t0")
    stop_collector
    printf '%-8s %10s %9s %10.0f\n' $s "$stored" "$secs" "$(echo "$stored / $secs" | bc -l)"
done

# Lag under load: the HTTP sink forwards while the load generator runs.
: > "$TMP/http.lags"
config "$sink_http"
start_collector
before=$(received http)
more=$(load)
t0=$(date +%s%N)
after=$(wait_for http "$((before + more))" "$t0")
stop_collector
sort -n "$TMP/http.lags" | awk -v n="$more" -v secs="$SECS" -v agents="$AGENTS" -v tail="$after" '
    { v[NR] = $1 } END {
        printf "lag under load (%s agents, %s events in %s s): p50 %.1f s, max %.1f s; caught up %s s after the load stopped\n",
            agents, n, secs, v[int(NR / 2) + 1], v[NR], tail }'
echo "(backlog: $stored events of plumb-loadgen's mix; batch_events=$BATCH; collector, receivers and load generator on the same $(nproc)-core machine; profile $PROFILE)"
