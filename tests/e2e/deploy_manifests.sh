#!/usr/bin/env bash
# examples/deploy/: static checks of the Dockerfile (its package lists against
# scripts/install-deps.sh and the libraries klua links), the manifests
# applied with kubectl to `klua serve` and read back, and the script loaded
# the way the Deployment loads it (a ConfigMap volume: kubelet's ..data
# symlink swap must trigger --reload) from the image's file layout.
# Prints "ok N - name" / "not ok N - name"; exits non-zero on any failure.
set -u
. "$(dirname "$0")/lib.bash"
KUBECTL=${KUBECTL:-/usr/bin/kubectl}
KLUA_BIN=$(cd "$(dirname "$KLUA")" && pwd)/$(basename "$KLUA")
DEPLOY=$ROOT/examples/deploy
TMP=$D
# check NAME CMD...: runs CMD, prints ok/not ok with its output on failure
check() {
  local name=$1
  shift
  N=$((N + 1))
  if out=$("$@" 2>&1); then
    echo "ok $N - $name"
  else
    FAILED=$((FAILED + 1))
    echo "not ok $N - $name"
    printf '%s\n' "$out" | sed 's/^/#   /' | head -40
  fi
}
skip() { N=$((N + 1)); echo "ok $N - $1 # SKIP $2"; }

# ---- Dockerfile ---------------------------------------------------------

# the `apt-get install` package names of one stage (1: builder, 2: runtime)
stage_pkgs() {
  awk -v want="$1" '/^FROM /{s++} s==want' "$DEPLOY/Dockerfile" |
    sed -n '/apt-get install/,/rm -rf \/var\/lib\/apt/p' |
    tr ' \\' '\n\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' |
    grep -vxE 'apt-get|install|rm|groupadd|useradd|DEBIAN_FRONTEND=noninteractive' |
    sort -u
}
RUNTIME_WANT="ca-certificates libcjson1 libcurl4 libgnutls30 libmicrohttpd12 libyaml-0-2 luajit"
# -dev package (scripts/install-deps.sh, Dockerfile builder) -> runtime one
PAIRS="libluajit-5.1-dev:luajit libcurl4-openssl-dev:libcurl4 libcjson-dev:libcjson1
libyaml-dev:libyaml-0-2 libmicrohttpd-dev:libmicrohttpd12 libgnutls28-dev:libgnutls30"

runtime_packages_exact() {
  local got
  got=$(stage_pkgs 2 | tr '\n' ' ' | sed 's/ $//')
  [ "$got" = "$RUNTIME_WANT" ] || { echo "runtime stage installs: $got"; echo "expected: $RUNTIME_WANT"; return 1; }
}
check "Dockerfile runtime stage installs exactly the runtime libraries" runtime_packages_exact

packages_match_install_deps() {
  local rc=0 dev run
  local builder runtime
  builder=$(stage_pkgs 1)
  runtime=$(stage_pkgs 2)
  for pair in $PAIRS; do
    dev=${pair%%:*}
    run=${pair##*:}
    grep -qE "(^|[[:space:]])$dev([[:space:]]|$)" "$ROOT/scripts/install-deps.sh" ||
      { echo "$dev is not in scripts/install-deps.sh (update PAIRS here)"; rc=1; }
    grep -qx "$dev" <<<"$builder" || { echo "builder stage lacks $dev"; rc=1; }
    grep -qx "$run" <<<"$runtime" || { echo "runtime stage lacks $run (for $dev)"; rc=1; }
  done
  # every library the Makefile builds against (PKGS, pkg-config names)
  # must have its -dev package paired here
  local pkgs pc devpkg
  pkgs=$(sed -n 's/^PKGS := //p' "$ROOT/Makefile")
  [ -n "$pkgs" ] || { echo "no PKGS line in the Makefile"; rc=1; }
  for pc in $pkgs; do
    devpkg=$(dpkg -S "$(pkg-config --variable=pcfiledir "$pc")/$pc.pc" 2>/dev/null | head -1 | cut -d: -f1)
    grep -q "^$devpkg:\| $devpkg:" <<<"$(tr ' ' '\n' <<<"$PAIRS")" ||
      { echo "the Makefile links $pc (${devpkg:-no package found}): not paired with a runtime package here"; rc=1; }
  done
  grep -qw ca-certificates "$ROOT/scripts/install-deps.sh" || { echo "ca-certificates left install-deps.sh"; rc=1; }
  return $rc
}
check "Dockerfile packages match scripts/install-deps.sh" packages_match_install_deps

# every shared library klua and klua_core.so link comes from a runtime
# package, one of its direct dependencies, or libc6 (in every Debian image)
linked_libraries_covered() {
  command -v dpkg-query >/dev/null || { echo "no dpkg"; return 1; }
  local rc=0 covered lib path pkg
  covered="libc6 $RUNTIME_WANT"
  for p in $RUNTIME_WANT; do
    covered="$covered $(dpkg-query -W -f '${Depends}' "$p" 2>/dev/null |
      tr ',|' '\n\n' | sed 's/(.*//; s/:any//; s/ //g')"
  done
  for bin in "$KLUA_BIN" "$(dirname "$KLUA_BIN")/klua_core.so"; do
    for lib in $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
      case $lib in libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|ld-linux*) continue ;; esac
      path=$(ldconfig -p | awk -v l="$lib" '$1==l {print $NF; exit}')
      pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1)
      if [ -z "$pkg" ] || ! grep -qw -- "$pkg" <<<"$covered"; then
        echo "$(basename "$bin") links $lib (package '${pkg:-?}'), which the runtime stage does not install"
        rc=1
      fi
    done
  done
  return $rc
}
check "every library klua links is installed in the runtime stage" linked_libraries_covered

