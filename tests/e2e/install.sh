#!/usr/bin/env bash
# `make install` puts the program, the Lua modules and the C module where
# LuaJIT's default search paths find them, for PREFIX=/usr/local and /usr,
# honouring DESTDIR; the installed binary runs a script.
set -u
ROOT=${KLUA_ROOT:-.}
cd "$ROOT" || exit 1
n=0
check() { n=$((n + 1)); if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# resolves MODULE through luajit's default path list (for lua or c) under DESTDIR
resolves() { # resolves DESTDIR path|cpath MODULE
  local dest=$1 which=$2 mod=$3 pat
  for pat in $(luajit -e "io.write((package.$which:gsub(';', ' ')))"); do
    pat=${pat//\?/${mod//./\/}}
    case "$pat" in /*) [ -f "$dest$pat" ] && return 0 ;; esac
  done
  return 1
}

for prefix in /usr/local /usr; do
  dest="$tmp/root${prefix//\//_}"
  make --no-print-directory install PREFIX="$prefix" DESTDIR="$dest" >"$tmp/install.log" 2>&1
  check "make install PREFIX=$prefix DESTDIR=... succeeds" test $? -eq 0
  check "the klua program is in PREFIX/bin ($prefix)" test -x "$dest$prefix/bin/klua"
  check "luajit's default cpath finds klua_core ($prefix)" resolves "$dest" cpath klua_core
  check "luajit's default path finds klua ($prefix)" resolves "$dest" path klua
  check "luajit's default path finds klua.testing ($prefix)" resolves "$dest" path klua.testing
done

# the installed binary (found under DESTDIR) loads the installed Lua modules
dest="$tmp/root_usr_local"
cat >"$tmp/t.lua" <<'LUA'
local klua = require("klua")
klua.controller({ name = "t", watch = { api_version = "v1", kind = "ConfigMap" },
  reconcile = function() end })
LUA
"$dest/usr/local/bin/klua" dev "$tmp/t.lua" --kubeconfig-out "$tmp/kc" >"$tmp/dev.log" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q 'running' "$tmp/dev.log" 2>/dev/null && break; sleep 0.1; done
kill -TERM "$pid" 2>/dev/null; wait "$pid"; rc=$?
check "the installed klua runs a script (exit $rc)" grep -q 'running .*t.lua' "$tmp/dev.log"
check "and stops cleanly on SIGTERM" test "$rc" -eq 0
make --no-print-directory uninstall PREFIX=/usr/local DESTDIR="$dest" >/dev/null 2>&1
check "make uninstall removes the program" test ! -e "$dest/usr/local/bin/klua"
