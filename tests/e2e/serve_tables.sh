#!/usr/bin/env bash
# Tables and /openapi/v3 of `klua serve` over raw HTTP: starts the server on
# a free port, runs serve_tables.py, stops it. Prints "ok N - name" lines.
set -u
. "$(dirname "$0")/lib.bash"
if ! start_serve "$D/serve.log" --listen 127.0.0.1:0; then
  echo "not ok 1 - server start"; cat "$D/serve.log"; exit 1
fi
/usr/bin/python3 "$ROOT/tests/e2e/serve_tables.py" "${SURL##*:}"
