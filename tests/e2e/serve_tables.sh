#!/usr/bin/env bash
# Tables and /openapi/v3 of `klua serve` over raw HTTP: starts the server on
# a free port, runs serve_tables.py, stops it. Prints "ok N - name" lines.
set -u
KLUA_BIN=${KLUA_BIN:-build/klua}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'kill $PID 2>/dev/null; rm -rf "$TMP"' EXIT
"$KLUA_BIN" serve --listen 127.0.0.1:0 >"$TMP/out" 2>"$TMP/err" &
PID=$!
for _ in $(seq 50); do grep -q listening "$TMP/out" && break; sleep 0.1; done
PORT=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/out")
if [ -z "$PORT" ]; then echo "not ok 1 - server start"; cat "$TMP/err"; exit 1; fi
/usr/bin/python3 "$HERE/serve_tables.py" "$PORT"
