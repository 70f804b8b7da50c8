#!/usr/bin/env bash
# Installs what klua needs to build and test, from Debian's packages.
# Idempotent: it asks dpkg first and runs apt-get only for what is missing.
set -euo pipefail

pkgs=(
  build-essential pkg-config make git
  luajit libluajit-5.1-dev
  libcurl4-openssl-dev
  libcjson-dev
  libyaml-dev
  libmicrohttpd-dev libgnutls28-dev
  lua-busted
  openssl ca-certificates curl
  python3 python3-kubernetes python3-yaml
  clang libclang-rt-14-dev
  valgrind
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# kubectl: the machine image usually ships one; Debian's kubernetes-client otherwise.
if ! command -v kubectl >/dev/null 2>&1; then
  missing+=(kubernetes-client)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (apt-get) or install them yourself" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
