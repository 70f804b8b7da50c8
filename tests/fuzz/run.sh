#!/usr/bin/env bash
# Builds and runs every libFuzzer target (or the named ones) for
# FUZZ_SECONDS each (default 30), two at a time (FUZZ_JOBS). Each target
# starts from a scratch copy of its seed corpus tests/fuzz/corpus/<target>
# plus tests/fuzz/regressions/<target>-*, so the committed corpus is never
# modified; crash inputs land in $OUT/artifacts/. Exits non-zero if any
# target crashed, leaked or broke an invariant.
# Usage: tests/fuzz/run.sh [name...]   (BUILD, FUZZ_SECONDS, FUZZ_JOBS)
set -u
cd "$(dirname "$0")/../.."
OUT=${BUILD:-build}/fuzz
SECS=${FUZZ_SECONDS:-30}
export OUT SECS
bash tests/fuzz/build.sh "$OUT" "$@" || { echo "fuzz: build failed"; exit 1; }
if [ $# -gt 0 ]; then names="$*"; else
  names=$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//'); fi
mkdir -p "$OUT/artifacts" "$OUT/logs"

run_one() { # run_one NAME
  local n=$1 w="$OUT/work/$1"
  rm -rf "$w"; mkdir -p "$w"
  cp tests/fuzz/corpus/"$n"/* "$w"/ 2>/dev/null
  cp tests/fuzz/regressions/"$n"-* "$w"/ 2>/dev/null
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$OUT/$n" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 \
      -artifact_prefix="$OUT/artifacts/$n-" -print_final_stats=1 "$w" \
      >"$OUT/logs/$n.log" 2>&1 </dev/null
  local rc=$?
  local execs
  execs=$(grep -E '^stat::number_of_executed_units' "$OUT/logs/$n.log" | awk '{print $2}')
  if [ $rc -eq 0 ]; then
    echo "fuzz: $n ok (${execs:-?} runs in ${SECS}s)"
  else
    echo "fuzz: $n FAILED (exit $rc); see $OUT/logs/$n.log"
    grep -E 'ERROR|invariant failed|runtime error|SUMMARY|artifact' "$OUT/logs/$n.log" | head -8
  fi
  return $rc
}
export -f run_one
printf '%s\n' $names | xargs -P"${FUZZ_JOBS:-2}" -I{} bash -c 'run_one {}'
