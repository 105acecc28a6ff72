#pragma once
/// @file dataset.hpp
/// Dataset: a labelled image set held in memory as bytes, as the readers produce it.
#include <cstdint>
#include <string>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::data {

/// Which part of a data set to read.
enum class Split { train, test };

/// Images [N, H, W, C] (uint8, NHWC; C = 3 for CIFAR, 1 for MNIST) with one label per image.
struct Dataset {
    Tensor<uint8_t> images;
    std::vector<int32_t> labels;
    int num_classes = 0;
    /// One name per class, in label order.
    std::vector<std::string> class_names;
    /// For messages: "CIFAR-100 train (fine labels)", "Fashion-MNIST test", ...
    std::string name;

    int64_t size() const { return static_cast<int64_t>(labels.size()); }
    int64_t height() const { return images.dim(1); }
    int64_t width() const { return images.dim(2); }
    int64_t channels() const { return images.dim(3); }

    /// Throws bnn::Error unless images, labels and classes agree.
    void validate() const {
        BNN_CHECK(images.defined() && images.rank() == 4, "Dataset '", name, "': images must be [N, H, W, C], got ",
                  images.shape().str());
        BNN_CHECK(images.dim(0) == size(), "Dataset '", name, "': ", images.dim(0), " images but ", size(), " labels");
        BNN_CHECK(num_classes > 0, "Dataset '", name, "': num_classes must be positive, got ", num_classes);
        BNN_CHECK(class_names.empty() || static_cast<int>(class_names.size()) == num_classes, "Dataset '", name,
                  "': ", class_names.size(), " class names for ", num_classes, " classes");
        for (size_t i = 0; i < labels.size(); ++i)
            BNN_CHECK(labels[i] >= 0 && labels[i] < num_classes, "Dataset '", name, "': label ", labels[i],
                      " of sample ", i, " is outside [0, ", num_classes, ")");
    }
};

}  // namespace bnn::data
