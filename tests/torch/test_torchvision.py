"""A torchvision ResNet-18 state_dict, saved as PyTorch's `safetensors` package saves one
(metadata format "pt", OIHW weights, int64 num_batches_tracked, torchvision's names), loads into
bnn's real ResNet-18 with the ImageNet stem through io::load_module and gives torchvision's
logits: the path for a torchvision-trained network to become a Real-to-Bin teacher. Saved in
bfloat16 too, which bnn widens to float on load.

    python3 test_torchvision.py <path of bnn_torch_step>"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "pytorch"))

try:
    import torch
    import torchvision
except ImportError:  # listed as skipped by ctest, not passed
    print("SKIPPED: this python3 cannot import torch and torchvision (scripts/setup.sh installs them)")
    sys.exit(0)

from bnn_twin import safetensors_io  # noqa: E402


def torchvision_net():
    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    # Batch norm as after training, so that eval mode is not the identity.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.num_batches_tracked.fill_(1234)
    return net.eval()


def bnn_logits(driver, work, state_path, images):
    inputs = os.path.join(work, "in.safetensors")
    safetensors_io.save(inputs, {"images": images.permute(0, 2, 3, 1).contiguous(),
                                 "labels": torch.zeros(images.shape[0], dtype=torch.int64)})
    spec = os.path.join(work, "spec.json")
    with open(spec, "w") as f:
        json.dump({"stage": "real", "stem": "imagenet", "width": 64, "classes": 1000, "student_file": state_path,
                   "eval_only": True, "steps": 1, "batch": images.shape[0], "epochs": 1, "steps_per_epoch": 1}, f)
    out = os.path.join(work, "out.safetensors")
    subprocess.run([driver, spec, inputs, out], check=True)
    return safetensors_io.load(out)[0]["logits"]


def main():
    driver = sys.argv[1]
    net = torchvision_net()
    images = torch.rand(2, 3, 64, 64)
    failures = 0
    with tempfile.TemporaryDirectory() as work:
        for dtype in (torch.float32, torch.bfloat16):
            state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in net.state_dict().items()}
            path = os.path.join(work, "resnet18.safetensors")
            safetensors_io.save(path, state, {"format": "pt"})
            ref_net = torchvision_net()
            ref_net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
            with torch.no_grad():
                ref = ref_net(images)
            got = bnn_logits(driver, work, path, images)
            err = ((got - ref).abs().max() / ref.abs().max()).item()
            same_top1 = bool((got.argmax(1) == ref.argmax(1)).all())
            print(f"{dtype}: max |bnn - torchvision| / max |torchvision| = {err:.2e}, same top-1: {same_top1}")
            if not (err <= 1e-4 and same_top1):
                print(f"FAIL: {dtype} state_dict: logits differ (relative error {err:.2e})")
                failures += 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
