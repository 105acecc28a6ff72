"""The twin's stage table against the trainer's (issue 10): every field of every stage of the
three recipes (ids, variants, teachers, initialisation, loss weights and options, learning rate,
weight decay, warm-up, epochs, milestones, decay, the paper's top-1), as bnn_torch_step writes
them with "plan_only". A stage's decay or later milestones never change a step the other torch
tests take, so only this comparison sees them.

  test_twin_stages.py <bnn_torch_step>"""
import dataclasses
import json
import os
import subprocess
import tempfile

from twin_harness import Failures, driver_path, recipe, safetensors_io


def bnn_plan(driver):
    with tempfile.TemporaryDirectory(prefix="bnn_twin_") as tmp:
        spec, empty, out = (os.path.join(tmp, n) for n in ("spec.json", "in.safetensors", "out.safetensors"))
        with open(spec, "w") as f:
            json.dump({"plan_only": True}, f)
        safetensors_io.save(empty, {})
        done = subprocess.run([driver, spec, empty, out], capture_output=True, text=True, errors="replace")
        if done.returncode != 0:
            raise RuntimeError(f"bnn_torch_step failed: {done.stderr.strip()}")
        return json.loads(safetensors_io.load(out)[1]["plan"])


def twin_plan():
    """The twin's plan as the driver writes bnn's: floats as float32, as bnn holds them."""
    def as_bnn(v):
        if isinstance(v, float):
            return recipe.f32(v)
        if isinstance(v, dict):
            return {k: as_bnn(x) for k, x in v.items()}
        if isinstance(v, list):
            return [as_bnn(x) for x in v]
        return v
    out = []
    for s in recipe.plan_recipes(["real", "real-to-bin", "baseline"]):
        entry = {"id": s.id, "variant": s.variant, "teacher": s.teacher, "init_from": s.init_from,
                 "paper_top1": s.paper_top1}
        entry.update(as_bnn(dataclasses.asdict(s.config)))
        out.append(entry)
    return out


def main():
    failures = Failures()
    ours, theirs = bnn_plan(driver_path()), twin_plan()
    failures.check([s["id"] for s in ours] == [s["id"] for s in theirs],
                   f"stage ids: bnn {[s['id'] for s in ours]}, twin {[s['id'] for s in theirs]}")
    for b, t in zip(ours, theirs):
        failures.check(b.keys() == t.keys(), f"{b['id']}: fields bnn only {sorted(set(b) - set(t))}, "
                                             f"twin only {sorted(set(t) - set(b))}")
        for key in sorted(set(b) & set(t)):
            if key == "weights":
                for w in sorted(set(b[key]) | set(t[key])):
                    failures.check(b[key].get(w) == t[key].get(w),
                                   f"{b['id']} weights.{w}: bnn {b[key].get(w)!r}, twin {t[key].get(w)!r}")
            elif key == "paper_top1" and b[key] is not None and t[key] is not None:
                failures.check(abs(b[key] - t[key]) < 1e-12, f"{b['id']} paper_top1: bnn {b[key]}, twin {t[key]}")
            else:
                failures.check(b[key] == t[key], f"{b['id']} {key}: bnn {b[key]!r}, twin {t[key]!r}")
    failures.finish("test_twin_stages")


if __name__ == "__main__":
    main()
