#!/usr/bin/env bash
# Security checks (docs/reliability.md):
#  * klua run verifies TLS by default: a kubeconfig without the CA (or with
#    another CA) fails with a clear TLS error and exit 1; with the CA it runs;
#  * no secret in any output: a distinctive token (klua serve --token over
#    TLS, in the kubeconfig, from an exec credential plugin) and the TLS key
#    never appear in stdout/stderr of klua run at -v 4, in error messages of
#    failed requests (401, 404, 422), nor on /metrics when klua run serves it;
#  * klua serve binds loopback by default, answers 401 to a missing or wrong
#    token, has no fault endpoint unless --faults, answers oversized bodies
#    with 413 and huge headers with 431 (or a clean close), rejects bad JSON
#    with 400, and keeps serving after all of it.
# Prints "ok N - ..." / "not ok N - ..."; about 15 s.
# Environment: KLUA_BIN (default build/klua), KLUA_ROOT.
set -u
. "$(dirname "$0")/lib.bash"
skip() { N=$((N + 1)); echo "ok $N - $1 # skip $2"; }

TOKEN="kluaPLANTEDsecret$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
BADTOKEN="kluaWRONGsecret$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

cert() { # cert NAME: a self-signed cert for 127.0.0.1/localhost
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$D/$1.key" \
    -out "$D/$1.crt" -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >/dev/null 2>&1
}
cert server
cert other
# a distinctive piece of the private key (must never be printed)
KEYBIT=$(sed -n 5p "$D/server.key" | cut -c10-50)

start_serve "$D/tls.log" --listen 127.0.0.1:0 --tls-cert "$D/server.crt" \
  --tls-key "$D/server.key" --token "$TOKEN" --kubeconfig-out "$D/kc-full"
TLSURL=$SURL
[ -n "$TLSURL" ] || { nok "klua serve with TLS starts"; cat "$D/tls.log"; exit 1; }
ok "klua serve with TLS and a token starts"

kubeconfig() { # kubeconfig FILE CA_FILE|"" USER_YAML
  {
    echo "apiVersion: v1"
    echo "kind: Config"
    echo "clusters:"
    echo "- name: c"
    echo "  cluster:"
    echo "    server: $TLSURL"
    [ -n "$2" ] && echo "    certificate-authority: $2"
    echo "contexts:"
    echo "- name: c"
    echo "  context: {cluster: c, user: u, namespace: default}"
    echo "current-context: c"
    echo "users:"
    echo "- name: u"
    echo "  user:"
    printf '%s\n' "$3"
  } >"$1"
}
kubeconfig "$D/kc-noca" "" "    token: $TOKEN"
kubeconfig "$D/kc-otherca" "$D/other.crt" "    token: $TOKEN"
kubeconfig "$D/kc-ca" "$D/server.crt" "    token: $TOKEN"
kubeconfig "$D/kc-badtoken" "$D/server.crt" "    token: $BADTOKEN"
cat >"$D/exec-plugin.sh" <<EOF
#!/bin/sh
# an exec credential plugin (client.authentication.k8s.io/v1)
echo "exec plugin ran" >>"$D/exec-ran"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}\n' "$TOKEN"
EOF
chmod +x "$D/exec-plugin.sh"
kubeconfig "$D/kc-exec" "$D/server.crt" "    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: $D/exec-plugin.sh
      interactiveMode: Never"

# A controller that also makes failing requests, so their error messages
# are part of the output.
cat >"$D/ctl.lua" <<'EOF'
local klua = require("klua")
klua.controller({
  name = "sec",
  watch = { api_version = "v1", kind = "ConfigMap", namespace = "default" },
  reconcile = function(req)
    local _, err = klua.get("v1", "ConfigMap", "default", "does-not-exist")
    klua.log.info("get of a missing object", { err = tostring(err) })
    local _, err2 = klua.create({ apiVersion = "v1", kind = "ConfigMap",
      metadata = { name = "Invalid_Name!", namespace = "default" } })
    klua.log.info("create of an invalid object", { err = tostring(err2) })
    klua.log.info("reconciled", { k = req.key })
  end,
})
EOF
curl -s --cacert "$D/server.crt" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -X POST \
  -d '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"seen"}}' \
  "$TLSURL/api/v1/namespaces/default/configmaps" >/dev/null

