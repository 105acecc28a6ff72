"""Fixtures of the Python module's tests (tests/python/CMakeLists.txt sets the environment): the
network files python_fixture writes, and the logits the C++ API computes for an input."""
import os
import subprocess

import numpy as np
import pytest

FIXTURE = os.environ.get("BNN_PYTHON_FIXTURE")


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """Paths of tiny.deploy.safetensors (trainer metadata), plain.deploy.safetensors (none) and
    tiny.safetensors (a trainer checkpoint), all the same fully binary ResNet-18 (32x32x3, 10 classes)."""
    if not FIXTURE:
        pytest.fail("BNN_PYTHON_FIXTURE is not set: run these tests through ctest (label python)")
    d = tmp_path_factory.mktemp("nets")
    subprocess.run([FIXTURE, "write", str(d)], check=True)
    return {name: str(d / f"{name}.safetensors") for name in ("tiny.deploy", "plain.deploy", "tiny")}


@pytest.fixture(scope="session")
def cpp_logits(tmp_path_factory):
    """cpp_logits(model, x, stem, threads, dense): the logits of the C++ API's graph for x, run by python_fixture."""
    d = tmp_path_factory.mktemp("logits")

    def run(model, x, stem="fp32", threads=1, dense="fp32"):
        x = np.ascontiguousarray(x)
        x.tofile(d / "in.raw")
        subprocess.run([FIXTURE, "logits", model, str(d / "in.raw"), *map(str, x.shape), stem, dense, str(threads),
                        str(d / "out.raw")], check=True)
        return np.fromfile(d / "out.raw", dtype=np.float32).reshape(x.shape[0], -1)

    return run


def images(n=4, seed=0, size=32):
    """n normalized float32 images [n, size, size, 3]."""
    return np.random.default_rng(seed).standard_normal((n, size, size, 3), dtype=np.float32)


def raw_images(n=4, seed=0, size=32):
    """n uint8 images [n, size, size, 3]."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
