#!/usr/bin/python3
"""Tables (Accept ...;as=Table) and /openapi/v3 of `klua serve`, over raw
HTTP (stdlib only). Expected shapes follow the kube-apiserver captures in
/work/shared/k8s-wire (list/*table*, watch/cm_table_watch.*).

Usage: serve_tables.py PORT. Prints "ok N - name" / "not ok N - name"."""
import http.client
import json
import time
import sys

import klua_e2e as E
from klua_e2e import test

PORT = int(sys.argv[1])
TABLE = "application/json;as=Table;g=meta.k8s.io;v=v1"
KUBECTL_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
                  "application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
                  "application/json")


def req(method, path, body=None, accept=None):
    return E.request(PORT, method, path, body, accept=accept)


CM = "/api/v1/namespaces/tbl/configmaps"
st, _, _ = req("POST", "/api/v1/namespaces", {
    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tbl"}})
assert st == 201
for i in range(1, 4):
    st, _, _ = req("POST", CM, {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm-%d" % i, "labels": {"i": str(i)}},
        "data": {"k%d" % j: "v" for j in range(i)}})
    assert st == 201


def colnames(t):
    return [c["name"] for c in t["columnDefinitions"]]


@test
def list_table_columns_cells_and_metadata_objects():
    st, t, r = req("GET", CM, accept=TABLE)
    assert st == 200 and t["kind"] == "Table", t
    assert t["apiVersion"] == "meta.k8s.io/v1"
    assert r.getheader("Content-Type") == "application/json"
    assert colnames(t) == ["Name", "Data", "Age"], colnames(t)
    c0 = t["columnDefinitions"][0]
    assert c0["type"] == "string" and c0["format"] == "name" and \
        c0["priority"] == 0 and c0["description"]
    cells = [row["cells"][:2] for row in t["rows"]]
    assert cells == [["cm-1", 1], ["cm-2", 2], ["cm-3", 3]], cells
    assert all(row["cells"][2].endswith("s") for row in t["rows"])
    o = t["rows"][0]["object"]
    assert o["kind"] == "PartialObjectMetadata" and \
        o["apiVersion"] == "meta.k8s.io/v1"
    assert o["metadata"]["name"] == "cm-1" and o["metadata"]["uid"]
    assert "data" not in o
    st, plain, _ = req("GET", CM)
    assert t["metadata"]["resourceVersion"] == \
        plain["metadata"]["resourceVersion"]


@test
def kubectl_accept_header_gets_a_table_never_406():
    st, t, _ = req("GET", CM + "?limit=500", accept=KUBECTL_ACCEPT)
    assert st == 200 and t["kind"] == "Table", t
    st, t, _ = req("GET", CM, accept="application/json;as=Table;"
                   "g=meta.k8s.io;v=v1beta1")
    assert st == 200 and t["apiVersion"] == "meta.k8s.io/v1beta1", t


@test
def include_object_none_and_object():
    st, t, _ = req("GET", CM + "?includeObject=None", accept=TABLE)
    assert [row["object"] for row in t["rows"]] == [None] * 3
    st, t, _ = req("GET", CM + "?includeObject=Object", accept=TABLE)
    o = t["rows"][1]["object"]
    assert o["kind"] == "ConfigMap" and o["data"] == {"k0": "v", "k1": "v"}


@test
def paged_table_keeps_continue_and_remaining():
    st, t, _ = req("GET", CM + "?limit=2&includeObject=None", accept=TABLE)
    assert len(t["rows"]) == 2 and t["metadata"]["continue"]
    assert t["metadata"]["remainingItemCount"] == 1, t["metadata"]
    st, t2, _ = req("GET", CM + "?limit=2&continue=" +
                    t["metadata"]["continue"], accept=TABLE)
    assert [r["cells"][0] for r in t2["rows"]] == ["cm-3"]
    assert "continue" not in t2["metadata"]


@test
def single_get_table_and_selectors():
    st, t, _ = req("GET", CM + "/cm-2", accept=TABLE)
    assert st == 200 and t["kind"] == "Table" and len(t["rows"]) == 1
    st, obj, _ = req("GET", CM + "/cm-2")
    assert t["metadata"]["resourceVersion"] == \
        obj["metadata"]["resourceVersion"]
    st, t, _ = req("GET", CM + "?labelSelector=i%3D3", accept=TABLE)
    assert [r["cells"][0] for r in t["rows"]] == ["cm-3"]
    st, b, _ = req("GET", CM + "/missing", accept=TABLE)
    assert st == 404 and b["kind"] == "Status"


@test
def namespaces_table_has_status():
    st, t, _ = req("GET", "/api/v1/namespaces?fieldSelector=metadata.name"
                   "%3Dtbl", accept=TABLE)
    assert colnames(t) == ["Name", "Status", "Age"], colnames(t)
    assert t["rows"][0]["cells"][:2] == ["tbl", "Active"]
    assert "namespace" not in t["rows"][0]["object"]["metadata"]


@test
def watch_table_first_event_has_columns_later_null():
    st, plain, _ = req("GET", CM)
    rv = plain["metadata"]["resourceVersion"]
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=20)
    c.request("GET", CM + "?watch=true&resourceVersion=" + rv,
              headers={"Accept": KUBECTL_ACCEPT})
    r = c.getresponse()
    assert r.status == 200
    req("POST", CM, {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "tw"}, "data": {"a": "1"}})
    c2 = http.client.HTTPConnection("127.0.0.1", PORT, timeout=20)
    c2.request("PATCH", CM + "/tw", body='{"data":{"b":"2"}}',
               headers={"Content-Type": "application/merge-patch+json"})
    assert c2.getresponse().status == 200
    req("DELETE", CM + "/tw")
    evs = [json.loads(r.readline()) for _ in range(3)]
    c.close()
    assert [e["type"] for e in evs] == ["ADDED", "MODIFIED", "DELETED"]
    for i, e in enumerate(evs):
        t = e["object"]
        assert t["kind"] == "Table" and len(t["rows"]) == 1, t
        assert t["rows"][0]["cells"][0] == "tw"
        assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
        assert t["metadata"]["resourceVersion"] == \
            t["rows"][0]["object"]["metadata"]["resourceVersion"]
        if i == 0:
            assert colnames(t) == ["Name", "Data", "Age"]
        else:
            assert t["columnDefinitions"] is None, t
    assert [e["object"]["rows"][0]["cells"][1] for e in evs] == [1, 2, 2]


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.tbl.example.com"},
    "spec": {"group": "tbl.example.com", "scope": "Namespaced",
             "names": {"plural": "gadgets", "singular": "gadget",
                       "kind": "Gadget"},
             "versions": [{
                 "name": "v1", "served": True, "storage": True,
                 "additionalPrinterColumns": [
                     {"name": "Color", "type": "string",
                      "jsonPath": ".spec.color"},
                     {"name": "Size", "type": "integer",
                      "jsonPath": ".spec.size", "priority": 1},
                     {"name": "First", "type": "string",
                      "jsonPath": ".spec.tags[0]",
                      "description": "first tag"},
                     {"name": "Age", "type": "date",
                      "jsonPath": ".metadata.creationTimestamp"}],
                 "schema": {"openAPIV3Schema": {
                     "type": "object",
                     "properties": {"spec": {
                         "type": "object",
                         "properties": {
                             "color": {"type": "string"},
                             "size": {"type": "integer"},
                             "tags": {"type": "array",
                                      "items": {"type": "string"}}}}}}}}]}}
