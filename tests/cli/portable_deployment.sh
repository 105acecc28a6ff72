#!/usr/bin/env bash
# A deployment file is portable (issue 24): one written by the host's trainer and classified by
# the host's classify and by another machine's (the cross build's, under its emulator) gives the
# same top-1 class and the same logits within float rounding, with either stem.
#
#   portable_deployment.sh HOST_TRAIN_CIFAR100 HOST_CLASSIFY OTHER_CLASSIFY
#
# Only float operations whose order a path may choose (the float stem's and the classifier's
# sums) can differ between machines; the binary convolutions and their fused transforms are exact
# on every path. So the logits must agree to a few parts in a million of the largest of them
# (relative tolerance below), and the top-1 class must be the same unless the host's two best
# logits are closer than that.
set -uo pipefail

host_trainer=$1
host_classify=$2
other_classify=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/tiny_cifar100.sh"
tolerance=1e-5  # of the largest logit's magnitude (at least 1)

work=$(mktemp -d "${TMPDIR:-/tmp}/bnn_portable_XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# A tiny strong-baseline run: its fully binary stage writes the deployment file.
make_tiny_cifar100 "$work/data" 32 16
"$host_trainer" --data "$work/data" --recipe baseline --width 4 --epochs 1 --batch 16 --threads 1 \
    --out "$work/run" > "$work/train.log" 2>&1 || fail "the host's training run failed: $(tail -n 2 "$work/train.log")"
deployed=$work/run/baseline-stage2.deploy.safetensors
[ -f "$deployed" ] || fail "the training run wrote no $(basename "$deployed")"

# An image: the first test record's pixels as a 32x32 PPM.
{ printf 'P6\n32 32\n255\n' && head -c 3074 "$work/data/test.bin" | tail -c 3072; } > "$work/image.ppm"

for stem in fp32 int16 int8; do
    "$host_classify" --checkpoint "$deployed" --image "$work/image.ppm" --stem "$stem" --logits > "$work/host" 2>&1 ||
        fail "the host's classify failed: $(tail -n 2 "$work/host")"
    "$other_classify" --checkpoint "$deployed" --image "$work/image.ppm" --stem "$stem" --logits > "$work/other" 2>&1 ||
        fail "the other classify failed: $(tail -n 2 "$work/other")"
    # Compares the "logit INDEX VALUE" lines: the same classes, each pair within the tolerance, the
    # same top-1 (or a tie within it).
    awk -v tol="$tolerance" -v stem="$stem" '
        function abs(v) { return v < 0 ? -v : v }
        $1 == "logit" && FNR == NR { host[$2] = $3 + 0; n++; next }
        $1 == "logit" { other[$2] = $3 + 0; m++ }
        END {
            if (n == 0 || n != m) { printf "stem %s: %d logits from the host, %d from the other machine\n", stem, n, m; exit 1 }
            big = 1
            for (k in host) if (abs(host[k]) > big) big = abs(host[k])
            worst = 0; at = "-"; top_h = -1; top_o = -1
            for (k in host) {
                if (!(k in other)) { printf "stem %s: no logit %s from the other machine\n", stem, k; exit 1 }
                d = abs(host[k] - other[k]); if (d > worst) { worst = d; at = k }
                if (top_h < 0 || host[k] > host[top_h]) top_h = k
                if (top_o < 0 || other[k] > other[top_o]) top_o = k
            }
            printf "stem %s: %d logits, largest difference %.3g (class %s) of tolerance %.3g; top-1 class %s on the host, %s on the other machine\n",
                   stem, n, worst, at, tol * big, top_h, top_o
            if (worst > tol * big) exit 1
            if (top_h != top_o && abs(host[top_h] - host[top_o]) > tol * big) exit 1
        }' "$work/host" "$work/other" || fail "stem $stem: the two machines disagree (host, then other):
$(paste "$work/host" "$work/other" | grep logit | head -n 20)"
done
echo "the deployment file gives the same top-1 and logits within float rounding on both machines"
