"""The ONNX converter (python/bnn/convert.py, docs/onnx.md) on four binary networks written here in
plain PyTorch, each in its own style: trained a few hundred steps on small random data, exported
with torch.onnx.export in eval mode, converted, and run by bnn. bnn's logits must equal PyTorch's
to float rounding, with the same top-1 on every test image, and every binary conv must have become
a packed binary conv (its sign bits in the file, and the report saying so). Then the refusals."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
nn = torch.nn
F = torch.nn.functional

import bnn  # noqa: E402
from bnn.convert import ConversionError, convert  # noqa: E402

SIZE, CLASSES = 16, 10
torch.set_num_threads(1)  # the same training on every machine, and no contention with ctest's other tests


# ---------------------------------------------------------------------------------------------
# Sign spellings with their straight-through estimators, as people write them.

class WhereSign(torch.autograd.Function):
    """sign(0) = +1 (bnn's): where(x >= 0, 1, -1), gradient where |x| <= 1."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def bireal_sign(x):
    """Bi-Real Net's: torch.sign forward, the piecewise polynomial's gradient (the detach trick)."""
    out_forward = torch.sign(x)
    mask1, mask2, mask3 = x < -1, x < 0, x < 1
    out1 = (-1) * mask1.type(torch.float32) + (x * x + 2 * x) * (1 - mask1.type(torch.float32))
    out2 = out1 * mask2.type(torch.float32) + (-x * x + 2 * x) * (1 - mask2.type(torch.float32))
    out3 = out2 * mask3.type(torch.float32) + 1 * (1 - mask3.type(torch.float32))
    return out_forward.detach() - out3.detach() + out3


def strict_sign(x):
    """sign(0) = -1: where(x > 0, 1, -1), with hardtanh's gradient by the detach trick."""
    soft = torch.clamp(x, -1, 1)
    return torch.where(x > 0, 1.0, -1.0).detach() - soft.detach() + soft


def mean_abs_binary(w):
    """sign(W) times mean |W| per output channel (Bi-Real, ReActNet), computed in the graph."""
    scale = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    return scale.detach() * torch.where(w >= 0, 1.0, -1.0).detach() - w.detach() + w  # STE on the weights


class LatentConv(nn.Module):
    """A conv's latent real weights, binarised in forward by `binarise`."""

    def __init__(self, cin, cout, stride=1, binarise=mean_abs_binary):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)
        self.stride, self.binarise = stride, binarise

    def forward(self, x):
        return F.conv2d(x, self.binarise(self.weight), stride=self.stride, padding=1)


def downsample(cin, cout, stride):
    return nn.Sequential(*([nn.AvgPool2d(stride, stride)] if stride != 1 else []),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))


def stem(width):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())


def classifier(width):
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, CLASSES))


# ---------------------------------------------------------------------------------------------
# 1. Real-to-Bin's ResNet-18 (as the twin's): half-blocks BN -> sign -> conv * gate -> PReLU + shortcut.

