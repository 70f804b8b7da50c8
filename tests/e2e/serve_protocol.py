#!/usr/bin/python3
"""Protocol tests of `klua serve` over raw HTTP (stdlib http.client only).

Usage: serve_protocol.py PORT KLUA_BIN. The server on PORT must run with
--history 50 --bookmark-interval 1 --max-body-bytes 100000. Prints
"ok N - name" / "not ok N - name" lines; exits non-zero on any failure.
Expected shapes come from the kube-apiserver captures in
/work/shared/k8s-wire (see its README)."""
import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time

import klua_e2e as E
from klua_e2e import test

PORT = int(sys.argv[1])
KLUA = sys.argv[2]


def req(method, path, body=None, ctype="application/json", accept=None,
        headers=None, port=None, conn=None):
    st, data, r = E.request(port or PORT, method, path, body, ctype, accept,
                            headers, conn=conn, decode=False)
    out = data
    if r.getheader("Content-Type", "").startswith("application/json") and \
            path != "/version":
        assert data.endswith(b"\n"), data
        out = json.loads(data)
    return st, out, r


def watch(path, accept=None, max_events=1000, until=None):
    """Returns the events of a watch (stops at stream end or when until(ev)
    is true), plus the headers response."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=20)
    h = {"Accept": accept} if accept else {}
    c.request("GET", path, headers=h)
    r = c.getresponse()
    assert r.status == 200, (r.status, r.read())
    assert r.getheader("Transfer-Encoding") == "chunked"
    evs = []
    while len(evs) < max_events:
        line = r.readline()
        if not line:
            break
        ev = json.loads(line)
        evs.append(ev)
        if until and until(ev):
            break
    c.close()
    return evs


def mkns(name):
    st, b, _ = req("POST", "/api/v1/namespaces",
                   {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name}})
    assert st == 201, b
    return b


def cm(name, labels=None, data=None, **md):
    m = {"name": name}
    if labels:
        m["labels"] = labels
    m.update(md)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": m,
            "data": data or {"k": "v"}}


CM = "/api/v1/namespaces/%s/configmaps"


# ---- discovery -------------------------------------------------------------

@test
def discovery_documents():
    st, b, _ = req("GET", "/api")
    assert st == 200 and b["kind"] == "APIVersions" and b["versions"] == ["v1"]
    st, b, _ = req("GET", "/api/v1")
    assert b["kind"] == "APIResourceList" and b["groupVersion"] == "v1"
    r = {x["name"]: x for x in b["resources"]}
    assert r["configmaps"]["shortNames"] == ["cm"]
    assert r["configmaps"]["namespaced"] is True
    assert r["namespaces"]["namespaced"] is False
    assert "watch" in r["pods"]["verbs"] and "pods/status" in r
    st, b, _ = req("GET", "/apis")
    names = [g["name"] for g in b["groups"]]
    for g in ("apps", "batch", "coordination.k8s.io",
              "apiextensions.k8s.io", "events.k8s.io"):
        assert g in names, names
    st, b, _ = req("GET", "/apis/apps")
    assert b["kind"] == "APIGroup" and \
        b["preferredVersion"]["groupVersion"] == "apps/v1"
    st, b, _ = req("GET", "/apis/apps/v1")
    assert "deployments" in [x["name"] for x in b["resources"]]
    st, b, r = req("GET", "/version")
    assert st == 200 and b.startswith(b"{\n  \"major\"") and \
        not b.endswith(b"\n")
    st, b, _ = req("GET", "/healthz")
    assert st == 200 and b == b"ok"
    st, b, r = req("GET", "/apis/nope.example.com/v1/namespaces/x/things")
    assert st == 404 and b == b"404 page not found\n"
    st, b, _ = req("GET", "/apis", accept="application/json;g=apidiscovery."
                   "k8s.io;v=v2;as=APIGroupDiscoveryList")
    assert st == 406 and b["reason"] == "NotAcceptable"


# ---- CRUD ------------------------------------------------------------------

mkns("t-crud")


@test
def create_get_update_patch_delete():
    st, b, _ = req("POST", CM % "t-crud", cm("a", {"app": "x"}))
    assert st == 201, b
    md = b["metadata"]
    assert md["namespace"] == "t-crud" and len(md["uid"]) == 36
    assert md["creationTimestamp"].endswith("Z") and "generation" not in md
    assert list(b)[:3] == ["kind", "apiVersion", "metadata"]
    st, g, _ = req("GET", CM % "t-crud" + "/a")
    assert st == 200 and g == b
    g["data"] = {"k": "v2"}
    st, u, _ = req("PUT", CM % "t-crud" + "/a", g)
    assert st == 200 and u["data"] == {"k": "v2"}
    assert int(u["metadata"]["resourceVersion"]) > int(md["resourceVersion"])
    st, p, _ = req("PATCH", CM % "t-crud" + "/a", {"data": {"z": "1"}},
                   "application/merge-patch+json")
    assert st == 200 and p["data"] == {"k": "v2", "z": "1"}
    st, p, _ = req("PATCH", CM % "t-crud" + "/a",
                   [{"op": "replace", "path": "/data/k", "value": "v3"}],
                   "application/json-patch+json")
    assert st == 200 and p["data"]["k"] == "v3"
    st, p, _ = req("PATCH", CM % "t-crud" + "/a", {"data": {"s": "1"}},
                   "application/strategic-merge-patch+json")
    assert st == 200 and p["data"]["s"] == "1"
    st, d, _ = req("DELETE", CM % "t-crud" + "/a")
    assert st == 200 and d["kind"] == "Status" and d["status"] == "Success"
    assert d["details"] == {"name": "a", "kind": "configmaps",
                            "uid": md["uid"]}
    st, b, _ = req("GET", CM % "t-crud" + "/a")
    assert st == 404 and b["message"] == 'configmaps "a" not found'


@test
def generate_name_and_dry_run():
    st, b, _ = req("POST", CM % "t-crud",
                   {"metadata": {"generateName": "gen-"}, "data": {}})
    assert st == 201 and b["metadata"]["name"].startswith("gen-")
    assert len(b["metadata"]["name"]) == 9
    assert all(ch in "bcdfghjklmnpqrstvwxz2456789"
               for ch in b["metadata"]["name"][4:])
    st, b, _ = req("POST", CM % "t-crud" + "?dryRun=All", cm("dry"))
    assert st == 201 and "resourceVersion" not in b["metadata"]
    st, _, _ = req("GET", CM % "t-crud" + "/dry")
    assert st == 404


@test
def conflict_on_stale_update_and_existing_name():
    st, b, _ = req("POST", CM % "t-crud", cm("c1"))
    stale = json.loads(json.dumps(b))
    req("PATCH", CM % "t-crud" + "/c1", {"data": {"x": "1"}},
        "application/merge-patch+json")
    st, e, _ = req("PUT", CM % "t-crud" + "/c1", stale)
    assert st == 409 and e["reason"] == "Conflict", e
    assert e["message"].startswith(
        'Operation cannot be fulfilled on configmaps "c1": the object has '
        'been modified')
    st, e, _ = req("POST", CM % "t-crud", cm("c1"))
    assert st == 409 and e["reason"] == "AlreadyExists"
    assert e["message"] == 'configmaps "c1" already exists'
    # missing resourceVersion on PUT is accepted for configmaps
    del stale["metadata"]["resourceVersion"]
    st, _, _ = req("PUT", CM % "t-crud" + "/c1", stale)
    assert st == 200


@test
def delete_preconditions_409():
    # errors/409_delete_precondition_uid.http: the exact message and details
    st, b, _ = req("POST", CM % "t-crud", cm("pre"))
    uid, rv = b["metadata"]["uid"], b["metadata"]["resourceVersion"]
    zero = "00000000-0000-0000-0000-000000000000"
    st, e, _ = req("DELETE", CM % "t-crud" + "/pre",
                   {"kind": "DeleteOptions", "apiVersion": "v1",
                    "preconditions": {"uid": zero}})
    assert st == 409 and e["reason"] == "Conflict", e
    assert e["message"] == (
        'Operation cannot be fulfilled on ConfigMap "pre": the UID in the '
        'precondition (%s) does not match the UID in record (%s). The '
        'object might have been deleted and then recreated' % (zero, uid)), e
    assert e["details"] == {"name": "pre", "kind": "ConfigMap"}, e
    st, e, _ = req("DELETE", CM % "t-crud" + "/pre",
                   {"kind": "DeleteOptions", "apiVersion": "v1",
                    "preconditions": {"resourceVersion": "1"}})
    assert st == 409 and e["reason"] == "Conflict", e
    st2, cur, _ = req("GET", CM % "t-crud" + "/pre")
    assert e["message"] == (
        'Operation cannot be fulfilled on ConfigMap "pre": the '
        'ResourceVersion in the precondition (1) does not match the '
        'ResourceVersion in record (%s). The object might have been '
        'modified' % cur["metadata"]["resourceVersion"]), e
    # still there after both refusals; matching preconditions delete it
    st, _, _ = req("GET", CM % "t-crud" + "/pre")
    assert st == 200
    st, e, _ = req("DELETE", CM % "t-crud" + "/pre",
                   {"kind": "DeleteOptions", "apiVersion": "v1",
                    "preconditions": {"uid": uid, "resourceVersion": rv}})
    assert st == 200 and e["status"] == "Success", e
    st, _, _ = req("GET", CM % "t-crud" + "/pre")
    assert st == 404


@test
def not_found_errors():
    st, e, _ = req("POST", CM % "no-such-ns", cm("x"))
    assert st == 404 and e["message"] == 'namespaces "no-such-ns" not found'
    assert e["details"] == {"name": "no-such-ns", "kind": "namespaces"}
    st, e, _ = req("DELETE", CM % "t-crud" + "/missing")
    assert st == 404 and e["reason"] == "NotFound"
    st, e, _ = req("GET", "/api/v1/namespaces/t-crud/foos?watch=1")
    assert st == 404 and e["message"] == \
        "the server could not find the requested resource"
    st, e, _ = req("POST", CM % "t-crud" + "/c1", cm("c1"))
    assert st == 405 and e["reason"] == "MethodNotAllowed"


@test
def invalid_name_422():
    st, e, _ = req("POST", CM % "t-crud", cm("Bad_Name"))
    assert st == 422 and e["reason"] == "Invalid"
    assert e["message"].startswith('ConfigMap "Bad_Name" is invalid: '
                                   'metadata.name: Invalid value: "Bad_Name"'
                                   ': a lowercase RFC 1123 subdomain')
    assert e["details"]["causes"][0]["field"] == "metadata.name"


@test
def bad_requests_400():
    st, e, _ = req("POST", CM % "t-crud", '{"apiVersion":"v1","kind":"Con')
    assert st == 400 and e["reason"] == "BadRequest"
    assert "couldn't get version/kind; json parse error" in e["message"]
    st, e, _ = req("POST", "/api/v1/namespaces/t-crud/secrets", cm("k"))
    assert st == 400 and e["message"].startswith(
        'ConfigMap in version "v1" cannot be handled as a Secret')
    st, e, _ = req("PUT", CM % "t-crud" + "/c1", cm("other"))
    assert st == 400 and e["message"] == ("the name of the object (other) does"
                                          " not match the name on the URL "
                                          "(c1)")
    st, e, _ = req("GET", CM % "t-crud" + "?labelSelector=app%3D%3D%3D")
    assert st == 400 and e["reason"] == "BadRequest"
    st, e, _ = req("GET", CM % "t-crud" + "?fieldSelector=data.k%3Dv")
    assert st == 400 and e["message"] == (
        '"data.k" is not a known field selector: only "metadata.name", '
        '"metadata.namespace"')
    st, e, _ = req("GET", CM % "t-crud" + "?limit=1&continue=notbase64!!")
    assert st == 400 and e["message"].startswith("invalid continue token")
    st, e, _ = req("PATCH", CM % "t-crud" + "/c1", "{}", "text/plain")
    assert st == 415 and e["reason"] == "UnsupportedMediaType"


@test
def oversized_body_413_and_server_keeps_serving():
    big = cm("big", data={"k": "x" * 200000})
    st, e, _ = req("POST", CM % "t-crud", big)
    assert st == 413 and e["reason"] == "RequestEntityTooLarge", (st, e)
    st, _, _ = req("GET", CM % "t-crud" + "/c1")
    assert st == 200
    st, _, _ = req("GET", CM % "t-crud" + "/big")
    assert st == 404


DEP = "/apis/apps/v1/namespaces/t-crud/deployments"


def deployment(name, replicas=1):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [
                                      {"name": "c", "image": "nginx"}]}}},
            "status": {"replicas": 99}}


@test
def generation_bumps_on_spec_only():
    st, d, _ = req("POST", DEP, deployment("web"))
    assert st == 201 and d["metadata"]["generation"] == 1
    assert "status" not in d  # ignored on create (status subresource)
    st, d, _ = req("PATCH", DEP + "/web", {"metadata": {"labels": {"a": "b"}}},
                   "application/merge-patch+json")
    assert d["metadata"]["generation"] == 1
    st, d, _ = req("PATCH", DEP + "/web", {"spec": {"replicas": 3}},
                   "application/merge-patch+json")
    assert d["metadata"]["generation"] == 2 and d["spec"]["replicas"] == 3


@test
def status_subresource():
    st, d, _ = req("PATCH", DEP + "/web/status",
                   {"status": {"readyReplicas": 2}, "spec": {"replicas": 7}},
                   "application/merge-patch+json")
    assert st == 200, d
    assert d["status"] == {"readyReplicas": 2}
    assert d["spec"]["replicas"] == 3 and d["metadata"]["generation"] == 2
    st, d, _ = req("PATCH", DEP + "/web", {"status": {"readyReplicas": 9}},
                   "application/merge-patch+json")
    assert d["status"] == {"readyReplicas": 2}


@test
def finalizer_keeps_object_until_removed():
    req("POST", CM % "t-crud", cm("fin", finalizers=["example.com/hold"]))
    st, d, _ = req("DELETE", CM % "t-crud" + "/fin")
    assert st == 200 and d["kind"] == "ConfigMap"
    assert d["metadata"]["deletionTimestamp"].endswith("Z")
    assert d["metadata"]["deletionGracePeriodSeconds"] == 0
    st, g, _ = req("GET", CM % "t-crud" + "/fin")
    assert st == 200
    rv = g["metadata"]["resourceVersion"]
    st, p, _ = req("PATCH", CM % "t-crud" + "/fin",
                   [{"op": "remove", "path": "/metadata/finalizers"}],
                   "application/json-patch+json")
    assert st == 200 and p["metadata"]["resourceVersion"] == rv
    st, _, _ = req("GET", CM % "t-crud" + "/fin")
    assert st == 404


def owned(name, owner):
    return cm(name, ownerReferences=[{
        "apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]
        ["name"], "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True}])


def wait_gone(path, secs=5):
    t = time.time() + secs
    while time.time() < t:
        if req("GET", path)[0] == 404:
            return True
        time.sleep(0.05)
    return False


@test
def foreground_cascade():
    _, o, _ = req("POST", CM % "t-crud", cm("own-fg"))
    req("POST", CM % "t-crud", owned("dep-fg-1", o))
    req("POST", CM % "t-crud", owned("dep-fg-2", o))
    st, d, _ = req("DELETE", CM % "t-crud" + "/own-fg",
                   {"kind": "DeleteOptions", "apiVersion": "v1",
                    "propagationPolicy": "Foreground"})
    assert st == 200 and d["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert wait_gone(CM % "t-crud" + "/own-fg")
    assert req("GET", CM % "t-crud" + "/dep-fg-1")[0] == 404
    assert req("GET", CM % "t-crud" + "/dep-fg-2")[0] == 404


@test
def background_cascade_and_orphan():
    _, o, _ = req("POST", CM % "t-crud", cm("own-bg"))
    req("POST", CM % "t-crud", owned("dep-bg", o))
    st, d, _ = req("DELETE", CM % "t-crud" + "/own-bg?propagationPolicy="
                   "Background")
    assert st == 200 and d["kind"] == "Status"
    assert wait_gone(CM % "t-crud" + "/dep-bg")
    _, o, _ = req("POST", CM % "t-crud", cm("own-or"))
    req("POST", CM % "t-crud", owned("dep-or", o))
    st, d, _ = req("DELETE", CM % "t-crud" + "/own-or",
                   {"propagationPolicy": "Orphan"})
    assert d["metadata"]["finalizers"] == ["orphan"]
    assert wait_gone(CM % "t-crud" + "/own-or")
    st, dep, _ = req("GET", CM % "t-crud" + "/dep-or")
    assert st == 200 and "ownerReferences" not in dep["metadata"]


@test
def namespace_terminating():
    mkns("t-nsdel")
    req("POST", CM % "t-nsdel", cm("inside"))
    req("POST", CM % "t-nsdel", cm("held", finalizers=["x/y"]))
    st, d, _ = req("DELETE", "/api/v1/namespaces/t-nsdel")
    assert st == 200 and d["status"]["phase"] == "Terminating"
    st, e, _ = req("POST", CM % "t-nsdel", cm("late"))
    assert st == 403 and e["details"]["causes"][0]["reason"] == \
        "NamespaceTerminating"
    assert wait_gone(CM % "t-nsdel" + "/inside")
    time.sleep(0.4)
    assert req("GET", "/api/v1/namespaces/t-nsdel")[0] == 200  # held
    req("PATCH", CM % "t-nsdel" + "/held", {"metadata": {"finalizers": None}},
        "application/merge-patch+json")
    assert wait_gone("/api/v1/namespaces/t-nsdel")


# ---- lists -----------------------------------------------------------------

mkns("t-list")
for i in range(1, 8):
    lab = {"app": "web" if i <= 3 else "db"}
    if i % 2:
        lab["tier"] = "frontend"
    if i == 7:
        lab = {"env": "prod"}
    req("POST", CM % "t-list", cm("cm-%d" % i, lab))


def names(lst):
    return [x["metadata"]["name"] for x in lst["items"]]


@test
def list_paging_with_continue():
    st, p1, _ = req("GET", CM % "t-list" + "?limit=3")
    assert names(p1) == ["cm-1", "cm-2", "cm-3"]
    assert "kind" not in p1["items"][0]
    assert p1["metadata"]["remainingItemCount"] == 4
    tok = p1["metadata"]["continue"]
    dec = json.loads(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
    assert dec == {"v": "meta.k8s.io/v1",
                   "rv": int(p1["metadata"]["resourceVersion"]),
                   "start": "cm-3\u0000"}
    # a change between pages does not show in the snapshot
    req("PATCH", CM % "t-list" + "/cm-5", {"data": {"new": "1"}},
        "application/merge-patch+json")
    req("POST", CM % "t-list", cm("cm-45"))
    st, p2, _ = req("GET", CM % "t-list" + "?limit=3&continue=" + tok)
    assert names(p2) == ["cm-4", "cm-5", "cm-6"], names(p2)
    assert "new" not in p2["items"][1]["data"]
    assert p2["metadata"]["resourceVersion"] == p1["metadata"]["resourceVersion"]
    assert p2["metadata"]["remainingItemCount"] == 1
    st, p3, _ = req("GET", CM % "t-list" + "?limit=3&continue=" +
                    p2["metadata"]["continue"])
    assert names(p3) == ["cm-7"] and "continue" not in p3["metadata"]
    req("DELETE", CM % "t-list" + "/cm-45")
    st, full, _ = req("GET", CM % "t-list")
    assert names(full) == ["cm-%d" % i for i in range(1, 8)]
    st, rv0, _ = req("GET", CM % "t-list" + "?resourceVersion=0&limit=3")
    assert len(rv0["items"]) == 7 and "continue" not in rv0["metadata"]



@test
def paging_many_snapshots_with_writes_between_pages():
    """Five paged lists begun at different resourceVersions (more than the
    server keeps cached), each page followed by a write: every list shows
    exactly the state at its own RV, with exact remainingItemCount."""
    mkns("t-snap")
    path = CM % "t-snap"
    for i in range(12):
        req("POST", path, cm("s-%02d" % i, data={"v": "0"}))
    n = [100]

    def write():
        n[0] += 1
        k = n[0] % 3
        if k == 0:
            req("POST", path, cm("s-%02dx" % (n[0] % 12), data={"v": "n"}))
        elif k == 1:
            req("PATCH", path + "/s-%02d" % (n[0] % 12),
                {"data": {"v": str(n[0])}}, "application/merge-patch+json")
        else:
            req("DELETE", path + "/s-%02d" % (n[0] % 12))

    def state(lst):
        return [(x["metadata"]["name"], x.get("data")) for x in lst["items"]]

    runs = []
    for k in range(5):
        p = "/api/v1/configmaps" if k == 4 else path
        st, full, _ = req("GET", p)
        st, pg, _ = req("GET", p + "?limit=4")
        assert st == 200, pg
        assert pg["metadata"]["resourceVersion"] == \
            full["metadata"]["resourceVersion"]
        runs.append({"p": p, "want": state(full), "got": state(pg),
                     "md": pg["metadata"]})
        write()
    while any(r["md"].get("continue") for r in runs):
        for r in runs:
            md = r["md"]
            if not md.get("continue"):
                continue
            assert md["remainingItemCount"] == \
                len(r["want"]) - len(r["got"]), (md, len(r["got"]))
            st, pg, _ = req("GET", r["p"] + "?limit=4&continue=" +
                            md["continue"])
            assert st == 200, pg
            assert pg["metadata"]["resourceVersion"] == md["resourceVersion"]
            r["got"] += state(pg)
            r["md"] = pg["metadata"]
            write()
    for r in runs:
        assert r["got"] == r["want"], (r["p"], r["got"], r["want"])
    assert len({r["md"]["resourceVersion"] for r in runs}) == 5

@test
def expired_continue_410():
    st, p1, _ = req("GET", CM % "t-list" + "?limit=2")
    tok = p1["metadata"]["continue"]
    for i in range(60):  # history is 50
        req("PATCH", CM % "t-crud" + "/c1", {"data": {"n": str(i)}},
            "application/merge-patch+json")
    st, e, _ = req("GET", CM % "t-list" + "?limit=2&continue=" + tok)
    assert st == 410 and e["reason"] == "Expired", e
    assert e["message"].startswith("The provided continue parameter is too "
                                   "old")
    t2 = e["metadata"]["continue"]
    dec = json.loads(base64.urlsafe_b64decode(t2 + "=" * (-len(t2) % 4)))
    assert dec["rv"] == -1 and dec["start"] == "cm-2\u0000"
    st, e, _ = req("GET", CM % "t-list" + "?resourceVersion=%s&"
                   "resourceVersionMatch=Exact" %
                   p1["metadata"]["resourceVersion"])
    assert st == 410 and e["message"] == ("The resourceVersion for the "
                                          "provided list is too old.")


@test
def label_selectors_every_operator():
    def sel(q):
        st, b, _ = req("GET", CM % "t-list" + "?labelSelector=" + q)
        assert st == 200, b
        return names(b)
    assert sel("app%3Dweb") == ["cm-1", "cm-2", "cm-3"]
    assert sel("app%3D%3Dweb") == ["cm-1", "cm-2", "cm-3"]
    assert sel("app%21%3Dweb") == ["cm-4", "cm-5", "cm-6", "cm-7"]
    assert sel("env") == ["cm-7"]
    assert sel("%21app") == ["cm-7"]
    assert sel("app%20in%20%28db%29%2Ctier%20notin%20%28frontend%29") == \
        ["cm-4", "cm-6"]
    st, b, _ = req("GET", "/api/v1/configmaps?labelSelector=env%3Dprod")
    assert names(b) == ["cm-7"]


@test
def field_selectors():
    st, b, _ = req("GET", CM % "t-list" + "?fieldSelector=metadata.name%3Dcm-3")
    assert names(b) == ["cm-3"]
    st, b, _ = req("GET", CM % "t-list" + "?fieldSelector=metadata.name%21%3D"
                   "cm-1&labelSelector=app%3Dweb")
    assert names(b) == ["cm-2", "cm-3"]
    st, b, _ = req("GET", "/api/v1/configmaps?fieldSelector=metadata."
                   "namespace%3Dt-list")
    assert len(b["items"]) == 7


@test
def metadata_only_list_and_get():
    acc = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    st, b, _ = req("GET", CM % "t-list", accept=acc)
    assert b["kind"] == "PartialObjectMetadataList"
    assert b["apiVersion"] == "meta.k8s.io/v1"
    it = b["items"][0]
    assert it["kind"] == "PartialObjectMetadata" and "data" not in it
    st, g, _ = req("GET", CM % "t-list" + "/cm-1", accept=acc.replace(
        "List", ""))
    assert g["kind"] == "PartialObjectMetadata" and g["metadata"]["name"] == \
        "cm-1"


@test
def table_accept_answers_plain_list():
    st, b, _ = req("GET", CM % "t-list" + "?limit=500", accept=(
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;"
        "as=Table;v=v1beta1;g=meta.k8s.io,application/json"))
    assert st == 200 and b["kind"] in ("Table", "ConfigMapList")


# ---- watch -----------------------------------------------------------------

@test
def watch_from_rv0_synthetic_added():
    evs = watch(CM % "t-list" + "?watch=1&resourceVersion=0&timeoutSeconds=1")
    assert sorted(e["object"]["metadata"]["name"] for e in evs) == \
        ["cm-%d" % i for i in range(1, 8)]
    assert all(e["type"] == "ADDED" for e in evs)
    assert evs[0]["object"]["kind"] == "ConfigMap"


@test
def watch_from_list_rv_sees_later_changes():
    mkns("t-w")
    st, l, _ = req("GET", CM % "t-w")
    rv = l["metadata"]["resourceVersion"]
    req("POST", CM % "t-w", cm("w1"))
    req("PATCH", CM % "t-w" + "/w1", {"data": {"a": "b"}},
        "application/merge-patch+json")
    req("DELETE", CM % "t-w" + "/w1")
    evs = watch(CM % "t-w" + "?watch=1&resourceVersion=%s&timeoutSeconds=1"
                % rv)
    assert [e["type"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs[0] < rvs[1] < rvs[2]
    assert evs[2]["object"]["data"] == {"k": "v", "a": "b"}


@test
def watch_too_old_error_410():
    evs = watch(CM % "t-list" + "?watch=1&resourceVersion=1&"
                "allowWatchBookmarks=true&timeoutSeconds=300")
    assert len(evs) == 1 and evs[0]["type"] == "ERROR"
    o = evs[0]["object"]
    assert o["code"] == 410 and o["reason"] == "Expired"
    assert o["message"].startswith("too old resource version: 1 (")
    assert list(o) == ["kind", "apiVersion", "metadata", "status", "message",
                       "reason", "code"]


@test
def watch_bookmarks_and_timeout():
    t0 = time.time()
    evs = watch(CM % "t-w" + "?watch=1&resourceVersion=%s&"
                "allowWatchBookmarks=true&timeoutSeconds=3" %
                req("GET", CM % "t-w")[1]["metadata"]["resourceVersion"])
    assert 2.5 < time.time() - t0 < 6
    bms = [e for e in evs if e["type"] == "BOOKMARK"]
    assert bms and len(bms) == len(evs)
    assert list(bms[0]["object"]) == ["kind", "apiVersion", "metadata"]
    assert bms[0]["object"]["metadata"]["creationTimestamp"] is None
    evs = watch(CM % "t-w" + "?watch=1&resourceVersion=%s&timeoutSeconds=2" %
                req("GET", CM % "t-w")[1]["metadata"]["resourceVersion"])
    assert evs == []


@test
def watch_send_initial_events():
    evs = watch(CM % "t-list" + "?watch=1&sendInitialEvents=true&"
                "resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
                "&timeoutSeconds=5",
                until=lambda e: e["type"] == "BOOKMARK")
    assert [e["type"] for e in evs] == ["ADDED"] * 7 + ["BOOKMARK"]
    assert evs[-1]["object"]["metadata"]["annotations"] == \
        {"k8s.io/initial-events-end": "true"}
    st, e, _ = req("GET", CM % "t-list" + "?watch=1&resourceVersion=1&"
                   "resourceVersionMatch=NotOlderThan")
    assert st == 422 and "forbidden for watch" in e["message"]


@test
def watch_label_selector_enter_and_leave():
    rv = req("GET", CM % "t-w")[1]["metadata"]["resourceVersion"]
    req("POST", CM % "t-w", cm("w2", {"stage": "on"}))
    req("PATCH", CM % "t-w" + "/w2", {"metadata": {"labels": {"stage":
                                                               "off"}}},
        "application/merge-patch+json")
    req("PATCH", CM % "t-w" + "/w2", {"metadata": {"labels": {"stage":
                                                               "on"}}},
        "application/merge-patch+json")
    evs = watch(CM % "t-w" + "?watch=1&labelSelector=stage%%3Don&"
                "resourceVersion=%s&timeoutSeconds=1" % rv)
    assert [e["type"] for e in evs] == ["ADDED", "DELETED", "ADDED"]
    assert evs[1]["object"]["metadata"]["labels"] == {"stage": "off"}
    evs = watch(CM % "t-w" + "?watch=1&fieldSelector=metadata.name%%3Dnope&"
                "resourceVersion=%s&timeoutSeconds=1" % rv)
    assert evs == []


@test
def watch_metadata_only():
    evs = watch(CM % "t-list" + "?watch=1&timeoutSeconds=1",
                accept="application/json;as=PartialObjectMetadata;"
                "g=meta.k8s.io;v=v1")
    assert len(evs) == 7
    assert evs[0]["object"]["kind"] == "PartialObjectMetadata"
    assert "data" not in evs[0]["object"]


# ---- CRDs ------------------------------------------------------------------

CRD = {"apiVersion": "apiextensions.k8s.io/v1",
       "kind": "CustomResourceDefinition",
       "metadata": {"name": "widgets.test.example.com"},
       "spec": {"group": "test.example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget",
                          "kind": "Widget", "listKind": "WidgetList",
                          "shortNames": ["wdg"]},
                "versions": [{"name": "v1", "served": True, "storage": True,
                              "subresources": {"status": {}}}]}}


@test
def crd_served_and_custom_resources():
    st, c, _ = req("POST", "/apis/apiextensions.k8s.io/v1/"
                   "customresourcedefinitions", CRD)
    assert st == 201 and c["status"]["conditions"] is None
    st, c, _ = req("GET", "/apis/apiextensions.k8s.io/v1/"
                   "customresourcedefinitions/widgets.test.example.com")
    conds = {x["type"]: x["status"] for x in c["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    st, d, _ = req("GET", "/apis/test.example.com/v1")
    assert [x["name"] for x in d["resources"]] == ["widgets",
                                                   "widgets/status"]
    st, w, _ = req("POST", "/apis/test.example.com/v1/namespaces/t-w/widgets",
                   {"apiVersion": "test.example.com/v1", "kind": "Widget",
                    "metadata": {"name": "wd-1"}, "spec": {"size": 3,
                                                           "color": "red"},
                    "status": {"phase": "Ignored"}})
    assert st == 201, w
    assert list(w) == ["apiVersion", "kind", "metadata", "spec"]
    assert list(w["metadata"]) == sorted(w["metadata"])
    assert w["metadata"]["generation"] == 1
    evs = watch("/apis/test.example.com/v1/namespaces/t-w/widgets?watch=1&"
                "resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=2"
                % w["metadata"]["resourceVersion"],
                until=lambda e: e["type"] == "BOOKMARK")
    assert evs[-1]["object"] == {"apiVersion": "test.example.com/v1",
                                 "kind": "Widget", "metadata": {
                                     "resourceVersion": evs[-1]["object"]
                                     ["metadata"]["resourceVersion"]}}
    st, d, _ = req("DELETE", "/apis/test.example.com/v1/namespaces/t-w/"
                   "widgets/wd-1")
    assert st == 200 and d["details"]["group"] == "test.example.com"


# ---- protobuf, auth, TLS ---------------------------------------------------

PB = bytes.fromhex(  # kubectl/02_create_configmap.log, namespace wire-kc
    "6b3873000a0f0a02763112094" "36f6e6669674d6170122e0a1c0a056b632d636d"
    "12001a07776972652d6b6322002a0032003800420012060a016112013112060a"
    "0162120132" "1a002200")


DEP = "/apis/apps/v1/namespaces/scl/deployments"


@test
def scale_subresource_of_deployments():
    mkns("scl")
    st, d, _ = req("POST", DEP, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In",
                                  "values": ["b", "a"]},
                                 {"key": "canary", "operator":
                                  "DoesNotExist"}]},
            "template": {"metadata": {"labels": {"app": "web", "tier": "a"}},
                         "spec": {"containers": [{"name": "c",
                                                  "image": "x"}]}}}})
    assert st == 201, d
    md = d["metadata"]
    st, sc, _ = req("GET", DEP + "/web/scale")
    assert st == 200, sc
    # writes/deployment_scale_get.http, byte for byte in shape
    assert list(sc) == ["kind", "apiVersion", "metadata", "spec", "status"]
    assert sc["kind"] == "Scale" and sc["apiVersion"] == "autoscaling/v1"
    assert sc["metadata"] == {
        "name": "web", "namespace": "scl", "uid": md["uid"],
        "resourceVersion": md["resourceVersion"],
        "creationTimestamp": md["creationTimestamp"]}, sc["metadata"]
    assert list(sc["metadata"]) == ["name", "namespace", "uid",
                                    "resourceVersion", "creationTimestamp"]
    assert sc["spec"] == {"replicas": 1}
    assert sc["status"] == {"replicas": 0,
                            "selector": "!canary,app=web,tier in (a,b)"}, sc
    # merge patch (writes/deployment_scale_patch.http)
    st, sc, _ = req("PATCH", DEP + "/web/scale", {"spec": {"replicas": 3}},
                    ctype="application/merge-patch+json")
    assert st == 200 and sc["kind"] == "Scale", sc
    assert sc["spec"] == {"replicas": 3}
    st, d2, _ = req("GET", DEP + "/web")
    assert d2["spec"]["replicas"] == 3
    assert d2["metadata"]["generation"] == 2
    assert sc["metadata"]["resourceVersion"] == \
        d2["metadata"]["resourceVersion"] != md["resourceVersion"]
    # PUT with the current resourceVersion, then with a stale one
    body = dict(sc, spec={"replicas": 5})
    st, sc2, _ = req("PUT", DEP + "/web/scale", body)
    assert st == 200 and sc2["spec"] == {"replicas": 5}, sc2
    st, err, _ = req("PUT", DEP + "/web/scale", body)
    assert st == 409 and err["reason"] == "Conflict", err
    assert err["message"].startswith(
        'Operation cannot be fulfilled on deployments.apps "web"'), err
    assert err["details"] == {"name": "web", "group": "apps",
                              "kind": "deployments"}, err
    # 0 replicas: spec.replicas is omitempty in autoscaling/v1
    st, sc3, _ = req("PATCH", DEP + "/web/scale", {"spec": {"replicas": 0}},
                     ctype="application/merge-patch+json")
    assert st == 200 and sc3["spec"] == {}, sc3
    st, d3, _ = req("GET", DEP + "/web")
    assert d3["spec"]["replicas"] == 0
    st, err, _ = req("PATCH", DEP + "/web/scale", {"spec": {"replicas": -1}},
                     ctype="application/merge-patch+json")
    assert st == 422 and err["reason"] == "Invalid", err
    assert err["details"]["causes"][0]["field"] == "spec.replicas"
    st, err, _ = req("GET", DEP + "/nope/scale")
    assert st == 404 and err["message"] == \
        'deployments.apps "nope" not found', err
    st, err, _ = req("GET", "/api/v1/namespaces/scl/configmaps/x/scale")
    assert st == 404, err


@test
def scale_listed_in_discovery():
    st, d, _ = req("GET", "/apis/apps/v1")
    names = [r["name"] for r in d["resources"]]
    for p in ("deployments", "replicasets", "statefulsets"):
        i = names.index(p + "/scale")
        assert names[i + 1] == p + "/status", names
        assert d["resources"][i] == {
            "name": p + "/scale", "singularName": "", "namespaced": True,
            "group": "autoscaling", "version": "v1", "kind": "Scale",
            "verbs": ["get", "patch", "update"]}, d["resources"][i]
    assert "daemonsets/scale" not in names


@test
def scale_subresource_of_statefulsets_and_replicasets():
    for plural, kind in (("statefulsets", "StatefulSet"),
                         ("replicasets", "ReplicaSet")):
        base = "/apis/apps/v1/namespaces/scl/" + plural
        st, b, _ = req("POST", base, {
            "apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": "s"},
            "spec": {"replicas": 2,
                     "selector": {"matchLabels": {"app": "s"}}}})
        assert st == 201, b
        st, sc, _ = req("PUT", base + "/s/scale", {
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "s"}, "spec": {"replicas": 4}})
        assert st == 200 and sc["spec"]["replicas"] == 4, sc
        assert sc["status"]["selector"] == "app=s"
        st, b, _ = req("GET", base + "/s")
        assert b["spec"]["replicas"] == 4


@test
def scale_subresource_of_custom_resources():
    crd = {"apiVersion": "apiextensions.k8s.io/v1",
           "kind": "CustomResourceDefinition",
           "metadata": {"name": "pools.scale.example.com"},
           "spec": {"group": "scale.example.com", "scope": "Namespaced",
                    "names": {"plural": "pools", "singular": "pool",
                              "kind": "Pool"},
                    "versions": [{
                        "name": "v1", "served": True, "storage": True,
                        "subresources": {"status": {}, "scale": {
                            "specReplicasPath": ".spec.size",
                            "statusReplicasPath": ".status.ready",
                            "labelSelectorPath": ".status.selector"}},
                        "schema": {"openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True}}}]}}
    st, b, _ = req("POST", "/apis/apiextensions.k8s.io/v1/"
                   "customresourcedefinitions", crd)
    assert st == 201, b
    st, d, _ = req("GET", "/apis/scale.example.com/v1")
    assert [r["name"] for r in d["resources"]] == \
        ["pools", "pools/scale", "pools/status"], d
    base = "/apis/scale.example.com/v1/namespaces/scl/pools"
    st, p, _ = req("POST", base, {"apiVersion": "scale.example.com/v1",
                                  "kind": "Pool", "metadata": {"name": "p"},
                                  "spec": {"size": 2}})
    assert st == 201, p
    p["status"] = {"ready": 1, "selector": "pool=p"}
    st, p, _ = req("PUT", base + "/p/status", p)
    assert st == 200, p
    st, sc, _ = req("GET", base + "/p/scale")
    assert st == 200 and sc["spec"] == {"replicas": 2}, sc
    assert sc["status"] == {"replicas": 1, "selector": "pool=p"}, sc
    st, sc, _ = req("PATCH", base + "/p/scale", {"spec": {"replicas": 7}},
                    ctype="application/merge-patch+json")
    assert st == 200 and sc["spec"] == {"replicas": 7}, sc
    st, p2, _ = req("GET", base + "/p")
    assert p2["spec"] == {"size": 7} and p2["status"]["ready"] == 1, p2
    assert p2["metadata"]["generation"] == 2
    st, err, _ = req("GET", base + "/nope")
    assert st == 404 and err["message"] == \
        'pools.scale.example.com "nope" not found', err
    st, d, _ = req("GET", "/apis/apiextensions.k8s.io/v1/"
                   "customresourcedefinitions/gadgets.scale.example.com")
    assert st == 404 and err["details"]["group"] == "scale.example.com"


@test
def status_writes_share_the_managers_update_entry():
    """writes/widget_status_*.http (v1.20): a /status write is recorded in
    the manager's one Update entry (spec and status fields together), with
    no `subresource` key (that field exists only since 1.22)."""
    base = "/apis/scale.example.com/v1/namespaces/scl/pools"
    ua = {"User-Agent": "writer/1.0"}
    st, p, _ = req("POST", base, {"apiVersion": "scale.example.com/v1",
                                  "kind": "Pool", "metadata": {"name": "mf"},
                                  "spec": {"size": 1}}, headers=ua)
    assert st == 201, p
    st, p, _ = req("PATCH", base + "/mf/status",
                   {"status": {"ready": 1}}, headers=ua,
                   ctype="application/merge-patch+json")
    assert st == 200, p
    mf = p["metadata"]["managedFields"]
    assert len(mf) == 1, mf
    e = mf[0]
    assert e["manager"] == "writer" and e["operation"] == "Update"
    assert "subresource" not in e, e
    assert set(e["fieldsV1"]) == {"f:spec", "f:status"}, e
    st, p, _ = req("PATCH", base + "/mf/status",
                   {"status": {"ready": 2}}, headers={"User-Agent": "other"},
                   ctype="application/merge-patch+json")
    mf = p["metadata"]["managedFields"]
    assert [m["manager"] for m in mf] == ["writer", "other"], mf
    assert all("subresource" not in m for m in mf), mf
    # (the "." markers of custom resources' maps are patch.c's business)
    assert mf[1]["fieldsV1"]["f:status"]["f:ready"] == {}, mf
    assert list(mf[1]["fieldsV1"]) == ["f:status"], mf
    assert list(mf[0]["fieldsV1"]) == ["f:spec"], mf


@test
def protobuf_create_configmap():
    mkns("wire-kc")
    st, b, _ = req("POST", CM % "wire-kc" + "?fieldManager=kubectl-create",
                   PB, ctype="application/vnd.kubernetes.protobuf",
                   accept="application/vnd.kubernetes.protobuf,"
                   "application/json")
    assert st == 201, (st, b)
    assert b["metadata"]["name"] == "kc-cm" and b["data"] == {"a": "1",
                                                               "b": "2"}


def start_server(*args):
    p, url = E.serve(KLUA, *args)
    assert url, p.stderr.read()
    return p, url


@test
def token_auth_401():
    p, url = start_server("--token", "s3cret")
    try:
        port = int(url.rsplit(":", 1)[1])
        st, e, _ = req("GET", CM % "default", port=port,
                       headers={"Authorization": "Bearer wrong"})
        assert st == 401 and e == {"kind": "Status", "apiVersion": "v1",
                                   "metadata": {}, "status": "Failure",
                                   "message": "Unauthorized",
                                   "reason": "Unauthorized", "code": 401}
        st, e, _ = req("GET", CM % "default", port=port)
        assert st == 401
        st, b, _ = req("GET", CM % "default", port=port,
                       headers={"Authorization": "Bearer s3cret"})
        assert st == 200 and b["kind"] == "ConfigMapList"
    finally:
        p.terminate()
        assert p.wait(10) == 0


@test
def tls_and_kubeconfig():
    d = tempfile.mkdtemp()
    crt, key, kc = (os.path.join(d, x) for x in ("c.pem", "k.pem", "kc"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    p, url = start_server("--tls-cert", crt, "--tls-key", key, "--token",
                          "t", "--kubeconfig-out", kc)
    try:
        assert url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=crt)
        host, port = url[8:].rsplit(":", 1)
        c = http.client.HTTPSConnection(host, int(port), context=ctx,
                                        timeout=10)
        st, b, _ = req("GET", "/api/v1/namespaces", conn=c,
                       headers={"Authorization": "Bearer t"})
        assert st == 200 and "default" in names(b)
        text = open(kc).read()
        assert "server: " + url in text and "token: t" in text
        assert "certificate-authority-data: " in text
    finally:
        p.terminate()
        assert p.wait(10) == 0


@test
def idle_connections_closed_watches_kept_no_starvation():
    import socket
    p, url = start_server("--idle-timeout", "1", "--max-connections", "64")
    try:
        port = int(url.rsplit(":", 1)[1])
        # a client that connects and sends nothing is closed by the server
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(10)
        assert s.recv(1) == b""
        s.close()
        # a quiet watch outlives the idle timeout (it ends by timeoutSeconds)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", CM % "default" +
                  "?watch=1&resourceVersion=0&timeoutSeconds=3")
        r = c.getresponse()
        t0 = time.time()
        r.read()
        assert r.status == 200 and time.time() - t0 > 2.5, time.time() - t0
        # more idle sockets than --max-connections: once they time out,
        # the server answers again (they cannot starve it for good)
        socks = [socket.create_connection(("127.0.0.1", port))
                 for _ in range(80)]
        ok = False
        for _ in range(50):
            time.sleep(0.2)
            try:
                st, v, _ = req("GET", "/version", port=port)
                ok = st == 200
            except OSError:
                ok = False
            if ok:
                break
        for x in socks:
            x.close()
        assert ok, "the server did not answer after the idle flood"
    finally:
        p.terminate()
        assert p.wait(10) == 0


E.finish()
