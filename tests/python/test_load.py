"""bnn.load and Network.compile: either kind of file, its metadata, and every way they refuse."""
import os

import numpy as np
import pytest

import bnn
from conftest import images


def test_a_deployment_file_and_its_metadata(files):
    net = bnn.load(files["tiny.deploy"])
    assert net.deployed and net.path == files["tiny.deploy"]
    assert net.class_names[:3] == ["airplane", "automobile", "bird"] and len(net.class_names) == 10
    assert net.input_shape == (1, 32, 32, 3)
    meta = net.metadata
    assert meta["variant"] == "real-to-bin" and meta["image_size"] == 32 and len(meta["mean"]) == 3
    assert "module_tree" not in meta
    g = net.compile(threads=1)
    assert g.input_shape == (1, 32, 32, 3) and g.threads == 1 and g.stem == "fp32" and g.steps > 0
    assert "stem.0" in g.summary()


def test_a_trainer_checkpoint_gives_what_its_deployment_file_gives(files):
    net = bnn.load(os.fspath(files["tiny"]))
    assert not net.deployed and "real-to-bin ResNet-18, fully-binary, width 8" in repr(net)
    assert net.metadata["student"] == "fully-binary"
    x = images(2)
    assert np.array_equal(net.compile(x.shape, threads=1)(x), bnn.load(files["tiny.deploy"]).compile(x.shape, threads=1)(x))


def test_a_file_without_trainer_metadata(files):
    net = bnn.load(files["plain.deploy"])
    assert net.class_names is None and net.input_shape is None
    with pytest.raises(bnn.Error, match="give input_shape"):
        net.compile()
    with pytest.raises(bnn.Error, match="give mean= and std="):
        net.compile((1, 32, 32, 3), stem="int16")
    x = images(1)
    assert np.array_equal(net.compile(x.shape, threads=1)(x), bnn.load(files["tiny.deploy"]).compile(threads=1)(x))


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        bnn.load(tmp_path / "nothing.safetensors")
    assert e.value.filename == str(tmp_path / "nothing.safetensors")


def test_files_bnn_cannot_use_are_bnn_errors(files, tmp_path):
    def refused(data, message):
        path = tmp_path / "bad.safetensors"
        path.write_bytes(data)
        with pytest.raises(bnn.Error, match=message):
            bnn.load(path)

    good = open(files["tiny.deploy"], "rb").read()
    refused(b"", "too short for the 8-byte header length")
    refused(good[: len(good) // 2], "truncated")
    refused(good.replace(b"bnn-deploy-2", b"bnn-deploy-9"), "lacks 'mean' in its metadata")
    refused(good.replace(b'"image_size":"32"', b'"image_size":"[]"', 1), "has unusable metadata: .*is array")
    with pytest.raises(bnn.Error, match="cannot open|Is a directory|error while reading"):
        bnn.load(tmp_path)


def test_bad_compile_options_are_bnn_errors(files):
    net = bnn.load(files["tiny.deploy"])
    for kwargs, message in [({"stem": "int4"}, "expected 'fp32', 'int16' or 'int8', found 'int4'"),
                            ({"threads": 0}, "expected threads >= 1, found 0"),
                            ({"input_shape": (32, 32, 3)}, r"expected input_shape \(N, H, W, C\)"),
                            ({"input_shape": (1, 32, 32, 4)}, "stem.0")]:
        with pytest.raises(bnn.Error, match=message):
            net.compile(**kwargs)
    with pytest.raises(TypeError):
        net.compile((1, 32, 32, 3), 1)  # threads and stem are keywords


def test_help_documents_the_api():
    text = bnn.Network.compile.__doc__ + bnn.Graph.__doc__ + bnn.load.__doc__
    for word in ("threads", "int16", "C-contiguous", "GIL", "FileNotFoundError"):
        assert word in text
    assert os.path.exists(os.path.join(os.path.dirname(bnn.__file__), "_bnn.pyi"))
