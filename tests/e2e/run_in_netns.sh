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
page="http://127.0.0.1:$port/${PAGE_QUERY:-}"
if [ -n "${PAGE_FROM:-}" ]; then  # a script that prepares the call (rooms, tokens) and prints the page URL
  page=$("$root/.venv/bin/python" "$PAGE_FROM" "http://127.0.0.1:$port" 2>>"$log") || { echo '{"ok": false, "error": "PAGE_FROM failed"}'; cat "$log" >&2; exit 0; }
fi
backend=
if [ -n "${EMBED_PORT:-}" ]; then  # examples/backend.py: another origin that serves the embed page and mints tokens
  "$root/.venv/bin/python" "$root/examples/backend.py" --parley "http://127.0.0.1:$port" --api-key "$PARLEY_AUTH__API_KEY" \
    --port "$EMBED_PORT" >>"$log" 2>&1 &
  backend=$!
  trap 'kill $server $turn_pid $backend 2>/dev/null; wait $server $turn_pid $backend 2>/dev/null || true' EXIT
  for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$EMBED_PORT/" >/dev/null 2>&1 && break; sleep 0.25; done
  page="http://127.0.0.1:$EMBED_PORT/"
fi
PARLEY_URL="http://127.0.0.1:$port" node "$here/call_page.mjs" "$page" "$wav" "$timeout_ms" "$shot" "$expect"
if [ -n "$turn_pid" ]; then sleep 1; fi  # coturn logs a session's traffic as the allocation ends
echo "--- server log ---" >&2
cat "$log" >&2
