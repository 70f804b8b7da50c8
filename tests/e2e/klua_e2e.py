"""Shared helpers of the Python end-to-end scripts (tests/e2e/*.py): TAP
lines for test functions, starting `klua serve` on a free port, and raw
HTTP requests to it (stdlib only).

A script imports it as `import klua_e2e as E` (Python puts the script's own
directory, tests/e2e, first on sys.path). Tests run one at a time: the
counters are plain module globals, not thread-safe."""
import http.client
import json
import subprocess
import sys
import traceback

N = 0       # tests run so far
FAILED = 0  # of which failed


def run(name, fn, *args):
    """Runs fn(*args) as test number N+1 and prints "ok N - name" or, with
    its traceback as comments, "not ok N - name". Returns fn's result (None
    when it failed)."""
    global N, FAILED
    N += 1
    try:
        out = fn(*args)
        print("ok %d - %s" % (N, name))
        return out
    except Exception:
        FAILED += 1
        print("not ok %d - %s" % (N, name))
        for line in traceback.format_exc().splitlines():
            print("#   " + line)
        return None
    finally:
        sys.stdout.flush()


def test(fn):
    """Decorator: runs fn at once as a test named after it."""
    run(fn.__name__, fn)
    return fn


def finish():
    """Prints the TAP plan and exits 1 when a test failed (else 0)."""
    print("1..%d" % N)
    sys.exit(1 if FAILED else 0)


def serve(klua, *args, listen="127.0.0.1:0"):
    """Starts `KLUA serve --listen LISTEN ARGS...` with stdout and stderr
    piped (bytes) and reads its first line. Returns (proc, url); url is None
    when the server did not start (the process has then ended)."""
    p = subprocess.Popen([klua, "serve", "--listen", listen] + list(args),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline().decode()
    if not line.startswith("listening on "):
        p.wait(timeout=10)
        return p, None
    return p, line.split()[-1]


def request(port, method, path, body=None, ctype="application/json",
            accept=None, headers=None, host="127.0.0.1", conn=None,
            decode=True):
    """One HTTP request to host:port, on a new connection (closed after) or
    on conn (left open). body: bytes or str as is, anything else as JSON;
    sent with Content-Type ctype. Returns (status, body, response); body is
    the decoded JSON when decode is set and the response is non-empty
    application/json, else the raw bytes."""
    c = conn or http.client.HTTPConnection(host, port, timeout=20)
    h = dict(headers or {})
    if accept:
        h["Accept"] = accept
    if body is not None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        h["Content-Type"] = ctype
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    if not conn:
        c.close()
    if decode and data and r.getheader("Content-Type", "").startswith(
            "application/json"):
        return r.status, json.loads(data), r
    return r.status, data, r