METRICS=
"$KLUA" run --help 2>&1 | grep -q -- --metrics-bind-address && METRICS=1

# run_for SECONDS LOG KUBECONFIG [ARGS]: klua run -v 4, stopped with SIGTERM
# after SECONDS (or when it exits); sets RC (124 when it was still running)
run_for() {
  local secs=$1 log=$2 kc=$3
  shift 3
  "$KLUA" run "$D/ctl.lua" --kubeconfig "$kc" -v 4 "$@" >"$log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  RC=124
  for _ in $(seq $((secs * 10))); do
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; RC=$?; return; fi
    sleep 0.1
  done
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
}

run_for 10 "$D/noca.log" "$D/kc-noca"
check "without the CA: exit 1 (got $RC)" '[ "$RC" = 1 ]'
check "without the CA: a clear TLS error" \
  'grep -qiE "TLS verification failed|certificate" "$D/noca.log" && grep -q "$TLSURL" "$D/noca.log"'
run_for 10 "$D/otherca.log" "$D/kc-otherca"
check "with another CA: exit 1 with a TLS error (got $RC)" \
  '[ "$RC" = 1 ] && grep -qiE "TLS|certificate" "$D/otherca.log"'

# with the CA: works; metrics scraped while it runs when available
MPORT=
[ -n "$METRICS" ] && MPORT=$((20000 + RANDOM % 20000))
"$KLUA" run "$D/ctl.lua" --kubeconfig "$D/kc-ca" -v 4 \
  ${MPORT:+--metrics-bind-address 127.0.0.1:$MPORT} >"$D/ca.log" 2>&1 &
RPID=$!
PIDS+=($RPID)
for _ in $(seq 100); do grep -q "k=default/seen" "$D/ca.log" && break; sleep 0.1; done
check "with the CA: klua run reconciles over TLS with the token" \
  'grep -q "reconciled.*k=default/seen" "$D/ca.log"'
check "failed requests give clear errors (404 NotFound, 422 Invalid)" \
  'grep -q "404 NotFound" "$D/ca.log" && grep -q "422 Invalid" "$D/ca.log"'
if [ -n "$METRICS" ]; then
  curl -s "http://127.0.0.1:$MPORT/metrics" >"$D/metrics.txt"
  check "/metrics answers" '[ -s "$D/metrics.txt" ]'
else
  skip "/metrics scraped for secrets" "klua run has no --metrics-bind-address"
fi
kill -TERM "$RPID"; wait "$RPID"

run_for 10 "$D/badtoken.log" "$D/kc-badtoken"
check "a wrong token: a clear 401 Unauthorized error" \
  'grep -q "401" "$D/badtoken.log" && grep -qi "unauthorized" "$D/badtoken.log"'

rm -f "$D/exec-ran"
run_for 4 "$D/exec.log" "$D/kc-exec"
check "an exec credential plugin: its token authenticates" \
  '[ -f "$D/exec-ran" ] && grep -q "reconciled.*k=default/seen" "$D/exec.log"'

# an exec plugin whose output is broken (the token inside truncated JSON)
# or that fails after printing it: the error must not quote the output
cat >"$D/exec-bad.sh" <<EOF
#!/bin/sh
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"' "$TOKEN"
[ -f "$D/exec-bad-fail" ] && exit 3
exit 0
EOF
chmod +x "$D/exec-bad.sh"
kubeconfig "$D/kc-execbad" "$D/server.crt" "    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: $D/exec-bad.sh
      interactiveMode: Never"
run_for 10 "$D/execbad.log" "$D/kc-execbad"
check "an exec plugin with broken output: exit 1 naming the plugin (got $RC)" \
  '[ "$RC" = 1 ] && grep -q "exec plugin" "$D/execbad.log"'