class Gate(nn.Module):
    def __init__(self, cin, cout, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(cin, hidden, bias=False), nn.Linear(hidden, cout, bias=False)

    def forward(self, h):
        return torch.sigmoid(self.fc2(F.relu(self.fc1(h.mean(dim=(2, 3))))))


class RealToBinHalf(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = LatentConv(cin, cout, stride)
        self.gate = Gate(cin, cout, max(1, cin // 8))
        self.prelu = nn.PReLU(cout)
        self.shortcut = downsample(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        h = self.bn(x)
        y = self.conv(WhereSign.apply(h)) * self.gate(h)[:, :, None, None]
        return self.prelu(y) + (x if self.shortcut is None else self.shortcut(x))


class RealToBinResNet18(nn.Module):
    """Stem, 8 basic blocks (16 binary half-blocks) in 4 stages, classifier."""

    def __init__(self, width=8):
        super().__init__()
        layers, cin = [stem(width)], width
        for stage, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                layers += [RealToBinHalf(cin, cout, stride), RealToBinHalf(cout, cout, 1)]
                cin = cout
        self.body = nn.Sequential(*layers, nn.ReLU(), classifier(cin))

    def forward(self, x):
        return self.body(x)


# ---------------------------------------------------------------------------------------------
# 2. Bi-Real Net: conv(sign(x)) -> BN, a shortcut around every binary conv.

class BiRealBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = LatentConv(cin, cout, stride, binarise=lambda w: w.abs().mean(dim=(1, 2, 3), keepdim=True)
                               .detach() * torch.sign(w))
        self.bn = nn.BatchNorm2d(cout)
        self.shortcut = downsample(cin, cout, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return self.bn(self.conv(bireal_sign(x))) + self.shortcut(x)


class BiRealNet(nn.Module):
    """Bi-Real Net's stem has no ReLU: conv, BN, max pool."""

    def __init__(self, width=16):
        super().__init__()
        self.body = nn.Sequential(stem(width)[:2], nn.MaxPool2d(3, 2, 1), BiRealBlock(width, width, 1),
                                  BiRealBlock(width, width, 1), BiRealBlock(width, 2 * width, 2),
                                  BiRealBlock(2 * width, 2 * width, 1), classifier(2 * width))

    def forward(self, x):
        return self.body(x)


# ---------------------------------------------------------------------------------------------
# 3. ReActNet: RSign (a learned threshold per channel), conv -> BN + shortcut, RPReLU.

class LearnableBias(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return x + self.bias


class ReActBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.move0 = LearnableBias(cin)
        self.conv = LatentConv(cin, cout, stride)
        self.bn = nn.BatchNorm2d(cout)
        self.shortcut = downsample(cin, cout, stride) if stride != 1 or cin != cout else None
        self.move1, self.prelu, self.move2 = LearnableBias(cout), nn.PReLU(cout), LearnableBias(cout)

    def forward(self, x):
        out = self.bn(self.conv(strict_sign(self.move0(x))))
        out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.move2(self.prelu(self.move1(out)))


class ReActNet(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.body = nn.Sequential(stem(width), ReActBlock(width, width, 1), ReActBlock(width, 2 * width, 2),
                                  ReActBlock(2 * width, 2 * width, 1), ReActBlock(2 * width, 4 * width, 2),
                                  classifier(4 * width))

    def forward(self, x):
        return self.body(x)


# ---------------------------------------------------------------------------------------------
# 4. XNOR-Net: BN -> sign -> conv, its output scaled by mean |W| computed in the graph; no
#    shortcut; max pooling; the classifier reads the flattened [C, H, W] map.

class XnorConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)

    def forward(self, x):
        w = self.weight
        binary = torch.sign(w).detach() - w.detach() + w
        alpha = w.abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
        return F.relu(F.conv2d(WhereSign.apply(self.bn(x)), binary, padding=1) * alpha)


class XnorNet(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.features = nn.Sequential(stem(width), XnorConv(width, 2 * width), nn.MaxPool2d(2),
                                      XnorConv(2 * width, 2 * width), nn.MaxPool2d(2), nn.BatchNorm2d(2 * width))
        self.fc = nn.Linear(2 * width * 4 * 4, CLASSES)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


# ---------------------------------------------------------------------------------------------

def data(seed, n):
    """Random images whose class is which of 10 fixed random patterns they are nearest to."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(CLASSES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1234))
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    return patterns[labels] + 0.8 * torch.randn(n, 3, SIZE, SIZE, generator=g), labels


def train(net, steps, seed):
    torch.manual_seed(seed)
    x, y = data(seed, 512)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for step in range(steps):
        i = torch.randint(0, len(x), (32,))
        loss = F.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def convert_and_compare(net, tmp_path, name, binary_convs, fold_batch_norms=False):
    """Exports `net`, converts it, runs it with bnn on a test batch: logits to float rounding and
    the same top-1, `binary_convs` packed convs. Returns the report and the file's path.

    By default the export keeps every BN as it is (TrainingMode.PRESERVE on a model in eval mode),
    so the graph computes what PyTorch's eval does op for op. torch's default export folds a BN
    into the float conv before it, which rounds differently: a sign input that lands within that
    rounding of its threshold then flips, and the difference grows through the layers after it
    (in the twin's network at seed 8 one flips: 8e-3 of the largest logit). `fold_batch_norms=True`
    exports as by default, the converter's path for folded BNs."""
    x, _ = data(99, 64)
    with torch.no_grad():
        expected = net(x).numpy()
    onnx_path, out = tmp_path / f"{name}.onnx", tmp_path / f"{name}.deploy.safetensors"
    torch.onnx.export(net, x[:1], str(onnx_path), opset_version=13, training=torch.onnx.TrainingMode.EVAL
                      if fold_batch_norms else torch.onnx.TrainingMode.PRESERVE)
    report = convert(onnx_path, out)
    print(report)
    graph = bnn.load(str(out)).compile((len(x), SIZE, SIZE, 3), threads=1)
    got = graph(x.permute(0, 2, 3, 1).contiguous().numpy())
    err = np.abs(got - expected).max() / np.abs(expected).max()
    print(f"{name}: largest difference {err:.1e} of the largest logit")
    assert err < 1e-4, f"{name}: largest difference {err:.2e} of the largest logit"
    assert (got.argmax(1) == expected.argmax(1)).all(), f"{name}: top-1 differs"
    assert len(report.binary) == binary_convs, str(report)
    names, _ = _header(out)
    assert sum(n.endswith(".sign_bits") for n in names) == binary_convs
    assert all(e[2] == "BinaryConv2d" for e in report.binary)
    assert report.bytes_after < report.bytes_before
    return report, out


def _header(path):
    """The tensor names and the metadata of a safetensors file."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return [k for k in header if k != "__metadata__"], header["__metadata__"]


def test_real_to_bin_resnet18(tmp_path):
    torch.manual_seed(1)
    report, _ = convert_and_compare(train(RealToBinResNet18(), 150, 1), tmp_path, "real_to_bin", 16,
                                    fold_batch_norms=True)
    assert {e[2] for e in report.float} == {"Conv2d", "Linear"}  # the stem, the downsamples, the classifier


def test_bireal_net(tmp_path):
    torch.manual_seed(2)
    report, _ = convert_and_compare(train(BiRealNet(), 150, 2), tmp_path, "bireal", 4)
    # torch.sign gives 0 at 0, bnn +1: the report says so for every binary conv.
    assert all("sign(0) = 0" in e[5] for e in report.binary)


def test_reactnet(tmp_path):
    torch.manual_seed(3)
    net = train(ReActNet(), 150, 3)
    assert any(float(m.bias.abs().max()) > 1e-3 for m in net.modules() if isinstance(m, LearnableBias))
    report, out = convert_and_compare(net, tmp_path, "reactnet", 4)
    tree = _header(out)[1]["module_tree"]
    assert "ChannelShift" in tree and "PReLU" in tree  # RPReLU's shifts


def test_xnor_net(tmp_path):
    torch.manual_seed(4)
    convert_and_compare(train(XnorNet(), 150, 4), tmp_path, "xnor", 2)


def test_sign_zero_conventions(tmp_path):
    """Inputs holding exact zeros: where(x >= 0) and where(x > 0) agree with bnn exactly there;
    the converter negates the sign's input and the weights for the second."""
    class Net(nn.Module):
        def __init__(self, sign):
            super().__init__()
            self.sign = sign
            self.conv = LatentConv(3, 8)
            self.fc = nn.Linear(8 * SIZE * SIZE, CLASSES)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(self.sign(x)), 1))

    torch.manual_seed(5)
    x = torch.randn(8, 3, SIZE, SIZE)
    x[x.abs() < 0.5] = 0
    for name, sign in (("ge", WhereSign.apply), ("gt", strict_sign)):
        net = Net(sign).eval()
        with torch.no_grad():
            expected = net(x).numpy()
        torch.onnx.export(net, x[:1], str(tmp_path / f"{name}.onnx"), opset_version=13)
        report = convert(tmp_path / f"{name}.onnx", tmp_path / f"{name}.deploy.safetensors")
        assert len(report.binary) == 1
        graph = bnn.load(str(tmp_path / f"{name}.deploy.safetensors")).compile((8, SIZE, SIZE, 3), threads=1)
        got = graph(x.permute(0, 2, 3, 1).contiguous().numpy())
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max(), name

    # torch.sign after a ReLU: exact zeros are common there, and bnn's +1 is not torch's 0.
    net = Net(lambda v: torch.sign(F.relu(v))).eval()
    torch.onnx.export(net, x[:1], str(tmp_path / "relu.onnx"), opset_version=13)
    report = convert(tmp_path / "relu.onnx", tmp_path / "relu.deploy.safetensors")
    assert "WARNING: torch.sign gives 0 at 0" in report.binary[0][5]


# ---------------------------------------------------------------------------------------------
# What it refuses or keeps real.

def test_conv_after_sign_with_real_weights_stays_float(tmp_path):
    """A conv of signs whose weights are not two-valued per channel: a float conv after bnn's Sign,
    listed in the report with the reason, and the network still computes what PyTorch does."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = stem(8)
            self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.binary = LatentConv(8, 8)
            self.head = classifier(8)

        def forward(self, x):
            y = self.stem(x)
            y = self.conv(WhereSign.apply(y))
            return self.head(self.binary(WhereSign.apply(y)))

    torch.manual_seed(6)
    report, _ = convert_and_compare(train(Net(), 50, 6), tmp_path, "mixed", 1)
    (kept,) = [e for e in report.float if e[0].startswith("/conv/")]
    assert kept[2] == "Conv2d" and "not two-valued" in kept[5]
    assert "float  Conv2d" in str(report) and "/conv/Conv" in str(report)


@pytest.mark.parametrize("case", ["concat", "leaky_relu", "three_branches"])
def test_refuses_what_it_cannot_map(tmp_path, case):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(8 if case == "concat" else 4, CLASSES)

        def forward(self, x):
            y = self.conv(x)
            if case == "concat":
                y = torch.cat([y, WhereSign.apply(y)], dim=1)
            elif case == "leaky_relu":
                y = F.leaky_relu(y, 0.1)
            else:
                y = y + torch.tanh(y) + torch.sigmoid(y)
            return self.fc(y.mean(dim=(2, 3)))

    torch.onnx.export(Net().eval(), torch.randn(1, 3, SIZE, SIZE), str(tmp_path / "net.onnx"), opset_version=13)
    with pytest.raises(ConversionError) as e:
        convert(tmp_path / "net.onnx", tmp_path / "net.deploy.safetensors")
    message = str(e.value)
    expected = {"concat": ["(Concat)", "/Concat", "concatenation module"],
                "leaky_relu": ["(LeakyRelu)", "/LeakyRelu", "docs/adding-a-layer.md"],
                "three_branches": ["read by 3 operations", "/Conv_output_0", "joins two"]}[case]
    for part in expected:
        assert part in message, message
    assert not (tmp_path / "net.deploy.safetensors").exists()


def test_command_line_and_classify(tmp_path):
    """python -m bnn.convert with the metadata classify needs; Network.classify on an image file
    gives PyTorch's probabilities for the same normalized pixels."""
    torch.manual_seed(7)
    net = XnorNet(8).eval()
    torch.onnx.export(net, torch.randn(1, 3, SIZE, SIZE), str(tmp_path / "xnor.onnx"), opset_version=13)
    out = tmp_path / "xnor.deploy.safetensors"
    run = subprocess.run([sys.executable, "-m", "bnn.convert", str(tmp_path / "xnor.onnx"), "-o", str(out),
                          "--meta", "mean=[0.5,0.5,0.5]", "--meta", "std=[0.25,0.25,0.25]",
                          "--meta", "class_names=" + json.dumps([f"c{i}" for i in range(CLASSES)])],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "binary convs (packed, 1 bit per weight): 2" in run.stdout
    deployed = bnn.load(str(out))
    assert deployed.class_names[3] == "c3" and deployed.input_shape == (1, SIZE, SIZE, 3)

    pixels = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    (tmp_path / "image.ppm").write_bytes(f"P6 {SIZE} {SIZE} 255\n".encode() + pixels.tobytes())
    x = (torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        p = torch.softmax(net(x), 1)[0]
    top = deployed.classify(str(tmp_path / "image.ppm"), top=3)
    assert [name for name, _ in top] == [f"c{int(i)}" for i in p.topk(3).indices]
    assert np.allclose([prob for _, prob in top], p.topk(3).values.numpy(), atol=1e-5)

    bad = subprocess.run([sys.executable, "-m", "bnn.convert", str(tmp_path / "xnor.onnx"), "-o",
                          str(tmp_path / "x.safetensors"), "--meta", "mean=[0.5,0.5,0.5]"], capture_output=True, text=True)
    assert bad.returncode == 1 and "classify needs all of mean, std, class_names" in bad.stderr


def test_the_twins_real_to_bin_resnet18(tmp_path):
    """The twin's own network (examples/pytorch/bnn_twin, docs/pytorch.md), whose sign is
    (x >= 0) * 2 - 1: converted, it is what the twin's save_deployed would have written."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "pytorch"))
    import bnn_twin as bt
    torch.manual_seed(8)
    net = bt.ResNet18("real-to-bin", "cifar", 8, CLASSES, mode=bt.FULLY_BINARY)
    report, out = convert_and_compare(train(net, 60, 8), tmp_path, "twin", 16)
    assert all(e[1].endswith(".conv") for e in report.binary)  # each inside a BinaryHalfBlock
    # The packed convs are those the twin's save_deployed writes, bit for bit, with their scales.
    bt.deploy.save_deployed(str(tmp_path / "twin_own.deploy.safetensors"), net)
    ours, _, _ = bt.safetensors_io.load(str(out))
    twins, _, _ = bt.safetensors_io.load(str(tmp_path / "twin_own.deploy.safetensors"))
    for suffix in (".sign_bits", ".scale", ".geometry"):
        a, b = [[t[k] for k in t if k.endswith(".conv" + suffix)] for t in (ours, twins)]
        assert len(a) == len(b) == 16 and all(torch.equal(x, y) for x, y in zip(a, b)), suffix
