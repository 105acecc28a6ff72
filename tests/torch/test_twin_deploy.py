"""Train in PyTorch, deploy with bnn (issue 10, item 4): a Real-to-Bin ResNet-18 (CIFAR stem)
trained a few hundred steps in the twin and a strong baseline (ImageNet stem), fully binary (the
deployed stage), written by the twin as bnn deployment files, run by bnn's io::load_deployed +
infer::compile (bnn_torch_deployed, built beside bnn_torch_step): the same top-1 on a test set as
the twin's eval mode and logits within float rounding. bnn writes each network again and the
twin's load_deployed reads both files to the same tensors and logits. The same for a small
network of the user's own (residual body, Flatten, other activations). Also the twin's bnn
checkpoints round trip exactly.

  test_twin_deploy.py <bnn_torch_step>"""
import os
import subprocess
import tempfile

from twin_harness import Failures, bt, checkpoint, driver_path, recipe, safetensors_io, torch

WIDTH, CLASSES, BATCH, STEPS, TEST = 8, 10, 16, 200, 256


def task(seed, n, size):
    """Noisy class templates, the same templates for every call with the same seed."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(CLASSES, 3, size, size, generator=g)
    g.manual_seed(seed + n)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    return templates[labels] + 2.0 * torch.randn(n, 3, size, size, generator=g), labels


def train(net, steps, size, seed):
    """`steps` AdamW steps of the recipe's loss on the task; the test images and their labels."""
    optimizer = recipe.make_optimizer("adamw", net, 2e-3, 1e-5)
    images, labels = task(seed, steps * BATCH, size)
    for i in range(steps):
        sl = slice(i * BATCH, (i + 1) * BATCH)
        recipe.distillation_step(None, net, images[sl], labels[sl], recipe.LossWeights(), optimizer)
    net.eval()
    return task(seed, TEST, size)