touch "$D/exec-bad-fail"
run_for 10 "$D/execfail.log" "$D/kc-execbad"
check "an exec plugin that fails: exit 1 with its status (got $RC)" \
  '[ "$RC" = 1 ] && grep -q "exited with status 3" "$D/execfail.log"'

# every output of every run, and the server's log
ALL="$D/noca.log $D/otherca.log $D/ca.log $D/badtoken.log $D/exec.log $D/tls.log"
ALL="$ALL $D/execbad.log $D/execfail.log"
[ -n "$METRICS" ] && ALL="$ALL $D/metrics.txt"
check "the outputs are real (debug lines, request URLs in errors)" \
  'grep -q "debug reflector" "$D/ca.log" && grep -q "GET $TLSURL" "$D/badtoken.log"'
# shellcheck disable=SC2086
check "the token appears in no output, error or metric" '! grep -l "$TOKEN" $ALL'
# shellcheck disable=SC2086
check "the wrong token appears in no output" '! grep -l "$BADTOKEN" $ALL'
# shellcheck disable=SC2086
check "the TLS key appears in no output" '! grep -lF "$KEYBIT" $ALL'
# shellcheck disable=SC2086
check "no Authorization header value is printed" \
  '! grep -iE "authorization: *bearer +[^[ ]" $ALL'

# ---- klua serve ------------------------------------------------------------
H="Authorization: Bearer $TOKEN"
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
C=(--cacert "$D/server.crt")
check "no token: 401" '[ "$(code "${C[@]}" "$TLSURL/api/v1/namespaces")" = 401 ]'
check "a wrong token: 401" \
  '[ "$(code "${C[@]}" -H "Authorization: Bearer $BADTOKEN" "$TLSURL/api/v1/namespaces")" = 401 ]'
check "a malformed Authorization header: 401" \
  '[ "$(code "${C[@]}" -H "Authorization: Basic Zm9vOmJhcg==" "$TLSURL/api/v1/namespaces")" = 401 ]'
check "the right token: 200" '[ "$(code "${C[@]}" -H "$H" "$TLSURL/api/v1/namespaces")" = 200 ]'
check "the 401 body does not echo the token" \
  '! curl -s "${C[@]}" -H "Authorization: Bearer $BADTOKEN" "$TLSURL/api/v1/namespaces" | grep -q "$BADTOKEN"'
check "without --faults, /_klua/faults is 404 (GET)" \
  '[ "$(code "${C[@]}" -H "$H" "$TLSURL/_klua/faults")" = 404 ]'
check "without --faults, /_klua/faults is 404 (POST close_watches)" \
  '[ "$(code "${C[@]}" -H "$H" -X POST -d "{\"action\":\"close_watches\"}" "$TLSURL/_klua/faults")" = 404 ]'

start_serve "$D/plain.log" --listen 127.0.0.1:0 --max-body-bytes 100000
PURL=$SURL
big() { head -c "$1" /dev/zero | tr '\0' 'a'; }
{ printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"x":"'
  big 200000; printf '"}}'; } >"$D/big.json"
check "a body over --max-body-bytes: 413" \
  '[ "$(code -X POST -H "Content-Type: application/json" --data-binary @"$D/big.json" "$PURL/api/v1/namespaces/default/configmaps")" = 413 ]'
check "a chunked body over the limit: 413" \
  '[ "$(code -X POST -H "Content-Type: application/json" -H "Transfer-Encoding: chunked" --data-binary @"$D/big.json" "$PURL/api/v1/namespaces/default/configmaps")" = 413 ]'
{ printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"default-limit"},"data":{"x":"'
  big 4000000; printf '"}}'; } >"$D/huge.json"
HUGE=$(code -X POST -H "Content-Type: application/json" --data-binary @"$D/huge.json" \
  "$TLSURL/api/v1/namespaces/default/configmaps" "${C[@]}" -H "$H")
