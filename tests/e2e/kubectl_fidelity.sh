#!/usr/bin/env bash
# kubectl fidelity: runs the unmodified kubectl (/usr/bin/kubectl, 1.32)
# against `klua serve` and compares its output with the text kubectl prints
# against a real kube-apiserver (see /work/shared/k8s-wire/kubectl/). Ages,
# uids, timestamps and resourceVersions are normalised; runs of spaces are
# squeezed (kubectl aligns columns per batch of rows). Prints "ok N - name" /
# "not ok N - name" with a diff; exits non-zero on any failure.
set -u
. "$(dirname "$0")/lib.bash"
KUBECTL=${KUBECTL:-/usr/bin/kubectl}
TMP=$D
if [ ! -x "$KUBECTL" ]; then
  echo "not ok 1 - kubectl is not installed at $KUBECTL (scripts/install-deps.sh installs it)"
  exit 1
fi

if ! start_serve "$TMP/serve.log" --listen 127.0.0.1:0 --kubeconfig-out "$TMP/kc"; then
  echo "not ok 1 - server start"; cat "$TMP/serve.log"; exit 1
fi
K() { "$KUBECTL" --kubeconfig "$TMP/kc" --cache-dir "$TMP/cache" "$@"; }

# Normalises what changes between runs: uids (first: a uid's last group can
# look like an age), ages (a table's last column or a "date" column),
# timestamps, resourceVersions, generated hashes.
norm() {
  sed -E \
    -e 's/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/UID/g' \
    -e 's/\b[0-9]+(s|m|h|d|y)([0-9]+(s|m|h|d))?( |$)/AGE\4/g' \
    -e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z/TIME/g' \
    -e 's/(resourceVersion"?: *)"[0-9]+"/\1"RV"/g' \
    -e 's/ +/ /g' -e 's/ +$//'
}

# check NAME EXPECTED_EXIT EXPECTED_TEXT -- COMMAND...: runs COMMAND
# (stdout and stderr together), compares exit status and normalised text.
check() {
  local name=$1 want_rc=$2 want=$3
  shift 4
  N=$((N + 1))
  local got rc
  got=$("$@" 2>&1)
  rc=$?
  got=$(printf '%s\n' "$got" | norm)
  want=$(printf '%s\n' "$want" | norm)
  if [ "$rc" = "$want_rc" ] && [ "$got" = "$want" ]; then
    echo "ok $N - $name"
  else
    FAILED=$((FAILED + 1))
    echo "not ok $N - $name (exit $rc, want $want_rc)"
    diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") | sed 's/^/#   /'
  fi
}

# ---- create, get, selectors --------------------------------------------------
check "create namespace (protobuf body)" 0 "namespace/kf created" -- \
  K create namespace kf
check "create configmap (protobuf body)" 0 "configmap/cm1 created" -- \
  K -n kf create configmap cm1 --from-literal=a=1 --from-literal=b=2
check "get cm (Table)" 0 "NAME DATA AGE
cm1 2 0s" -- K -n kf get cm
check "get cm -o name" 0 "configmap/cm1" -- K -n kf get cm -o name
check "get cm -o yaml" 0 'apiVersion: v1
data:
  a: "1"
  b: "2"
kind: ConfigMap
metadata:
  creationTimestamp: "2026-01-01T00:00:00Z"
  name: cm1
  namespace: kf
  resourceVersion: "1"
  uid: 00000000-0000-0000-0000-000000000000' -- \
  sh -c "'$KUBECTL' --kubeconfig '$TMP/kc' --cache-dir '$TMP/cache' -n kf get cm cm1 -o yaml | sed -E 's/(resourceVersion: )\"[0-9]+\"/\1\"1\"/'"
check "get cm -o json" 0 '{
    "apiVersion": "v1",
    "data": {
        "a": "1",
        "b": "2"
    },
    "kind": "ConfigMap",
    "metadata": {
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "name": "cm1",
        "namespace": "kf",
        "resourceVersion": "1",
        "uid": "00000000-0000-0000-0000-000000000000"
    }
}' -- K -n kf get cm cm1 -o json
check "label" 0 "configmap/cm1 labeled" -- K -n kf label cm cm1 app=kf
check "annotate" 0 "configmap/cm1 annotated" -- \
  K -n kf annotate cm cm1 example.com/note=hello
check "get -l (match)" 0 "NAME DATA AGE
cm1 2 0s" -- K -n kf get cm -l app=kf
check "get -l (no match)" 0 "No resources found in kf namespace." -- \
  K -n kf get cm -l app=other
