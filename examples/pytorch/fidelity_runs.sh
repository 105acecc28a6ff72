#!/usr/bin/env bash
# The statistical-fidelity runs of docs/results.md: bnn's trainer and the PyTorch twin, same
# recipe and budget (all six stages, width 16, EPOCHS per stage, batch 128, one thread each), on
# CIFAR-100, seeds 1 and 2. Two runs at a time, one per core, the next starting when a core is
# free. Every run resumes where it stopped (per-epoch checkpoints; its log OUT_DIR/IMPL-seedN.log
# is appended to), so the script can be started again after an interruption.
#   usage: examples/pytorch/fidelity_runs.sh DATA_DIR OUT_DIR [BUILD_DIR]
# then:    /usr/bin/python3 examples/pytorch/fidelity_table.py OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
data=$1 out=$2 build=${3:-build}
epochs=${EPOCHS:-3}
trainer=$build/examples/train_cifar100
[[ -x $trainer ]] || { echo "fidelity_runs.sh: $trainer not built (cmake --build $build --target train_cifar100)" >&2; exit 1; }
mkdir -p "$out"
common=(--data "$data" --width 16 --threads 1 --epochs "$epochs" --batch 128 --schedule cosine
        --recipe real-to-bin,baseline --resume)
run() {  # implementation seed
    local impl=$1 seed=$2 dir=$out/$1-seed$2
    if [[ $impl == bnn ]]; then
        OMP_NUM_THREADS=1 "$trainer" "${common[@]}" --seed "$seed" --out "$dir" >> "$dir.log" 2>&1
    else
        OMP_NUM_THREADS=1 /usr/bin/python3 examples/pytorch/train_cifar100.py "${common[@]}" --device cpu \
            --seed "$seed" --out "$dir" >> "$dir.log" 2>&1
    fi
}
# Four runs, two at a time: the next one starts as soon as either core is free.
failed=0
running=0
for job in "bnn 1" "twin 1" "bnn 2" "twin 2"; do
    if ((running == 2)); then
        wait -n || failed=1
        running=1
    fi
    run $job &
    running=$((running + 1))
done
while ((running > 0)); do
    wait -n || failed=1
    running=$((running - 1))
done
((failed == 0)) || { echo "fidelity_runs.sh: a run failed; see $out/*.log" >&2; exit 1; }
