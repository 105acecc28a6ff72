#!/usr/bin/env bash
# Cross-builds bnn for aarch64 (cmake/aarch64-linux-gnu.cmake) and runs its tests under qemu-user
# (docs/arm.md section 3), as .ci/run does after scripts/test.sh: every library test, on the
# scalar, NEON and NEON dot-product paths (BNN_REQUIRE_ISA makes a missing one a failure: qemu's
# default CPU has SDOT); the command-line tests of classify and the trainer (shorter training runs
# under emulation: crash_safety.sh); and a deployment file written by the host's trainer
# classified on both machines (cli:portable_deployment). The cross build registers no torch, MPI or consumer tests: those need
# programs of the host (tests/CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --aarch64
jobs=$(nproc)

# The host's trainer and classify, for cli:portable_deployment: scripts/test.sh's build when it ran.
[ -f build/CMakeCache.txt ] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBNN_BUILD_EXAMPLES=ON
cmake --build build --parallel "$jobs" --target train_cifar100 classify

cmake -S . -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DBNN_BUILD_TESTS=ON -DBNN_BUILD_EXAMPLES=ON -DBNN_MPI=OFF \
  -DBNN_TEST_SUITE_UNITY=ON \
  -DBNN_HOST_EXAMPLES_DIR="$PWD/build/examples"
# What the tests run, not the other examples (param_count, minimal_binary: their bad-input tests
# are left out below) nor the benchmarks: each program costs minutes of cross compilation.
cmake --build build-aarch64 --parallel "$jobs" --target test_suite train_cifar100 classify deploy_resnet18
cd build-aarch64
BNN_REQUIRE_ISA=neon,neon_dotprod ctest --output-on-failure --parallel "$jobs" -E '^cli:bad_input:(param_count|minimal_binary)$'
