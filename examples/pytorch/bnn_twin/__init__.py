"""bnn_twin: a PyTorch twin of bnn (the Real-to-Binary ResNet-18 variants, their losses, stage
table, optimiser groups and schedules), with bnn's parameter names, and bnn's checkpoint and
deployment files read and written without the safetensors package. See docs/pytorch.md."""
from . import checkpoint, data, deploy, losses, recipe, safetensors_io
from .blocks import BasicBlock, BinaryBasicBlock, BinaryHalfBlock, Downsample, Residual
from .layers import (BINARY_ACTIVATIONS, FULLY_BINARY, MODES, SOFT_ACTIVATIONS, BatchNorm2d, BinaryConv2d, ChannelGate,
                     Conv2d, Flatten, Linear, PReLU, apply_constraints, set_binary_mode)
from .resnet18 import ResNet18, count_parameters

__all__ = ["checkpoint", "data", "deploy", "losses", "recipe", "safetensors_io", "BasicBlock", "BinaryBasicBlock",
           "BinaryHalfBlock", "Downsample", "Residual", "BINARY_ACTIVATIONS", "FULLY_BINARY", "MODES", "SOFT_ACTIVATIONS",
           "BatchNorm2d", "BinaryConv2d", "ChannelGate", "Conv2d", "Flatten", "Linear", "PReLU", "apply_constraints",
           "set_binary_mode", "ResNet18", "count_parameters"]