dockerfile_layout() {
  local f=$DEPLOY/Dockerfile rc=0
  grep -qE '^FROM debian:bookworm AS builder' "$f" || { echo "builder is not debian:bookworm"; rc=1; }
  grep -qE '^FROM debian:bookworm(-slim)?$' "$f" || { echo "runtime is not debian:bookworm"; rc=1; }
  grep -qE '^RUN make .*all' "$f" || { echo "no make in the builder"; rc=1; }
  grep -qE '^COPY --from=builder /src/build/klua /src/build/klua_core.so /opt/klua/build/' "$f" || { echo "klua/klua_core.so not copied"; rc=1; }
  grep -qE '^COPY --from=builder /src/lua/ /opt/klua/lua/' "$f" || { echo "lua/ not copied"; rc=1; }
  grep -qE '^USER [1-9][0-9]*:[1-9][0-9]*$' "$f" || { echo "USER is not a numeric non-root uid:gid"; rc=1; }
  # what the builder COPYs must exist (the build context is the repo root)
  for p in $(sed -n 's/^COPY \([^-][^ ]*\) .*/\1/p; s/^COPY \([^-][^ ]*\) \([^ ]*\) .*/\2/p' "$f" | sort -u); do
    [ -e "$ROOT/$p" ] || { echo "COPY $p: not in the repository"; rc=1; }
  done
  return $rc
}
check "Dockerfile: bookworm stages, make, copies, non-root USER" dockerfile_layout

# ---- manifests against klua serve ---------------------------------------

if [ ! -x "$KUBECTL" ]; then
  N=$((N + 1)); FAILED=$((FAILED + 1))
  echo "not ok $N - kubectl is not installed at $KUBECTL"
  exit 1
fi
if ! start_serve "$TMP/serve.log" --listen 127.0.0.1:0 --kubeconfig-out "$TMP/kc"; then
  echo "not ok $((N + 1)) - klua serve start"; cat "$TMP/serve.log"; exit 1
fi
K() { "$KUBECTL" --kubeconfig "$TMP/kc" --cache-dir "$TMP/cache" "$@"; }

check "kubectl apply -f examples/deploy/ is accepted" K apply -f "$DEPLOY/"
check "the script ConfigMap as the README creates it" \
  K -n klua-system create configmap configmap-mirror-script \
  --from-file="$ROOT/examples/configmap-mirror.lua"

applied_again_unchanged() {
  local out
  out=$(K apply -f "$DEPLOY/") || return 1
  if grep -v ' unchanged$' <<<"$out"; then echo "changed on a second apply"; return 1; fi
}
check "a second apply changes nothing" applied_again_unchanged

K get -o json -n klua-system deployment/configmap-mirror serviceaccount/configmap-mirror \
  configmap/configmap-mirror-script >"$TMP/ks.json" 2>&1
K get -o json -A roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io \
  >"$TMP/rbac.json" 2>&1
K get -o json namespaces >"$TMP/ns.json" 2>&1