check "get --field-selector" 0 "configmap/cm1" -- \
  K -n kf get cm --field-selector metadata.name=cm1 -o name
check "get --field-selector (no match)" 0 "No resources found in kf namespace." -- \
  K -n kf get cm --field-selector metadata.name!=cm1
check "labels and annotations stored" 0 "kf hello" -- \
  K -n kf get cm cm1 -o "jsonpath={.metadata.labels.app} {.metadata.annotations.example\.com/note}"

# ---- patch ----------------------------------------------------------------------
check "patch --type merge" 0 "configmap/cm1 patched" -- \
  K -n kf patch cm cm1 --type merge -p '{"data":{"c":"3"}}'
check "patch --type json" 0 "configmap/cm1 patched" -- \
  K -n kf patch cm cm1 --type json -p '[{"op":"replace","path":"/data/a","value":"10"}]'
check "patch --type strategic" 0 "configmap/cm1 patched" -- \
  K -n kf patch cm cm1 --type strategic -p '{"data":{"d":"4"}}'
check "patched data" 0 '{"a":"10","b":"2","c":"3","d":"4"}' -- \
  K -n kf get cm cm1 -o "jsonpath={.data}"
check "patch with a failing json test" 1 \
  'The request is invalid: the server rejected our request due to an error in our request' -- \
  K -n kf patch cm cm1 --type json -p '[{"op":"test","path":"/data/a","value":"x"}]'

# ---- apply ---------------------------------------------------------------------
cat >"$TMP/cm2.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm2
  namespace: kf
data:
  color: red
EOF
check "apply (client-side) creates" 0 "configmap/cm2 created" -- \
  K apply -f "$TMP/cm2.yaml"
sed -i 's/red/blue/' "$TMP/cm2.yaml"
check "apply (client-side) patches" 0 "configmap/cm2 configured" -- \
  K apply -f "$TMP/cm2.yaml"
check "apply (client-side) no change" 0 "configmap/cm2 unchanged" -- \
  K apply -f "$TMP/cm2.yaml"
check "applied data" 0 "blue" -- K -n kf get cm cm2 -o "jsonpath={.data.color}"
cat >"$TMP/cm3.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm3
  namespace: kf
data:
  color: red
  shape: round
EOF
check "apply --server-side" 0 "configmap/cm3 serverside-applied" -- \
  K apply --server-side -f "$TMP/cm3.yaml"
check "apply --server-side again" 0 "configmap/cm3 serverside-applied" -- \
  K apply --server-side -f "$TMP/cm3.yaml"
sed -i 's/red/green/' "$TMP/cm3.yaml"
check "apply --server-side conflict with another manager" 1 'error: Apply failed with 1 conflict: conflict with "kubectl": .data.color
Please review the fields above--they currently have other managers. Here
are the ways you can resolve this warning:
* If you intend to manage all of these fields, please re-run the apply
  command with the `--force-conflicts` flag.
* If you do not intend to manage all of the fields, please edit your
  manifest to remove references to the fields that should keep their
  current managers.
* You may co-own fields by updating your manifest to match the existing
  value; in this case, you will become the manager if the other manager(s)
  stop managing the field (remove it from their configuration).
See https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts' -- \
  bash -c "'$KUBECTL' --kubeconfig '$TMP/kc' --cache-dir '$TMP/cache' apply --server-side --field-manager other -f '$TMP/cm3.yaml' 2>&1 | sed \"s/you'll/you will/\"; exit \${PIPESTATUS[0]}"

cat >"$TMP/dep.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: kf
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.25
      - name: sidecar
        image: busybox:1.36
EOF
check "apply Deployment" 0 "deployment.apps/web created" -- \
  K apply -f "$TMP/dep.yaml"
# kubectl edits one container by hand (not via apply), then apply changes
# the other one: the strategic merge patch must keep the hand edit's
# neighbour and replace only what changed.
sed -i 's/nginx:1.25/nginx:1.26/' "$TMP/dep.yaml"
check "apply Deployment with a changed image" 0 "deployment.apps/web configured" -- \
  K apply -f "$TMP/dep.yaml"
check "containers merged by name" 0 "app=nginx:1.26 sidecar=busybox:1.36" -- \
  K -n kf get deploy web -o 'jsonpath={range .spec.template.spec.containers[*]}{.name}={.image} {end}'
