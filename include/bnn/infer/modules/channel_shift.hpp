#pragma once
/// @file channel_shift.hpp
/// ChannelShift in a module tree and a graph: {"type": "ChannelShift", "options": {"channels": C}},
/// one step adding the shift in place.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnn/infer/module_type.hpp"
#include "bnn/infer/step.hpp"
#include "bnn/kernels/channel_shift.hpp"
#include "bnn/nn/channel_shift.hpp"

namespace bnn::infer {

/// x [..., C] -> x + shift[c].
class ChannelShiftStep : public Step {
public:
    ChannelShiftStep(std::string path, Tensor<float> shift) : Step(std::move(path), "shift"), shift_(std::move(shift)) {}

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() >= 1 && x[-1] == shift_.numel(), "expects an input [..., ", shift_.numel(), "], got ", x.str());
        C_ = x[-1];
        rows_ = x.numel() / C_;
        return x;
    }
    void run(const float* const* in, float* out) override {
        kernels::channel_shift_forward(in[0], shift_.data(), out, rows_, C_);
    }
    int in_place_input() const override { return 0; }

private:
    Tensor<float> shift_;
    int64_t rows_ = 0, C_ = 0;
};

namespace modules {

inline ModuleType channel_shift() {
    return module_type<nn::ChannelShift>(
        "ChannelShift", [](const nn::ChannelShift& m, TreeWriter&) { return Json{{"channels", m.channels()}}; },
        [](TreeReader& r) { return std::make_shared<nn::ChannelShift>(r.integer("channels", 1, kMaxSize)); },
        [](Lowering& l, const nn::ChannelShift& m, const std::string& path, int x) {
            return l.add(std::make_unique<ChannelShiftStep>(path, m.shift.value().clone()), {x});
        });
}

}  // namespace modules
}  // namespace bnn::infer
