#pragma once
/// @file bnn.hpp
/// The umbrella header: everything a program needs to build, train, save and deploy binary
/// networks. Translation units that only need a part (a kernel, a reader) include that part's
/// header instead, to compile faster. Kernels are reached through ops and layers.

// core and autograd
#include "bnn/autograd/grad_mode.hpp"
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/tape_profiler.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/core/bit_tensor.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/file.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/shape.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/isa.hpp"

// differentiable functions and losses
#include "bnn/losses/attention_transfer.hpp"
#include "bnn/losses/cross_entropy.hpp"
#include "bnn/losses/logit_matching.hpp"
#include "bnn/ops/activation.hpp"
#include "bnn/ops/batch_norm.hpp"
#include "bnn/ops/binary_conv2d.hpp"
#include "bnn/ops/channel_gate.hpp"
#include "bnn/ops/channel_shift.hpp"
#include "bnn/ops/conv2d.hpp"
#include "bnn/ops/elementwise.hpp"
#include "bnn/ops/linear.hpp"
#include "bnn/ops/operators.hpp"
#include "bnn/ops/pad.hpp"
#include "bnn/ops/pool.hpp"
#include "bnn/ops/reduce.hpp"
#include "bnn/ops/reshape.hpp"
#include "bnn/ops/sign.hpp"
#include "bnn/ops/softmax.hpp"

// layers
#include "bnn/nn/activation.hpp"
#include "bnn/nn/basic_block.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/binary_basic_block.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/nn/binary_half_block.hpp"
#include "bnn/nn/channel_gate.hpp"
#include "bnn/nn/channel_shift.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/downsample.hpp"
#include "bnn/nn/flatten.hpp"
#include "bnn/nn/init.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/residual.hpp"
#include "bnn/nn/sequential.hpp"

// training
#include "bnn/optim/adam.hpp"
#include "bnn/optim/lr_schedule.hpp"
#include "bnn/optim/optimizer.hpp"
#include "bnn/optim/sgd.hpp"
#include "bnn/train/distillation.hpp"
#include "bnn/train/evaluate.hpp"
#include "bnn/train/feature_net.hpp"
#include "bnn/train/param_groups.hpp"
#include "bnn/train/stage_schedule.hpp"
#include "bnn/train/stages.hpp"
#include "bnn/train/train_step.hpp"

// data and files
#include "bnn/data/augment.hpp"
#include "bnn/data/cifar.hpp"
#include "bnn/data/dataset.hpp"
#include "bnn/data/idx.hpp"
#include "bnn/data/loader.hpp"
#include "bnn/data/mixup.hpp"
#include "bnn/data/transforms.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/io/deploy.hpp"
#include "bnn/io/image.hpp"
#include "bnn/io/module_tree.hpp"
#include "bnn/io/safetensors.hpp"

// inference
#include "bnn/infer/compile.hpp"
#include "bnn/infer/module_registry.hpp"
