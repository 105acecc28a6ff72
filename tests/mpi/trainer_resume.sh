#!/usr/bin/env bash
# trainer_resume.sh TRAINER WORKDIR: the CIFAR trainer under mpirun on a few Fashion-MNIST images.
#  1. 2 ranks, 2 epochs, uninterrupted: rank 0 alone writes, one progress display.
#  2. 2 ranks stopped after epoch 1 (as by a crash), resumed with 2 ranks: the checkpoint equals
#     run 1's byte for byte.
#  3. 2 ranks stopped after epoch 1, resumed with 1 process (another number of ranks): completes
#     epoch 2 from the checkpoint, and metrics.jsonl holds each epoch once.
set -euo pipefail
trainer=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work"
mpirun=(mpirun -np 2 --oversubscribe)
common=(--recipe real --format fashion-mnist --width 4 --batch 16 --train-limit 64 --test-limit 64 --epochs 2 --threads 1)
fail() { echo "trainer_resume: $*" >&2; exit 1; }

"${mpirun[@]}" "$trainer" "${common[@]}" --out whole >whole.log 2>&1 || { cat whole.log; fail "the 2-rank run failed"; }
[[ $(grep -c "real epoch 2:" whole.log) == 1 ]] || { cat whole.log; fail "expected one report of epoch 2"; }
[[ $(grep -c "^real .* 2/2 100%" whole.log) == 1 ]] || { cat whole.log; fail "expected one progress display"; }

for resumed in two one; do
  status=0
  "${mpirun[@]}" "$trainer" "${common[@]}" --out "$resumed" --stop-after-epochs 1 >"$resumed.log" 2>&1 || status=$?
  ((status == 130)) || { cat "$resumed.log"; fail "the stopped run ended with $status, expected 130"; }
  [[ $(grep -c "interrupted" "$resumed.log") == 1 ]] || { cat "$resumed.log"; fail "expected one 'interrupted' message"; }
done
"${mpirun[@]}" "$trainer" "${common[@]}" --out two --resume >two-resumed.log 2>&1 || { cat two-resumed.log; fail "2-rank resume failed"; }
cmp whole/real.safetensors two/real.safetensors || fail "a 2-rank run resumed with 2 ranks differs from the uninterrupted one"

"$trainer" "${common[@]}" --out one --resume >one-resumed.log 2>&1 || { cat one-resumed.log; fail "1-process resume failed"; }
grep -q "resuming after epoch 1" one-resumed.log || { cat one-resumed.log; fail "did not resume after epoch 1"; }
for epoch in 1 2; do
  n=$(grep -c "\"kind\":\"epoch\".*\"epoch\":$epoch,\|\"epoch\":$epoch,.*\"kind\":\"epoch\"" one/metrics.jsonl || true)
  ((n == 1)) || { cat one/metrics.jsonl; fail "metrics.jsonl holds epoch $epoch $n times"; }
done
echo "trainer_resume: uninterrupted, resumed with 2 ranks (identical) and with 1 process: all as expected"
