#!/usr/bin/env bash
# A lost Lease stops all reconciling at once (docs/production.md "Losing";
# controller-runtime skips its graceful shutdown then): `klua run
# --leader-elect` with a reconcile looping far inside its budget; another
# holder takes the Lease; the running reconcile is aborted ("aborted: leader
# election lost"), not waited for during the 60 s shutdown timeout, no
# further reconcile starts, and the process exits 1.
# Prints "ok N - ..."; about 5 s. Environment: KLUA_BIN, KLUA_ROOT.
set -u
. "$(dirname "$0")/lib.bash"

cat >"$D/ctl.lua" <<'LUA'
local klua = require("klua")
klua.controller({
  name = "loser",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "default",
            label_selector = "loss-test=true" },
  reconcile = function(req)
    klua.log.info("reconcile started", { key = req.key })
    if req.name == "spin" then while true do end end
  end,
})
LUA

start_serve "$D/serve.log" --listen 127.0.0.1:0 --kubeconfig-out "$D/kc"
URL=$SURL
check "klua serve starts" '[ -n "$URL" ]'
[ -n "$URL" ] || { summary; exit 1; }
LEASE=$URL/apis/coordination.k8s.io/v1/namespaces/default/leases/loss-test

"$KLUA" run "$D/ctl.lua" --kubeconfig "$D/kc" --leader-elect \
  --leader-election-id loss-test --leader-election-namespace default \
  --budget 120 --shutdown-timeout 60 >"$D/run.log" 2>&1 &
PID=$!
PIDS+=($PID)

for _ in $(seq 200); do
  grep -q 'running .*ctl.lua' "$D/run.log" && break
  sleep 0.05
done
check "the replica leads and runs the controller" "grep -q 'running .*ctl.lua' '$D/run.log'"

cm() { # cm NAME: creates a labelled ConfigMap
  curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
    "$URL/api/v1/namespaces/default/configmaps" \
    -d "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"$1\",\"labels\":{\"loss-test\":\"true\"}}}"
}
cm spin
for _ in $(seq 200); do
  grep -q 'reconcile started.*default/spin' "$D/run.log" && break
  sleep 0.05
done
check "the looping reconcile started" "grep -q 'reconcile started.*default/spin' '$D/run.log'"

# another holder takes the Lease (an unconditional update)
TS=$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)
curl -s -o /dev/null -X PUT -H 'Content-Type: application/json' "$LEASE" -d \
  "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":\"loss-test\",\"namespace\":\"default\"},\"spec\":{\"holderIdentity\":\"intruder\",\"leaseDurationSeconds\":3600,\"acquireTime\":\"$TS\",\"renewTime\":\"$TS\",\"leaseTransitions\":9}}"
for _ in $(seq 200); do
  grep -q 'leader election lost' "$D/run.log" && break
  sleep 0.05
done
cm after-loss
# well inside the 60 s shutdown timeout: the loop was aborted, not awaited
RC=124
for _ in $(seq 300); do
  if ! kill -0 "$PID" 2>/dev/null; then wait "$PID"; RC=$?; forget "$PID"; break; fi
  sleep 0.1
done
check "the replica exits 1 after the loss (exit $RC)" '[ "$RC" -eq 1 ]'
check "the running reconcile was aborted: leader election lost" \
  "grep -q 'default/spin aborted: leader election lost' '$D/run.log'"
check "no reconcile was abandoned" "! grep -q 'abandoning' '$D/run.log'"
check "no reconcile started after the loss" \
  "! grep -q 'reconcile started.*after-loss' '$D/run.log'"
check "the Lease still names the intruder" \
  "curl -s '$LEASE' | grep -q '\"holderIdentity\": *\"intruder\"'"
[ "$FAILED" -eq 0 ] || { echo "# run.log:"; sed 's/^/# /' "$D/run.log" | tail -20; }
summary
