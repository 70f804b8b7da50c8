#!/usr/bin/env bash
# Leader election with the real binary (docs/production.md "Leader election"):
# two `klua run --leader-elect` replicas of one script against `klua serve`.
#  * exactly one reconciles: the Lease's holderIdentity names it, every
#    reconcile recorded on the objects (annotation reconciled-by-<replica>)
#    and in the logs came from it, the standby has no reconcile metrics;
#  * both answer /healthz and /readyz with 200 (a standby is ready);
#    leader_election_master_status is 1 on the leader, 0 on the standby;
#  * kill -9 of the leader: the standby takes over once the Lease expires
#    (15 s lease duration; bounded at 21 s) and reconciles new objects;
#  * SIGTERM of the leader: it exits 0 and releases the Lease, so a new
#    standby takes over within a few seconds (asserted < 8 s);
#  * the last replica's SIGTERM leaves the Lease released (holder "").
# Takeover times are logged ("# ..."). Prints "ok N - ..."; about 35 s.
# Environment: KLUA_BIN (default build/klua), KLUA_ROOT.
set -u
. "$(dirname "$0")/lib.bash"

# The controller: annotates every ConfigMap labelled le-test=true with
# reconciled-by-<REPLICA>, once, and logs each reconcile with its replica.
cat >"$D/ctl.lua" <<'LUA'
local klua = require("klua")
local replica = klua.getenv("REPLICA", "?")
klua.controller({
  name = "le-test",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "default",
            label_selector = "le-test=true" },
  reconcile = function(req)
    klua.log.info("reconciled", { replica = replica, key = req.key })
    local cm = klua.cache("v1", "ConfigMap"):get(req.namespace, req.name)
    if not cm then return end
    local ann = cm.metadata.annotations or {}
    if ann["reconciled-by-" .. replica] then return end
    local _, err = klua.patch("v1", "ConfigMap", req.namespace, req.name,
      { metadata = { annotations = { ["reconciled-by-" .. replica] = "yes" } } })
    if err then error(err) end
  end,
})
LUA

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

start_serve "$D/serve.log" --listen 127.0.0.1:0 --kubeconfig-out "$D/kc"
URL=$SURL
check "klua serve starts and writes a kubeconfig" '[ -n "$URL" ]'
[ -n "$URL" ] || exit 1

k() { kubectl --kubeconfig "$D/kc" "$@"; }
LEASE=$URL/apis/coordination.k8s.io/v1/namespaces/default/leases/test-ctl
holder() { # the Lease's holderIdentity ("" when released or absent)
  curl -s "$LEASE" | sed -n 's/.*"holderIdentity": *"\([^"]*\)".*/\1/p'
}

