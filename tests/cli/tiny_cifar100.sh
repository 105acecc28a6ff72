# Sourced by the command-line tests: writes a tiny data set in CIFAR-100's binary layout (records
# of [coarse label][fine label][3072 pixel bytes]) so a training run takes seconds.
#
#   make_tiny_cifar100 DIR TRAIN_IMAGES TEST_IMAGES

write_cifar100_records() {  # FILE COUNT
    local file=$1 count=$2 i
    : > "$file"
    for ((i = 0; i < count; i++)); do
        # Labels spread over the 100 fine and 20 coarse classes; pixels random.
        printf "\\x$(printf %02x $((i % 20)))\\x$(printf %02x $((i * 7 % 100)))" >> "$file"
        head -c 3072 /dev/urandom >> "$file"
    done
}

make_tiny_cifar100() {
    mkdir -p "$1"
    write_cifar100_records "$1/train.bin" "$2"
    write_cifar100_records "$1/test.bin" "$3"
}
