#!/usr/bin/env bash
# `klua serve --state-file`: objects, resourceVersions and CRDs kept across
# a SIGTERM restart, 410 for pre-restart watches, periodic saves, corrupt
# files. serve_state.py starts and stops its own servers. Prints "ok N -
# name" lines.
set -u
KLUA_BIN=${KLUA_BIN:-build/klua}
HERE=$(cd "$(dirname "$0")" && pwd)
exec /usr/bin/python3 "$HERE/serve_state.py" "$KLUA_BIN"