GD = "/apis/tbl.example.com/v1/namespaces/tbl/gadgets"


@test
def crd_table_uses_printer_columns():
    st, b, _ = req("POST", "/apis/apiextensions.k8s.io/v1/"
                   "customresourcedefinitions", CRD)
    assert st == 201, b
    for name, spec in (("g1", {"color": "red", "size": 5, "tags": ["x"]}),
                       ("g2", {})):
        st, b, _ = req("POST", GD, {"apiVersion": "tbl.example.com/v1",
                                    "kind": "Gadget",
                                    "metadata": {"name": name},
                                    "spec": spec})
        assert st == 201, b
    st, t, _ = req("GET", GD, accept=TABLE)
    assert st == 200 and colnames(t) == \
        ["Name", "Color", "Size", "First", "Age"], t
    cd = {c["name"]: c for c in t["columnDefinitions"]}
    assert cd["Size"]["type"] == "integer" and cd["Size"]["priority"] == 1
    assert cd["First"]["description"] == "first tag"
    assert cd["Color"]["description"] == ("Custom resource definition "
                                          "column (in JSONPath format): "
                                          ".spec.color")
    assert cd["Age"]["type"] == "date"
    r1, r2 = t["rows"]
    assert r1["cells"][:4] == ["g1", "red", 5, "x"], r1["cells"]
    assert r1["cells"][4].endswith("s")
    assert r2["cells"][:4] == ["g2", None, None, None], r2["cells"]


