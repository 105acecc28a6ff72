"""Train in PyTorch, deploy with bnn (issue 10, item 4): a Real-to-Bin ResNet-18 trained a few
hundred steps in the twin (fully binary, the deployed stage), written by the twin as a bnn
deployment file, run by bnn's io::load_deployed + infer::compile (bnn_torch_deployed, built beside
bnn_torch_step): the same
top-1 on a test set as the twin's eval mode and logits within float rounding. Also the twin's
bnn checkpoints round trip exactly.

  test_twin_deploy.py <bnn_torch_step>"""
import os
import subprocess
import tempfile

from twin_harness import Failures, bt, checkpoint, driver_path, recipe, safetensors_io, torch

WIDTH, CLASSES, SIZE, BATCH, STEPS, TEST = 8, 10, 16, 16, 200, 256


def task(seed, n):
    """Noisy class templates, the same templates for every call with the same seed."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(CLASSES, 3, SIZE, SIZE, generator=g)
    g.manual_seed(seed + n)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    return templates[labels] + 2.0 * torch.randn(n, 3, SIZE, SIZE, generator=g), labels


def main():
    driver = os.path.join(os.path.dirname(driver_path()), "bnn_torch_deployed")
    failures = Failures()
    torch.manual_seed(7)
    net = bt.ResNet18("real-to-bin", "cifar", WIDTH, CLASSES, mode=bt.FULLY_BINARY)
    optimizer = recipe.make_optimizer("adamw", net, 2e-3, 1e-5)
    images, labels = task(1, STEPS * BATCH)
    for i in range(STEPS):
        sl = slice(i * BATCH, (i + 1) * BATCH)
        recipe.distillation_step(None, net, images[sl], labels[sl], recipe.LossWeights(), optimizer)
    net.eval()
    test_images, test_labels = task(1, TEST)
    with torch.no_grad():
        twin_logits = net(test_images)
    accuracy = (twin_logits.argmax(1) == test_labels).float().mean().item()
    print(f"twin, eval mode: test top-1 {100 * accuracy:.1f}% after {STEPS} steps")
    failures.check(accuracy > 0.3, f"the twin did not learn the task (top-1 {accuracy:.2f}, chance 0.1)")

    with tempfile.TemporaryDirectory(prefix="bnn_twin_") as tmp:
        model_path, in_path, out_path, ckpt = (os.path.join(tmp, n) for n in (
            "net.deploy.safetensors", "in.safetensors", "out.safetensors", "net.safetensors"))
        bt.deploy.save_deployed(model_path, net, {"num_classes": str(CLASSES)})
        safetensors_io.save(in_path, {"images": checkpoint.to_bnn_layout(test_images)})
        done = subprocess.run([driver, model_path, in_path, out_path], capture_output=True, text=True,
                              errors="replace")
        failures.check(done.returncode == 0, f"bnn_torch_deployed failed: {done.stderr.strip()}")
        if done.returncode == 0:
            out, _, _ = safetensors_io.load(out_path)
            bnn_logits = out["logits"]
            same = (bnn_logits.argmax(1) == twin_logits.argmax(1)).sum().item()
            print(f"bnn, deployed: {same} of {TEST} top-1 predictions equal the twin's")
            failures.check(same == TEST, f"top-1 differs on {TEST - same} of {TEST} test images")
            # Logits within float rounding, per sample. A value within rounding of 0 before a sign
            # may binarise differently in the two (bnn folds each BN into its sign's threshold):
            # such a sample then differs beyond rounding, and the twin in float64 agrees with one
            # of the two. At most 1% of the samples may differ that way, and only that way.
            scale = twin_logits.abs().max().item()
            per_sample = (bnn_logits - twin_logits).abs().max(dim=1).values / scale
            flipped = (per_sample > 1e-4).nonzero().flatten().tolist()
            print(f"logits: largest difference {per_sample.max().item():.2e} of the largest logit; "
                  f"{len(flipped)} samples beyond 1e-4")
            failures.check(len(flipped) <= TEST // 100, f"{len(flipped)} of {TEST} samples differ beyond rounding")
            if flipped:
                with torch.no_grad():
                    exact = net.double()(test_images.double()).float()
                net.float()
                for s in flipped:
                    closest = min((bnn_logits[s] - exact[s]).abs().max().item(),
                                  (twin_logits[s] - exact[s]).abs().max().item()) / scale
                    failures.check(closest <= 1e-4, f"sample {s}: neither bnn nor the twin equals the float64 "
                                                    f"twin (closest {closest:.2e}): not a rounding flip")
            failures.check(torch.equal(out["eval_logits"], bnn_logits),
                           "bnn's compiled graph differs from its eval-mode forward of the same file")

        # A bnn checkpoint written by the twin reads back to the same tensors.
        bt.checkpoint.save_checkpoint(ckpt, net, {"stage": "real-to-bin/step3"})
        again = bt.ResNet18("real-to-bin", "cifar", WIDTH, CLASSES, mode=bt.FULLY_BINARY)
        report, meta = bt.checkpoint.load_checkpoint(ckpt, again)
        failures.check(meta == {"stage": "real-to-bin/step3"}, f"checkpoint metadata came back as {meta}")
        for name, t in net.state_dict().items():
            failures.check(torch.equal(again.state_dict()[name], t), f"checkpoint round trip changed {name}")
        tensors, file_meta, dtypes = safetensors_io.load(ckpt)
        failures.check(file_meta.get("format") == "bnn-checkpoint-1", f"checkpoint format {file_meta.get('format')}")
        failures.check(list(tensors["stem.0.weight"].shape) == [WIDTH, 3, 3, 3] and
                       torch.equal(tensors["stem.0.weight"], net.stem[0].weight.detach().permute(0, 2, 3, 1)),
                       "the checkpoint does not hold the stem conv in OHWI")
    failures.finish("test_twin_deploy")


if __name__ == "__main__":
    main()
