#!/usr/bin/python3
"""Chaos driver for klua's reliability tests (stdlib only; docs/reliability.md).

Commands (URL is a `klua serve --faults on` base URL):
  setup URL                  create the chaos namespaces and the Widget CRD
  write URL SEED SECONDS OUT random creates/updates/deletes of ConfigMaps and
                             Widgets in several namespaces for SECONDS while
                             faults fire; removes every fault at the end and
                             writes a JSON summary to OUT (operations, faults,
                             time of the last fault)
  churn URL SEED SECONDS     steady churn without faults (load tests)
  state URL PATH [SELECTOR]  prints {"key": "resourceVersion", ...} of a list
The writer retries requests the fault endpoint failed (they were not
executed), so its model stays close to the server's, but the final truth is
always the server's own list."""
import http.client
import json
import random
import sys
import time
import urllib.parse

NAMESPACES = ["chaos-a", "chaos-b", "chaos-c"]
GROUP = "chaos.klua.dev"
CM = "/api/v1/namespaces/%s/configmaps"
WG = "/apis/" + GROUP + "/v1/namespaces/%s/widgets"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets." + GROUP},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "listKind": "WidgetList"},
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {
                          "type": "object",
                          "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}


class Client:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def req(self, method, path, body=None, timeout=20):
        for attempt in range(200):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(
                        self.host, self.port, timeout=timeout)
                h = {}
                if body is not None:
                    body = body if isinstance(body, str) else json.dumps(body)
                    h["Content-Type"] = "application/json"
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                try:
                    return r.status, json.loads(data) if data else None
                except ValueError:
                    return r.status, None
            except (OSError, http.client.HTTPException):
                # the server may be restarting (chaos_spec restarts it with
                # --state-file): retry for up to ~10 s
                if self.conn:
                    self.conn.close()
                self.conn = None
                if attempt == 199:
                    raise
                time.sleep(0.05)


def setup(url):
    c = Client(url)
    for ns in NAMESPACES:
        st, _ = c.req("POST", "/api/v1/namespaces",
                      {"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": ns}})
        assert st in (201, 409), st
    st, b = c.req("POST", "/apis/apiextensions.k8s.io/v1/"
                  "customresourcedefinitions", CRD)
    assert st in (201, 409), (st, b)
    for _ in range(100):
        st, _ = c.req("GET", "/apis/%s/v1/widgets" % GROUP)
        if st == 200:
            return
        time.sleep(0.05)
    raise SystemExit("the Widget CRD was not served")


