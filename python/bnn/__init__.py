"""bnn: run binary neural networks deployed with bnn from Python (docs/python.md).

    import bnn
    net = bnn.load("real-to-bin-step3.deploy.safetensors")   # or a trainer checkpoint
    graph = net.compile((1, 32, 32, 3), threads=1)            # or stem="int16" for uint8 images
    logits = graph(x)                                         # x: float32 [N, H, W, C], C-contiguous
    net.classify("cat.png")                                   # [(class name, probability), ...]

Errors bnn reports are bnn.Error, a ValueError; a missing file is FileNotFoundError.

A binary network exported from PyTorch to ONNX becomes a deployment file with
`python -m bnn.convert model.onnx -o model.deploy.safetensors` (bnn.convert, docs/onnx.md; it
needs the onnx package, so it is imported on its own, not here).
"""
from ._bnn import Error, Graph, Network, __version__, load

__all__ = ["Error", "Graph", "Network", "load", "__version__"]
