"""A network written by the PyTorch twin (examples/pytorch/bnn_twin, docs/pytorch.md), loaded in
Python with bnn.load: the twin's top-1 on every image, logits within float rounding, and the
torch tensor itself read in place through numpy."""
import os
import sys

import numpy as np
import pytest

import bnn

torch = pytest.importorskip("torch", reason="the twin needs torch (scripts/setup.sh --torch installs python3-torch)")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "pytorch"))
import bnn_twin as bt  # noqa: E402


def randomised(net):
    """Batch norm statistics and per-channel parameters away from their initial values."""
    with torch.no_grad():
        for name, t in net.named_buffers():
            if t.is_floating_point():
                t.copy_(0.5 + torch.rand(t.shape) if name.endswith("running_var") else 0.2 * torch.randn(t.shape))
        for t in net.parameters():
            if t.dim() == 1:
                t.add_(0.2 * torch.randn(t.shape))
    return net.eval()


@pytest.mark.parametrize("variant,stem,size", [("real-to-bin", "cifar", 32), ("strong-baseline", "imagenet", 64)])
def test_the_twins_network_gives_the_twins_top1(tmp_path, variant, stem, size):
    torch.manual_seed(25)
    torch.set_num_threads(1)
    net = randomised(bt.ResNet18(variant, stem, 8, 10, mode=bt.FULLY_BINARY))
    path = str(tmp_path / "twin.deploy.safetensors")
    bt.deploy.save_deployed(path, net, {"num_classes": "10"})
    images = torch.randn(64, 3, size, size)
    with torch.no_grad():
        want = net(images)
    x = images.permute(0, 2, 3, 1).contiguous()  # NCHW -> NHWC, as bnn takes it
    g = bnn.load(path).compile(tuple(x.shape), threads=2)
    got = g(x.numpy())
    assert g._last_input_address == x.data_ptr()  # the torch tensor's own memory
    same = (got.argmax(1) == want.argmax(1).numpy()).sum()
    assert same == len(images), f"{variant}: top-1 equal on {same} of {len(images)} images"
    assert np.abs(got - want.numpy()).max() <= 1e-4 * np.abs(want.numpy()).max()
