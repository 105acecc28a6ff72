#pragma once
/// @file binary_basic_block.hpp
/// The double-skip binary basic block of the Real-to-Binary ResNet-18 (Sec. 4.1): two
/// half-blocks (binary_half_block.hpp), each with its own shortcut, in place of the real basic
/// block's conv-BN-ReLU-conv-BN with one shortcut.
#include <memory>
#include <string>

#include "bnn/nn/binary_half_block.hpp"

namespace bnn::nn {

/// The double-skip binary basic block: two half-blocks, the first with the block's stride and
/// channel change (one transfer point of attention matching). Parameters: half1.*, half2.*.
class BinaryBasicBlock : public Module {
public:
    /// `options` describe the first half; the second maps out_channels to out_channels, stride 1.
    explicit BinaryBasicBlock(const BinaryHalfBlockOptions& options) : options_(options) {
        half1 = register_module("half1", std::make_shared<BinaryHalfBlock>(options));
        BinaryHalfBlockOptions second = options;
        second.in_channels = options.out_channels;
        second.stride = 1;
        half2 = register_module("half2", std::make_shared<BinaryHalfBlock>(second));
    }
    Variable forward(const Variable& x) override { return half2->forward(half1->forward(x)); }
    std::string type_name() const override { return "BinaryBasicBlock"; }
    bool is_chain() const override { return true; }
    const BinaryHalfBlockOptions& options() const { return options_; }
    void set_mode(BinaryMode mode) {
        options_.mode = mode;
        half1->set_mode(mode);
        half2->set_mode(mode);
    }

    std::shared_ptr<BinaryHalfBlock> half1, half2;

private:
    BinaryHalfBlockOptions options_;
};

}  // namespace bnn::nn
