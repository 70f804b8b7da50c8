#!/usr/bin/env bash
# Load (docs/reliability.md): one klua run with 50 informers at once (eight
# resources incl. a custom one, several namespaces and label selectors) and
# a controller with 16 workers, under steady churn (ConfigMaps and Widgets
# created, updated and deleted ~100 times a second). Its resident memory is
# sampled every second; after a warm-up it must stay flat: the mean of the
# last quarter may exceed the mean of the second quarter by at most 25 % +
# 8 MB (generous: this catches leaks that grow with every event, not
# allocator noise). Also: all 50 informers start and sync, the process
# stays up and keeps reconciling, and it stops cleanly.
# Prints "ok N - ..." / "not ok N - ...". LOAD_SECONDS (default 20;
# `make soak` uses 600).
set -u
. "$(dirname "$0")/lib.bash"
DRIVER=$ROOT/tests/e2e/chaos_driver.py
SECS=${LOAD_SECONDS:-20}

start_serve "$D/serve.log" --listen 127.0.0.1:0 --kubeconfig-out "$D/kc"
URL=$SURL
[ -n "$URL" ] || { nok "klua serve starts"; exit 1; }
python3 "$DRIVER" setup "$URL" || { nok "setup"; exit 1; }

# 50 distinct caches: 8 resources x namespaces x selectors
cat >"$D/load.lua" <<'EOF'
local klua = require("klua")
local n = 0
local function cache(api, kind, opts)
  klua.cache(api, kind, opts)
  n = n + 1
end
local sels = { nil, "tier=x", "tier!=x", "tier in (x,y)", "chaos" }
local nss = { nil, "chaos-a", "chaos-b", "chaos-c" }
-- ConfigMaps and Widgets (churned): 4 namespaces x 5 selectors each = 40
for _, r in ipairs({ { "v1", "ConfigMap" }, { "chaos.klua.dev/v1", "Widget" } }) do
  for i = 1, 4 do
    for j = 1, 5 do cache(r[1], r[2], { namespace = nss[i], label_selector = sels[j] }) end
  end
end
-- quiet resources: 10 more
for _, r in ipairs({ { "v1", "Secret" }, { "v1", "Service" }, { "v1", "Pod" },
                     { "apps/v1", "Deployment" }, { "v1", "ServiceAccount" } }) do
  cache(r[1], r[2], {})
  cache(r[1], r[2], { namespace = "chaos-a" })
end
assert(n == 50, n)
local reconciled = 0
klua.controller({
  name = "load",
  watch = { api_version = "v1", kind = "ConfigMap" },
  workers = 16,
  reconcile = function(req)
    local cm = klua.cache("v1", "ConfigMap"):get(req.namespace, req.name)
    local ws = klua.cache("chaos.klua.dev/v1", "Widget", {}):list({ namespace = req.namespace })
    local x = klua.cache("v1", "ConfigMap", { label_selector = "tier=x" }):list()
    reconciled = reconciled + 1
    if reconciled % 20 == 0 then -- per worker (one Lua state each)
      klua.log.info("progress", { reconciled = reconciled, widgets = #ws, x = #x,
                                  present = cm ~= nil })
    end
  end,
})
EOF

"$KLUA" run "$D/load.lua" --kubeconfig "$D/kc" -v 1 >"$D/run.log" 2>&1 &
RPID=$!
PIDS+=($RPID)
for _ in $(seq 200); do
  grep -q "running .*load.lua" "$D/run.log" && break
  kill -0 "$RPID" 2>/dev/null || break
  sleep 0.1
done
check "klua run starts and syncs 50 informers" \
  '[ "$(grep -c "started informer" "$D/run.log")" = 50 ] && grep -q "running .*load.lua" "$D/run.log"'

python3 "$DRIVER" churn "$URL" 7 "$SECS" >"$D/churn.log" 2>&1 &
WPID=$!
PIDS+=($WPID)
: >"$D/rss"
for _ in $(seq "$SECS"); do
  sleep 1
  kill -0 "$RPID" 2>/dev/null || break
  awk '/VmRSS/ {print $2}' "/proc/$RPID/status" >>"$D/rss"
done
wait "$WPID"
WRC=$?
forget "$WPID"
check "the churn writer ran (exit $WRC)" '[ "$WRC" = 0 ]'
check "klua run is alive after ${SECS} s of churn" 'kill -0 "$RPID" 2>/dev/null'
check "it kept reconciling (progress lines)" \
  '[ "$(grep -c "lua: progress" "$D/run.log")" -ge 2 ]'

# memory: mean of the 2nd quarter vs mean of the last quarter
read -r Q2 Q4 NS < <(awk '{v[NR]=$1} END {
  n=NR; a=int(n/4); if (a<1) a=1
  for (i=a+1;i<=2*a;i++) {s2+=v[i]; c2++}
  for (i=n-a+1;i<=n;i++) {s4+=v[i]; c4++}
  printf "%d %d %d\n", (c2?s2/c2:0), (c4?s4/c4:0), n }' "$D/rss")
echo "# RSS (kB) over $NS samples: 2nd quarter mean $Q2, last quarter mean $Q4; samples: $(tr '\n' ' ' <"$D/rss")"
check "RSS stays flat (last quarter <= 1.25 x 2nd quarter + 8 MB)" \
  '[ "$NS" -ge 4 ] && [ "$Q4" -le $((Q2 * 125 / 100 + 8192)) ]'

stop_rc "$RPID" 10
check "klua run stops cleanly (exit $RC)" '[ "$RC" = 0 ]'
[ "$FAILED" -ne 0 ] && tail -20 "$D/run.log" | sed 's/^/# /'
summary
