#!/usr/bin/env bash
# The data-parallel measurements of docs/distributed.md, on a quiet machine: for each ResNet-18
# variant and width, 1 process x 2 threads and 2 processes x 1 thread at the same global batch,
# the bytes per step, then the scaling model. Writes OUT.jsonl and OUT.md (OUT defaults to
# results/dist), prints the Markdown.
#
#   bash benchmarks/run_dist_benchmarks.sh [BUILD_DIR]
#
# Environment: WIDTHS ("16 64"), VARIANTS ("real strong-baseline real-to-bin"), BATCH (128),
# STEPS (10), WARMUP (2), OUT. A smoke run: WIDTHS=8 BATCH=8 STEPS=1 WARMUP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bench}
out=${OUT:-results/dist}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBNN_BUILD_BENCHMARKS=ON -DBNN_NATIVE=ON -DBNN_MPI=ON >/dev/null
cmake --build "$build" --target dist_throughput
bench="$build/benchmarks/dist_throughput"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_PROC_BIND=false
mkdir -p "$(dirname "$out")"
: >"$out.jsonl"
"$bench" --bytes >>"$out.jsonl"
for variant in ${VARIANTS:-real strong-baseline real-to-bin}; do
  for width in ${WIDTHS:-16 64}; do
    common=(--variant "$variant" --width "$width" --batch "${BATCH:-128}" --steps "${STEPS:-10}"
            --warmup "${WARMUP:-2}" --json "$out.jsonl")
    "$bench" --threads 2 "${common[@]}"
    mpirun -np 2 --bind-to core "$bench" --threads 1 "${common[@]}"
  done
done
python3 benchmarks/dist_scaling_model.py "$out.jsonl" | tee "$out.md"
