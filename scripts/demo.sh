#!/usr/bin/env bash
# Sets everything up and runs the main job, as in the tutorial: `framecast serve` streams
# "Welcome to the server!" and then the time every 3 seconds; `framecast connect` (with the
# tutorial's 16-byte buffer) prints each message. Stops after FRAMECAST_DEMO_COUNT messages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
bash scripts/build.sh default >/dev/null
bin=build/default/bin/framecast
port=${FRAMECAST_DEMO_PORT:-1243}
count=${FRAMECAST_DEMO_COUNT:-4}

ready=$(mktemp)
"$bin" serve --listen "127.0.0.1:$port" >"$ready" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true; rm -f "$ready"' EXIT
for _ in $(seq 50); do  # the server prints "listening on ..." once it accepts (5 s at most)
  grep -q "listening on" "$ready" && break
  kill -0 $server 2>/dev/null || { echo "framecast serve did not start" >&2; exit 1; }
  sleep 0.1
done
echo "== framecast connect 127.0.0.1:$port --buffer 16 --count $count" >&2
"$bin" connect "127.0.0.1:$port" --buffer 16 --count "$count"
