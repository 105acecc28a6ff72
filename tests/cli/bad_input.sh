#!/usr/bin/env bash
# Bad input at the command line (issue 12): every example program given missing, empty,
# truncated, wrong-format or wrong-architecture files, wrong option values and images of the wrong
# size or channel count must answer with one clear line on stderr and a non-zero exit, never a
# crash (signal), a hang or a silently wrong result. Files are made here, from a tiny training run.
#
#   bad_input.sh EXAMPLES_DIR PROGRAM     PROGRAM: train_cifar100, classify, deploy_resnet18,
#                                                  param_count or minimal_binary
# Prints one table row per case: | case | exit code | message |.
set -uo pipefail

bin=$1
program=$2
here=$(cd "$(dirname "$0")" && pwd)
source "$here/tiny_cifar100.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/bnn_bad_input_XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0

# expect_error "case" "message regex" command...: a non-zero exit below 124 (no signal, no
# timeout), exactly one line on stderr, matching the regex.
expect_error() {
    local name=$1 pattern=$2
    shift 2
    timeout 120 "$@" > "$work/stdout" 2> "$work/stderr"
    local rc=$? lines
    lines=$(grep -c . "$work/stderr")
    local message
    message=$(head -c 300 "$work/stderr" | tr '\n' ' ' | sed "s|$work/||g; s| *$||")
    echo "| $name | $rc | \`$message\` |"
    if ((rc == 0 || rc >= 124)); then
        echo "FAIL ($name): exit code $rc $( ((rc > 128)) && echo "(signal $((rc - 128)))")" >&2
        failures=$((failures + 1))
    elif [ "$lines" != 1 ]; then
        echo "FAIL ($name): $lines lines on stderr, expected one" >&2
        failures=$((failures + 1))
    elif ! grep -Eq -- "$pattern" "$work/stderr"; then
        echo "FAIL ($name): the message does not match '$pattern'" >&2
        failures=$((failures + 1))
    fi
}

# expect_note "case" "regex" command...: accepted (exit 0), with a line on stdout saying what was
# done to the input (for inputs that are converted rather than refused).
expect_note() {
    local name=$1 pattern=$2
    shift 2
    timeout 120 "$@" > "$work/stdout" 2> "$work/stderr"
    local rc=$?
    local note
    note=$(grep -E -- "$pattern" "$work/stdout" | head -n 1 | sed "s|$work/||g")
    echo "| $name | $rc | \`$note\` (accepted) |"
    if [ "$rc" != 0 ] || [ -z "$note" ]; then
        echo "FAIL ($name): exit code $rc, note '${note}'; stderr: $(cat "$work/stderr")" >&2
        failures=$((failures + 1))
    fi
}

# Images in the PNM and TGA formats, which need no compressor to write.
ppm() { printf 'P6\n%d %d\n255\n' "$2" "$3" > "$1" && head -c $(($2 * $3 * 3)) /dev/urandom >> "$1"; }
pgm() { printf 'P5\n%d %d\n255\n' "$2" "$3" > "$1" && head -c $(($2 * $3)) /dev/urandom >> "$1"; }
tga_rgba() {  # FILE W H: uncompressed 32-bit true colour
    printf '\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00' > "$1"
    printf "\\x$(printf %02x $(($2 % 256)))\\x$(printf %02x $(($2 / 256)))" >> "$1"
    printf "\\x$(printf %02x $(($3 % 256)))\\x$(printf %02x $(($3 / 256)))\\x20\\x08" >> "$1"
    head -c $(($2 * $3 * 4)) /dev/urandom >> "$1"
}

# The same bytes with one string replaced by another of the same length (metadata edits).
same_length_edit() { LC_ALL=C sed "s/$2/$3/" "$1" > "$4"; }

common_files() {
    make_tiny_cifar100 "$work/data" 32 16
    : > "$work/empty"
    mkdir -p "$work/empty_dir" "$work/deployed"
}

# A tiny strong-baseline run: a binary-activation checkpoint, a fully binary one and its
# deployment file, all with the trainer's metadata.
trained_files() {
    "$bin/train_cifar100" --data "$work/data" --recipe baseline --width 4 --epochs 1 --batch 16 --threads 1 \
        --out "$work/run" > "$work/train.log" 2>&1 || { echo "the training run failed: $(tail -n 2 "$work/train.log")" >&2; exit 1; }
    run=$work/run
    head -c 300000 "$run/baseline-stage2.safetensors" > "$work/truncated.safetensors"
}

