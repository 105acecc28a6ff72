"""Network.classify classifies an image file exactly as the classify program does: the same
classes in the same order with the same probabilities, for both kinds of file, every stem and both
precisions of the dense layers."""
import os
import subprocess
import warnings

import numpy as np
import pytest

import bnn

CLASSIFY = os.environ.get("BNN_CLASSIFY")


def write_ppm(path, pixels):
    """A binary PPM (P6) of uint8 pixels [H, W, 3]."""
    h, w, _ = pixels.shape
    path.write_bytes(b"P6\n%d %d\n255\n" % (w, h) + pixels.tobytes())
    return path


def classify_program(*args):
    """classify's printed lines: the notes and the ranked classes."""
    if not CLASSIFY:
        pytest.skip("BNN_CLASSIFY is not set: the examples are not built (BNN_BUILD_EXAMPLES)")
    done = subprocess.run([CLASSIFY, *map(str, args)], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    return [line[len("note: "):] for line in lines if line.startswith("note: ")], [
        line for line in lines if line.startswith("  ")]


@pytest.mark.parametrize("stem,dense", [("fp32", "fp32"), ("int16", "fp32"), ("int8", "fp32"), ("fp32", "int8"),
                                        ("int8", "int8")])
@pytest.mark.parametrize("name", ["tiny.deploy", "tiny", "plain.deploy"])
def test_the_same_answer_as_the_classify_program(files, tmp_path, name, stem, dense):
    rng = np.random.default_rng(3)
    for shape in [(32, 32, 3), (24, 40, 3)]:  # the second is resized: both say so
        image = write_ppm(tmp_path / "image.ppm", rng.integers(0, 256, shape, dtype=np.uint8))
        size = ["--size", 32] if name == "plain.deploy" else []
        notes, lines = classify_program("--checkpoint", files[name], "--image", image, "--top", 4, "--stem", stem,
                                        "--dense", dense, *size)
        net = bnn.load(files[name])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ranked = net.classify(image, 4, stem=stem, dense=dense, size=32 if size else None)
            x = net.read_image(image, size=32 if size else None)  # the image as classify reads it
        assert [str(w.message) for w in caught] == notes * 2 and len(notes) == (shape != (32, 32, 3))
        assert len(ranked) == 4 and lines == [f"  {100 * p:6.2f}%  {c}" for c, p in ranked]
        assert sorted(ranked, key=lambda r: -r[1]) == ranked and 0 < sum(p for _, p in ranked) <= 1 + 1e-12
        # The same by hand: that image, normalized, through a graph.
        assert x.dtype == np.uint8 and x.shape == (1, 32, 32, 3)
        if name != "plain.deploy":
            g = net.compile(threads=1, stem=stem, dense=dense)
            logits = g(net.normalize(x) if stem == "fp32" else x)[0]
            assert net.class_names[int(np.argmax(logits))] == ranked[0][0]


def test_classify_refuses_what_classify_refuses(files, tmp_path):
    image = write_ppm(tmp_path / "image.ppm", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(bnn.Error, match="has no trainer metadata .*give size="):
        bnn.load(files["plain.deploy"]).classify(image)
    net = bnn.load(files["tiny.deploy"])
    with pytest.raises(FileNotFoundError):
        net.classify(tmp_path / "none.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(bnn.Error, match="text.png"):
        net.classify(tmp_path / "text.png")
    with pytest.raises(bnn.Error, match="expected top >= 1, found 0"):
        net.classify(image, 0)
    with pytest.raises(bnn.Error, match="expected uint8 images, found float32"):
        net.normalize(np.zeros((1, 32, 32, 3), np.float32))
