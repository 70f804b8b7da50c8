#!/usr/bin/python3
"""Fault injection of `klua serve --faults on`, over raw HTTP (stdlib only).

Usage: serve_faults.py PORT KLUA_BIN. The server on PORT runs with
--faults on. Prints "ok N - name" / "not ok N - name"; exits non-zero on any
failure. The admin interface is described in docs/serve.md ("Fault
injection")."""
import json
import socket
import subprocess
import sys
import time
import traceback

import klua_e2e as E

PORT = int(sys.argv[1])
KLUA = sys.argv[2]
ADMIN = "/_klua/faults"


def req(method, path, body=None, port=None, host="127.0.0.1", headers=None):
    return E.request(port or PORT, method, path, body, headers=headers,
                     host=host)


def fault(**kw):
    st, b, _ = req("POST", ADMIN, kw)
    assert st == 200, (st, b)
    return b


def clear():
    """Removes every fault and waits until the watches of earlier tests
    (closed by the client) are gone on the server too, so they cannot take
    a watch fault meant for the next test."""
    st, b, _ = req("DELETE", ADMIN)
    assert st == 200, b
    for _ in range(100):
        st, b, _ = req("GET", ADMIN)
        if b["openWatches"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("watches still open: %r" % b)


def test(fn):
    """klua_e2e.test, with every fault removed first."""
    def run():
        clear()
        fn()
    E.run(fn.__name__, run)
    return fn


def cm(name, data=None):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": data or {"k": "v"}}


NS = "faults"
CM = "/api/v1/namespaces/%s/configmaps" % NS
st, _, _ = req("POST", "/api/v1/namespaces",
               {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": NS}})
assert st == 201, st


def from_now(path=None):
    """A watch path starting at the current list RV (no synthetic ADDED)."""
    path = path or CM
    st, lst, _ = req("GET", path)
    assert st == 200, lst
    return path + "?watch=true&resourceVersion=" + \
        lst["metadata"]["resourceVersion"]


def create(name):
    st, b, _ = req("POST", CM, cm(name))
    assert st == 201, (st, b)
    return b


class RawWatch:
    """A watch read from a plain socket, so partial chunks and connections
    dropped without the final chunk are visible."""

    def __init__(self, path):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
                       .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"chunked" in head.lower(), head
        self.body = b""
        self.clean_end = False
        self.closed = False

    def _more(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def read_chunk(self):
        """Appends one chunk to self.body; False at the end (clean or not)."""
        try:
            while b"\r\n" not in self.buf:
                self._more()
            size, rest = self.buf.split(b"\r\n", 1)
            n = int(size, 16)
            self.buf = rest
            while len(self.buf) < n + 2:
                self._more()
        except EOFError:
            self.closed = True
            return False
        self.body += self.buf[:n]
        self.buf = self.buf[n + 2:]
        if n == 0:
            self.clean_end = True
            return False
        return True

    def lines(self, count):
        while self.body.count(b"\n") < count:
            if not self.read_chunk():
                break
        return self.body.split(b"\n")

    def to_end(self):
        while self.read_chunk():
            pass
        self.s.close()


# ---- admin endpoint ---------------------------------------------------------

@test
def arm_list_and_clear():
    a = fault(action="fail", path="/api/v1/namespaces/x", code=503)
    b = fault(action="delay", path="/apis", seconds=0.1, count=0)
    assert a["id"] != b["id"] and a["count"] == 1 and b["count"] == 0
    st, lst, _ = req("GET", ADMIN)
    assert st == 200
    assert [f["action"] for f in lst["faults"]] == ["fail", "delay"], lst
    assert lst["faults"][0]["code"] == 503
    st, out, _ = req("DELETE", ADMIN + "?id=%d" % a["id"])
    assert st == 200 and out["removed"] == 1
    st, lst, _ = req("GET", ADMIN)
    assert [f["id"] for f in lst["faults"]] == [b["id"]]
    st, out, _ = req("DELETE", ADMIN + "?id=%d" % a["id"])
    assert st == 404 and out["kind"] == "Status"
    st, out, _ = req("DELETE", ADMIN)
    assert st == 200 and out["removed"] == 1
    st, lst, _ = req("GET", ADMIN)
    assert lst["faults"] == []


@test
def bad_admin_requests():
    st, b, _ = req("POST", ADMIN, {"action": "explode"})
    assert st == 400 and b["reason"] == "BadRequest", b
    assert "unknown action" in b["message"]
    st, b, _ = req("POST", ADMIN, b"{not json")
    assert st == 400 and b["kind"] == "Status"
    st, b, _ = req("POST", ADMIN, {"action": "fail", "code": 200})
    assert st == 400
    st, b, _ = req("POST", ADMIN, {"action": "fail", "count": "2"})
    assert st == 400
    st, b, _ = req("PUT", ADMIN, {"action": "fail"})
    assert st == 405 and b["reason"] == "MethodNotAllowed"
    st, lst, _ = req("GET", ADMIN)
    assert lst["faults"] == [], lst


@test
def array_of_actions():
    st, b, _ = req("POST", ADMIN, [{"action": "fail", "path": "/a"},
                                   {"action": "fail", "path": "/b"}])
    assert st == 200 and len(b) == 2, b
    st, lst, _ = req("GET", ADMIN)
    assert [f["path"] for f in lst["faults"]] == ["/a", "/b"]


# ---- failures -----------------------------------------------------------------

@test
def fail_next_n_with_500():
    create("f500")
    fault(action="fail", path=CM, code=500, count=2)
    for _ in range(2):
        st, b, r = req("GET", CM + "/f500")
        assert st == 500, st
        assert b["kind"] == "Status" and b["status"] == "Failure"
        assert b["reason"] == "InternalError" and b["code"] == 500
    st, b, _ = req("GET", CM + "/f500")
    assert st == 200 and b["metadata"]["name"] == "f500"
    st, lst, _ = req("GET", ADMIN)
    assert lst["faults"][0]["hits"] == 2 and lst["faults"][0]["count"] == 0


@test
def fail_429_with_retry_after():
    fault(action="fail", path=CM, code=429, retryAfterSeconds=3)
    st, b, r = req("GET", CM)
    assert st == 429 and r.getheader("Retry-After") == "3"
    assert b["reason"] == "TooManyRequests"
    assert b["details"] == {"retryAfterSeconds": 3}, b
    st, b, r = req("GET", CM)
    assert st == 200 and b["kind"] == "ConfigMapList"


@test
def fail_503_with_message_only_for_method():
    fault(action="fail", path=CM, method="POST", code=503,
          message="etcd is away")
    st, b, _ = req("GET", CM)
    assert st == 200
    st, b, r = req("POST", CM, cm("f503"))
    assert st == 503 and b["reason"] == "ServiceUnavailable"
    assert b["message"] == "etcd is away"
    assert r.getheader("Retry-After") is None
    st, b, _ = req("GET", CM + "/f503")
    assert st == 404, "the failed create must not have happened"
    st, b, _ = req("POST", CM, cm("f503"))
    assert st == 201


@test
def fail_only_watch_requests():
    fault(action="fail", path=CM, watch=True, code=500, count=0)
    st, b, _ = req("GET", CM)
    assert st == 200
    for _ in range(2):
        st, b, _ = req("GET", CM + "?watch=true")
        assert st == 500 and b["kind"] == "Status"
    st, b, _ = req("GET", "/api/v1/namespaces/default/configmaps?watch=1"
                   "&timeoutSeconds=1&resourceVersion=0")
    assert st == 200, "other paths are not affected"


@test
def delay_matching_requests():
    fault(action="delay", path=CM + "/", seconds=1, count=1)
    create("slow")
    t = time.monotonic()
    st, b, _ = req("GET", CM + "/slow")
    took = time.monotonic() - t
    assert st == 200 and took >= 0.9, took
    st, lst, _ = req("GET", ADMIN)
    assert lst["faults"][0]["hits"] == 1


# ---- watches ------------------------------------------------------------------

@test
def close_every_open_watch():
    w1 = RawWatch(from_now())
    w2 = RawWatch("/api/v1/namespaces?watch=true&resourceVersion=0")
    w2.lines(1)
    b = fault(action="close_watches")
    assert b["watches"] >= 2, b
    w1.to_end()
    w2.to_end()
    assert w1.clean_end and w2.clean_end
    # new watches are not affected
    w3 = RawWatch(from_now())
    create("after-close")
    ls = w3.lines(1)
    assert json.loads(ls[0])["object"]["metadata"]["name"] == "after-close"
    w3.s.close()


@test
def close_watches_ends_streams_before_any_later_event():
    """close_watches is immediate: a watch waiting for events ends at once,
    and an object created right after the close never reaches it."""
    for i in range(3):
        w = RawWatch(from_now())
        wl = RawWatch("/api/v1/namespaces?watch=true&resourceVersion=0")
        wl.lines(1)  # past its synthetic ADDED events: waiting
        time.sleep(0.2)
        fault(action="close_watches")
        create("late-%d" % i)
        w.to_end()
        assert w.clean_end and w.body == b"", w.body
        before = wl.body
        wl.to_end()
        assert wl.clean_end
        assert b"late-" not in wl.body[len(before):], wl.body

@test
def compact_gives_410_for_older_rvs():
    create("c1")
    st, lst, _ = req("GET", CM + "?limit=1")
    assert st == 200 and lst["metadata"].get("continue"), lst
    old = lst["metadata"]["resourceVersion"]
    create("c2")
    b = fault(action="compact")
    assert int(b["oldestResourceVersion"]) > int(old), b
    w = RawWatch(CM + "?watch=true&resourceVersion=" + old)
    w.to_end()
    ev = json.loads(w.body.split(b"\n")[0])
    assert ev["type"] == "ERROR" and ev["object"]["code"] == 410, ev
    assert ev["object"]["reason"] == "Expired"
    assert w.clean_end
    st, b, _ = req("GET", CM + "?limit=1&continue=" +
                   lst["metadata"]["continue"])
    assert st == 410 and b["reason"] == "Expired", (st, b)
    st, now, _ = req("GET", CM)
    w = RawWatch(CM + "?watch=true&resourceVersion=" +
                 now["metadata"]["resourceVersion"])
    create("c3")
    ev = json.loads(w.lines(1)[0])
    assert ev["type"] == "ADDED", "a watch from the current RV still works"
    w.s.close()


@test
def cut_watch_mid_event():
    fault(action="cut_watch", path=CM)
    w = RawWatch(from_now())
    create("cut-me")
    w.to_end()
    assert w.closed and not w.clean_end, "no final chunk after a cut"
    assert b"\n" not in w.body and len(w.body) > 5, w.body
    assert b'{"type":"ADDED"'.startswith(w.body[:15]) or \
        w.body.startswith(b'{"type":"ADDED"'), w.body
    try:
        json.loads(w.body)
        raise AssertionError("a cut event must not parse")
    except ValueError:
        pass
    st, lst, _ = req("GET", ADMIN)
    assert lst["faults"][0]["hits"] == 1 and lst["faults"][0]["count"] == 0
    w = RawWatch(from_now())
    create("not-cut")
    ev = json.loads(w.lines(1)[0])
    assert ev["object"]["metadata"]["name"] == "not-cut"
    w.s.close()


@test
def cut_watch_other_path_untouched():
    fault(action="cut_watch", path="/api/v1/namespaces/elsewhere")
    w = RawWatch(from_now())
    create("whole")
    ev = json.loads(w.lines(1)[0])
    assert ev["object"]["metadata"]["name"] == "whole"
    w.s.close()


@test
def malformed_watch_line():
    fault(action="malformed_watch", path=CM)
    w = RawWatch(from_now())
    create("after-bad")
    ls = w.lines(2)
    try:
        json.loads(ls[0])
        raise AssertionError("first line must be malformed: %r" % ls[0])
    except ValueError:
        pass
    ev = json.loads(ls[1])
    assert ev["type"] == "ADDED"
    assert ev["object"]["metadata"]["name"] == "after-bad"
    create("after-bad-2")
    ls = w.lines(3)
    assert json.loads(ls[2])["object"]["metadata"]["name"] == "after-bad-2"
    w.s.close()


# ---- enabling and peers -------------------------------------------------------

def start_server(*args, listen="127.0.0.1:0"):
    p, url = E.serve(KLUA, *args, listen=listen)
    assert url and url.startswith("http"), p.stderr.read()
    return p, int(url.rsplit(":", 1)[1])


@test
def off_without_flag():
    p, port = start_server()
    try:
        st, b, _ = req("GET", ADMIN, port=port)
        assert st == 404 and b == b"404 page not found\n", (st, b)
        st, b, _ = req("POST", ADMIN, {"action": "compact"}, port=port)
        assert st == 404
    finally:
        p.terminate()
        p.wait(10)


@test
def faults_flag_rejects_garbage_and_preloads_json():
    r = subprocess.run([KLUA, "serve", "--listen", "127.0.0.1:0",
                        "--faults", "maybe"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0 and "--faults" in r.stderr, r.stderr
    p, port = start_server("--faults",
                           '{"action":"fail","path":"/api","code":500}')
    try:
        st, b, _ = req("GET", "/api/v1/namespaces", port=port)
        assert st == 500
        st, b, _ = req("GET", "/api/v1/namespaces", port=port)
        assert st == 200
    finally:
        p.terminate()
        p.wait(10)


def non_loopback_address():
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True,
                             text=True).stdout
    except OSError:
        return None
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            a = parts[parts.index("inet") + 1].split("/")[0]
            if not a.startswith("127."):
                return a
    return None


def non_loopback_peer_forbidden():
    addr = non_loopback_address()
    if not addr:
        return "skip: no non-loopback IPv4 address on this machine"
    p, port = start_server("--faults", "on", listen="0.0.0.0:0")
    try:
        st, b, _ = req("GET", ADMIN, port=port, host=addr)
        assert st == 403 and b["reason"] == "Forbidden", (st, b)
        st, b, _ = req("POST", ADMIN, {"action": "compact"}, port=port,
                       host=addr)
        assert st == 403
        st, b, _ = req("GET", "/api/v1/namespaces", port=port, host=addr)
        assert st == 200, "ordinary requests from that peer still work"
        st, b, _ = req("GET", ADMIN, port=port)
        assert st == 200
    finally:
        p.terminate()
        p.wait(10)


E.N += 1
try:
    why = non_loopback_peer_forbidden()
    print("ok %d - non_loopback_peer_forbidden%s" %
          (E.N, " # SKIP " + why if why else ""))
except Exception:
    E.FAILED += 1
    print("not ok %d - non_loopback_peer_forbidden" % E.N)
    for line in traceback.format_exc().splitlines():
        print("#   " + line)

E.finish()
