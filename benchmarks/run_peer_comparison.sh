#!/usr/bin/env bash
# bnn against its PyTorch peer, side by side, under the rules of docs/performance.md ("How
# comparisons are run"):
#   - every bnn benchmark case runs alone in a fresh process (one --benchmark_filter case per
#     process: a case run after others inherits their warmed allocator and caches), writing
#     Google Benchmark JSON to OUT_DIR/bnn/<program>/<case>.json;
#   - every PyTorch script runs with /usr/bin/python3 (Debian's python3-torch), times each case in
#     NCHW and in channels_last and keeps the faster, with OpenBLAS installed (PyTorch's GEMM
#     fallback paths otherwise run on the reference BLAS) and, for that command only,
#     OPENBLAS_NUM_THREADS=1 (OpenBLAS's own threads would fight PyTorch's OpenMP threads) and
#     OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset (OpenBLAS tunes itself to the CPU it finds);
#     output in OUT_DIR/torch/<script>.json and .txt;
#   - ResNet-18 inference (torch_resnet18.py) runs in fp32 and in int8 (torchvision's quantizable
#     ResNet-18, statically quantized on the engine Debian's torch has), so the end-to-end table
#     shows bnn against both;
#   - the machine's facts and the load average before and after go to OUT_DIR/machine.txt;
#   - benchmarks/peer_tables.py prints the markdown tables (also OUT_DIR/tables.md).
#
# Usage: benchmarks/run_peer_comparison.sh BUILD_DIR OUT_DIR [--quick] [--only PART] [--width W]
#   BUILD_DIR  configured with -DBNN_BUILD_BENCHMARKS=ON -DBNN_NATIVE=ON, Release, with the targets
#              bench_binary_conv bench_inference bench_float_conv bench_train_step bench_train_binary
#              (only the PART's program with --only)
#   --quick    minimal times (a smoke run of the whole pipeline, not a measurement): bnn cases get
#              --benchmark_min_time=0.01 (cases with their own MinTime keep it; bench_train_binary
#              gets --steps=1), PyTorch scripts 0.01 s per case and format, one training step.
#   --only     one part of the comparison: binary-conv, inference, float-conv, train-step or
#              train-binary (bench_train_binary against the PyTorch twin, torch_train_binary.py).
#   --width    train-binary at one network width (16 or 64) instead of both (width 64 steps take
#              seconds each: the whole part takes most of an hour).
# Nothing else should run on the machine while it measures; its figures are for one machine.
set -euo pipefail