test_train_cifar100() {
    common_files
    local t=$bin/train_cifar100 ok=(--recipe real --width 4 --epochs 1 --batch 16 --threads 1)
    expect_error "--data: no such directory" "^error: trainer: data directory '.*nowhere' \(--data\) does not exist$" \
        "$t" "${ok[@]}" --data "$work/nowhere" --out "$work/o"
    expect_error "--data: a directory without a data set" "^error: trainer: no data set recognised in '.*empty_dir'" \
        "$t" "${ok[@]}" --data "$work/empty_dir" --out "$work/o"
    mkdir -p "$work/empty_data" && : > "$work/empty_data/train.bin" && cp "$work/data/test.bin" "$work/empty_data/"
    expect_error "train.bin empty" "^error: CIFAR reader: '.*train.bin' is empty$" \
        "$t" "${ok[@]}" --data "$work/empty_data" --out "$work/o"
    mkdir -p "$work/cut_data" && head -c 10000 "$work/data/train.bin" > "$work/cut_data/train.bin" && cp "$work/data/test.bin" "$work/cut_data/"
    expect_error "train.bin truncated" "^error: CIFAR reader: '.*train.bin' has 10000 bytes, not a multiple of the 3074-byte record: .* truncated" \
        "$t" "${ok[@]}" --data "$work/cut_data" --out "$work/o"
    mkdir -p "$work/label_data" && cp "$work/data/test.bin" "$work/label_data/" &&
        { printf '\x00\xc8' && tail -c +3 "$work/data/train.bin"; } > "$work/label_data/train.bin"
    expect_error "train.bin: label 200 of 100 classes" "^error: CIFAR reader: '.*train.bin': label 200 at byte offset 1 \(record 0\) is outside \[0, 100\)$" \
        "$t" "${ok[@]}" --data "$work/label_data" --out "$work/o"
    expect_error "--format cifar10 on CIFAR-100 files" "^error: CIFAR reader: missing file '.*data_batch_1.bin'$" \
        "$t" "${ok[@]}" --data "$work/data" --format cifar10 --out "$work/o"
    mkdir -p "$work/idx_data" && : > "$work/idx_data/train-images-idx3-ubyte.gz"
    expect_error "IDX data: a set without labels" "^error: IDX reader: missing file '.*train-labels-idx1-ubyte' \(or '.*train-labels-idx1-ubyte.gz'\)$" \
        "$t" "${ok[@]}" --data "$work/idx_data" --out "$work/o"

    for bad in "--width 0" "--width abc" "--batch 0" "--epochs -1" "--threads 0" "--seed -1" "--train-limit -5" \
        "--test-limit 1.5" "--lr-scale nan" "--lr-scale -1" "--lr-scale inf" "--mixup -1" "--rotation x"; do
        local opt=${bad%% *} value=${bad#* }
        # The base arguments without the option's good value, if they have one.
        local rest=() i
        for ((i = 0; i < ${#ok[@]}; i += 2)); do
            [ "${ok[$i]}" = "$opt" ] || rest+=("${ok[$i]}" "${ok[$((i + 1))]}")
        done
        expect_error "$opt $value" "^train_cifar100: $opt: expected .*, got '$value' \(see --help\)$" \
            "$t" "${rest[@]}" "$opt" "$value" --data "$work/data" --out "$work/o"
    done
    expect_error "--recipe unknown" "^train_cifar100: --recipe: foo not in \{real,baseline,real-to-bin\} \(see --help\)$" \
        "$t" --recipe foo --data "$work/data"
    expect_error "--schedule unknown" "^train_cifar100: --schedule: .*not in" "$t" --schedule fast --data "$work/data"
    expect_error "unknown option" "^train_cifar100: The following argument was not expected: --bogus \(see --help\)$" \
        "$t" --bogus
    expect_error "--batch larger than the data" "^error: trainer: --batch 64 is larger than the 32 training images: an epoch would have no step$" \
        "$t" --recipe real --width 4 --epochs 1 --threads 1 --batch 64 --data "$work/data" --out "$work/o"
    # A width the machine cannot hold is refused before training, at once, naming the estimate and
    # the limit (it died of std::bad_alloc, or of the OOM killer when the allocations succeeded).
    local start=$SECONDS
    expect_error "--width beyond the memory" "^error: trainer: --width 100000 with --batch 16 needs about [0-9.e+]+ GiB of memory \(parameters and optimiser state [0-9.e+]+ GiB, activations [0-9.e+]+ GiB\), more than the [0-9.e+]+ GiB available \(.+\); use a smaller --width or --batch$" \
        "$t" --recipe real --width 100000 --epochs 1 --batch 16 --threads 1 --data "$work/data" --out "$work/o"
    if ((SECONDS - start > 20)); then
        echo "FAIL (--width beyond the memory): refused after $((SECONDS - start)) s, not at once" >&2
        failures=$((failures + 1))
    fi
    # AddressSanitizer reserves terabytes of address space for its shadow memory, so its build
    # cannot start under ulimit -v at all (tests/cli/CMakeLists.txt sets BNN_SANITIZED).
    if [ -z "${BNN_SANITIZED:-}" ]; then
        expect_error "--width beyond ulimit -v" "^error: trainer: --width 128 with --batch 16 needs about .* GiB available \(the address-space limit, ulimit -v\); use a smaller --width or --batch$" \
            bash -c 'ulimit -v 1500000 && exec "$@"' limited "$t" --recipe real --width 128 --epochs 1 --batch 16 \
            --threads 1 --data "$work/data" --out "$work/o"
    fi
    expect_error "--out is a file" "^error: trainer: cannot create the output directory '.*empty' \(--out\): Not a directory$" \
        "$t" "${ok[@]}" --data "$work/data" --out "$work/empty"

    # --resume over checkpoints that are not this run's.
    "$t" "${ok[@]}" --data "$work/data" --out "$work/r" > /dev/null 2>&1
    cp -r "$work/r" "$work/r_wide"
    expect_error "--resume with another --width" "^error: .*does not match the ResNet18.*shape mismatches" \
        "$t" --recipe real --width 8 --epochs 1 --batch 16 --threads 1 --data "$work/data" --out "$work/r_wide" --resume
    cp -r "$work/r" "$work/r_cut" && head -c 200000 "$work/r/real.safetensors" > "$work/r_cut/real.safetensors"
    expect_error "--resume over a truncated checkpoint" "^error: safetensors '.*real.safetensors': .*beyond the [0-9]+ data bytes \(file truncated\?\)$" \
        "$t" "${ok[@]}" --data "$work/data" --out "$work/r_cut" --resume
    cp -r "$work/r" "$work/r_empty" && : > "$work/r_empty/real.safetensors"
    expect_error "--resume over an empty checkpoint" "^error: safetensors '.*real.safetensors': file is 0 bytes" \
        "$t" "${ok[@]}" --data "$work/data" --out "$work/r_empty" --resume
    cp -r "$work/r" "$work/r_data" && cp "$work/data/train.bin" "$work/r_data/real.safetensors"
    expect_error "--resume over a file that is not a checkpoint" "^error: safetensors '.*real.safetensors': header length" \
        "$t" "${ok[@]}" --data "$work/data" --out "$work/r_data" --resume
}

test_classify() {
    common_files
    trained_files
    local c=$bin/classify
    ppm "$work/rgb.ppm" 32 32
    "$bin/deploy_resnet18" --width 4 --classes 10 --out "$work/deployed" > /dev/null 2>&1
    same_length_edit "$run/baseline-stage1.safetensors" '\\"width\\":4}' '\\"width\\":8}' "$work/wide.safetensors"
    same_length_edit "$run/baseline-stage1.safetensors" '\\"student\\":\\"binary-activations\\"' \
        '\\"student\\":\\"binary-activationz\\"' "$work/student.safetensors"
    same_length_edit "$run/baseline-stage1.safetensors" '\\"std\\":\[' '\\"std\\":9' "$work/not_json.safetensors"
    same_length_edit "$run/baseline-stage1.safetensors" '\\"image_size\\":32' '\\"image_size\\":[]' "$work/type.safetensors"

    expect_error "no --checkpoint" "^classify: --checkpoint is required \(see --help\)$" "$c" --image "$work/rgb.ppm"
    expect_error "checkpoint missing" "^classify: read_file: cannot open '.*nothing.safetensors': No such file or directory$" \
        "$c" --checkpoint "$work/nothing.safetensors" --image "$work/rgb.ppm"
    expect_error "checkpoint is a directory" "^classify: read_file: error while reading '.*empty_dir': Is a directory$" \
        "$c" --checkpoint "$work/empty_dir" --image "$work/rgb.ppm"
    expect_error "checkpoint empty" "^classify: safetensors '.*empty': file is 0 bytes, too short for the 8-byte header length$" \
        "$c" --checkpoint "$work/empty" --image "$work/rgb.ppm"
    expect_error "checkpoint truncated" "^classify: safetensors '.*truncated.safetensors': .*\(file truncated\?\)$" \
        "$c" --checkpoint "$work/truncated.safetensors" --image "$work/rgb.ppm"
    expect_error "checkpoint is a CIFAR file" "^classify: safetensors '.*train.bin': header length [0-9]+ runs past the end of the file" \
        "$c" --checkpoint "$work/data/train.bin" --image "$work/rgb.ppm"
    expect_error "checkpoint without the trainer's metadata" "^classify: '.*resnet18_float.safetensors' lacks 'mean' in its metadata: it was not written by the bnn trainer$" \
        "$c" --checkpoint "$work/deployed/resnet18_float.safetensors" --image "$work/rgb.ppm"
    expect_error "metadata width does not match the weights" "^classify: load_module: checkpoint '.*wide.safetensors' does not match the ResNet18: .*shape mismatches" \
        "$c" --checkpoint "$work/wide.safetensors" --image "$work/rgb.ppm"
    expect_error "metadata names an unknown student" "^classify: '.*student.safetensors' names the student 'binary-activationz', expected" \
        "$c" --checkpoint "$work/student.safetensors" --image "$work/rgb.ppm"
    expect_error "metadata that is not JSON" "^classify: checkpoint_metadata: '.*not_json.safetensors' has metadata that is not valid JSON: " \
        "$c" --checkpoint "$work/not_json.safetensors" --image "$work/rgb.ppm"
    expect_error "metadata of the wrong type" "^classify: '.*type.safetensors' has unusable metadata: .*type must be number, but is array$" \
        "$c" --checkpoint "$work/type.safetensors" --image "$work/rgb.ppm"
    expect_error "deployment file without metadata, no --size" "^classify: '.*resnet18_deploy.safetensors' has no trainer metadata .*give --size" \
        "$c" --checkpoint "$work/deployed/resnet18_deploy.safetensors" --image "$work/rgb.ppm"
    expect_error "deployment file, --channels not the network's" "^classify: infer: 'stem.0' \(float conv\): expects input \[N, H, W, 3\], got \[1, 32, 32, 1\]$" \
        "$c" --checkpoint "$work/deployed/resnet18_deploy.safetensors" --image "$work/rgb.ppm" --size 32 --channels 1
    expect_error "deployment file, --size the network cannot take" "^classify: infer: .*does not match" \
        "$c" --checkpoint "$work/deployed/resnet18_deploy.safetensors" --image "$work/rgb.ppm" --size 17

    local d=$run/baseline-stage2.deploy.safetensors
    expect_error "image missing" "^classify: .*cannot (read|open) '.*nothing.png'" \
        "$c" --checkpoint "$d" --image "$work/nothing.png"
    expect_error "image empty" "^classify: load_image: cannot read '.*empty': " "$c" --checkpoint "$d" --image "$work/empty"
    expect_error "image is not an image" "^classify: load_image: cannot read '.*test.bin': unknown image type$" \
        "$c" --checkpoint "$d" --image "$work/data/test.bin"
    head -c 1500 "$work/rgb.ppm" > "$work/cut.ppm"
    expect_error "image truncated (PNM)" "^classify: load_image: '.*cut.ppm' is a PNM image of 32x32 with 3 channels of 8 bits, 3072 bytes of pixels, but holds 1487 after its header: it is truncated$" \
        "$c" --checkpoint "$d" --image "$work/cut.ppm"
    # Found by fuzz_image: 2-byte samples (maximum value above 255), 8 bytes of pixels, 4 present.
    printf 'P5\n2 2\n355\n\x10\x20\x30\x40' > "$work/short16.pgm"
    expect_error "image truncated (16-bit PNM)" "^classify: load_image: '.*short16.pgm' is a PNM image of 2x2 with 1 channel of 16 bits, 8 bytes of pixels, but holds 4 after its header: it is truncated$" \
        "$c" --checkpoint "$d" --image "$work/short16.pgm"
    printf 'P6\n30000 30000\n255\n' > "$work/huge.ppm"
    expect_error "image declares 30000x30000 pixels" "^classify: load_image: '.*huge.ppm' declares 30000x30000 pixels, more than the limit of 67108864 " \
        "$c" --checkpoint "$d" --image "$work/huge.ppm"
    if grep -q '^note:' "$work/stdout"; then  # a note of what was done to an image that was never read
        echo "FAIL (image declares 30000x30000 pixels): a note before the error: $(cat "$work/stdout")" >&2
        failures=$((failures + 1))
    fi
    expect_error "--top 0" "^classify: --top: expected a positive integer, got '0' \(see --help\)$" \
        "$c" --checkpoint "$d" --image "$work/rgb.ppm" --top 0
    expect_error "--size 0" "^classify: --size: Value 0 not in range 1 to 4096 \(see --help\)$" \
        "$c" --checkpoint "$d" --image "$work/rgb.ppm" --size 0
    expect_error "--channels 5" "^classify: --channels: Value 5 not in range 1 to 4 \(see --help\)$" \
        "$c" --checkpoint "$d" --image "$work/rgb.ppm" --channels 5

    # Converted, and said so: the network takes 32x32 RGB.
    ppm "$work/large.ppm" 100 60
    pgm "$work/grey.pgm" 32 32
    tga_rgba "$work/rgba.tga" 32 32
    expect_note "image 100x60" "^note: '.*large.ppm' is 100x60 with 3 channels; the network takes 32x32 with 3, so it was resized$" \
        "$c" --checkpoint "$d" --image "$work/large.ppm"
    expect_note "image grey (1 channel)" "^note: '.*grey.pgm' is 32x32 with 1 channel; the network takes 32x32 with 3, so it was converted to that many channels$" \
        "$c" --checkpoint "$d" --image "$work/grey.pgm"
    expect_note "image RGBA (4 channels)" "^note: '.*rgba.tga' is 32x32 with 4 channels; .* converted to that many channels$" \
        "$c" --checkpoint "$d" --image "$work/rgba.tga"

    # The integer stem (the first convolution on the image's bytes), on a trainer checkpoint and on
    # a deployment file; a precision it does not have is refused.
    expect_note "--stem int16, trainer checkpoint" "^ +[0-9]+[.][0-9]{2}%  " \
        "$c" --checkpoint "$run/baseline-stage1.safetensors" --image "$work/rgb.ppm" --stem int16
    expect_note "--stem int16, deployment file" "^ +[0-9]+[.][0-9]{2}%  " \
        "$c" --checkpoint "$d" --image "$work/rgb.ppm" --stem int16
    expect_note "--stem int8, deployment file" "^ +[0-9]+[.][0-9]{2}%  " \
        "$c" --checkpoint "$d" --image "$work/rgb.ppm" --stem int8
    expect_error "--stem int4" "^classify: --stem: int4 not in \{fp32,int16,int8\} \(see --help\)$" \
        "$c" --checkpoint "$d" --image "$work/rgb.ppm" --stem int4
    expect_note "--stem int8 --dense int8, deployment file" "^ +[0-9]+[.][0-9]{2}%  " \
        "$c" --checkpoint "$d" --image "$work/rgb.ppm" --stem int8 --dense int8
    expect_error "--dense int4" "^classify: --dense: int4 not in \{fp32,int8\} \(see --help\)$" \
        "$c" --checkpoint "$d" --image "$work/rgb.ppm" --dense int4
}

test_deploy_resnet18() {
    common_files
    trained_files
    local p=$bin/deploy_resnet18 ok=(--width 4 --classes 100 --out "$work/deployed")
    expect_error "checkpoint missing" "^deploy_resnet18: read_file: cannot open '.*nothing.safetensors'" \
        "$p" "${ok[@]}" --checkpoint "$work/nothing.safetensors"
    expect_error "checkpoint empty" "^deploy_resnet18: safetensors '.*empty': file is 0 bytes" "$p" "${ok[@]}" --checkpoint "$work/empty"
    expect_error "checkpoint truncated" "^deploy_resnet18: safetensors '.*truncated.safetensors': .*\(file truncated\?\)$" \
        "$p" "${ok[@]}" --checkpoint "$work/truncated.safetensors"
    expect_error "checkpoint is a CIFAR file" "^deploy_resnet18: safetensors '.*train.bin': header length" \
        "$p" "${ok[@]}" --checkpoint "$work/data/train.bin"
    expect_error "checkpoint of another width" "^deploy_resnet18: load_module: checkpoint '.*baseline-stage2.safetensors' does not match the ResNet18: .*shape mismatches" \
        "$p" --width 8 --classes 100 --variant strong-baseline --out "$work/deployed" --checkpoint "$run/baseline-stage2.safetensors"
    expect_error "checkpoint of another variant" "^deploy_resnet18: load_module: checkpoint '.*baseline-stage2.safetensors' does not match the ResNet18: .*missing from the file" \
        "$p" "${ok[@]}" --variant real-to-bin --checkpoint "$run/baseline-stage2.safetensors"
    expect_error "checkpoint of another class count" "^deploy_resnet18: load_module: .*does not match the ResNet18: .*fc.weight" \
        "$p" --width 4 --classes 10 --variant strong-baseline --out "$work/deployed" --checkpoint "$run/baseline-stage2.safetensors"
    expect_error "a deployment file as checkpoint" "^deploy_resnet18: load_module: checkpoint '.*deploy.safetensors' does not match the ResNet18" \
        "$p" "${ok[@]}" --variant strong-baseline --checkpoint "$run/baseline-stage2.deploy.safetensors"
    expect_error "--out missing" "^deploy_resnet18: --out '.*nowhere' is not a directory$" \
        "$p" --width 4 --classes 10 --out "$work/nowhere"
    expect_error "--out is a file" "^deploy_resnet18: --out '.*empty' is not a directory$" \
        "$p" --width 4 --classes 10 --out "$work/empty"
    expect_error "--width 0" "^deploy_resnet18: --width: expected a positive integer, got '0' \(see --help\)$" "$p" --width 0
    expect_error "--classes x" "^deploy_resnet18: --classes: expected a positive integer, got 'x' \(see --help\)$" "$p" --classes x
    expect_error "--variant unknown" "^deploy_resnet18: --variant: real not in \{real-to-bin,strong-baseline\} \(see --help\)$" \
        "$p" --variant real
    expect_error "--stem unknown" "^deploy_resnet18: --stem: mnist not in \{cifar,imagenet\} \(see --help\)$" "$p" --stem mnist
}

test_param_count() {
    local p=$bin/param_count
    expect_error "--width 0" "^param_count: --width: expected a positive integer, got '0' \(see --help\)$" "$p" --width 0
    expect_error "--width -1" "^param_count: --width: expected a positive integer, got '-1' \(see --help\)$" "$p" --width -1
    expect_error "--width 1e3" "^param_count: --width: expected a positive integer, got '1e3' \(see --help\)$" "$p" --width 1e3
    expect_error "--width without a value" "^param_count: --width: 1 required INT:.* missing \(see --help\)$" "$p" --width
    expect_error "unknown option" "^param_count: The following argument was not expected: --bogus \(see --help\)$" "$p" --bogus
}

test_minimal_binary() {
    local p=$bin/minimal_binary
    expect_error "unknown option" "^minimal_binary: The following argument was not expected: --steps \(see --help\)$" \
        "$p" --steps
    expect_error "an argument" "^minimal_binary: The following argument was not expected: data.bin \(see --help\)$" \
        "$p" data.bin
}

echo "| case | exit | what $program said |"
echo "|---|---|---|"
case $program in
    train_cifar100 | classify | deploy_resnet18 | param_count | minimal_binary) "test_$program" ;;
    *) echo "unknown program '$program'" >&2; exit 2 ;;
esac
((failures == 0)) || { echo "$failures case(s) failed" >&2; exit 1; }
