#!/usr/bin/env bash
# Installs what is missing, builds the examples with -march=native and runs the trainer's default
# job (a short Real-to-Bin schedule). Arguments are passed to the trainer (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build-native -G Ninja -DCMAKE_BUILD_TYPE=Release -DBNN_NATIVE=ON \
      -DBNN_BUILD_TESTS=OFF -DBNN_BUILD_EXAMPLES=ON
cmake --build build-native --parallel "$(nproc)" --target train_cifar100
exec ./build-native/examples/train_cifar100 "$@"
