#!/usr/bin/python3
"""`klua serve --state-file`: the server restarted with its state kept.

Usage: serve_state.py KLUA_BIN. Starts and stops its own servers (each on a
free port) with one state file, over raw HTTP (stdlib only). Prints
"ok N - name" / "not ok N - name"; exits non-zero on any failure. The
behaviour is described in docs/serve.md ("Keeping state across restarts")."""
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import klua_e2e as E
from klua_e2e import test

KLUA = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="klua-state-")
STATE = os.path.join(TMP, "state.jsonl")
SRV = None   # the running server (Popen)
PORT = None
CTX = {}     # what earlier steps learned, for later ones


def start(*extra, state=STATE, expect_ok=True):
    """Starts klua serve with the state file; returns (proc, port) or, when
    it does not start, (proc, None) with the process ended."""
    p, url = E.serve(KLUA, "--state-file", state, *extra)
    if url is None:
        assert not expect_ok, p.stderr.read()
        return p, None
    return p, int(url.rsplit(":", 1)[1])


def use(p, port):
    """Makes p the server the next requests go to; one a failed step left
    running is killed."""
    global SRV, PORT
    if SRV is not None and SRV is not p and SRV.poll() is None:
        SRV.kill()
        SRV.wait()
    SRV, PORT = p, port


def stop(sig=signal.SIGTERM):
    p = SRV
    p.send_signal(sig)
    rc = p.wait(timeout=20)
    err = p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    return rc, err


def req(method, path, body=None, ctype="application/json"):
    st, b, _ = E.request(PORT, method, path, body, ctype)
    return st, b


def ok(method, path, body=None, want=(200, 201), ctype="application/json"):
    st, b = req(method, path, body, ctype)
    assert st in want, (method, path, st, b)
    return b


def watch(path, until):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=20)
    c.request("GET", path)
    r = c.getresponse()
    assert r.status == 200, (r.status, r.read())
    evs = []
    while True:
        line = r.readline()
        if not line:
            break
        evs.append(json.loads(line))
        if until(evs[-1]):
            break
    c.close()
    return evs


NS = "/api/v1/namespaces"
CM = "/api/v1/namespaces/%s/configmaps"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/state.example.com/v1/namespaces/%s/widgets"
GADGETS = "/apis/state.example.com/v1/gadgets"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.state.example.com"},
    "spec": {"group": "state.example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget",
                       "kind": "Widget", "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {
                               "type": "object",
                               "x-kubernetes-preserve-unknown-fields": True}}
                           }]}}
CLUSTER_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.state.example.com"},
    "spec": {"group": "state.example.com", "scope": "Cluster",
             "names": {"plural": "gadgets", "singular": "gadget",
                       "kind": "Gadget"},
             "versions": [{"name": "v1", "served": True, "storage": True}]}}
# every collection whose objects the restart must keep
COLLECTIONS = [NS, "/api/v1/configmaps", "/api/v1/secrets", CRDS,
               "/apis/state.example.com/v1/widgets", GADGETS,
               "/apis/apps/v1/deployments"]


def snapshot():
    out = {}
    for c in COLLECTIONS:
        lst = ok("GET", c)
        for it in lst["items"]:
            md = it["metadata"]
            out[(c, md.get("namespace", ""), md["name"])] = it
    return out


def wait_for(fn, secs=10):
    end = time.time() + secs
    while True:
        v = fn()
        if v or time.time() > end:
            return v
        time.sleep(0.05)


@test
def missing_state_file_starts_empty():
    use(*start())
    assert not os.path.exists(STATE)
    names = [n["metadata"]["name"] for n in ok("GET", NS)["items"]]
    assert names == ["default", "kube-node-lease", "kube-public",
                     "kube-system"], names


