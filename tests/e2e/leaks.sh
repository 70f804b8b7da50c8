#!/usr/bin/env bash
# Leak check of the end-to-end runtime path (docs/reliability.md): klua serve
# and klua run, both built with AddressSanitizer + LeakSanitizer
# ($BUILD/asan/klua), over a run with reconciles that write back (create,
# patch, delete, events), hook and reconcile errors, a budget abort, three
# reloads, and relists forced through the fault endpoint (compacted history
# + closed watches, a cut stream, a 500). Both processes must stop cleanly
# on SIGTERM with no LeakSanitizer or AddressSanitizer report.
# Prints "ok N - ..." / "not ok N - ..."; about 30 s.
# Environment: KLUA_ROOT, BUILD (default build); LEAKS_BIN to use another
# instrumented binary.
set -u
. "$(dirname "$0")/lib.bash"
cd "$ROOT"
BUILD=${BUILD:-build}
KLUA=${LEAKS_BIN:-$ROOT/$BUILD/asan/klua}

if [ -z "${LEAKS_BIN:-}" ]; then
  # the C suite has built the instrumented library already: this links it
  if ! timeout 600 make --no-print-directory BUILD="$BUILD" SANITIZE=address \
      "$BUILD/asan/klua" >/tmp/klua-leaks-build.$$ 2>&1; then
    tail -20 /tmp/klua-leaks-build.$$
    rm -f /tmp/klua-leaks-build.$$
    nok "build $BUILD/asan/klua"
    exit 1
  fi
  rm -f /tmp/klua-leaks-build.$$
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=23
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=exitcode=23

SERVE_WAIT=10 start_serve "$D/serve.log" --listen 127.0.0.1:0 --faults on --bookmark-interval 1 \
  --kubeconfig-out "$D/kc"
URL=$SURL
if [ -z "$URL" ]; then
  nok "klua serve (asan) starts"; cat "$D/serve.log"; exit 1
fi
ok "klua serve (asan) starts"

api() { # api METHOD PATH [BODY] -> prints the HTTP code
  curl -s -o "$D/resp" -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data-binary "$3"} "$URL$2"
}
cm() { # cm NS NAME VALUE
  printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"%s","namespace":"%s","labels":{"app":"leak"}},"data":{"v":"%s"}}' "$2" "$1" "$3"
}
put() { # put NS NAME VALUE
  local c
  c=$(api PUT "/api/v1/namespaces/$1/configmaps/$2" "$(cm "$1" "$2" "$3")")
  [ "$c" = 404 ] && c=$(api POST "/api/v1/namespaces/$1/configmaps" "$(cm "$1" "$2" "$3")")
  echo "$c"
}
fault() { api POST /_klua/faults "$1" >/dev/null; }

api POST /api/v1/namespaces '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"copies"}}' >/dev/null

script() { # script VERSION
  cat >"$D/ctl.lua.tmp" <<EOF
local klua = require("klua")
local VERSION = $1
klua.controller({
  name = "leakcheck",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "default" },
  owns = { { api_version = "v1", kind = "ConfigMap" } },
  workers = 2,
  reconcile = function(req)
    if req.name == "spin" then while true do end end
    if req.name == "boom" then error("reconcile error on purpose") end
    if req.name == "garbage" then return 42 end
    local src = klua.cache("v1", "ConfigMap", { namespace = "default" }):get(req.namespace, req.name)
    if not src then
      local ok, err = klua.delete("v1", "ConfigMap", "copies", req.name)
      if not ok and not klua.is_not_found(err) then return klua.requeue end
      return
    end
    local copy = { apiVersion = "v1", kind = "ConfigMap",
      metadata = { name = req.name, namespace = "copies",
                   annotations = { version = tostring(VERSION) } },
      data = klua.deepcopy(src.data or {}) }
    local got, err = klua.get("v1", "ConfigMap", "copies", req.name)
    if got then
      local _, perr = klua.patch("v1", "ConfigMap", "copies", req.name,
        { data = copy.data, metadata = { annotations = copy.metadata.annotations } })
      if perr then return klua.requeue end
    elseif klua.is_not_found(err) then
      local _, cerr = klua.create(copy)
      if cerr and not klua.is_already_exists(cerr) then return klua.requeue end
    else
      return klua.requeue
    end
    klua.event(src, "Normal", "Copied", "copied by version " .. VERSION)
    klua.log.info("copied", { k = req.key, version = VERSION })
  end,
  on_add = function(obj) if obj.metadata.name == "hookboom" then error("hook error on purpose") end end,
  on_delete = function(obj, info) klua.log.debug("deleted", { k = info.key }) end,
})
klua.cache("v1", "ConfigMap", { namespace = "default" })
EOF
  mv "$D/ctl.lua.tmp" "$D/ctl.lua"
}
script 1
for i in 1 2 3 4 5; do put default "c$i" "$i" >/dev/null; done

