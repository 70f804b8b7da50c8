#!/usr/bin/env bash
# The official Kubernetes Python client (python3-kubernetes, with the system
# /usr/bin/python3) against `klua serve`: see python_client.py.
set -u
KLUA_BIN=${KLUA_BIN:-build/klua}
HERE=$(cd "$(dirname "$0")" && pwd)
if ! /usr/bin/python3 -c 'import kubernetes' 2>/dev/null; then
  echo "not ok 1 - python3-kubernetes is not installed (scripts/install-deps.sh installs it)"
  exit 1
fi
exec /usr/bin/python3 "$HERE/python_client.py" "$KLUA_BIN"