check "get deploy (Table)" 0 "NAME READY UP-TO-DATE AVAILABLE AGE
web 0/2 0 0 0s" -- K -n kf get deploy
sed -i 's/replicas: 2/replicas: 3/' "$TMP/dep.yaml"
check "apply --server-side Deployment" 0 "deployment.apps/web serverside-applied" -- \
  K apply --server-side --force-conflicts -f "$TMP/dep.yaml"
check "server-side applied replicas" 0 "3" -- \
  K -n kf get deploy web -o 'jsonpath={.spec.replicas}'
check "scale deployment (merge patch of /scale)" 0 "deployment.apps/web scaled" -- \
  K -n kf scale deployment web --replicas=5
check "scaled replicas" 0 "5" -- \
  K -n kf get deploy web -o 'jsonpath={.spec.replicas}'
check "scale --current-replicas (GET + PUT of /scale)" 0 "deployment.apps/web scaled" -- \
  K -n kf scale deployment web --current-replicas=5 --replicas=1
check "scale --current-replicas mismatch" 1 "error: Expected replicas to be 7, was 1" -- \
  K -n kf scale deployment web --current-replicas=7 --replicas=2
check "replicas after scaling down" 0 "1" -- \
  K -n kf get deploy web -o 'jsonpath={.spec.replicas}'

# ---- CRD -------------------------------------------------------------------------
cat >"$TMP/crd.yaml" <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.example.com
spec:
  group: test.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              color: {type: string}
              size: {type: integer}
          status:
            type: object
            properties:
              phase: {type: string}
EOF
check "apply CRD" 0 "customresourcedefinition.apiextensions.k8s.io/widgets.test.example.com created" -- \
  K apply -f "$TMP/crd.yaml"
check "wait --for=condition=Established" 0 \
  "customresourcedefinition.apiextensions.k8s.io/widgets.test.example.com condition met" -- \
  K wait --for=condition=Established crd/widgets.test.example.com --timeout=20s
cat >"$TMP/wd.yaml" <<'EOF'
apiVersion: test.example.com/v1
kind: Widget
metadata:
  name: wd-1
  namespace: kf
spec:
  color: red
  size: 5
EOF
check "get widgets (none yet)" 0 "No resources found in kf namespace." -- \
  K -n kf get widgets
check "apply a custom resource" 0 "widget.test.example.com/wd-1 created" -- \
  K apply -f "$TMP/wd.yaml"
sed -i 's/red/blue/' "$TMP/wd.yaml"
check "apply a custom resource again" 0 "widget.test.example.com/wd-1 configured" -- \
  K apply -f "$TMP/wd.yaml"
check "get widgets (printer columns)" 0 "NAME COLOR SIZE PHASE AGE
wd-1 blue 5 0s" -- K -n kf get widgets
check "get by short name" 0 "widget.test.example.com/wd-1" -- K -n kf get wd -o name
check "apply --server-side a custom resource" 0 "widget.test.example.com/wd-1 serverside-applied" -- \
  K apply --server-side --force-conflicts -f "$TMP/wd.yaml"
check "get crd" 0 "NAME CREATED AT
widgets.test.example.com TIME" -- K get crd

