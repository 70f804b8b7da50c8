# Shared helpers of the shell end-to-end tests (tests/e2e/*.sh), sourced
# first: `. "$(dirname "$0")/lib.bash"`. (Named .bash so that
# scripts/run-tests.sh, which runs every tests/e2e/*.sh, does not run it.)
# Sets ROOT and KLUA (from KLUA_ROOT, KLUA_BIN), the TAP counters N and
# FAILED, a temp dir D removed at exit, and PIDS: every process listed there
# is killed (SIGKILL) at exit.
ROOT=${KLUA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
KLUA=${KLUA_BIN:-$ROOT/build/klua}
N=0
FAILED=0
ok() { N=$((N + 1)); echo "ok $N - $1"; }
nok() { N=$((N + 1)); FAILED=$((FAILED + 1)); echo "not ok $N - $1"; }
# check NAME CODE: ok when the shell code CODE (eval'd) succeeds (a script
# may define a check of its own after sourcing this file)
check() { if eval "$2"; then ok "$1"; else nok "$1"; fi; }
# summary: prints the "# N passed, N failed" line; fails when any check did
summary() { echo "# $((N - FAILED)) passed, $FAILED failed"; [ "$FAILED" -eq 0 ]; }

D=$(mktemp -d)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  [ ${#PIDS[@]} -eq 0 ] || wait "${PIDS[@]}" 2>/dev/null
  rm -rf "$D"
}
trap cleanup EXIT

# a TCP port on 127.0.0.1 that was free a moment ago
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_serve LOG ARGS...: starts `$KLUA serve ARGS...` (output to LOG, pid
# in PIDS) and waits up to SERVE_WAIT seconds (default 30) for the URL it
# prints. Sets SPID and SURL (empty on failure); returns 1 when the server
# exited or printed no URL in time. (--kubeconfig-out is written before the
# URL is printed.)
start_serve() {
  local log=$1
  shift
  "$KLUA" serve "$@" >"$log" 2>&1 &
  SPID=$!
  PIDS+=($SPID)
  SURL=
  for _ in $(seq $((${SERVE_WAIT:-30} * 20))); do
    SURL=$(grep -oE 'https?://[0-9.:]+' "$log" 2>/dev/null | head -1)
    [ -n "$SURL" ] && return 0
    kill -0 "$SPID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# forget PID: drops a process the script has reaped from PIDS (its number
# may be reused)
forget() {
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# stop_rc PID SECONDS: SIGTERM, then waits up to SECONDS for the process to
# end. Sets RC to its exit status (124 when it is still running); a process
# that ended leaves PIDS.
stop_rc() {
  kill -TERM "$1" 2>/dev/null
  RC=124
  for _ in $(seq $(($2 * 10))); do
    if ! kill -0 "$1" 2>/dev/null; then wait "$1"; RC=$?; forget "$1"; return; fi
    sleep 0.1
  done
}
