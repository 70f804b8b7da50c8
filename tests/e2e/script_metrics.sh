#!/usr/bin/env bash
# Script-defined metrics (klua.metrics, docs/lua-api.md "Metrics") on the
# /metrics endpoint of `klua run --metrics-bind-address 127.0.0.1:PORT`,
# against `klua serve`. The script runs with 3 workers, so every worker state
# defines the same metrics: they must all update one process-wide metric.
#  * the counter the reconcile increments shows up with HELP/TYPE and its
#    labels, and its total equals the runtime's own count of successful
#    reconciles (controller_runtime_reconcile_total), whichever worker ran;
#  * a gauge every state increments once at load counts the states (at
#    least the 3 workers), so definitions from several states share it;
#  * a histogram shows its buckets, _sum and _count.
# Prints "ok N - ..."; a few seconds.
# Environment: KLUA_BIN (default build/klua), KLUA_ROOT.
set -u
. "$(dirname "$0")/lib.bash"

cat >"$D/widgets.lua" <<'LUA'
local klua = require("klua")
local reconciled = assert(klua.metrics.counter("e2e_widgets_reconciled_total",
  "Widgets reconciled by the script.", { "namespace" }))
local states = assert(klua.metrics.gauge("e2e_widgets_states", "Lua states that loaded the script."))
local sizes = assert(klua.metrics.histogram("e2e_widgets_keys", "Keys per widget.",
  { "namespace" }, { 1, 2, 5 }))
states:inc()
klua.controller({
  name = "widgets",
  watch = { api_version = "v1", kind = "ConfigMap", label_selector = "m-test=true" },
  workers = 3,
  reconcile = function(req)
    local cm = klua.cache("v1", "ConfigMap"):get(req.namespace, req.name)
    if not cm then return end
    local n = 0
    for _ in pairs(cm.data or {}) do n = n + 1 end
    sizes:observe({ namespace = req.namespace }, n)
    reconciled:inc({ namespace = req.namespace })
  end,
})
LUA

start_serve "$D/serve.log" --listen 127.0.0.1:0 --kubeconfig-out "$D/kc"
check "klua serve starts" 'grep -q "server:" "$D/kc"'
k() { kubectl --kubeconfig "$D/kc" "$@"; }

PORT=$(free_port)
"$KLUA" run "$D/widgets.lua" --kubeconfig "$D/kc" \
  --metrics-bind-address "127.0.0.1:$PORT" >"$D/run.log" 2>&1 &
RPID=$!
PIDS+=($RPID)
M="$D/metrics.txt"
scrape() { curl -s "http://127.0.0.1:$PORT/metrics" >"$M"; }
for _ in $(seq 100); do scrape && grep -q '^# TYPE e2e_widgets_reconciled_total' "$M" && break; sleep 0.1; done
check "the script's metrics are on /metrics with HELP and TYPE before any reconcile" \
  'grep -qx "# HELP e2e_widgets_reconciled_total Widgets reconciled by the script." "$M" &&
   grep -qx "# TYPE e2e_widgets_reconciled_total counter" "$M" &&
   grep -qx "# TYPE e2e_widgets_states gauge" "$M" && grep -qx "# TYPE e2e_widgets_keys histogram" "$M"'

for i in 1 2 3 4 5 6; do
  k create configmap "w$i" --from-literal=a=1 --from-literal=b=2 >/dev/null 2>&1
  k label configmap "w$i" m-test=true >/dev/null 2>&1
done
k create configmap ignored --from-literal=a=1 >/dev/null 2>&1

val() { awk -v p="$1" 'index($0, p) == 1 { print $NF; exit }' "$M"; }
for _ in $(seq 100); do
  scrape
  [ "$(val 'e2e_widgets_reconciled_total{namespace="default"} ')" = 6 ] && break
  sleep 0.1
done
sleep 0.5 # let any stray reconcile land, then compare with the runtime's count
scrape
SCRIPT_TOTAL=$(val 'e2e_widgets_reconciled_total{namespace="default"} ')
RUNTIME_TOTAL=$(val 'controller_runtime_reconcile_total{controller="widgets",result="success"} ')
echo "# script counter: $SCRIPT_TOTAL, runtime's successful reconciles: $RUNTIME_TOTAL"
check "the counter counts every reconcile, whichever of the 3 workers ran it (${SCRIPT_TOTAL:-none} >= 6)" \
  '[ -n "$SCRIPT_TOTAL" ] && [ "$SCRIPT_TOTAL" -ge 6 ]'
check "it equals the runtime's controller_runtime_reconcile_total (${RUNTIME_TOTAL:-none})" \
  '[ "$SCRIPT_TOTAL" = "$RUNTIME_TOTAL" ]'
STATES=$(val 'e2e_widgets_states ')
echo "# states that loaded the script: $STATES"
check "every state's definition is the same gauge (${STATES:-none} states counted, >= 3)" \
  '[ -n "$STATES" ] && [ "$STATES" -ge 3 ]'
check "the histogram has cumulative buckets, _sum and _count" \
  '[ "$(val "e2e_widgets_keys_bucket{namespace=\"default\",le=\"1\"} ")" = 0 ] &&
   [ "$(val "e2e_widgets_keys_bucket{namespace=\"default\",le=\"2\"} ")" = "$SCRIPT_TOTAL" ] &&
   [ "$(val "e2e_widgets_keys_bucket{namespace=\"default\",le=\"+Inf\"} ")" = "$SCRIPT_TOTAL" ] &&
   [ "$(val "e2e_widgets_keys_sum{namespace=\"default\"} ")" = "$((2 * SCRIPT_TOTAL))" ] &&
   [ "$(val "e2e_widgets_keys_count{namespace=\"default\"} ")" = "$SCRIPT_TOTAL" ]'

kill -TERM "$RPID"
wait "$RPID"
RC=$?
check "klua run stops cleanly (exit $RC)" '[ $RC -eq 0 ]'
check "no Lua errors logged" '! grep -qiE "traceback|error" "$D/run.log"'
grep -qiE "traceback|error" "$D/run.log" && sed 's/^/#   /' "$D/run.log" | head -20
exit 0