# ---- printer columns with JSONPath filters (examples/website-operator) ---------
ROOT=${KLUA_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
check "apply the Website CRD" 0 "customresourcedefinition.apiextensions.k8s.io/websites.demo.klua.dev created" -- \
  K apply -f "$ROOT/examples/website-operator/crd.yaml"
K wait --for=condition=Established crd/websites.demo.klua.dev --timeout=20s >/dev/null 2>&1
check "create a Website" 0 "website.demo.klua.dev/site created" -- \
  sh -c "printf '%s' '{\"apiVersion\":\"demo.klua.dev/v1\",\"kind\":\"Website\",\"metadata\":{\"name\":\"site\",\"namespace\":\"kf\"},\"spec\":{\"domain\":\"a.example\",\"replicas\":2}}' | '$KUBECTL' --kubeconfig '$TMP/kc' --cache-dir '$TMP/cache' create -f -"
check "get websites: no Ready condition yet" 0 "NAME DOMAIN REPLICAS READY AGE
site a.example 2 0s" -- K -n kf get websites
check "patch the status subresource" 0 "website.demo.klua.dev/site patched" -- \
  K -n kf patch website site --subresource=status --type merge \
    -p '{"status":{"conditions":[{"type":"Progressing","status":"False"},{"type":"Ready","status":"True","reason":"Serving"}]}}'
check "get websites: READY from .status.conditions[?(@.type==\"Ready\")].status" 0 "NAME DOMAIN REPLICAS READY AGE
site a.example 2 True 0s" -- K -n kf get websites

# ---- delete ----------------------------------------------------------------------
check "delete --wait=false" 0 'configmap "cm2" deleted' -- \
  K -n kf delete cm cm2 --wait=false
check "create an object with a finalizer" 0 "configmap/fin created" -- \
  sh -c "printf '%s' '{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"fin\",\"namespace\":\"kf\",\"finalizers\":[\"example.com/hold\"]}}' | '$KUBECTL' --kubeconfig '$TMP/kc' --cache-dir '$TMP/cache' create -f -"
K -n kf delete cm fin --wait=true --timeout=30s >"$TMP/del.out" 2>&1 &
DEL=$!
for _ in $(seq 50); do
  [ -n "$(K -n kf get cm fin -o 'jsonpath={.metadata.deletionTimestamp}' 2>/dev/null)" ] && break
  sleep 0.1
done
check "delete --wait keeps waiting while the finalizer is there" 0 "running" -- \
  sh -c "kill -0 $DEL 2>/dev/null && echo running || echo exited"
check "finalizer removed by another client" 0 "configmap/fin patched" -- \
  K -n kf patch cm fin --type json -p '[{"op":"remove","path":"/metadata/finalizers"}]'
wait $DEL
check "delete --wait returns once the object is gone" 0 'configmap "fin" deleted' -- \
  cat "$TMP/del.out"
check "deleted object is gone" 1 'Error from server (NotFound): configmaps "fin" not found' -- \
  K -n kf get cm fin

# ---- get -w ---------------------------------------------------------------------
# The changes are made once kubectl has printed the list (its watch starts
# from the list's resourceVersion, so none is missed), and the watch is
# ended once all three arrived: a fixed 1.5 s for kubectl to start, and 5 s
# for everything, raced a loaded machine.
K -n kf get cm -w --request-timeout=120s >"$TMP/watch.out" 2>&1 &
W=$!
for _ in $(seq 600); do grep -q '^cm3 ' "$TMP/watch.out" 2>/dev/null && break; sleep 0.1; done
K -n kf create configmap wcm --from-literal=x=1 >/dev/null
K -n kf patch cm wcm --type merge -p '{"data":{"y":"2"}}' >/dev/null
K -n kf delete cm wcm --wait=false >/dev/null
for _ in $(seq 600); do
  [ "$(grep -c '^wcm ' "$TMP/watch.out" 2>/dev/null)" -ge 3 ] && break
  sleep 0.1
done
kill $W 2>/dev/null
wait $W 2>/dev/null
check "get -w prints the list, then each change" 0 "NAME DATA AGE
cm1 4 0s
cm3 2 0s
wcm 1 0s
wcm 2 0s
wcm 2 0s" -- cat "$TMP/watch.out"
check "get -w --output-watch-events" 0 "EVENT NAME DATA AGE
ADDED cm1 4 0s
ADDED cm3 2 0s" -- K -n kf get cm -w --output-watch-events --request-timeout=2s

# ---- TLS + token ------------------------------------------------------------------
if openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/k.pem" \
    -out "$TMP/c.pem" -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 &&
   start_serve "$TMP/serve2.log" --listen 127.0.0.1:0 --tls-cert "$TMP/c.pem" \
     --tls-key "$TMP/k.pem" --token s3cret --kubeconfig-out "$TMP/kc2"; then
  check "TLS server URL" 0 "https" -- sh -c "echo '$SURL' | cut -d: -f1"
  check "kubectl over TLS with the token" 0 "namespace/default" -- \
    "$KUBECTL" --kubeconfig "$TMP/kc2" get ns default -o name
  check "kubectl create over TLS with the token" 0 "configmap/tls created" -- \
    "$KUBECTL" --kubeconfig "$TMP/kc2" create configmap tls --from-literal=a=1
  check "kubectl with a wrong token" 1 \
    "error: You must be logged in to the server (Unauthorized)" -- \
    "$KUBECTL" --kubeconfig "$TMP/kc2" --token wrong get ns default -o name
else
  N=$((N + 1)); FAILED=$((FAILED + 1))
  echo "not ok $N - TLS server start"; cat "$TMP/serve2.log" 2>/dev/null
fi

check "delete namespace" 0 'namespace "kf" deleted' -- \
  K delete namespace kf --wait=false
echo "1..$N"
[ "$FAILED" -eq 0 ]