"$KLUA" run "$D/ctl.lua" --kubeconfig "$D/kc" --reload --budget 1 -v 1 \
  >"$D/run.log" 2>&1 &
RPID=$!
PIDS+=($RPID)

# waits (bounded) until grep -q PATTERN run.log succeeds
wait_log() {
  for _ in $(seq 150); do
    grep -q -- "$1" "$D/run.log" && return 0
    kill -0 "$RPID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
check "klua run (asan) copies the first objects" 'wait_log "copied.*k=default/c5"'

# errors, garbage, a budget abort
for n in boom garbage spin hookboom; do put default "$n" 1 >/dev/null; done
check "a budget abort is logged" 'wait_log "default/spin aborted"'
check "a reconcile error is logged" 'wait_log "reconcile error on purpose"'

# churn, relists (compaction + closed watches), a cut stream, 500s, reloads
for round in 2 3 4; do
  for i in 1 2 3 4 5 6 7 8; do put default "c$i" "$round-$i" >/dev/null; done
  # watches end and cannot come back at once; meanwhile changes happen and
  # the history is compacted past them: the next watch gets 410, a relist
  fault '{"action":"fail","watch":true,"code":500,"count":4}'
  fault '{"action":"close_watches"}'
  api DELETE "/api/v1/namespaces/default/configmaps/c$((round + 3))" >/dev/null
  put default "c1" "after-compact-$round" >/dev/null
  fault '{"action":"compact"}'
  fault '{"action":"cut_watch","path":"/api/v1"}'
  put default "c2" "after-cut-$round" >/dev/null
  script "$round"
  wait_log "copied.*version=$round" || true
  sleep 1
done
check "the last version runs after 3 reloads" 'wait_log "copied.*version=4"'
check "klua run relisted after compactions" 'grep -qE "relisting|410 Expired" "$D/run.log"'
api DELETE /_klua/faults >/dev/null
put default c1 final >/dev/null
check "klua run still reconciles after the faults" \
  'wait_log "copied.*k=default/c1.*version=4"'
check "three reloads happened" '[ "$(grep -c "reloaded " "$D/run.log")" -ge 3 ]'

# stop both; LeakSanitizer reports at exit (exit code 23)
stop_rc "$RPID" 15
rc_run=$RC
stop_rc "$SPID" 15
rc_serve=$RC
san='ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:'
check "klua run exits 0 with no sanitizer report (exit $rc_run)" \
  '[ "$rc_run" = 0 ] && ! grep -qE "$san" "$D/run.log"'
check "klua serve exits 0 with no sanitizer report (exit $rc_serve)" \
  '[ "$rc_serve" = 0 ] && ! grep -qE "$san" "$D/serve.log"'
if [ "$FAILED" -ne 0 ]; then
  echo "# klua run log (sanitizer reports and tail):"
  grep -A30 -E "$san" "$D/run.log" | head -80 | sed 's/^/# /'
  tail -15 "$D/run.log" | sed 's/^/# /'
  echo "# klua serve log:"
  grep -A30 -E "$san" "$D/serve.log" | head -60 | sed 's/^/# /'
fi
summary