# py NAME CODE: runs CODE with d (the objects read back) defined
py() {
  local name=$1
  check "$name" /usr/bin/python3 -c '
import json, sys
def load(p):
    return json.load(open(p))["items"]
d = {}
for p in sys.argv[1:]:
    for o in load(p):
        d[(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])] = o
'"$2" "$TMP/ks.json" "$TMP/rbac.json" "$TMP/ns.json"
}

py "namespaces, service account and script ConfigMap read back" '
for n in ("klua-system", "source", "target"):
    assert ("Namespace", "", n) in d, n
assert ("ServiceAccount", "klua-system", "configmap-mirror") in d
cm = d[("ConfigMap", "klua-system", "configmap-mirror-script")]
assert list(cm["data"]) == ["configmap-mirror.lua"], list(cm["data"])
assert "klua.controller(" in cm["data"]["configmap-mirror.lua"]
'

py "RBAC grants exactly what configmap-mirror.lua needs" '
want = {
  "source": {("", "configmaps"): ["get", "list", "watch"],
             ("", "events"): ["create", "patch"]},
  "target": {("", "configmaps"): ["get", "list", "watch", "create", "update", "patch", "delete"]},
  "klua-system": {("coordination.k8s.io", "leases"): ["get", "create", "update"],
                  ("", "events"): ["create", "patch"]},
}
roles = {k: v for k, v in d.items() if k[0] == "Role"}
assert sorted(k[1] for k in roles) == sorted(want), sorted(roles)
for (_, ns, name), r in roles.items():
    got = {}
    for rule in r["rules"]:
        for g in rule["apiGroups"]:
            for res in rule["resources"]:
                got[(g, res)] = rule["verbs"]
    assert got == want[ns], (ns, got)
    b = d[("RoleBinding", ns, name)]
    assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}, b
    assert b["subjects"] == [{"kind": "ServiceAccount", "name": "configmap-mirror", "namespace": "klua-system"}], b
assert not [k for k in d if k[0] in ("ClusterRole", "ClusterRoleBinding")]
'

