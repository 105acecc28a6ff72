"""Graph.run: bnn's logits bit for bit, the input read in place, wrong input refused, the GIL
released while it runs, nothing of the input kept."""
import gc
import re
import sys
import threading
import weakref

import numpy as np
import pytest

import bnn
from conftest import images, raw_images


@pytest.mark.parametrize("threads", [1, 2])
def test_logits_equal_the_cpp_graph_bit_for_bit(files, cpp_logits, threads):
    for name in ("tiny.deploy", "tiny"):
        x = images(4, seed=threads)
        got = bnn.load(files[name]).compile(x.shape, threads=threads)(x)
        assert got.dtype == np.float32 and got.shape == (4, 10)
        assert np.array_equal(got.view(np.uint32), cpp_logits(files[name], x, threads=threads).view(np.uint32)), name


@pytest.mark.parametrize("stem", ["int16", "int8"])
def test_integer_stem_logits_equal_the_cpp_graph_bit_for_bit(files, cpp_logits, stem):
    net = bnn.load(files["tiny.deploy"])
    x = raw_images(3)
    g = net.compile(x.shape, threads=1, stem=stem)
    assert g.stem == stem
    assert np.array_equal(g(x).view(np.uint32), cpp_logits(files["tiny.deploy"], x, stem).view(np.uint32))
    # The same network on the same pixels, normalized in floats: close, not equal (the stem rounds,
    # int8 to 258 times coarser steps, and the binary layers amplify a sign the rounding flips).
    fp32 = net.compile(x.shape, threads=1)(net.normalize(x))
    assert np.allclose(g(x), fp32, atol=(0.05 if stem == "int16" else 0.2) * np.abs(fp32).max())


@pytest.mark.parametrize("stem", ["fp32", "int8"])
def test_int8_dense_logits_equal_the_cpp_graph_bit_for_bit(files, cpp_logits, stem):
    net = bnn.load(files["tiny.deploy"])
    x = raw_images(3) if stem == "int8" else images(3)
    g = net.compile(x.shape, threads=2, stem=stem, dense="int8")
    assert g.dense == "int8" and net.compile(x.shape, threads=1).dense == "fp32"
    assert "int8 linear" in g.summary() and "int8 conv" in g.summary()
    want = cpp_logits(files["tiny.deploy"], x, stem, threads=2, dense="int8")
    assert np.array_equal(g(x).view(np.uint32), want.view(np.uint32))
    with pytest.raises(bnn.Error, match="dense: expected 'fp32' or 'int8', found 'int4'"):
        net.compile(x.shape, dense="int4")


def test_the_input_is_read_in_place(files):
    g = bnn.load(files["tiny.deploy"]).compile(threads=1)
    x = images(1)
    y = g.run(x)
    assert g._last_input_address == x.ctypes.data
    # Any buffer: a memoryview of the same floats, and a view into a larger array.
    assert np.array_equal(g(memoryview(x)), y) and g._last_input_address == x.ctypes.data
    big = images(3)
    assert np.array_equal(g(big[1:2]), g(np.copy(big[1:2])))
    g(big[1:2])
    assert g._last_input_address == big[1:2].ctypes.data
    # A read-only array is read, not copied.
    x.flags.writeable = False
    assert np.array_equal(g(x), y) and g._last_input_address == x.ctypes.data


def test_each_result_is_a_new_array(files):
    g = bnn.load(files["tiny.deploy"]).compile(threads=1)
    a, b = g(images(1, seed=1)), g(images(1, seed=2))
    assert not np.shares_memory(a, b) and not np.array_equal(a, b)
    assert np.array_equal(a, g(images(1, seed=1)))


def test_wrong_input_is_refused_with_bnn_s_message(files):
    net = bnn.load(files["tiny.deploy"])
    g = net.compile((2, 32, 32, 3), threads=1)
    x = images(2)
    cases = [
        (x.astype(np.float64), "expected a float32 array (normalized images), found float64"),
        (x.astype(np.float16), "found float16"),
        (x.astype(">f4"), "found big-endian float32"),
        (raw_images(2), "found uint8"),
        (x[0], "expected 4 dimensions [N, H, W, C], found 3"),
        (np.ascontiguousarray(x.transpose(0, 3, 1, 2)), "'stem.0'"),           # NCHW: 32 channels
        (x.transpose(0, 2, 1, 3), "expected a C-contiguous array"),          # strides of a transpose
        (images(2, size=64)[:, ::2, ::2], "expected a C-contiguous array"),  # every other pixel
        (np.zeros((0, 32, 32, 3), np.float32), "at least one element"),
    ]
    for bad, message in cases:
        with pytest.raises(bnn.Error, match=re.escape(message)):
            g(bad)
    with pytest.raises(bnn.Error, match="expected a uint8 array"):
        net.compile(threads=1, stem="int16")(x)
    assert issubclass(bnn.Error, ValueError)