def compare_logits(failures, tag, net, test_images, got, want, what):
    """`got` equals the twin's eval-mode `want` within float rounding, per sample. A value within
    rounding of 0 before a sign may binarise differently (bnn folds each BN into its sign's
    threshold): such a sample then differs beyond rounding, and the twin in float64 agrees with one
    of the two. At most 1% of the samples may differ that way, and only that way."""
    same = (got.argmax(1) == want.argmax(1)).sum().item()
    print(f"{tag} {what}: {same} of {TEST} top-1 predictions equal the twin's")
    failures.check(same == TEST, f"{tag} {what}: top-1 differs on {TEST - same} of {TEST} test images")
    scale = want.abs().max().item()
    per_sample = (got - want).abs().max(dim=1).values / scale
    flipped = (per_sample > 1e-4).nonzero().flatten().tolist()
    print(f"{tag} {what}: largest logit difference {per_sample.max().item():.2e} of the largest logit; "
          f"{len(flipped)} samples beyond 1e-4")
    failures.check(len(flipped) <= TEST // 100, f"{tag} {what}: {len(flipped)} of {TEST} samples differ beyond rounding")
    if flipped:
        with torch.no_grad():
            exact = net.double()(test_images.double()).float()
        net.float()
        for s in flipped:
            closest = min((got[s] - exact[s]).abs().max().item(), (want[s] - exact[s]).abs().max().item()) / scale
            failures.check(closest <= 1e-4, f"{tag} {what}: sample {s}: neither equals the float64 twin "
                                            f"(closest {closest:.2e}): not a rounding flip")


def check_deployment(driver, failures, tmp, tag, net, test_images):
    """Twin -> deployment file -> bnn (logits as the twin's); bnn writes the network it loaded
    again, and the twin reads both files back to the same tensors and the same logits."""
    model_path, in_path, out_path, resaved_path = (os.path.join(tmp, n) for n in (
        "net.deploy.safetensors", "in.safetensors", "out.safetensors", "bnn.deploy.safetensors"))
    with torch.no_grad():
        twin_logits = net(test_images)
    bt.deploy.save_deployed(model_path, net, {"num_classes": str(CLASSES)})
    safetensors_io.save(in_path, {"images": checkpoint.to_bnn_layout(test_images)})
    done = subprocess.run([driver, model_path, in_path, out_path, resaved_path], capture_output=True, text=True,
                          errors="replace")
    failures.check(done.returncode == 0, f"{tag} bnn_torch_deployed failed: {done.stderr.strip()}")
    if done.returncode != 0:
        return
    out, _, _ = safetensors_io.load(out_path)
    compare_logits(failures, tag, net, test_images, out["logits"], twin_logits, "bnn, deployed")
    failures.check(torch.equal(out["eval_logits"], out["logits"]),
                   f"{tag} bnn's compiled graph differs from its eval-mode forward of the same file")

    # The twin reads its own file and bnn's: the same +-1 weights, scales and other tensors, and
    # its eval mode on them gives the trained network's logits.
    own, own_meta = bt.deploy.load_deployed(model_path)
    from_bnn, bnn_meta = bt.deploy.load_deployed(resaved_path)
    failures.check(own_meta.get("num_classes") == bnn_meta.get("num_classes") == str(CLASSES),
                   f"{tag} metadata: twin's file {own_meta.get('num_classes')}, bnn's {bnn_meta.get('num_classes')}")
    a, b = own.state_dict(), from_bnn.state_dict()
    failures.check(a.keys() == b.keys(), f"{tag} the two files rebuild different tensors: "
                                         f"{sorted(set(a) ^ set(b))}")
    for name in sorted(set(a) & set(b)):
        failures.check(torch.equal(a[name], b[name]), f"{tag} '{name}' differs between the twin's file and bnn's")
    with torch.no_grad():
        reloaded = own(test_images)
    compare_logits(failures, tag, net, test_images, reloaded, twin_logits, "twin, reloaded")


def check_bad_files(failures, tmp, good_path):
    """load_deployed refuses a file that is not a whole deployment file, naming what is wrong."""
    tensors, meta, dtypes = safetensors_io.load(good_path)
    u64 = {k for k, d in dtypes.items() if d == "U64"}
    conv = sorted(u64)[0][:-len(".sign_bits")]
    bad = os.path.join(tmp, "bad.deploy.safetensors")

    def refused(what, tensors, meta, expected):
        safetensors_io.save(bad, tensors, meta, u64={k for k in u64 if k in tensors})
        try:
            bt.deploy.load_deployed(bad)
            failures.check(False, f"load_deployed took a file with {what}")
        except ValueError as e:
            failures.check(expected in str(e), f"load_deployed on a file with {what}: {e}")

    refused("another format", tensors, dict(meta, format="bnn-checkpoint-1"), "bnn-checkpoint-1")
    refused("no module tree", tensors, {k: v for k, v in meta.items() if k != "module_tree"}, "module_tree")
    refused("a conv's bits missing", {k: v for k, v in tensors.items() if k != conv + ".sign_bits"}, meta,
            conv + ".sign_bits")
    refused("a wrong geometry", dict(tensors, **{conv + ".geometry": tensors[conv + ".geometry"] + 1}), meta,
            conv + ".geometry")
    refused("a tensor left over", dict(tensors, extra=torch.zeros(2)), meta, "extra")


def main():
    driver = os.path.join(os.path.dirname(driver_path()), "bnn_torch_deployed")
    failures = Failures()
    with tempfile.TemporaryDirectory(prefix="bnn_twin_") as tmp:
        # Real-to-Bin (gated, mean |W| scale), CIFAR stem, trained until it has learned the task.
        torch.manual_seed(7)
        net = bt.ResNet18("real-to-bin", "cifar", WIDTH, CLASSES, mode=bt.FULLY_BINARY)
        test_images, test_labels = train(net, STEPS, 16, 1)
        with torch.no_grad():
            accuracy = (net(test_images).argmax(1) == test_labels).float().mean().item()
        print(f"twin, eval mode: test top-1 {100 * accuracy:.1f}% after {STEPS} steps")
        failures.check(accuracy > 0.3, f"the twin did not learn the task (top-1 {accuracy:.2f}, chance 0.1)")
        check_deployment(driver, failures, tmp, "[real-to-bin cifar]", net, test_images)

        # The strong baseline (learned alpha times mean |W|), ImageNet stem (max pool, PReLU
        # nodes), a shorter training: what matters is that its statistics and scales have moved.
        torch.manual_seed(8)
        net = bt.ResNet18("strong-baseline", "imagenet", WIDTH, CLASSES, mode=bt.FULLY_BINARY)
        test_images, _ = train(net, STEPS // 4, 32, 2)
        check_deployment(driver, failures, tmp, "[strong-baseline imagenet]", net, test_images)

        # A network of the user's own from the twin's modules: a residual binary body, Hardtanh,
        # Tanh, pooling and a Flatten (NHWC order) before the classifier. Its statistics and
        # scales are set at random instead of trained.
        torch.manual_seed(9)
        body = torch.nn.Sequential(bt.BatchNorm2d(8), bt.BinaryConv2d(8, 8, 3, 1, 1, "one", bt.FULLY_BINARY, "learned"),
                                   torch.nn.Hardtanh(-0.5, 1.5))
        own = torch.nn.Sequential(bt.Conv2d(3, 8, 3, 1, 1, bias=True), bt.BatchNorm2d(8), torch.nn.Tanh(),
                                  bt.Residual(body), torch.nn.MaxPool2d(2, 2), bt.Flatten(),
                                  bt.Linear(8 * 8 * 8, CLASSES))
        with torch.no_grad():
            for name, t in own.named_buffers():
                t.copy_(0.5 + torch.rand(t.shape) if name.endswith("running_var") else 0.2 * torch.randn(t.shape))
            for name, t in own.named_parameters():
                if t.dim() == 1:
                    t.add_(0.2 * torch.randn(t.shape))
        own.eval()
        own_images, _ = task(3, TEST, 16)
        check_deployment(driver, failures, tmp, "[own network]", own, own_images)
        check_bad_files(failures, tmp, os.path.join(tmp, "net.deploy.safetensors"))

        # A bnn checkpoint written by the twin reads back to the same tensors.
        ckpt = os.path.join(tmp, "net.safetensors")
        bt.checkpoint.save_checkpoint(ckpt, net, {"stage": "baseline/stage2"})
        again = bt.ResNet18("strong-baseline", "imagenet", WIDTH, CLASSES, mode=bt.FULLY_BINARY)
        report, meta = bt.checkpoint.load_checkpoint(ckpt, again)
        failures.check(meta == {"stage": "baseline/stage2"}, f"checkpoint metadata came back as {meta}")
        for name, t in net.state_dict().items():
            failures.check(torch.equal(again.state_dict()[name], t), f"checkpoint round trip changed {name}")
        # With the optimiser's state: it restores into the same grouping, and is refused, with
        # nothing restored, by an optimiser of another network.
        optimizer = recipe.make_optimizer("adamw", net, 1e-3, 1e-5)
        recipe.distillation_step(None, net, own_images[:BATCH].repeat(1, 1, 2, 2), torch.zeros(BATCH, dtype=torch.long),
                                 recipe.LossWeights(), optimizer)
        bt.checkpoint.save_checkpoint(ckpt, net, {"stage": "baseline/stage2"}, optimizer)
        same = recipe.make_optimizer("adamw", again, 1e-3, 1e-5)
        bt.checkpoint.load_checkpoint(ckpt, again, optimizer=same)
        restored = [same.state[p]["exp_avg"] for g in same.param_groups for p in g["params"]]
        original = [optimizer.state[p]["exp_avg"] for g in optimizer.param_groups for p in g["params"]]
        failures.check(all(torch.equal(a, b) for a, b in zip(restored, original)) and len(restored) == len(original),
                       "the optimiser's state did not round trip")
        narrow = bt.ResNet18("strong-baseline", "imagenet", WIDTH // 2, CLASSES, mode=bt.FULLY_BINARY)
        other = recipe.make_optimizer("adamw", narrow, 1e-3, 1e-5)
        try:
            bt.checkpoint.load_optimizer_state(other, safetensors_io.load(ckpt)[0])
            failures.check(False, "another network's optimiser took the checkpoint's optimiser state")
        except ValueError as e:
            failures.check("shape" in str(e) and not other.state, f"refused, but not as expected: {e}")
        tensors, file_meta, dtypes = safetensors_io.load(ckpt)
        failures.check(file_meta.get("format") == "bnn-checkpoint-1", f"checkpoint format {file_meta.get('format')}")
        failures.check(list(tensors["stem.0.weight"].shape) == [WIDTH, 7, 7, 3] and
                       torch.equal(tensors["stem.0.weight"], net.stem[0].weight.detach().permute(0, 2, 3, 1)),
                       "the checkpoint does not hold the stem conv in OHWI")
    failures.finish("test_twin_deploy")


if __name__ == "__main__":
    main()
