// Fuzzes the CIFAR-10 and CIFAR-100 readers (data::load_cifar10 / load_cifar100, test split).
// Input: [selector][n][n bytes: class names file, absent when n = 0][the records file]. The
// selector picks CIFAR-10, CIFAR-100 fine or CIFAR-100 coarse labels. bnn::Error is the only
// acceptable failure.
#include <cstddef>
#include <cstdint>
#include <string>

#include "bnn/data/cifar.hpp"
#include "scratch_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const int which = data[0] % 3;  // 0: CIFAR-10, 1: CIFAR-100 fine, 2: CIFAR-100 coarse
    const size_t names_size = std::min<size_t>(data[1], size - 2);
    const uint8_t* names = data + 2;
    const uint8_t* records = names + names_size;
    const size_t records_size = size - 2 - names_size;

    const char* names_file = which == 0 ? "batches.meta.txt" : which == 1 ? "fine_label_names.txt" : "coarse_label_names.txt";
    for (const char* f : {"batches.meta.txt", "fine_label_names.txt", "coarse_label_names.txt"}) bnn::fuzz::remove_scratch(f);
    if (names_size) bnn::fuzz::write_scratch(names_file, names, names_size);
    bnn::fuzz::write_scratch(which == 0 ? "test_batch.bin" : "test.bin", records, records_size);

    const std::string dir = bnn::fuzz::scratch_dir().string();
    try {
        const bnn::data::Dataset d =
            which == 0 ? bnn::data::load_cifar10(dir, bnn::data::Split::test)
                       : bnn::data::load_cifar100(dir, bnn::data::Split::test,
                                                  which == 1 ? bnn::data::CifarLabels::fine : bnn::data::CifarLabels::coarse);
        // What was read is consistent: one label per 32x32x3 image, each label a known class.
        if (d.images.dim(0) != d.size() || static_cast<int64_t>(d.class_names.size()) != d.num_classes) __builtin_trap();
        for (int32_t label : d.labels)
            if (label < 0 || label >= d.num_classes) __builtin_trap();
    } catch (const bnn::Error&) {
    }
    return 0;
}