@test
def create_objects_of_every_kind():
    ok("POST", NS, {"metadata": {"name": "keep", "labels": {"team": "a"}}})
    ok("POST", CM % "keep", {"metadata": {"name": "plain"},
                             "data": {"a": "1"}})
    ok("POST", "/api/v1/namespaces/keep/secrets",
       {"metadata": {"name": "s"}, "type": "Opaque",
        "data": {"k": "dmFsdWU="}})
    ok("POST", CRDS, CRD)
    ok("POST", CRDS, CLUSTER_CRD)
    wait_for(lambda: req("GET", WIDGETS % "keep")[0] == 200)
    ok("POST", WIDGETS % "keep", {
        "apiVersion": "state.example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1", "labels": {"size": "big"}},
        "spec": {"size": 3}})
    # generation 2, then a status write
    ok("PATCH", WIDGETS % "keep" + "/w1", {"spec": {"size": 4}},
       ctype="application/merge-patch+json")
    ok("PATCH", WIDGETS % "keep" + "/w1/status", {"status": {"ready": True}},
       ctype="application/merge-patch+json")
    ok("POST", GADGETS, {"apiVersion": "state.example.com/v1",
                         "kind": "Gadget", "metadata": {"name": "g1"},
                         "spec": {"x": 1}})
    CTX["old_rv"] = ok("GET", CM % "keep")["metadata"]["resourceVersion"]
    # a finalizer holds this one in deletion across the restart
    ok("POST", CM % "keep", {"metadata": {"name": "held",
                                          "finalizers": ["state.example/hold"]},
                             "data": {"b": "2"}})
    ok("DELETE", CM % "keep" + "/held")
    ok("POST", "/apis/apps/v1/namespaces/keep/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c",
                                                       "image": "busybox"}]}}
                 }})
    held = ok("GET", CM % "keep" + "/held")
    assert held["metadata"]["deletionTimestamp"], held
    w1 = ok("GET", WIDGETS % "keep" + "/w1")
    assert w1["metadata"]["generation"] == 2 and w1["status"] == {
        "ready": True}, w1
    CTX["before"] = snapshot()
    CTX["list_rv"] = ok("GET", "/api/v1/configmaps")["metadata"][
        "resourceVersion"]


@test
def sigterm_saves_atomically_and_exits_0():
    rc, err = stop()
    assert rc == 0, (rc, err)
    assert os.path.exists(STATE) and not os.path.exists(STATE + ".tmp")
    with open(STATE) as f:
        head = json.loads(f.readline())
    assert head["kind"] == "KluaServeState", head
    assert head["resourceVersion"] == CTX["list_rv"], (head, CTX["list_rv"])
    assert head["objects"] == len(CTX["before"]), head


@test
def restart_keeps_every_object_byte_for_byte():
    use(*start())
    after = snapshot()
    before = CTX["before"]
    assert sorted(after) == sorted(before), (sorted(after), sorted(before))
    for k, v in before.items():
        assert after[k] == v, (k, v, after[k])
    w1 = ok("GET", WIDGETS % "keep" + "/w1")
    assert w1["metadata"]["generation"] == 2 and w1["status"] == {
        "ready": True}
    held = ok("GET", CM % "keep" + "/held")
    assert held["metadata"]["finalizers"] == ["state.example/hold"]


@test
def custom_resources_served_after_restart():
    st, d = req("GET", "/apis/state.example.com/v1")
    assert st == 200, d
    names = sorted(r["name"] for r in d["resources"])
    assert names == ["gadgets", "widgets", "widgets/status"], names
    ok("GET", GADGETS + "/g1")


@test
def resource_versions_continue_upward():
    saved = int(CTX["list_rv"])
    c = ok("POST", CM % "keep", {"metadata": {"name": "after"}})
    assert int(c["metadata"]["resourceVersion"]) == saved + 1, (c, saved)
    w = ok("PATCH", WIDGETS % "keep" + "/w1", {"spec": {"size": 5}},
           ctype="application/merge-patch+json")
    assert int(w["metadata"]["resourceVersion"]) == saved + 2, w
    assert w["metadata"]["generation"] == 3, w
    CTX["after_rv"] = c["metadata"]["resourceVersion"]


