#!/usr/bin/python3
"""The official Kubernetes Python client (Debian's python3-kubernetes)
against `klua serve`: paging with limit/continue, watch from a list's
resourceVersion, TLS with a bearer token from the generated kubeconfig.

Usage: python_client.py KLUA_BIN. Prints "ok N - name" / "not ok N - name";
exits non-zero on any failure."""
import os
import subprocess
import sys
import tempfile
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

import klua_e2e as E
from klua_e2e import test

KLUA = sys.argv[1]
TMP = tempfile.mkdtemp()
PROCS = []


def start_server(kubeconfig, *args):
    p, url = E.serve(KLUA, "--kubeconfig-out", kubeconfig, *args)
    PROCS.append(p)
    assert url, p.stderr.read().decode()
    return url


def api(kubeconfig, token=None):
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig,
                            client_configuration=cfg)
    if token is not None:
        cfg.api_key = {"authorization": "Bearer " + token}
    return client.CoreV1Api(client.ApiClient(cfg))


KC = os.path.join(TMP, "kc")
start_server(KC, "--history", "1000")  # the 1,200 creates overflow it
V1 = api(KC)
NS = "py"
V1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
TOTAL = 1200


def cm(name, data):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name),
                              data=data)


@test
def create_many_configmaps():
    for i in range(TOTAL):
        V1.create_namespaced_config_map(NS, cm("cm-%04d" % i, {"i": str(i)}))
    lst = V1.list_namespaced_config_map(NS)
    assert len(lst.items) == TOTAL, len(lst.items)


@test
def list_pages_with_limit_and_continue():
    pages, names, cont, first_rv = 0, [], None, None
    while True:
        lst = V1.list_namespaced_config_map(NS, limit=100, _continue=cont)
        pages += 1
        names += [x.metadata.name for x in lst.items]
        if first_rv is None:
            first_rv = lst.metadata.resource_version
            assert lst.metadata.remaining_item_count == TOTAL - 100, \
                lst.metadata.remaining_item_count
        assert lst.metadata.resource_version == first_rv, \
            "every page carries the first page's resourceVersion"
        cont = lst.metadata._continue
        if not cont:
            break
        assert len(lst.items) == 100
    assert pages == TOTAL // 100, pages
    assert names == sorted(names) and len(set(names)) == TOTAL
    assert names[0] == "cm-0000" and names[-1] == "cm-%04d" % (TOTAL - 1)


@test
def paging_is_a_consistent_snapshot():
    lst = V1.list_namespaced_config_map(NS, limit=500)
    V1.create_namespaced_config_map(NS, cm("cm-0600x", {"late": "1"}))
    V1.delete_namespaced_config_map("cm-0700", NS)
    names = [x.metadata.name for x in lst.items]
    cont = lst.metadata._continue
    while cont:
        lst = V1.list_namespaced_config_map(NS, limit=500, _continue=cont)
        names += [x.metadata.name for x in lst.items]
        cont = lst.metadata._continue
    assert len(names) == TOTAL and "cm-0600x" not in names and \
        "cm-0700" in names, len(names)
    V1.create_namespaced_config_map(NS, cm("cm-0700", {"i": "700"}))
    V1.delete_namespaced_config_map("cm-0600x", NS)


@test
def watch_from_list_rv_sees_changes_made_meanwhile():
    lst = V1.list_namespaced_config_map(NS, limit=1)
    rv = lst.metadata.resource_version
    # changes made after the list, before the watch starts
    V1.create_namespaced_config_map(NS, cm("w-1", {"a": "1"}))
    events, done = [], threading.Event()
    w = watch.Watch()

    def run():
        for ev in w.stream(V1.list_namespaced_config_map, NS,
                           resource_version=rv, timeout_seconds=20):
            events.append((ev["type"], ev["object"].metadata.name,
                           dict(ev["object"].data or {}),
                           ev["object"].metadata.resource_version))
            if ev["type"] == "DELETED" and \
                    ev["object"].metadata.name == "w-2":
                break
        done.set()

    t = threading.Thread(target=run)
    t.start()
    V1.patch_namespaced_config_map("w-1", NS, {"data": {"a": "2"}})
    V1.create_namespaced_config_map(NS, cm("w-2", {"b": "1"}))
    V1.delete_namespaced_config_map("w-1", NS)
    V1.delete_namespaced_config_map("w-2", NS)
    assert done.wait(20), "watch did not see the last delete: %r" % events
    w.stop()
    t.join(5)
    got = [(e[0], e[1], e[2]) for e in events]
    assert got == [("ADDED", "w-1", {"a": "1"}),
                   ("MODIFIED", "w-1", {"a": "2"}),
                   ("ADDED", "w-2", {"b": "1"}),
                   ("DELETED", "w-1", {"a": "2"}),
                   ("DELETED", "w-2", {"b": "1"})], got
    rvs = [int(e[3]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv), rvs


@test
def watch_too_old_rv_is_410():
    try:
        for ev in watch.Watch().stream(V1.list_namespaced_config_map, NS,
                                       resource_version="1",
                                       timeout_seconds=5):
            raise AssertionError("unexpected event %r" % ev["type"])
    except ApiException as e:
        assert e.status == 410, e.status
    else:
        raise AssertionError("no 410 for a too old resourceVersion")


@test
def tls_and_token_via_generated_kubeconfig():
    crt, key = os.path.join(TMP, "c.pem"), os.path.join(TMP, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    kc = os.path.join(TMP, "kc-tls")
    url = start_server(kc, "--tls-cert", crt, "--tls-key", key,
                       "--token", "py-secret")
    assert url.startswith("https://127.0.0.1:"), url
    v1 = api(kc)
    names = [n.metadata.name for n in v1.list_namespace().items]
    assert "default" in names, names
    v1.create_namespaced_config_map("default", cm("over-tls", {"x": "1"}))
    got = v1.read_namespaced_config_map("over-tls", "default")
    assert got.data == {"x": "1"}
    try:
        api(kc, token="wrong").list_namespace()
        raise AssertionError("a wrong token was accepted")
    except ApiException as e:
        assert e.status == 401, e.status


for p in PROCS:
    p.terminate()
    p.wait(10)
E.finish()
