#!/usr/bin/env bash
# Cross-builds bnn for aarch64 (cmake/aarch64-linux-gnu.cmake) and runs its tests under qemu-user
# (docs/arm.md): every library test, on the scalar and NEON paths (BNN_REQUIRE_ISA makes a missing
# NEON path a failure), and the example programs' command-line tests. The cross build registers no
# torch, MPI or consumer tests: those need programs of the host (tests/CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --aarch64
cmake -S . -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DBNN_BUILD_TESTS=ON -DBNN_BUILD_EXAMPLES=ON -DBNN_MPI=OFF \
  -DBNN_TEST_SUITE_UNITY=ON   # one test binary: half the build time of one per test file
cmake --build build-aarch64 --parallel "$(nproc)"
cd build-aarch64
BNN_REQUIRE_ISA=neon ctest --output-on-failure --parallel "$(nproc)"
