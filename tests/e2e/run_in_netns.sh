#!/usr/bin/env bash
# Run one browser call inside a private network namespace that has only `lo`:
# start `parley serve` there, drive chromium against it, print the driver's JSON line, stop.
#   run_in_netns.sh <wav> <port> <timeout-ms> <screenshot> <answer|barge-in> [extra parley serve args...]
set -euo pipefail
wav=$1 port=$2 timeout_ms=$3 shot=$4 expect=$5; shift 5
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ip link set lo up
log=$(mktemp /tmp/parley-e2e-server.XXXX.log)
turn_pid=
if [ -n "${TURN_CONF:-}" ]; then  # a coturn for relay-only calls, inside the same namespace
  turnserver -c "$TURN_CONF" >/dev/null 2>&1 &
  turn_pid=$!
fi
"$root/.venv/bin/parley" serve --port "$port" --ice-host-address 127.0.0.1 "$@" >"$log" 2>&1 &
server=$!
trap 'kill $server $turn_pid 2>/dev/null; wait $server $turn_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 $server 2>/dev/null; then echo '{"ok": false, "error": "server exited"}'; cat "$log" >&2; exit 0; fi
  sleep 0.5
done
node "$here/call_page.mjs" "http://127.0.0.1:$port/${PAGE_QUERY:-}" "$wav" "$timeout_ms" "$shot" "$expect"
if [ -n "$turn_pid" ]; then sleep 1; fi  # coturn logs a session's traffic as the allocation ends
echo "--- server log ---" >&2
cat "$log" >&2
