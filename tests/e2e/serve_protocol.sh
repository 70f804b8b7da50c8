#!/usr/bin/env bash
# Protocol tests of `klua serve` over raw HTTP: starts the server on a free
# port (small history and bookmark interval so expiry and bookmarks are
# quick), runs serve_protocol.py against it, then stops it with SIGTERM and
# checks a clean exit. Prints TAP-like "ok N - name" lines.
set -u
. "$(dirname "$0")/lib.bash"
if ! start_serve "$D/serve.log" --listen 127.0.0.1:0 --history 50 \
    --bookmark-interval 1 --max-body-bytes 100000; then
  echo "not ok 1 - server start"; cat "$D/serve.log"; exit 1
fi
/usr/bin/python3 "$ROOT/tests/e2e/serve_protocol.py" "${SURL##*:}" "$KLUA"
rc=$?
stop_rc "$SPID" 10
if [ $RC -eq 0 ]; then echo "ok - server exits 0 on SIGTERM"; else echo "not ok - server exit status $RC"; cat "$D/serve.log"; rc=1; fi
exit $rc