SITE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "sites.site.example.com"},
    "spec": {"group": "site.example.com", "scope": "Namespaced",
             "names": {"plural": "sites", "singular": "site",
                       "kind": "Site"},
             "versions": [{
                 "name": "v1", "served": True, "storage": True,
                 "subresources": {"status": {}},
                 "additionalPrinterColumns": [
                     {"name": "Ready", "type": "string", "jsonPath":
                      '.status.conditions[?(@.type=="Ready")].status'},
                     {"name": "Reason", "type": "string", "jsonPath":
                      ".status.conditions[?(@.type == 'Ready')].reason"},
                     {"name": "NotReady", "type": "string", "jsonPath":
                      '.status.conditions[?(@.type!="Ready")].type'},
                     {"name": "Gen", "type": "integer", "jsonPath":
                      '.status.conditions[?(@.observedGeneration>=2)]'
                      '.observedGeneration'},
                     {"name": "Hosts", "type": "string",
                      "jsonPath": ".spec.hosts[*].name"},
                     {"name": "Last", "type": "string",
                      "jsonPath": ".spec.hosts[-1].name"},
                     {"name": "Team", "type": "string", "jsonPath":
                      ".metadata.labels['example.com/team']"}],
                 "schema": {"openAPIV3Schema": {
                     "type": "object",
                     "x-kubernetes-preserve-unknown-fields": True}}}]}}
SITES = "/apis/site.example.com/v1/namespaces/tbl/sites"


@test
def crd_printer_columns_with_jsonpath_filters():
    st, b, _ = req("POST", "/apis/apiextensions.k8s.io/v1/"
                   "customresourcedefinitions", SITE_CRD)
    assert st == 201, b
    for name in ("s1", "s2"):
        st, b, _ = req("POST", SITES, {
            "apiVersion": "site.example.com/v1", "kind": "Site",
            "metadata": {"name": name,
                         "labels": {"example.com/team": "web"}},
            "spec": {"hosts": [{"name": "a.example"},
                               {"name": "b.example"}]}})
        assert st == 201, b
    conds = [{"type": "Progressing", "status": "True",
              "observedGeneration": 1},
             {"type": "Ready", "status": "False", "reason": "Pending",
              "observedGeneration": 2}]
    st, cur, _ = req("GET", SITES + "/s1")
    cur["status"] = {"conditions": conds}
    st, b, _ = req("PUT", SITES + "/s1/status", cur)
    assert st == 200, b
    st, t, _ = req("GET", SITES, accept=TABLE)
    assert st == 200 and colnames(t) == ["Name", "Ready", "Reason",
                                         "NotReady", "Gen", "Hosts", "Last",
                                         "Team"], t
    r1, r2 = t["rows"]
    assert r1["cells"] == ["s1", "False", "Pending", "Progressing", 2,
                           "a.example", "b.example", "web"], r1["cells"]
    assert r2["cells"] == ["s2", None, None, None, None, "a.example",
                           "b.example", "web"], r2["cells"]


@test
def openapi_v3_index_and_group_version_documents():
    st, idx, r = req("GET", "/openapi/v3")
    assert st == 200, idx
    paths = idx["paths"]
    for gv in ("api/v1", "apis/apps/v1", "apis/tbl.example.com/v1"):
        assert paths[gv]["serverRelativeURL"].startswith(
            "/openapi/v3/" + gv + "?hash="), paths
    st, doc, _ = req("GET", paths["apis/tbl.example.com/v1"]
                     ["serverRelativeURL"])
    assert st == 200 and doc["openapi"].startswith("3.")
    sc = doc["components"]["schemas"]["com.example.tbl.v1.Gadget"]
    assert sc["x-kubernetes-group-version-kind"] == [
        {"group": "tbl.example.com", "kind": "Gadget", "version": "v1"}]
    assert sc["properties"]["spec"]["properties"]["tags"]["type"] == "array"
    item = doc["paths"]["/apis/tbl.example.com/v1/namespaces/{namespace}/"
                        "gadgets/{name}"]
    pnames = [p["name"] for p in item["patch"]["parameters"]]
    assert "fieldValidation" in pnames and "fieldManager" in pnames
    assert item["patch"]["x-kubernetes-group-version-kind"]["kind"] == \
        "Gadget"
    st, doc, _ = req("GET", "/openapi/v3/api/v1")
    assert "io.k8s.api.core.v1.ConfigMap" in doc["components"]["schemas"]
    st, b, _ = req("GET", "/openapi/v3/apis/nope.example.com/v1")
    assert st == 404
    st, b, _ = req("GET", "/openapi/v2", accept="application/com.github."
                   "proto-openapi.spec.v2@v1.0+protobuf")
    assert st == 404


@test
def openapi_follows_crd_deletion():
    st, b, _ = req("DELETE", "/apis/apiextensions.k8s.io/v1/"
                   "customresourcedefinitions/gadgets.tbl.example.com")
    assert st == 200, b
    for _ in range(50):
        st, idx, _ = req("GET", "/openapi/v3")
        if "apis/tbl.example.com/v1" not in idx["paths"]:
            break

        time.sleep(0.1)
    assert "apis/tbl.example.com/v1" not in idx["paths"], idx


E.finish()