# start_replica NAME: starts klua run with REPLICA=NAME; sets PID_NAME,
# PORT_NAME (metrics and probes on one address) and ID_NAME (its identity).
start_replica() {
  local name=$1 port
  port=$(free_port)
  REPLICA=$name "$KLUA" run "$D/ctl.lua" --kubeconfig "$D/kc" --leader-elect \
    --leader-election-id test-ctl --leader-election-namespace default \
    --metrics-bind-address "127.0.0.1:$port" \
    --health-probe-bind-address "127.0.0.1:$port" >"$D/$name.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  eval "PID_$name=$pid PORT_$name=$port ID_$name="
  local id=
  for _ in $(seq 100); do
    id=$(grep -o 'attempting to acquire the lease.*' "$D/$name.log" 2>/dev/null | grep -o 'identity=[^ ]*' | head -1)
    id=${id#identity=}
    id=${id//\"/}
    [ -n "$id" ] && break
    sleep 0.05
  done
  eval "ID_$name=\$id"
}
code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$2"; }
metric() { # metric PORT PREFIX: the value of the first line starting so
  curl -s "http://127.0.0.1:$1/metrics" | grep -F "$2" | head -1 | awk '{print $NF}'
}
# replica_of IDENTITY -> A|B|C or ""
replica_of() {
  local r
  for r in A B C; do
    local v="ID_$r"
    [ -n "${!v:-}" ] && [ "${!v}" = "$1" ] && { echo "$r"; return; }
  done
}
# annotations CM -> the reconciled-by-* annotation names, sorted, one line
annotations() {
  k get configmap "$1" -o jsonpath='{.metadata.annotations}' 2>/dev/null |
    grep -o 'reconciled-by-[A-Z?]*' | sort | tr '\n' ' '
}
wait_annotated() { # wait_annotated CM REPLICA SECONDS
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt "$deadline" ]; do
    annotations "$1" | grep -q "reconciled-by-$2 " && return 0
    sleep 0.1
  done
  return 1
}
wait_holder() { # wait_holder IDENTITY SECONDS: 0 when the Lease names it
  local t0=$EPOCHREALTIME
  while lt "$(elapsed "$t0" "$(now)")" "$2"; do
    [ "$(holder)" = "$1" ] && return 0
    sleep 0.1
  done
  return 1
}
mkcm() { k create configmap "$1" >/dev/null 2>&1 && k label configmap "$1" le-test=true >/dev/null 2>&1; }

# ---- two replicas: exactly one leads --------------------------------------
start_replica A
start_replica B
check "both replicas start and report their identities" '[ -n "$ID_A" ] && [ -n "$ID_B" ] && [ "$ID_A" != "$ID_B" ]'

LEADER=
for _ in $(seq 100); do
  LEADER=$(replica_of "$(holder)")
  [ -n "$LEADER" ] && break
  sleep 0.1
done
check "the Lease test-ctl names one of the replicas (${LEADER:-none})" '[ -n "$LEADER" ]'
[ -n "$LEADER" ] || exit 1
STANDBY=$([ "$LEADER" = A ] && echo B || echo A)
LPORT_V="PORT_$LEADER"; SPORT_V="PORT_$STANDBY"
LPORT=${!LPORT_V}; SPORT=${!SPORT_V}

mkcm one
mkcm two
check "the leader reconciles new objects" \
  'wait_annotated one "$LEADER" 10 && wait_annotated two "$LEADER" 10'
sleep 1 # give a misbehaving standby the chance to reconcile too
check "every reconcile came from the leader (objects: '$(annotations one)', '$(annotations two)')" \
  '[ "$(annotations one)" = "reconciled-by-$LEADER " ] && [ "$(annotations two)" = "reconciled-by-$LEADER " ]'
check "the standby logged no reconcile" '! grep -q "reconciled" "$D/$STANDBY.log"'
check "the Lease still names the leader" '[ "$(replica_of "$(holder)")" = "$LEADER" ]'

for p in $LPORT $SPORT; do
  check "replica on :$p answers /healthz 200 and /readyz 200" \
    '[ "$(code $p /healthz)" = 200 ] && [ "$(code $p /readyz)" = 200 ]'
done
check "leader_election_master_status is 1 on the leader, 0 on the standby" \
  '[ "$(metric $LPORT "leader_election_master_status{")" = 1 ] && [ "$(metric $SPORT "leader_election_master_status{")" = 0 ]'
check "the standby has no reconcile metrics, the leader has" \
  '! curl -s "http://127.0.0.1:$SPORT/metrics" | grep -q "^controller_runtime_reconcile_total{" &&
   curl -s "http://127.0.0.1:$LPORT/metrics" | grep -q "^controller_runtime_reconcile_total{controller=\"le-test\""'

# ---- kill -9 of the leader: takeover after the lease expires --------------
LPID_V="PID_$LEADER"
T0=$(now)
kill -KILL "${!LPID_V}"
{ wait "${!LPID_V}"; } 2>/dev/null # no "Killed" notice
SID_V="ID_$STANDBY"
wait_holder "${!SID_V}" 21
RC=$?
T1=$(now)
echo "# takeover after kill -9 of $LEADER: $(elapsed "$T0" "$T1") s (lease duration 15 s)"
check "after kill -9 of the leader, the standby takes the Lease within 21 s" '[ $RC -eq 0 ]'
LEADER=$STANDBY
LPORT=$SPORT
mkcm three
check "the new leader reconciles (a new object and the old ones)" \
  'wait_annotated three "$LEADER" 10 && wait_annotated one "$LEADER" 10'
check "leader_election_master_status is 1 on the new leader" '[ "$(metric $LPORT "leader_election_master_status{")" = 1 ]'

# ---- SIGTERM of the leader: the released Lease is taken at once -----------
start_replica C
check "a new standby starts" '[ -n "$ID_C" ]'
for _ in $(seq 50); do [ "$(code "$PORT_C" /readyz)" = 200 ] && break; sleep 0.1; done
check "the new standby answers /healthz 200 and /readyz 200" \
  '[ "$(code $PORT_C /healthz)" = 200 ] && [ "$(code $PORT_C /readyz)" = 200 ]'
mkcm four
wait_annotated four "$LEADER" 10
sleep 1
check "while $LEADER leads, the standby C reconciles nothing" \
  '[ "$(annotations four)" = "reconciled-by-$LEADER " ] && ! grep -q "reconciled" "$D/C.log"'
LPID_V="PID_$LEADER"
T0=$(now)
kill -TERM "${!LPID_V}"
wait_holder "$ID_C" 15
RC=$?
T1=$(now)
TOOK=$(elapsed "$T0" "$T1")
echo "# takeover after SIGTERM of $LEADER (released lease): $TOOK s"
check "after SIGTERM the standby takes the released Lease in < 8 s ($TOOK s)" '[ $RC -eq 0 ] && lt "$TOOK" 8'
wait "${!LPID_V}"
RC=$?
check "the stopped leader exits 0 (exit $RC)" '[ $RC -eq 0 ]'
check "the stopped leader logged that it released the lease" 'grep -q "released the lease" "$D/$LEADER.log"'
mkcm five
check "the standby that took over reconciles" 'wait_annotated five C 10'

T0=$(now)
kill -TERM "$PID_C"
wait "$PID_C"
RC=$?
check "the last replica exits 0 on SIGTERM (exit $RC, $(elapsed "$T0" "$(now)") s)" '[ $RC -eq 0 ]'
check "it leaves the Lease released (holderIdentity \"\")" '[ -z "$(holder)" ] && curl -s "$LEASE" | grep -q "holderIdentity"'
for r in A B C; do
  if grep -qE 'panic|Traceback|traceback|ERROR|AddressSanitizer' "$D/$r.log"; then
    echo "# log of $r:"; sed 's/^/#   /' "$D/$r.log" | head -40
  fi
done
check "no Lua errors in the replicas' logs" '! grep -qi "traceback" "$D/A.log" "$D/B.log" "$D/C.log"'
kill -TERM "$SPID" 2>/dev/null
