#pragma once
/// @file binary_mode.hpp
/// What is binary in a binary convolution's forward pass: the three training stages of
/// Real-to-Binary (Sec. 4.1). Its own header so that the stage schedule (train/stages.hpp) can
/// name a mode without the convolution.

namespace bnn::nn {

/// What is binary in the forward pass.
enum class BinaryMode {
    SoftActivations,    ///< tanh(x) ⊛ W: soft binarisation, real weights (stage 1)
    BinaryActivations,  ///< sign(x) ⊛ W: binary activations (STE), real weights (stage 2)
    FullyBinary,        ///< sign(x) ⊛ sign(W) * alpha on the XNOR-popcount kernel (stage 3)
};

/// "soft_activations", "binary_activations" or "fully_binary": the mode's name in module trees
/// and in the PyTorch twin.
inline const char* binary_mode_name(BinaryMode m) {
    switch (m) {
        case BinaryMode::SoftActivations: return "soft_activations";
        case BinaryMode::BinaryActivations: return "binary_activations";
        case BinaryMode::FullyBinary: return "fully_binary";
    }
    return "?";
}

}  // namespace bnn::nn
