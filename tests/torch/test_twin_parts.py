"""Part by part, the options the ResNet-18 stages leave out: BinaryConv2d in every mode, weight
scale and padding value (sign(0) = +1 included: inputs and weights hold exact zeros), the binary
half-block with either scale, every attention norm and distance, logit matching at several
temperatures, and cross-entropy with label smoothing or soft targets. Forward values within 1e-4
relative and gradients within 1e-3 of their largest, against bnn_torch_parts (built beside
bnn_torch_step).

  test_twin_parts.py <bnn_torch_step>"""
import itertools
import json
import os

from twin_harness import Failures, bt, call_driver, checkpoint, driver_path, rel_err, torch

FORWARD_TOL, GRAD_TOL = 1e-4, 1e-3


def compare(failures, tag, ref, got):
    failures.check(set(ref) == set(got), f"{tag}: outputs differ: bnn only {sorted(set(ref) - set(got))}, "
                                         f"twin only {sorted(set(got) - set(ref))}")
    for k in sorted(set(ref) & set(got)):
        tol = GRAD_TOL if k.startswith("grad.") else FORWARD_TOL
        failures.check(tuple(ref[k].shape) == tuple(got[k].shape), f"{tag} {k}: shape {list(got[k].shape)}, "
                                                                   f"bnn {list(ref[k].shape)}")
        if tuple(ref[k].shape) == tuple(got[k].shape):
            e = rel_err(got[k], ref[k])
            failures.check(e <= tol, f"{tag} {k}: relative error {e:.2e}")


def with_zeros(t, g):
    """Some exact zeros, where sign(0) = +1 must hold in both."""
    t = t.clone()
    t.view(-1)[torch.randperm(t.numel(), generator=g)[: max(1, t.numel() // 10)]] = 0.0
    return t


def module_case(driver, failures, spec, module, x, seed):
    """Latent weights in [-1, 1] with exact zeros, scales and slopes away from their initial
    values; then one forward in train mode and a backward from a random output gradient."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 4 and "shortcut" not in name:
                p.copy_(with_zeros(torch.rand(p.shape, generator=g) * 2 - 1, g))
            elif p.dim() == 1:
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
    tensors = {f"module.{k}": v for k, v in checkpoint.bnn_state(module).items()}  # before the forward
    module.train()
    x_twin = x.clone().requires_grad_(True)
    y = module(x_twin)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    got = {"y": checkpoint.to_bnn_layout(y.detach()), "grad.x": checkpoint.to_bnn_layout(x_twin.grad)}
    for name, p in module.named_parameters():
        got[f"grad.{name}"] = checkpoint.to_bnn_layout(p.grad)
    for name, b in module.named_buffers():
        got[f"after.{name}"] = b.detach().clone()
    tensors.update({"x": checkpoint.to_bnn_layout(x), "dy": checkpoint.to_bnn_layout(dy)})
    compare(failures, json.dumps(spec), call_driver(driver, spec, tensors), got)


def main():
    parts = os.path.join(os.path.dirname(driver_path()), "bnn_torch_parts")
    failures = Failures()
    torch.manual_seed(3)
    seed = 0
    for mode, scale, pad, stride in itertools.product(bt.MODES, ("none", "mean_abs", "learned", "alpha"),
                                                      ("zero", "one"), (1, 2)):
        seed += 1
        spec = {"kind": "binary_conv", "in": 5, "out": 4, "kernel": 3, "stride": stride, "padding": 1,
                "pad_value": pad, "mode": mode, "scale": scale}
        conv = bt.BinaryConv2d(5, 4, 3, stride, 1, pad, mode, scale)
        x = with_zeros(1.5 * torch.randn(2, 5, 6, 6), torch.Generator().manual_seed(seed))
        module_case(parts, failures, spec, conv, x, 100 * seed)
    for mode, scale, pad, (cin, cout, stride), conv_scale in itertools.product(
            bt.MODES, ("alpha", "gate"), ("zero", "one"), ((8, 8, 1), (8, 16, 2)), (None, "alpha")):
        seed += 1
        spec = {"kind": "half_block", "in": cin, "out": cout, "stride": stride, "scale": scale, "pad_value": pad,
                "mode": mode}
        if conv_scale:
            spec["conv_scale"] = conv_scale
        block = bt.BinaryHalfBlock(cin, cout, stride, scale=scale, pad_value=pad, mode=mode, conv_scale=conv_scale)
        x = torch.randn(4, cin, 8, 8)
        module_case(parts, failures, spec, block, x, 100 * seed)
    for norm, distance in itertools.product(bt.losses.ATTENTION_NORMS, bt.losses.ATTENTION_DISTANCES):
        s = [torch.randn(3, 4, 5, 5, requires_grad=True), torch.randn(3, 6, 3, 3, requires_grad=True)]
        t = [torch.randn(3, 8, 5, 5, requires_grad=True), torch.randn(3, 2, 3, 3, requires_grad=True)]
        loss = bt.losses.attention_transfer(list(zip(s, t)), norm, distance)
        loss.backward()
        got = {"loss": loss.detach().reshape(1)}
        tensors = {}
        for j in range(2):
            got[f"grad.s{j}"], got[f"grad.t{j}"] = (checkpoint.to_bnn_layout(v.grad) for v in (s[j], t[j]))
            tensors[f"s{j}"], tensors[f"t{j}"] = (checkpoint.to_bnn_layout(v.detach()) for v in (s[j], t[j]))
        spec = {"kind": "attention", "points": 2, "norm": norm, "distance": distance}
        compare(failures, json.dumps(spec), call_driver(parts, spec, tensors), got)
    for temperature in (1.0, 4.0):
        zs, zt = torch.randn(6, 10, requires_grad=True), 3 * torch.randn(6, 10)
        loss = bt.losses.logit_matching(zs, zt, temperature)
        loss.backward()
        spec = {"kind": "kd", "temperature": temperature}
        compare(failures, json.dumps(spec), call_driver(parts, spec, {"zs": zs.detach(), "zt": zt}),
                {"loss": loss.detach().reshape(1), "grad.zs": zs.grad})
    for smoothing, soft in ((0.0, False), (0.1, False), (0.0, True)):
        logits, labels = torch.randn(6, 10, requires_grad=True), torch.randint(0, 10, (6,))
        targets = torch.softmax(torch.randn(6, 10), dim=1) if soft else None
        loss = bt.losses.cross_entropy(logits, labels, smoothing, targets)
        loss.backward()
        spec = {"kind": "ce", "label_smoothing": smoothing}
        tensors = {"logits": logits.detach()}
        tensors.update({"soft_targets": targets} if soft else {"labels": labels})
        compare(failures, json.dumps(spec), call_driver(parts, spec, tensors),
                {"loss": loss.detach().reshape(1), "grad.logits": logits.grad})
    failures.finish("test_twin_parts")


if __name__ == "__main__":
    main()
