#pragma once
/// @file bit_tensor.hpp
/// BitTensor: the signs of a float tensor packed along its last dimension (channels, NHWC).
///
/// Each "pixel" (every index of all dimensions but the last) owns words_per_pixel() = ceil(C/64)
/// 64-bit words; channel c of a pixel is bit (c % 64) of word (c / 64). Bit 1 means +1, bit 0
/// means -1, and sign(0) = +1. The bits past C in the last word are always zero, so kernels
/// may XOR whole words: padding bits of both operands cancel and never reach a popcount.
/// The logical shape (with the true C) is carried, so any channel count is exact.
#include <cstdint>
#include <utility>

#include "bnn/core/error.hpp"
#include "bnn/core/shape.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn {

class BitTensor {
public:
    /// An undefined bit tensor (defined() is false).
    BitTensor() = default;
    /// All bits zero (every value -1) for the logical float shape `shape` (rank >= 1).
    explicit BitTensor(const Shape& shape) : shape_(shape) {
        BNN_CHECK(shape.rank() >= 1, "BitTensor: needs rank >= 1 (channels last), got a scalar");
        words_ = Tensor<uint64_t>(Shape{pixels(), words_per_pixel()});
    }

    /// The signs held in `words` [pixels, words_per_pixel] (shared, not copied) for the logical
    /// shape `shape`: how a file's packed bits become a BitTensor. bnn::Error when the words do
    /// not have that shape or a bit past the last channel is set.
    BitTensor(const Shape& shape, Tensor<uint64_t> words) : shape_(shape), words_(std::move(words)) {
        BNN_CHECK(shape.rank() >= 1, "BitTensor: needs rank >= 1 (channels last), got a scalar");
        const Shape want{pixels(), words_per_pixel()};
        BNN_CHECK(words_.shape() == want, "BitTensor: the signs of ", shape.str(), " need words ", want.str(), ", got ",
                  words_.shape().str());
        const int64_t wpp = words_per_pixel(), used = channels() - 64 * (wpp - 1);
        const uint64_t past = used >= 64 ? 0 : ~uint64_t{0} << used;
        for (int64_t p = 0; p < pixels(); ++p)
            BNN_CHECK(!(words_[p * wpp + wpp - 1] & past), "BitTensor: pixel ", p, " has bits set past its ",
                      channels(), " channels (expected them clear)");
    }
    bool defined() const { return words_.defined(); }
    /// The logical shape of the ±1 tensor, channels last.
    const Shape& shape() const { return shape_; }
    /// True channel count C (the last extent).
    int64_t channels() const { return shape_[-1]; }
    /// Number of pixels: the product of every extent but the last.
    int64_t pixels() const {
        int64_t n = 1;
        for (int i = 0; i + 1 < shape_.rank(); ++i) n *= shape_[i];
        return n;
    }
    /// 64-bit words per pixel, ceil(C / 64).
    int64_t words_per_pixel() const { return (channels() + 63) / 64; }
    /// Words [pixels, words_per_pixel], row-major.
    uint64_t* data() { return words_.data(); }
    const uint64_t* data() const { return words_.data(); }
    /// The word storage, shape [pixels, words_per_pixel].
    const Tensor<uint64_t>& words() const { return words_; }

    /// The sign (+1 or -1) at a pixel index and channel, checked (for tests and tools).
    int sign_at(int64_t pixel, int64_t channel) const {
        check_index(pixel, channel, "BitTensor::sign_at");
        return (data()[pixel * words_per_pixel() + channel / 64] >> (channel % 64)) & 1 ? 1 : -1;
    }
    /// Sets one sign (value >= 0 gives +1, as sign(0) = +1), checked.
    void set_sign(int64_t pixel, int64_t channel, float value) {
        check_index(pixel, channel, "BitTensor::set_sign");
        uint64_t& w = data()[pixel * words_per_pixel() + channel / 64];
        const uint64_t bit = uint64_t{1} << (channel % 64);
        w = value >= 0.f ? (w | bit) : (w & ~bit);
    }

    /// A deep copy on new storage.
    BitTensor clone() const {
        BitTensor t;
        t.shape_ = shape_;
        t.words_ = words_.clone();
        return t;
    }

private:
    void check_index(int64_t pixel, int64_t channel, const char* op) const {
        BNN_CHECK(defined(), op, ": undefined BitTensor");
        BNN_CHECK(pixel >= 0 && pixel < pixels() && channel >= 0 && channel < channels(), op, ": pixel ", pixel,
                  ", channel ", channel, " out of range for shape ", shape_.str());
    }

    Shape shape_;
    Tensor<uint64_t> words_;
};

}  // namespace bnn
