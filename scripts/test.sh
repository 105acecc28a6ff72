#!/usr/bin/env bash
# Installs what is missing, builds the library's tests and runs them. The README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --torch   # the torch-labelled tests run the PyTorch twin
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBNN_BUILD_TESTS=ON -DBNN_BUILD_EXAMPLES=ON \
  -DBNN_BUILD_PYTHON=ON \
  -DBNN_TEST_SUITE_UNITY=ON   # one test binary: half the build time of one per test file
cmake --build build --parallel "$(nproc)"
cd build
ctest --output-on-failure --parallel "$(nproc)"
