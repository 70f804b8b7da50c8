#!/usr/bin/env bash
# The Lua example in README.md, run as a user would: extracted from the
# README, started with `klua dev`, poked with kubectl, checked through the API.
set -u
KLUA=${KLUA_BIN:-build/klua}
ROOT=${KLUA_ROOT:-.}
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
n=0
check() { # check NAME CMD...
  n=$((n + 1))
  if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi
}

/usr/bin/python3 - "$ROOT/README.md" "$dir/example.lua" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"```lua\n(.*?)```", text, re.S)
open(sys.argv[2], "w").write(m.group(1) if m else "")
PY
check "README.md has a Lua example" test -s "$dir/example.lua"

"$KLUA" dev "$dir/example.lua" --kubeconfig-out "$dir/kc" >"$dir/dev.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q 'server:' "$dir/kc" 2>/dev/null && break; sleep 0.1; done
k() { kubectl --kubeconfig "$dir/kc" "$@"; }
check "klua dev starts with the example" grep -q 'server:' "$dir/kc"

k create configmap labelled --from-literal=x=1 --from-literal=y=2 >/dev/null 2>&1
k label configmap labelled annotate=true >/dev/null 2>&1
k create configmap plain --from-literal=x=1 >/dev/null 2>&1
got=
for _ in $(seq 100); do
  got=$(k get configmap labelled -o jsonpath='{.metadata.annotations.example\.com/keys}' 2>/dev/null)
  [ "$got" = 2 ] && break
  sleep 0.1
done
check "the labelled ConfigMap gets its key count" test "$got" = 2
k patch configmap labelled --type merge -p '{"data":{"z":"3"}}' >/dev/null 2>&1
for _ in $(seq 100); do
  got=$(k get configmap labelled -o jsonpath='{.metadata.annotations.example\.com/keys}' 2>/dev/null)
  [ "$got" = 3 ] && break
  sleep 0.1
done
check "a data change updates the count" test "$got" = 3
plain=$(k get configmap plain -o jsonpath='{.metadata.annotations}' 2>/dev/null)
check "an unlabelled ConfigMap is left alone" test -z "$plain"
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
check "SIGTERM stops klua dev cleanly (exit $rc)" test "$rc" -eq 0
grep -qiE 'error|traceback' "$dir/dev.log" && { echo "# dev log:"; sed 's/^/# /' "$dir/dev.log"; }
check "no errors logged" bash -c "! grep -qiE 'error|traceback' '$dir/dev.log'"