py "Deployment: replicas, args, probes, metrics, resources, security" '
dep = d[("Deployment", "klua-system", "configmap-mirror")]
s = dep["spec"]
assert s["replicas"] == 2
t = s["template"]
assert s["selector"]["matchLabels"].items() <= t["metadata"]["labels"].items()
ann = t["metadata"]["annotations"]
assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}, ann
ps = t["spec"]
assert ps["serviceAccountName"] == "configmap-mirror"
assert ps["securityContext"]["runAsNonRoot"] is True
assert ps["securityContext"]["runAsUser"] != 0
[c] = ps["containers"]
a = c["args"]
assert a[:2] == ["run", "/scripts/configmap-mirror.lua"], a
for f in ("--reload", "--leader-elect", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"):
    assert f in a, f
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
assert ports == {"metrics": 8080, "health": 8081}, ports
assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
r = c["resources"]
assert set(r["requests"]) == {"cpu", "memory"} and set(r["limits"]) == {"cpu", "memory"}, r
sc = c["securityContext"]
assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
assert sc["capabilities"]["drop"] == ["ALL"]
env = {e["name"]: e["value"] for e in c["env"]}
assert env == {"MIRROR_SOURCE": "source", "MIRROR_TARGET": "target"}, env
[m] = c["volumeMounts"]
assert m["mountPath"] == "/scripts" and "subPath" not in m and m["readOnly"] is True
[v] = ps["volumes"]
assert v["name"] == m["name"] and v["configMap"]["name"] == "configmap-mirror-script"
'

# ---- the script as the pod runs it ----------------------------------------

# the image's layout (Dockerfile COPY lines): /opt/klua/build/{klua,klua_core.so}
# and /opt/klua/lua; klua finds lua/ next to its binary
IMG=$TMP/opt/klua
mkdir -p "$IMG/build"
cp "$KLUA_BIN" "$(dirname "$KLUA_BIN")/klua_core.so" "$IMG/build/"
cp -r "$ROOT/lua" "$IMG/lua"
# a ConfigMap volume as kubelet's AtomicWriter lays it out
VOL=$TMP/scripts
mkdir -p "$VOL/..2024_01_01_00_00_00.1"
cp "$ROOT/examples/configmap-mirror.lua" "$VOL/..2024_01_01_00_00_00.1/"
ln -s ..2024_01_01_00_00_00.1 "$VOL/..data"
ln -s ..data/configmap-mirror.lua "$VOL/configmap-mirror.lua"

# the Deployment's args, with the script and bind addresses made local
ARGS=(run "$VOL/configmap-mirror.lua" --reload --kubeconfig "$TMP/kc")
HAVE_PROD=0
if "$IMG/build/klua" run --help 2>&1 | grep -q -- --leader-elect; then
  HAVE_PROD=1
  read -r MPORT HPORT < <(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
  ARGS+=(--leader-elect --leader-election-id=configmap-mirror
         --leader-election-namespace=klua-system
         --metrics-bind-address=127.0.0.1:$MPORT
         --health-probe-bind-address=127.0.0.1:$HPORT --log-format=json)
fi
MIRROR_SOURCE=source MIRROR_TARGET=target "$IMG/build/klua" "${ARGS[@]}" \
  >"$TMP/run.out" 2>"$TMP/run.err" &
RUN_PID=$!
PIDS+=($RUN_PID)

# wait_label NAME LABEL VALUE: the copy target/NAME carries LABEL=VALUE
wait_label() {
  local v end=$((SECONDS + 20))
  while [ $SECONDS -lt $end ]; do
    v=$(K -n target get configmap "$1" -o "jsonpath={.metadata.labels.$2}" 2>/dev/null)
    [ "$v" = "$3" ] && return 0
    sleep 0.1
  done
  echo "target/$1: label $2 is '$v', want '$3'"
  tail -20 "$TMP/run.err"
  return 1
}
K -n source create configmap one --from-literal=k=v >/dev/null
K -n source label configmap one mirror=true >/dev/null
check "klua run (image layout, ConfigMap volume) mirrors a ConfigMap" \
  wait_label one mirrored-from source

# kubelet's update: new timestamped dir, ..data_tmp -> it, rename over
# ..data, old dir removed. The new version labels copies differently.
swap() {
  local new=$VOL/..2024_01_01_00_01_00.2
  mkdir "$new"
  sed 's/^local MARK = "mirrored-from"/local MARK = "mirrored-by-v2"/' \
    "$ROOT/examples/configmap-mirror.lua" >"$new/configmap-mirror.lua"
  grep -q 'mirrored-by-v2' "$new/configmap-mirror.lua" || { echo "sed did not apply"; return 1; }
  ln -s "$(basename "$new")" "$VOL/..data_tmp"
  mv -T "$VOL/..data_tmp" "$VOL/..data"
  rm -rf "$VOL/..2024_01_01_00_00_00.1"
}
check "ConfigMap update simulated (..data symlink swap)" swap
# klua's own report of the reload (its log), so the next object is surely
# handled by the new version
reloaded() {
  local end=$((SECONDS + 20))
  while [ $SECONDS -lt $end ]; do
    grep -q "reloaded $VOL/configmap-mirror.lua" "$TMP/run.err" && return 0
    sleep 0.1
  done
  echo "no reload within 20 s"; tail -5 "$TMP/run.err"; return 1
}
check "--reload notices the swap of ..data" reloaded
K -n source create configmap two --from-literal=k=v >/dev/null
K -n source label configmap two mirror=true >/dev/null
check "--reload picks up the swapped script" wait_label two mirrored-by-v2 source

if [ $HAVE_PROD = 1 ]; then
  probes() {
    local rc=0
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HPORT/healthz")" = 200 ] || { echo "/healthz not 200"; rc=1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HPORT/readyz")" = 200 ] || { echo "/readyz not 200"; rc=1; }
    curl -s "http://127.0.0.1:$MPORT/metrics" | grep -q '^leader_election_master_status{name="configmap-mirror"} 1' ||
      { echo "/metrics: not the leader"; rc=1; }
    K -n klua-system get lease configmap-mirror -o 'jsonpath={.spec.holderIdentity}' | grep -q . ||
      { echo "no Lease holder"; rc=1; }
    return $rc
  }
  check "the Deployment's flags: probes, metrics, Lease" probes
else
  skip "the Deployment's flags: probes, metrics, Lease" "klua run has no --leader-elect yet"
fi

kill -TERM $RUN_PID
wait $RUN_PID
RUN_RC=$?
exited() { [ "$RUN_RC" = 0 ] || { echo "klua run exited $RUN_RC"; tail -20 "$TMP/run.err"; return 1; }; }
check "klua run stops cleanly on SIGTERM" exited

summary