@test
def watch_from_pre_restart_rv_gets_410():
    evs = watch(CM % "keep" + "?watch=1&timeoutSeconds=5&resourceVersion=%s" % CTX["old_rv"],
                lambda e: True)
    assert len(evs) == 1 and evs[0]["type"] == "ERROR", evs
    o = evs[0]["object"]
    assert o["code"] == 410 and o["reason"] == "Expired", o


@test
def watch_from_the_saved_rv_and_old_exact_list():
    evs = watch(CM % "keep" + "?watch=1&timeoutSeconds=5&resourceVersion=%s"
                % CTX["list_rv"], lambda e: e["type"] == "ADDED")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [
        ("ADDED", "after")], evs
    st, b = req("GET", CM % "keep" + "?resourceVersion=%s&"
                "resourceVersionMatch=Exact" % CTX["old_rv"])
    assert st == 410 and b["reason"] == "Expired", (st, b)


@test
def list_then_watch_from_new_list_rv():
    lst = ok("GET", CM % "keep")
    rv = lst["metadata"]["resourceVersion"]
    assert sorted(i["metadata"]["name"] for i in lst["items"]) == [
        "after", "held", "plain"]
    ok("PUT", CM % "keep" + "/plain",
       dict(CTX["before"][("/api/v1/configmaps", "keep", "plain")],
            data={"a": "changed"}))
    evs = watch(CM % "keep" + "?watch=1&timeoutSeconds=5&resourceVersion=%s" % rv,
                lambda e: e["type"] == "MODIFIED")
    assert [e["type"] for e in evs] == ["MODIFIED"], evs
    assert evs[0]["object"]["data"] == {"a": "changed"}
    assert int(evs[0]["object"]["metadata"]["resourceVersion"]) > int(rv)


@test
def finalizer_removal_after_restart_completes_the_deletion():
    held = ok("GET", CM % "keep" + "/held")
    ok("PATCH", CM % "keep" + "/held",
       [{"op": "remove", "path": "/metadata/finalizers"}],
       ctype="application/json-patch+json")
    st, _ = req("GET", CM % "keep" + "/held")
    assert st == 404, (st, held)


@test
def seed_skips_objects_the_state_already_has():
    seed = os.path.join(TMP, "seed.yaml")
    with open(seed, "w") as f:
        f.write("apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                "  name: after\n  namespace: keep\ndata:\n  from: seed\n"
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                "  name: seeded\n  namespace: keep\ndata:\n  from: seed\n")
    before = ok("GET", CM % "keep" + "/after")
    rc, err = stop()
    assert rc == 0, err
    use(*start("--seed", seed))
    assert ok("GET", CM % "keep" + "/after") == before
    assert ok("GET", CM % "keep" + "/seeded")["data"] == {"from": "seed"}


@test
def periodic_save_survives_a_kill():
    rc, err = stop()
    assert rc == 0, err
    use(*start("--state-save-interval", "0.2"))
    ok("POST", CM % "keep", {"metadata": {"name": "periodic"}})

    def saved():
        with open(STATE) as f:
            return '"name":"periodic"' in f.read()
    assert wait_for(saved), "not saved within 10 s"
    SRV.kill()
    SRV.wait()
    SRV.stdout.close()
    SRV.stderr.close()
    use(*start())
    ok("GET", CM % "keep" + "/periodic")


