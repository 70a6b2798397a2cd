#!/usr/bin/env bash
# Quickstart: a throwaway fleet of one on this machine. Creates a PKI, starts
# a collector on loopback with its embedded store, runs the agent on this host
# against it with the shipped baseline, prints the first fleet report, then
# stops both and removes everything (set KEEP=1 to keep the directory).
# The agent only reads this host: remediation is off and all state lives in
# the temporary directory.
# env: PLUMB_BIN_DIR (default target/release), QUICKSTART_TIMEOUT (s, default 120)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${PLUMB_BIN_DIR:-$top/target/release}
for b in plumb plumb-collector; do
  [ -x "$bin/$b" ] || { echo "quickstart: $bin/$b not built: run cargo build --release" >&2; exit 2; }
done
dir=$(mktemp -d /tmp/plumb-quickstart.XXXXXX)
chmod 0700 "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept: $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT INT TERM

host=$(hostname)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

echo "== PKI in $dir/pki"
"$bin/plumb-collector" pki init --dir "$dir/pki" >/dev/null
"$bin/plumb-collector" pki issue --dir "$dir/pki" --server 127.0.0.1 >/dev/null
"$bin/plumb-collector" pki issue --dir "$dir/pki" --agent "$host" >/dev/null

cat > "$dir/collector.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[tls]
ca = "$dir/pki/ca.pem"
cert = "$dir/pki/servers/127.0.0.1.pem"
key = "$dir/pki/servers/127.0.0.1.key"
crl = ["$dir/pki/crl.pem"]
[storage]
path = "$dir/collector.db"
TOML

cat > "$dir/agent.toml" <<TOML
host_id = "$host"
root = "/"
state_dir = "$dir/agent-state"
baselines = ["$top/baselines/issp-linux-server.toml"]
remediation = "off"
[collector]
url = "https://127.0.0.1:$port"
ca = "$dir/pki/ca.pem"
cert = "$dir/pki/agents/$host.pem"
key = "$dir/pki/agents/$host.key"
[limits]
hash_mb_per_s = 500
TOML
chmod 0600 "$dir"/*.toml

echo "== collector on https://127.0.0.1:$port"
"$bin/plumb-collector" serve --config "$dir/collector.toml" 2>"$dir/collector.log" &
pids+=($!)
echo "== agent for $host (shipped baseline; the first file integrity record takes a moment)"
"$bin/plumb" agent --config "$dir/agent.toml" 2>"$dir/agent.log" &
pids+=($!)

deadline=$((SECONDS + ${QUICKSTART_TIMEOUT:-120}))
reported() {
  "$bin/plumb-collector" hosts --db "$dir/collector.db" --format json 2>/dev/null | python3 -c '
import json, sys
h = json.load(sys.stdin)
h = h if isinstance(h, list) else h.get("hosts", [])
sys.exit(0 if any(x.get("score") is not None for x in h) else 1)' 2>/dev/null
}
until reported; do
  if [ $SECONDS -ge $deadline ]; then
    echo "quickstart: no report from the agent in time; logs:" >&2
    tail -5 "$dir/collector.log" "$dir/agent.log" >&2
    exit 1
  fi
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "quickstart: a process died; logs:" >&2; tail -5 "$dir/collector.log" "$dir/agent.log" >&2; exit 1; }; done
  sleep 1
done

echo
"$bin/plumb-collector" hosts --db "$dir/collector.db"
echo
"$bin/plumb-collector" report --db "$dir/collector.db" || true