PARTS=(binary-conv inference float-conv train-step train-binary)
usage() {
    echo "usage: $0 BUILD_DIR OUT_DIR [--quick] [--only binary-conv|inference|float-conv|train-step|train-binary] [--width 16|64]" >&2
    exit 2
}
[[ $# -ge 2 ]] || usage
BUILD_DIR=$1
OUT_DIR=$2
shift 2
QUICK=0
ONLY=""
TRAIN_WIDTHS=(16 64)
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --width)
            [[ $# -ge 2 && ( $2 == 16 || $2 == 64 ) ]] || usage
            TRAIN_WIDTHS=("$2")
            shift
            ;;
        --only)
            [[ $# -ge 2 && " ${PARTS[*]} " == *" $2 "* ]] || usage
            ONLY=$2
            shift
            ;;
        *) usage ;;
    esac
    shift
done
# Whether a part of the comparison runs (all of them without --only).
wanted() { [[ -z $ONLY || $ONLY == "$1" ]]; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$BUILD_DIR/benchmarks
PYTHON=/usr/bin/python3

die() {
    echo "run_peer_comparison: $*" >&2
    exit 1
}

declare -A PROGRAM_OF=([binary-conv]=bench_binary_conv [inference]=bench_inference [float-conv]=bench_float_conv
    [train-step]=bench_train_step [train-binary]=bench_train_binary)
for part in "${PARTS[@]}"; do
    wanted "$part" || continue
    program=${PROGRAM_OF[$part]}
    [[ -x $BENCH_DIR/$program ]] ||
        die "$BENCH_DIR/$program not found: configure $BUILD_DIR with" \
            "-DBNN_BUILD_BENCHMARKS=ON -DBNN_NATIVE=ON and build it"
done
[[ -x $PYTHON ]] || die "$PYTHON not found (Debian's python3 with python3-torch: scripts/setup.sh --torch)"
dpkg -s libopenblas0-pthread >/dev/null 2>&1 ||
    die "libopenblas0-pthread is not installed: without it PyTorch's GEMM fallback paths run on the" \
        "reference BLAS and the peer is crippled (apt-get install libopenblas0-pthread, or scripts/setup.sh --torch)"
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
[[ $blas == *openblas-pthread* ]] ||
    die "libblas.so.3 resolves to '$blas', not OpenBLAS (pthread): select it with" \
        "update-alternatives --config libblas.so.3-x86_64-linux-gnu"

mkdir -p "$OUT_DIR/bnn" "$OUT_DIR/torch"
OUT_DIR=$(cd "$OUT_DIR" && pwd)  # the PyTorch scripts run from benchmarks/
FAILURES=$OUT_DIR/failures.txt
: >"$FAILURES"

if ((QUICK)); then
    BNN_TIME=(--benchmark_min_time=0.01)
    BNN_TRAIN_BINARY_STEPS=(--steps=1)  # its cases have their own MinTime
    TORCH_TIME=(--min-seconds 0.01)
    TRAIN_STEPS=(--steps 1)
else
    BNN_TIME=()
    BNN_TRAIN_BINARY_STEPS=()
    TORCH_TIME=()
    TRAIN_STEPS=(--steps 10)
fi

# ---- machine facts ------------------------------------------------------------------------------
cpu_field() { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo | sed 's/^[^:]*:[[:space:]]*//'; }
has_flag() { grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -qx "$1" && echo yes || echo no; }
{
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "cpu_model: $(cpu_field 'model name')"
    echo "cpuid_family: $(cpu_field 'cpu family')"
    echo "cpuid_model: $(cpu_field 'model')"
    echo "logical_cpus: $(nproc)"
    for flag in avx2 avx512_vpopcntdq avx512_vnni avx512_bf16; do echo "flag_$flag: $(has_flag $flag)"; done
    echo "kernel: $(uname -r)"
    echo "build_dir: $BUILD_DIR"
    grep -E '^(CMAKE_BUILD_TYPE|CMAKE_CXX_COMPILER|BNN_NATIVE):' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null |
        sed 's/^\([^:]*\):[^=]*=/cmake_\1: /' || true
    echo "git_commit: $(git -C "$HERE/.." rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "git_uncommitted_files: $(git -C "$HERE/.." status --porcelain --untracked-files=no 2>/dev/null | wc -l)"
    echo "python3_torch: $(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null || echo 'not installed')"
    echo "libopenblas0_pthread: $(dpkg-query -W -f='${Version}' libopenblas0-pthread)"
    echo "libblas_so_3: $blas"
    echo "quick: $QUICK"
    echo "only: ${ONLY:-all}"
    echo "load_average_before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT_DIR/machine.txt"
cat "$OUT_DIR/machine.txt"

# ---- bnn: one process per case ------------------------------------------------------------------
# Runs every case of PROGRAM whose name matches SELECTION, each alone in its own process; the
# arguments after SELECTION go to the program too (before the listing, which they may change).
run_bnn_cases() {
    local program=$1 selection=$2 dir=$OUT_DIR/bnn/$1 cases name regex file
    shift 2
    mkdir -p "$dir"
    cases=$("$BENCH_DIR/$program" "$@" --benchmark_list_tests --benchmark_filter="$selection")
    [[ -n $cases ]] || die "$program lists no case matching '$selection'"
    while IFS= read -r name; do
        # The filter is a regex matched against the name: escape it and anchor it, so that it
        # selects exactly this case.
        regex="^$(printf '%s' "$name" | sed 's/[][\\.*^$+?(){}|]/\\&/g')\$"
        file=$dir/$(printf '%s' "$name" | tr '/:' '__').json
        echo "[bnn] $program $name"
        "$BENCH_DIR/$program" "$@" --benchmark_filter="$regex" "${BNN_TIME[@]}" \
            --benchmark_out="$file" --benchmark_out_format=json >"${file%.json}.log" 2>&1 ||
            echo "$program $name (exit status $?, see ${file%.json}.log)" >>"$FAILURES"
    done <<<"$cases"
}

# ---- PyTorch: each script with the BLAS settings of a fair peer ---------------------------------
run_peer() {
    local script=$1 name
    name=$(basename "$script" .py)
    shift
    echo "[torch] $script $*"
    (cd "$HERE" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
        "$PYTHON" "$script" "$@" --json "$OUT_DIR/torch/$name.json") >"$OUT_DIR/torch/$name.txt" 2>&1 ||
        echo "$script (exit status $?, see $OUT_DIR/torch/$name.txt)" >>"$FAILURES"
}

# The cases the docs' side-by-side tables use (docs/binary_conv.md, docs/performance.md).
if wanted binary-conv; then
    run_bnn_cases bench_binary_conv '^BM_(PopcountPeak|FloatConv|BinaryConv)/'
    run_peer torch_binary_shapes.py "${TORCH_TIME[@]}"
fi
if wanted inference; then
    run_bnn_cases bench_inference '^BM_(FloatResNet18|BinaryOps|BinaryGraph|ModelSizes)'
    run_peer torch_resnet18.py "${TORCH_TIME[@]}"
fi
if wanted float-conv; then
    run_bnn_cases bench_float_conv '^BM_FloatConv(Forward|ForwardBackward)/layer:[0-3]/'
    run_peer torch_float_conv.py "${TORCH_TIME[@]}"
fi
if wanted train-step; then
    run_bnn_cases bench_train_step '^BM_TrainStep/'
    run_peer torch_train_step.py --threads 1 2 "${TRAIN_STEPS[@]}"
fi
if wanted train-binary; then
    widths_regex=$(IFS='|'; echo "${TRAIN_WIDTHS[*]}")
    run_bnn_cases bench_train_binary "^BM_TrainBinary/.*/width:($widths_regex)/" "${BNN_TRAIN_BINARY_STEPS[@]}"
    run_peer torch_train_binary.py --threads 1 2 --widths "${TRAIN_WIDTHS[@]}" "${TRAIN_STEPS[@]}"
fi

echo "load_average_after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT_DIR/machine.txt"
echo "date_utc_after: $(date -u '+%Y-%m-%d %H:%M:%S')" >>"$OUT_DIR/machine.txt"

"$PYTHON" "$HERE/peer_tables.py" "$OUT_DIR" | tee "$OUT_DIR/tables.md"

if [[ -s $FAILURES ]]; then
    echo "run_peer_comparison: these runs failed:" >&2
    cat "$FAILURES" >&2
    exit 1
fi