@test
def gc_work_pending_at_save_resumes_after_load():
    # a hand-written state: a terminating namespace with content, and a
    # configmap whose owner is gone
    rc, err = stop()
    assert rc == 0, err
    path = os.path.join(TMP, "gc.jsonl")
    objs = [
        {"kind": "Namespace", "apiVersion": "v1",
         "metadata": {"name": "dying", "uid": "u-ns", "resourceVersion": "5",
                      "deletionTimestamp": "2024-01-01T00:00:00Z"},
         "spec": {"finalizers": ["kubernetes"]},
         "status": {"phase": "Terminating"}},
        {"kind": "ConfigMap", "apiVersion": "v1",
         "metadata": {"name": "c", "namespace": "dying", "uid": "u-c",
                      "resourceVersion": "6"}},
        {"kind": "Namespace", "apiVersion": "v1",
         "metadata": {"name": "default", "uid": "u-def",
                      "resourceVersion": "2"},
         "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
        {"kind": "ConfigMap", "apiVersion": "v1",
         "metadata": {"name": "orphan", "namespace": "default", "uid": "u-o",
                      "resourceVersion": "7",
                      "ownerReferences": [{"apiVersion": "v1",
                                           "kind": "ConfigMap", "name": "gone",
                                           "uid": "u-gone"}]}},
        {"kind": "ConfigMap", "apiVersion": "v1",
         "metadata": {"name": "owned", "namespace": "default", "uid": "u-k",
                      "resourceVersion": "8",
                      "ownerReferences": [{"apiVersion": "v1",
                                           "kind": "Namespace",
                                           "name": "default",
                                           "uid": "u-def"}]}},
    ]
    with open(path, "w") as f:
        f.write(json.dumps({"kind": "KluaServeState", "version": 1,
                            "resourceVersion": "10",
                            "objects": len(objs)}) + "\n")
        for o in objs:
            f.write(json.dumps(o, separators=(",", ":")) + "\n")
    use(*start(state=path))
    assert wait_for(lambda: req("GET", NS + "/dying")[0] == 404), \
        "terminating namespace not removed"
    assert wait_for(lambda: req("GET", CM % "default" + "/orphan")[0] == 404)
    # the dependent whose owner exists stays
    assert ok("GET", CM % "default" + "/owned")["metadata"]["uid"] == "u-k"
    rc, err = stop()
    assert rc == 0, err


def bad_start(content, want):
    path = os.path.join(TMP, "bad.jsonl")
    with open(path, "wb") as f:
        f.write(content)
    p, port = start(state=path, expect_ok=False)
    err = p.stderr.read().decode()
    p.stdout.close()
    p.stderr.close()
    assert port is None and p.returncode != 0, (port, p.returncode, err)
    assert path in err and want in err, err
    with open(path, "rb") as f:
        assert f.read() == content, "a bad state file must be left alone"


HEAD = b'{"kind":"KluaServeState","version":1,"resourceVersion":"9",' \
       b'"objects":%d}\n'
GOOD_CM = b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a",' \
          b'"namespace":"default","resourceVersion":"3"}}\n'


@test
def corrupt_state_files_are_errors_naming_the_file():
    bad_start(b"\x00\x01garbage\n", "not a klua serve state file")
    bad_start(b"", "empty file")
    bad_start(HEAD % 1 + b'{"kind":"ConfigMap","apiVersion":"v1","meta\n',
              "line 2")
    bad_start(HEAD % 2 + GOOD_CM, "truncated")
    bad_start(HEAD % 1 + b'{"kind":"Gizmo","apiVersion":"x.io/v1",'
              b'"metadata":{"name":"g","resourceVersion":"1"}}\n',
              "unknown kind Gizmo")
    bad_start(HEAD % 1 + GOOD_CM.replace(b'"3"', b'"12"'),
              "resourceVersion")
    bad_start(HEAD.replace(b'"version":1', b'"version":7') % 0,
              "unsupported state file version")


@test
def state_flags_are_checked():
    r = subprocess.run([KLUA, "serve", "--state-save-interval", "1"],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b"--state-file" in r.stderr, r
    r = subprocess.run([KLUA, "serve", "--state-file", STATE,
                        "--state-save-interval", "0"],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b"positive" in r.stderr, r


@test
def unwritable_state_file_fails_the_stop():
    path = os.path.join(TMP, "no-such-dir", "state.jsonl")
    use(*start(state=path))
    rc, err = stop()
    assert rc == 1 and path.encode() + b".tmp" in err, (rc, err)


if SRV and SRV.poll() is None:
    SRV.kill()
subprocess.run(["rm", "-rf", TMP])
print("# %d passed, %d failed" % (E.N - E.FAILED, E.FAILED))
sys.exit(1 if E.FAILED else 0)
