#!/usr/bin/env bash
# Runs klua's test suites and ends with one line "N passed, N failed" that
# sums them all. Usage: run-tests.sh [suite...]; suites: c lua tsan e2e.
# With no argument every suite runs (this is what `make test` does).
# Exit status is non-zero if any test failed or any suite could not run.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MAKE=${MAKE:-make}
JOBS=${JOBS:-2}
BUILD=${BUILD:-build}
# The captures of a real kube-apiserver: shared/k8s-wire beside the
# repository (where CI puts it), else the workplace's copy.
if [ -z "${KLUA_WIRE_DIR:-}" ]; then
  if [ -d "$ROOT/../shared/k8s-wire" ]; then
    KLUA_WIRE_DIR=$(cd "$ROOT/../shared/k8s-wire" && pwd)
  else
    KLUA_WIRE_DIR=/work/shared/k8s-wire
  fi
fi
export KLUA_WIRE_DIR
export BUILD
LOGDIR=$BUILD/test-logs
mkdir -p "$LOGDIR"

total_pass=0
total_fail=0
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(c lua tsan e2e)

add() { # add PASS FAIL LABEL
  total_pass=$((total_pass + $1))
  total_fail=$((total_fail + $2))
  printf '  %-28s %d ok, %d not ok\n' "$3" "$1" "$2"
}

# Runs one C test program; counts its "# N passed, N failed" line. A program
# that crashes or prints no summary counts as one failure.
run_c_prog() { # run_c_prog BIN LABEL
  local bin=$1 label=$2 log out p f rc
  log="$LOGDIR/$(basename "$bin").$label.log"
  "$bin" >"$log" 2>&1
  rc=$?
  out=$(grep -E '^# [0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
  if [ -z "$out" ]; then
    echo "  $bin exited $rc without a summary; see $log"; tail -20 "$log"
    add 0 1 "$label $(basename "$bin")"; return
  fi
  p=$(echo "$out" | awk '{print $2}'); f=$(echo "$out" | awk '{print $4}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # sanitizer report at exit
  if [ "$f" -ne 0 ]; then grep -E '^not ok|check failed|==[0-9]+==|runtime error|WARNING: ThreadSanitizer' "$log" | head -20; fi
  add "$p" "$f" "$label $(basename "$bin")"
}

suite_c() {
  echo "== C tests (ASan+UBSan)"
  if ! $MAKE --no-print-directory -j"$JOBS" SANITIZE=address test-bins >"$LOGDIR/build-asan.log" 2>&1; then
    tail -30 "$LOGDIR/build-asan.log"; add 0 1 "build (asan)"; return
  fi
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export KLUA_STRESS_SECONDS=${KLUA_STRESS_SECONDS_ASAN:-2}
  for t in $BUILD/asan/tests/test_* $BUILD/asan/tests/stress_*; do
    [ -x "$t" ] && run_c_prog "$t" asan
  done
}

suite_tsan() {
  echo "== concurrent C tests (TSan)"
  if ! $MAKE --no-print-directory -j"$JOBS" SANITIZE=thread test-bins >"$LOGDIR/build-tsan.log" 2>&1; then
    tail -30 "$LOGDIR/build-tsan.log"; add 0 1 "build (tsan)"; return
  fi
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
  export KLUA_STRESS_SECONDS=${KLUA_STRESS_SECONDS:-10}
  # stress tests, plus the test programs that run threads of their own
  local concurrent="test_workqueue test_delta_fifo test_real_fifo test_informer
    test_reflector test_controller test_rest test_leader test_events
    test_http_endpoints"
  local t
  for t in $BUILD/tsan/tests/stress_* $(for c in $concurrent; do echo "$BUILD/tsan/tests/$c"; done); do
    [ -x "$t" ] && run_c_prog "$t" tsan
  done
}

# busted under LuaJIT, TAP output: "ok N"/"not ok N" lines.
run_busted() { # run_busted LABEL DIR...
  local label=$1 log p f
  shift
  log="$LOGDIR/busted-${label// /-}.log"
  local files d
  files=$(for d in "$@"; do ls "$d"/*_spec.lua 2>/dev/null; done)
  [ -z "$files" ] && return
  LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/tests/lua/?.lua;;" \
  LUA_CPATH="$ROOT/$BUILD/?.so;;" KLUA_BIN="$ROOT/$BUILD/klua" KLUA_ROOT="$ROOT" \
    busted --lua=luajit -o TAP $files >"$log" 2>&1
  p=$(grep -cE '^ok [0-9]+' "$log"); f=$(grep -cE '^not ok [0-9]+' "$log")
  if ! grep -qE '^1\.\.[0-9]+' "$log"; then
    echo "  busted did not finish; see $log"; tail -20 "$log"; f=$((f + 1))
  fi
  if [ "$f" -ne 0 ]; then grep -A12 -E '^not ok' "$log" | head -60; fi
  add "$p" "$f" "$label"
}

suite_lua() {
  echo "== Lua specs (busted, LuaJIT)"
  if ! $MAKE --no-print-directory -j"$JOBS" all >"$LOGDIR/build.log" 2>&1; then
    tail -30 "$LOGDIR/build.log"; add 0 1 "build"; return
  fi
  # the specs, and the example specs that show script authors how to test
  run_busted "busted" tests/lua examples/testing
}

suite_e2e() {
  echo "== end-to-end tests (real binary, real HTTP)"
  if ! $MAKE --no-print-directory -j"$JOBS" all >"$LOGDIR/build.log" 2>&1; then
    tail -30 "$LOGDIR/build.log"; add 0 1 "build"; return
  fi
  run_busted "busted e2e" tests/e2e
  local t log p f
  for t in tests/e2e/*.sh; do
    [ -f "$t" ] || continue
    log="$LOGDIR/$(basename "$t").log"
    KLUA_BIN="$ROOT/$BUILD/klua" KLUA_ROOT="$ROOT" bash "$t" >"$log" 2>&1
    local rc=$?
    p=$(grep -cE '^ok ' "$log"); f=$(grep -cE '^not ok ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; tail -20 "$log"; fi
    [ "$f" -ne 0 ] && grep -A5 -E '^not ok' "$log" | head -40
    add "$p" "$f" "e2e $(basename "$t")"
  done
}

for s in "${suites[@]}"; do
  case "$s" in
    c) suite_c ;;
    lua) suite_lua ;;
    tsan) suite_tsan ;;
    e2e) suite_e2e ;;
    *) echo "run-tests: unknown suite '$s' (c, lua, tsan, e2e)" >&2; exit 2 ;;
  esac
done

echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ "$total_pass" -gt 0 ]
