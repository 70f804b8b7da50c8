#!/usr/bin/env bash
# A write to a closed pipe in a script (io.popen to a command that already
# exited) is an ordinary Lua error (nil, "Broken pipe"), not a SIGPIPE that
# kills `klua dev` with every controller and the in-process API server.
# Prints "ok N - ..."; about 2 s. Environment: KLUA_BIN, KLUA_ROOT.
set -u
. "$(dirname "$0")/lib.bash"

cat >"$D/pipe.lua" <<'LUA'
local klua = require("klua")
klua.controller({
  name = "piper",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "default" },
  reconcile = function(req)
    local p = io.popen("exec true", "w")
    os.execute("sleep 0.2")
    local ok, err = p:write(string.rep("x", 200000))
    if ok then ok, err = p:flush() end
    p:close()
    klua.log.info("pipe write returned", { ok = tostring(ok), err = tostring(err) })
  end,
})
LUA

"$KLUA" dev "$D/pipe.lua" --kubeconfig-out "$D/kc" >"$D/dev.log" 2>&1 &
PID=$!
PIDS+=($PID)
for _ in $(seq 200); do
  grep -q 'running .*pipe.lua' "$D/dev.log" && break
  sleep 0.05
done
URL=$(grep -oE 'http://[0-9.:]+' "$D/dev.log" | head -1)
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
  "$URL/api/v1/namespaces/default/configmaps" \
  -d '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"p"}}'
for _ in $(seq 100); do
  grep -q 'pipe write returned' "$D/dev.log" && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.05
done
check "the reconcile saw the broken pipe as an error" \
  "grep -q 'pipe write returned.*ok=nil' '$D/dev.log'"
check "klua dev is still running" "kill -0 $PID 2>/dev/null"
stop_rc "$PID" 10
check "klua dev exits 0 on SIGTERM (exit $RC)" '[ "$RC" -eq 0 ]'
[ "$FAILED" -eq 0 ] || sed 's/^/# /' "$D/dev.log" | tail -20
summary