check "the default limit (3 MiB): a 4 MB body gets 413 (got $HUGE)" '[ "$HUGE" = 413 ]'
{ printf 'X-Huge: '; big 200000; echo; } >"$D/huge-header"
HDR=$(code -H @"$D/huge-header" "$PURL/api/v1/namespaces")
check "a 200 KB header: 431 or a clean close (got $HDR)" \
  '[ "$HDR" = 431 ] || [ "$HDR" = 000 ] || [ "$HDR" = 400 ]'
MANY=()
for i in $(seq 2000); do MANY+=(-H "X-Many-$i: value-$i"); done
HDR2=$(code "${MANY[@]}" "$PURL/api/v1/namespaces")
check "2000 headers: 431 or a clean close (got $HDR2)" \
  '[ "$HDR2" = 431 ] || [ "$HDR2" = 000 ] || [ "$HDR2" = 400 ]'
check "malformed JSON: 400" \
  '[ "$(code -X POST -H "Content-Type: application/json" -d "{\"apiVersion\":" "$PURL/api/v1/namespaces/default/configmaps")" = 400 ]'
python3 -c 'print("[" * 30000 + "]" * 30000)' >"$D/deep.json"
DEEP=$(code -X POST -H "Content-Type: application/json" --data-binary @"$D/deep.json" \
  "$PURL/api/v1/namespaces/default/configmaps")
check "30,000 nested arrays: a 4xx, no crash (got $DEEP)" '[ "${DEEP:0:1}" = 4 ]'
python3 -c 'import json; print(json.dumps({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"data":{"x":"y"},"extra":eval("["*5000+"]"*5000)}))' \
  >"$D/deep2.json" 2>/dev/null || echo '{}' >"$D/deep2.json"
DEEP2=$(code -X POST -H "Content-Type: application/json" --data-binary @"$D/deep2.json" \
  "$PURL/api/v1/namespaces/default/configmaps")
check "a ConfigMap with a 5,000-deep field: 201 or 4xx, no crash (got $DEEP2)" \
  '[ "$DEEP2" = 201 ] || [ "${DEEP2:0:1}" = 4 ]'
check "the server keeps serving after all of it" \
  '[ "$(code "$PURL/api/v1/namespaces")" = 200 ] && kill -0 "$SPID"'
check "and the TLS one too" \
  '[ "$(code "${C[@]}" -H "$H" "$TLSURL/api/v1/namespaces")" = 200 ]'

# default listen address: loopback only
if command -v ss >/dev/null; then
  "$KLUA" serve >"$D/default.log" 2>&1 &
  DPID=$!
  PIDS+=($DPID)
  for _ in $(seq 50); do grep -q "listening on" "$D/default.log" && break; sleep 0.1; done
  if grep -q "listening on http://127.0.0.1:8001" "$D/default.log"; then
    ok "the default address is printed as 127.0.0.1:8001"
    check "it listens on 127.0.0.1 only (ss -ltn)" \
      'ss -ltnH "sport = :8001" | grep -q "127.0.0.1:8001" && ! ss -ltnH "sport = :8001" | grep -qE "(0\.0\.0\.0|\*|\[::\]):8001"'
  elif grep -qi "in use" "$D/default.log"; then
    skip "the default address is loopback" "port 8001 is in use on this machine"
  else
    nok "the default address is loopback: $(head -2 "$D/default.log")"
  fi
  kill -TERM "$DPID" 2>/dev/null
else
  skip "the default address is loopback" "no ss"
fi

# the fault endpoint answers loopback peers only
IP=$(hostname -I 2>/dev/null | awk '{print $1}')
if [ -n "$IP" ] && [ "${IP#127.}" = "$IP" ]; then
  start_serve "$D/open.log" --listen 0.0.0.0:0 --faults on
  P=${SURL##*:}
  check "the fault endpoint refuses a non-loopback peer (403)" \
    '[ "$(code "http://$IP:$P/_klua/faults")" = 403 ]'
  check "and answers a loopback one" \
    '[ "$(code "http://127.0.0.1:$P/_klua/faults")" = 200 ]'
else
  skip "the fault endpoint refuses a non-loopback peer" "no non-loopback address"
fi

summary
