#!/usr/bin/env bash
# Smoke test of the libFuzzer targets (tests/fuzz/): each builds with clang
# and runs its seed corpus and saved regression inputs once, without a crash,
# leak or broken invariant. Prints TAP-style "ok N - name" lines. The real
# fuzzing is `make fuzz` (docs/fuzzing.md).
set -u
cd "$(dirname "$0")/../.."
OUT=${BUILD:-build}/fuzz
i=0
mkdir -p "$OUT"
if ! command -v clang >/dev/null; then
  echo "ok 1 - fuzz targets # SKIP clang not installed"; exit 0
fi
if ! bash tests/fuzz/build.sh "$OUT" >"$OUT/build.log" 2>&1; then
  echo "not ok 1 - fuzz targets build (see $OUT/build.log)"
  tail -20 "$OUT/build.log"; exit 1
fi
fail=0
for src in tests/fuzz/fuzz_*.c; do
  n=$(basename "$src" .c)
  i=$((i + 1))
  inputs=$(ls tests/fuzz/corpus/"$n"/* tests/fuzz/regressions/"$n"-* 2>/dev/null)
  if [ -z "$inputs" ]; then echo "not ok $i - $n (no seed inputs)"; fail=1; continue; fi
  log="$OUT/smoke-$n.log"
  if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      "$OUT/$n" -timeout=60 $inputs >"$log" 2>&1 </dev/null; then
    echo "ok $i - $n ($(echo "$inputs" | wc -l) inputs)"
  else
    echo "not ok $i - $n (see $log)"
    grep -E 'ERROR|invariant failed|runtime error|SUMMARY|Running:' "$log" | tail -6
    fail=1
  fi
done
exit $fail