def test_another_shape_is_planned_for(files, cpp_logits):
    g = bnn.load(files["tiny.deploy"]).compile((1, 32, 32, 3), threads=1)
    x = images(5)
    assert np.array_equal(g(x), cpp_logits(files["tiny.deploy"], x))
    assert g.input_shape == (1, 32, 32, 3) and g.output_shape == (5, 10)


def test_no_reference_to_the_input_is_kept(files):
    g = bnn.load(files["tiny.deploy"]).compile(threads=1)
    x = images(1)
    before = sys.getrefcount(x)
    for _ in range(3):
        g(x)
    assert sys.getrefcount(x) == before


def test_a_run_holds_its_input_while_it_runs_and_nothing_after(files):
    """The buffer is held (exported) for the whole run, so its memory cannot go while the graph
    reads it, and released when the run returns; an array dropped meanwhile is then freed."""
    g = bnn.load(files["tiny.deploy"]).compile(threads=1, stem="int16")
    pixels = raw_images(1)
    expected = g(pixels)
    data = bytearray(pixels.tobytes())
    view = memoryview(data).cast("B", shape=[1, 32, 32, 3])
    x = pixels.copy()
    alive = weakref.ref(x)
    result = {}
    pause = g._pause_next_run()
    worker = threading.Thread(target=lambda: result.update(view=g(view)))
    worker.start()
    assert pause.wait_until_running(30)
    with pytest.raises(BufferError):
        view.release()  # the running call holds an export of it
    pause.release()
    worker.join()
    view.release()  # nothing holds it now
    data.extend(b"resizable again")
    assert np.array_equal(result["view"], expected)

    pause = g._pause_next_run()
    worker = threading.Thread(target=lambda arr: result.update(x=g(arr)), args=(x,))
    worker.start()
    del x
    assert pause.wait_until_running(30)
    pause.release()
    worker.join()
    del worker
    gc.collect()
    assert alive() is None and np.array_equal(result["x"], expected)


def test_a_graph_outlives_its_network(files, cpp_logits):
    g = bnn.load(files["tiny.deploy"]).compile(threads=1)
    gc.collect()
    x = images(1)
    assert np.array_equal(g(x), cpp_logits(files["tiny.deploy"], x))


def test_the_gil_is_released_while_a_graph_runs(files):
    """A run paused inside the call (with a test hook) lets this thread run Python and another
    graph to completion: it released the GIL. Had it kept it, this thread could not run until
    the pause timed out, and the run would have finished by then."""
    net = bnn.load(files["tiny.deploy"])
    first, second = net.compile(threads=1), net.compile(threads=1)
    x = images(1)
    expected = first(x)
    result = {}
    pause = first._pause_next_run()
    worker = threading.Thread(target=lambda: result.update(y=first(x)))
    worker.start()
    assert pause.wait_until_running(30)
    assert pause.running  # this thread runs Python while the other is inside run()
    assert np.array_equal(second(x), expected)  # and another graph runs meanwhile
    assert pause.running and "y" not in result
    pause.release()
    worker.join()
    assert pause.finished and np.array_equal(result["y"], expected)


def test_calls_on_one_graph_from_two_threads_wait_for_each_other(files):
    g = bnn.load(files["tiny.deploy"]).compile(threads=1)
    a, b = images(1, seed=1), images(1, seed=2)
    want_a, want_b = g(a), g(b)
    result = {}
    pause = g._pause_next_run()
    first = threading.Thread(target=lambda: result.update(a=g(a)))
    first.start()
    assert pause.wait_until_running(30)
    second = threading.Thread(target=lambda: result.update(b=g(b)))
    second.start()
    second.join(0.2)
    assert "b" not in result and pause.running  # the second call cannot have run: the graph is busy
    pause.release()
    first.join()
    second.join()
    assert np.array_equal(result["a"], want_a) and np.array_equal(result["b"], want_b)


def test_the_benchmark_hook_times_the_runs_it_is_asked_for(files):
    g = bnn.load(files["tiny.deploy"]).compile(threads=1)
    x = images(1)
    seconds = g._time_runs(x, 3)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    assert g._last_input_address == x.ctypes.data
    with pytest.raises(bnn.Error, match="found float64"):
        g._time_runs(x.astype(np.float64), 1)
