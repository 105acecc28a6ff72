#!/usr/bin/env bash
# The sanitizer part of CI (issue 12), run by .ci/run after scripts/test.sh:
#  1. the whole C++ test suite built with AddressSanitizer + UndefinedBehaviorSanitizer (g++, the
#     compiler of the ordinary build, so the same code and the same OpenMP runtime, libgomp, are
#     checked; every report fatal; -Og -g1, the test files as one translation unit: see
#     tests/CMakeLists.txt) and the example programs, run with ctest. Left out: the labels torch
#     and mpi (not built with sanitizers) and consumer (builds an outside project with its own
#     flags; scripts/test.sh runs it);
#  2. every fuzz target (tests/fuzz, clang + libFuzzer, ASan + UBSan, -O0 to build quickly) for
#     BNN_FUZZ_SECONDS (default 30) from its seed corpus, two at a time on two cores. A finding
#     fails the run and leaves its input in build-fuzz/artifacts/.
# BNN_ASAN_DIR and BNN_FUZZ_DIR name other build directories (default build-asan, build-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
seconds=${BNN_FUZZ_SECONDS:-30}
asan=${BNN_ASAN_DIR:-build-asan}
fuzz=${BNN_FUZZ_DIR:-build-fuzz}

export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

CXX=g++ cmake -S . -B "$asan" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBNN_SANITIZE=ON -DBNN_TEST_SUITE_UNITY=ON \
  -DBNN_BUILD_TESTS=ON -DBNN_BUILD_EXAMPLES=ON
cmake --build "$asan" --parallel "$jobs"
(cd "$asan" && ctest --output-on-failure --parallel "$jobs" -LE '^(torch|mpi|consumer)$')

CXX=clang++ cmake -S . -B "$fuzz" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBNN_BUILD_FUZZERS=ON -DBNN_FUZZ_OPT=-O0 \
  -DBNN_BUILD_TESTS=OFF -DBNN_BUILD_EXAMPLES=OFF
targets=()
for src in tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
cmake --build "$fuzz" --parallel "$jobs" --target "${targets[@]}"
mkdir -p "$fuzz"/artifacts "$fuzz"/logs
run_one() {  # target: fuzz from a scratch copy of the corpus, so the repository's stays as committed
  local t=$1 work
  work=$(mktemp -d)
  # One OpenMP thread: an execution is tiny, and spinning workers only slow the fuzzer down. No
  # tensor block cache: storage is really freed, so ASan sees a use after free.
  if OMP_NUM_THREADS=1 BNN_TENSOR_CACHE_MB=0 "$fuzz"/tests/fuzz/"$t" -max_total_time="$seconds" -print_final_stats=1 \
       -artifact_prefix="$fuzz"/artifacts/"$t"- "$work" tests/fuzz/corpus/"$t" > "$fuzz"/logs/"$t".log 2>&1; then
    echo "fuzz $t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$fuzz"/logs/"$t".log | grep -o '[0-9]*$') executions, no finding"
    rm -rf "$work"
  else
    echo "fuzz $t: FINDING (log $fuzz/logs/$t.log, input in $fuzz/artifacts/)"
    tail -n 40 "$fuzz"/logs/"$t".log
    rm -rf "$work"
    return 1
  fi
}
export -f run_one
export seconds fuzz
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
