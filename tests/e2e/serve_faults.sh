#!/usr/bin/env bash
# Fault injection of `klua serve --faults on` over raw HTTP: starts the
# server on a free port, runs serve_faults.py against it, stops it with
# SIGTERM. Prints "ok N - name" lines.
set -u
. "$(dirname "$0")/lib.bash"
if ! start_serve "$D/serve.log" --listen 127.0.0.1:0 --faults on; then
  echo "not ok 1 - server start"; cat "$D/serve.log"; exit 1
fi
/usr/bin/python3 "$ROOT/tests/e2e/serve_faults.py" "${SURL##*:}" "$KLUA"
rc=$?
stop_rc "$SPID" 10
if [ $RC -eq 0 ]; then echo "ok - server exits 0 on SIGTERM"; else echo "not ok - server exit status $RC"; cat "$D/serve.log"; rc=1; fi
exit $rc
