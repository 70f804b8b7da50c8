#!/usr/bin/env bash
# Builds klua's libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, ASan and
# UBSan into OUT (default $BUILD/fuzz, BUILD defaulting to "build").
# Usage: tests/fuzz/build.sh [OUT] [name...]   (names like fuzz_status)
# The runtime modules the targets need are compiled once into OUT/obj (with
# -fsanitize=fuzzer-no-link) and rebuilt only when a source or header is
# newer; each target is then one clang invocation, two at a time.
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-${BUILD:-build}/fuzz}
[ $# -gt 0 ] && shift
JOBS=${JOBS:-2}
CLANG=${CLANG:-clang}
PKGS="luajit libcurl libcjson yaml-0.1 libmicrohttpd gnutls"
PKG_CFLAGS=$(pkg-config --cflags $PKGS)
PKG_LIBS=$(pkg-config --libs $PKGS)
# The parsers under test and what they call; never main.c (cli.c holds the
# one helper main.c would have provided).
RT="kl json object status watch_decode list_decode kubeconfig selector patch
    manifest protobuf lua_json cli"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Wall -Wextra
        -Wno-error -Iruntime $PKG_CFLAGS"
export CLANG CFLAGS SAN OUT PKG_LIBS
mkdir -p "$OUT/obj"

newest_hdr=$(ls -t runtime/*.h | head -1)
objs=""
todo=""
for m in $RT; do
  o="$OUT/obj/$m.o"
  objs="$objs $o"
  if [ ! -f "$o" ] || [ "runtime/$m.c" -nt "$o" ] || [ "$newest_hdr" -nt "$o" ]; then
    todo="$todo $m"
  fi
done
if [ -n "$todo" ]; then
  printf '%s\n' $todo | xargs -P"$JOBS" -I{} sh -c \
    '$CLANG $CFLAGS $SAN -fsanitize=fuzzer-no-link -c runtime/{}.c -o "$OUT/obj/{}.o"'
fi
if [ -n "$todo" ] || [ ! -f "$OUT/libklua-fuzz.a" ]; then
  rm -f "$OUT/libklua-fuzz.a"
  ar rcs "$OUT/libklua-fuzz.a" $objs
fi

if [ $# -gt 0 ]; then
  names="$*"
else
  names=$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')
fi
todo=""
for n in $names; do
  b="$OUT/$n"
  if [ ! -x "$b" ] || [ "tests/fuzz/$n.c" -nt "$b" ] || [ "$OUT/libklua-fuzz.a" -nt "$b" ] ||
     [ tests/fuzz/fuzz_common.h -nt "$b" ]; then
    todo="$todo $n"
  fi
done
if [ -n "$todo" ]; then
  printf '%s\n' $todo | xargs -P"$JOBS" -I{} sh -c \
    '$CLANG $CFLAGS $SAN -fsanitize=fuzzer -Itests/fuzz tests/fuzz/{}.c "$OUT/libklua-fuzz.a" $PKG_LIBS -lpthread -lm -ldl -o "$OUT/{}"'
fi
