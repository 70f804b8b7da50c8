#!/usr/bin/env bash
# bench_smoke.sh: `make bench` still runs. Builds the benchmark programs and
# runs scripts/bench with tiny sizes against a real `klua serve`, then checks
# that it printed a well-formed table and wrote well-formed JSON. Checks
# shape only: no figure is asserted (speed belongs to `make bench`).
# Prints TAP-style "ok N - ..." lines.
set -u
ROOT=${KLUA_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT"
BUILD=${BUILD:-build}
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; }
check() { # check DESC CMD...
  local d=$1; shift
  if "$@"; then ok "$d"; else notok "$d"; fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if make --no-print-directory -s BUILD="$BUILD" bench-bins >"$tmp/build.log" 2>&1; then
  ok "benchmark programs build"
else
  notok "benchmark programs build"; tail -20 "$tmp/build.log"; exit 1
fi

BUILD=$BUILD timeout 300 /usr/bin/python3 scripts/bench --configmaps 120 \
  --pods 30 --events 150 --reps 1 --lua-objects 200 --lua-calls 500 --latency 20 \
  --out "$tmp/r.json" --quiet >"$tmp/out.txt" 2>"$tmp/err.txt"
rc=$?
check "scripts/bench exits 0 on tiny sizes" test "$rc" -eq 0
[ "$rc" -eq 0 ] || { tail -20 "$tmp/err.txt"; }

check "the table has a header line" grep -qE '^workload +klua +floor +unit +ratio +target +note' "$tmp/out.txt"
check "the table names the machine" grep -qE '^klua benchmarks - .*[0-9]+ cores' "$tmp/out.txt"
for w in "1 initial sync: configmaps over HTTP" "1 initial sync: configmaps in-process" \
         "2 watch ingest: in-process" "3 memory: configmaps after sync" \
         "4 Lua: cache get_by_key" "5 hot reload" "6 server: list"; do
  check "table row: $w" grep -qF "$w" "$tmp/out.txt"
done
check "sync and ingest rows carry a ratio and a target" \
  grep -qE '^1 initial sync: .* [0-9.]+x +<= 1\.5x +(met|MISSED)' "$tmp/out.txt"
check "the Lua on_update hook row is reported against its floor, JIT off and on" \
  test "$(grep -cE '^2 watch ingest: 150 events over HTTP into a Lua on_update hook, JIT (off|on) .* [0-9.]+x +reported' "$tmp/out.txt")" -eq 2
check "the table points at the JSON" grep -qF "results: $tmp/r.json" "$tmp/out.txt"

/usr/bin/python3 - "$tmp/r.json" >"$tmp/json.txt" 2>&1 <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
m = d["machine"]
assert m["nproc"] >= 1 and m["cpu_model"] and m["memory_bytes"] > 0, m
assert d["conditions"]["loadavg_start"], d["conditions"]
rows = d["rows"]
assert len(rows) >= 15, len(rows)
need = {"group", "workload", "klua", "floor", "unit", "ratio", "target",
        "met", "note"}
for r in rows:
    assert need <= set(r), r
    if r["note"].startswith("not measured yet"):
        continue
    assert isinstance(r["klua"], (int, float)) and r["klua"] >= 0, r
    if r["ratio"] is not None:
        assert r["floor"] > 0 and r["ratio"] > 0, r
        # a ratio without a target is only reported
        assert r["met"] in ((True, False) if r["target"] is not None
                            else (None,)), r
hooks = [r for r in rows if "Lua on_update hook" in r["workload"]]
assert len(hooks) == 2, hooks
for r in hooks:
    w = r["raw"]
    assert w["seen"] == w["events"] == 150, w
    assert r["klua"] > 0 and r["floor"] > 0 and w["klua_events_per_cpu_second"] > 0, w
timed = [r for r in rows if r["target"] is not None and r["ratio"] is not None]
assert len(timed) >= 5, len(timed)
print("json ok")
PY
check "bench-results JSON is well formed (machine, conditions, rows)" grep -q "json ok" "$tmp/json.txt"
[ -s "$tmp/json.txt" ] && ! grep -q "json ok" "$tmp/json.txt" && cat "$tmp/json.txt"

echo "1..$n"
[ "$fail" -eq 0 ]