def obj(kind, ns, name, n, rnd):
    labels = {"chaos": "yes", "tier": rnd.choice(["x", "y"])}
    if kind == "cm":
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "data": {"n": str(n), "pad": "p" * rnd.randint(0, 200)}}
    return {"apiVersion": GROUP + "/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"n": n, "color": rnd.choice(["red", "blue"])}}


def faults(url_prefix_watch):
    """The fault menu: (name, action or list of actions)."""
    return [
        ("close_watches", {"action": "close_watches"}),
        ("compact", {"action": "compact"}),
        ("fail500_watch", {"action": "fail", "watch": True, "code": 500,
                           "count": 3}),
        ("fail503_list", {"action": "fail", "method": "GET", "watch": False,
                          "code": 503, "count": 3}),
        ("fail429", {"action": "fail", "method": "GET", "code": 429,
                     "retryAfterSeconds": 1, "count": 2}),
        ("cut_watch", [{"action": "cut_watch", "path": "/api/v1"},
                       {"action": "cut_watch", "path": "/apis/" + GROUP}]),
        ("malformed_watch", [{"action": "malformed_watch", "path": "/api/v1"},
                             {"action": "malformed_watch",
                              "path": "/apis/" + GROUP}]),
        ("slow_watch", {"action": "delay", "watch": True, "seconds": 0.5,
                        "count": 3}),
        ("slow_list", {"action": "delay", "method": "GET", "watch": False,
                       "seconds": 0.3, "count": 3}),
        ("compact_and_close", [{"action": "compact"},
                               {"action": "close_watches"}]),
    ]


def write(url, seed, seconds, out, with_faults=True, rate=0.002):
    rnd = random.Random(seed)
    c = Client(url)
    admin = Client(url)
    alive = {}  # (kind, ns, name) -> last resourceVersion written
    ops = {"create": 0, "update": 0, "delete": 0, "retried": 0,
           "conflicts": 0}
    fired = {}
    menu = faults(None)
    last_fault = None
    names = ["o%02d" % i for i in range(12)]
    start = time.time()
    next_fault = start + rnd.uniform(0.1, 0.4)
    n = 0
    while time.time() - start < seconds:
        n += 1
        kind = rnd.choice(["cm", "wg"])
        ns = rnd.choice(NAMESPACES)
        name = rnd.choice(names)
        base = (CM if kind == "cm" else WG) % ns
        k = (kind, ns, name)
        if k not in alive:
            verb, method, path = "create", "POST", base
        elif rnd.random() < 0.3:
            verb, method, path = "delete", "DELETE", base + "/" + name
        else:
            verb, method, path = "update", "PUT", base + "/" + name
        body = None if verb == "delete" else obj(kind, ns, name, n, rnd)
        if verb == "update" and kind == "wg":
            # custom resources need the resourceVersion (optimistic
            # concurrency); ConfigMaps are updated unconditionally
            body["metadata"]["resourceVersion"] = alive[k]
        for _ in range(20):
            st, b = c.req(method, path, body)
            if st in (429, 500, 503, 504):
                ops["retried"] += 1
                time.sleep(0.01)
                continue
            break
        rv = (b or {}).get("metadata", {}).get("resourceVersion", "")
        if verb in ("create", "update") and 200 <= st < 300:
            alive[k] = rv
        elif verb == "create" and st == 409:
            alive[k] = ""
        elif verb == "delete" and st in (200, 202, 404):
            alive.pop(k, None)
        elif verb == "update" and st == 404:
            alive.pop(k, None)
        if 200 <= st < 300:
            ops[verb] += 1
        elif st == 409:
            ops["conflicts"] += 1
            if verb == "update":  # refresh the resourceVersion we hold
                st2, b2 = c.req("GET", path)
                if st2 == 200:
                    alive[k] = b2["metadata"]["resourceVersion"]
        if with_faults and time.time() >= next_fault:
            fname, acts = rnd.choice(menu)
            for a in (acts if isinstance(acts, list) else [acts]):
                st, b = admin.req("POST", "/_klua/faults", a)
                if st != 200:
                    raise SystemExit("fault %s refused: %s %s" % (fname, st, b))
            fired[fname] = fired.get(fname, 0) + 1
            last_fault = time.time()
            next_fault = last_fault + rnd.uniform(0.15, 0.6)
        if rate:
            time.sleep(rate)
    if with_faults:
        st, _ = admin.req("DELETE", "/_klua/faults")
        assert st == 200, st
    end = time.time()
    res = {"seed": seed, "seconds": seconds, "operations": ops,
           "total_operations": ops["create"] + ops["update"] + ops["delete"],
           "faults": fired, "total_faults": sum(fired.values()),
           "last_fault": last_fault or end, "writer_end": end}
    with open(out, "w") as f:
        json.dump(res, f)


def state(url, path, selector=None):
    c = Client(url)
    q = ""
    if selector:
        q = "?labelSelector=" + urllib.parse.quote(selector)
    for _ in range(50):
        st, b = c.req("GET", path + q)
        if st == 200:
            break
        time.sleep(0.1)
    assert st == 200, (st, b)
    m = {}
    for it in b["items"]:
        md = it["metadata"]
        key = (md["namespace"] + "/" if md.get("namespace") else "") + md["name"]
        m[key] = md["resourceVersion"]
    print(json.dumps(m))


def main(argv):
    cmd = argv[1]
    if cmd == "setup":
        setup(argv[2])
    elif cmd == "write":
        write(argv[2], int(argv[3]), float(argv[4]), argv[5])
    elif cmd == "churn":
        write(argv[2], int(argv[3]), float(argv[4]), "/dev/null",
              with_faults=False, rate=0.01)
    elif cmd == "state":
        state(argv[2], argv[3], argv[4] if len(argv) > 4 else None)
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
