"""An ONNX graph exported from PyTorch (eval mode), read for the converter (convert.py): every
value computable from the weights alone folded to a numpy constant, and the rest rewritten into
a few canonical operations on activations (docs/onnx.md, "Patterns"):

  Op("sign", x, zero=..., threshold=t)   any spelling of a binarisation of x - t
  Op("conv", x, w, b, ...)               a convolution (its input may be a sign)
  Op("bn" | "prelu" | "addc" | "mulc" | "linear" | "pool" | ... , x, ...)
  Op("add" | "mul", a, b)                two activations joined (a residual, a gate)

Only numpy and the onnx package are needed (onnx 1.12 has no runtime to fold constants with).
"""
import numpy as np
import onnx
from onnx import numpy_helper


class ConversionError(ValueError):
    """An ONNX graph the converter cannot map to bnn's modules without changing what it computes."""


def refuse(node, what, needed):
    """ConversionError naming the ONNX node, its op type, what is wrong and what would be needed."""
    name = node.name or (node.output[0] if node.output else "?")
    raise ConversionError(f"ONNX node '{name}' ({node.op_type}): {what}; {needed}")


# ---------------------------------------------------------------------------------------------
# Constant folding: the numpy meaning of the ops torch emits between weights and what reads them.

def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _axes(node, inputs, a):
    if len(inputs) > 1 and inputs[1] is not None:
        return [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
    return list(a["axes"]) if "axes" in a else None


def _reduce(fn):
    def run(node, ins, a):
        axes = _axes(node, ins, a)
        return fn(ins[0], axis=None if axes is None else tuple(axes), keepdims=bool(a.get("keepdims", 1)))
    return run


def _unsqueeze(node, ins, a):
    out = ins[0]
    for ax in sorted(_axes(node, ins, a)):
        out = np.expand_dims(out, ax if ax >= 0 else ax + out.ndim + 1)
    return out


def _squeeze(node, ins, a):
    axes = _axes(node, ins, a)
    return np.squeeze(ins[0], axis=None if axes is None else tuple(axes))


def _reshape(node, ins, a):
    shape = [int(s) for s in ins[1]]
    shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return ins[0].reshape(shape)


def _cast(node, ins, a):
    return ins[0].astype(onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[a["to"]])


def _gather(node, ins, a):
    return np.take(ins[0], ins[1].astype(np.int64), axis=a.get("axis", 0))


def _slice(node, ins, a):
    data, starts, ends = ins[0], ins[1], ins[2]
    axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
    steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[int(ax)] = slice(int(s), int(e), int(st))
    return data[tuple(index)]


_FOLD = {
    "Identity": lambda n, i, a: i[0],
    "Abs": lambda n, i, a: np.abs(i[0]),
    "Neg": lambda n, i, a: -i[0],
    "Sign": lambda n, i, a: np.sign(i[0]),
    "Sqrt": lambda n, i, a: np.sqrt(i[0]),
    "Reciprocal": lambda n, i, a: np.reciprocal(i[0]),
    "Add": lambda n, i, a: i[0] + i[1],
    "Sub": lambda n, i, a: i[0] - i[1],
    "Mul": lambda n, i, a: i[0] * i[1],
    "Div": lambda n, i, a: i[0] / i[1],
    "Pow": lambda n, i, a: np.power(i[0], i[1]).astype(i[0].dtype),
    "Max": lambda n, i, a: np.maximum(i[0], i[1]),
    "Min": lambda n, i, a: np.minimum(i[0], i[1]),
    "Clip": lambda n, i, a: np.clip(i[0], i[1] if len(i) > 1 and i[1] is not None else a.get("min", -np.inf),
                                    i[2] if len(i) > 2 and i[2] is not None else a.get("max", np.inf)),
    "Where": lambda n, i, a: np.where(i[0], i[1], i[2]),
    "Greater": lambda n, i, a: i[0] > i[1],
    "GreaterOrEqual": lambda n, i, a: i[0] >= i[1],
    "Less": lambda n, i, a: i[0] < i[1],
    "LessOrEqual": lambda n, i, a: i[0] <= i[1],
    "Equal": lambda n, i, a: i[0] == i[1],
    "Not": lambda n, i, a: np.logical_not(i[0]),
    "Cast": _cast,
    "Reshape": _reshape,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Transpose": lambda n, i, a: np.transpose(i[0], a.get("perm")),
    "Gather": _gather,
    "Slice": _slice,
    "Concat": lambda n, i, a: np.concatenate(i, axis=a["axis"]),
    "Expand": lambda n, i, a: i[0] * np.ones([int(s) for s in i[1]], dtype=i[0].dtype),
    "ConstantOfShape": lambda n, i, a: np.full([int(s) for s in i[0]], numpy_helper.to_array(a["value"])[0]
                                               if "value" in a else np.float32(0)),
    "ReduceMean": _reduce(np.mean),
    "ReduceSum": _reduce(np.sum),
    "ReduceMax": _reduce(np.max),
}


# ---------------------------------------------------------------------------------------------
# Canonical operations on activations.

class Op:
    """One operation on activations: `kind`, its activation inputs `ins` (value names), its output
    `out`, constants and options in `attrs`, and the ONNX node it came from (`node`, for messages)."""

    def __init__(self, kind, ins, out, node, **attrs):
        self.kind, self.ins, self.out, self.node, self.attrs = kind, list(ins), out, node, attrs

    def __repr__(self):
        return f"Op({self.kind}, {self.ins} -> {self.out}, {self.node.name})"


# What bnn would need for an op the converter does not map, for the refusal's message.
_NEEDED = {
    "Concat": "bnn has no concatenation module: a network that concatenates channels needs one added "
              "(docs/adding-a-layer.md)",
    "ConvTranspose": "bnn has no transposed convolution",
    "Pad": "bnn pads only inside its convolutions and pools (zeros, or +1 around a binary conv's signs): "
           "pad inside the conv (padding=) instead",
    "Softmax": "the deployed network returns logits: export the model without its softmax",
    "LogSoftmax": "the deployed network returns logits: export the model without its log-softmax",
}


class Graph:
    """The graph's constants (`const`: value -> numpy array), its activation ops in order, its one
    input (name, NCHW shape) and its output value, with `shape(value)` from ONNX shape inference."""

    def __init__(self, model: onnx.ModelProto):
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - shapes are a help for messages and Shape ops, not required
            pass
        g = model.graph
        self.const = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        inputs = [i for i in g.input if i.name not in self.const]
        if len(inputs) != 1 or len(g.output) != 1:
            raise ConversionError(f"ONNX graph: expected one input image batch and one output (the logits), found "
                                  f"inputs {[i.name for i in inputs]} and outputs {[o.name for o in g.output]}")
        self._shapes = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            dims = vi.type.tensor_type.shape.dim
            self._shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        self.input = inputs[0].name
        self.input_shape = self._shapes.get(self.input)
        if not self.input_shape or len(self.input_shape) != 4:
            raise ConversionError(f"ONNX graph: expected an input [N, C, H, W], found '{self.input}' of shape "
                                  f"{self.input_shape}")
        self.output = g.output[0].name
        self.alias = {}
        self.ops = []
        for node in g.node:
            self._read(node)
        self._arithmetic_signs()

    def shape(self, value):
        return self._shapes.get(self.resolve(value))

    def resolve(self, value):
        while value in self.alias:
            value = self.alias[value]
        return value

    def _read(self, node):
        ins = [self.resolve(v) if v else "" for v in node.input]
        a = _attrs(node)
        if node.op_type == "Constant":
            self.const[node.output[0]] = numpy_helper.to_array(a["value"])
            return
        if node.op_type == "Shape" and ins[0] not in self.const:
            shape = self.shape(ins[0])
            if shape and None not in shape:
                self.const[node.output[0]] = np.array(shape, dtype=np.int64)
                return
        if all(v == "" or v in self.const for v in ins) and node.op_type in _FOLD:
            values = [self.const[v] if v else None for v in ins]
            self.const[node.output[0]] = np.asarray(_FOLD[node.op_type](node, values, a))
            return
        try:
            self._activation_op(node, ins, a)
        except ConversionError as e:
            # Refused only if the output depends on it: a straight-through estimator's soft branch
            # (dead once the estimator is read as its sign) may hold anything.
            self.ops.append(Op("unsupported", [v for v in ins if v and v not in self.const], node.output[0], node,
                               error=e))

    def _activation_op(self, node, ins, a):
        t, out = node.op_type, node.output[0]
        dyn = [v for v in ins if v and v not in self.const]
        c = [self.const.get(v) for v in ins]
        add = self.ops.append
        if t in ("Identity", "Dropout") or (t == "Pad" and c[1] is not None and not np.any(c[1])):
            self.alias[out] = ins[0]  # torch writes a Pad of nothing before some average pools
        elif t == "Cast" and a["to"] in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            self.alias[out] = ins[0]  # where(x > 0, 1.0, -1.0) computes in double: the same signs
        elif t == "Conv":
            add(Op("conv", [ins[0]], out, node, w=c[1], b=c[2] if len(c) > 2 else None, **_conv_attrs(node, a, c[1])))
        elif t == "BatchNormalization":
            add(Op("bn", [ins[0]], out, node, weight=c[1], bias=c[2], mean=c[3], var=c[4], eps=a.get("epsilon", 1e-5)))
        elif t in ("Relu", "Sigmoid", "Tanh"):
            add(Op(t.lower(), [ins[0]], out, node))
        elif t == "Clip":
            lo = c[1] if len(c) > 1 and c[1] is not None else a.get("min", -np.inf)
            hi = c[2] if len(c) > 2 and c[2] is not None else a.get("max", np.inf)
            add(Op("relu" if float(lo) == 0 and np.isinf(hi) else "hardtanh", [ins[0]], out, node, lo=float(lo),
                   hi=float(hi)))
        elif t == "PRelu":
            add(Op("prelu", [ins[0]], out, node, slope=c[1]))
        elif t == "Sign":
            add(Op("sign", [ins[0]], out, node, zero="zero", threshold=0.0))
        elif t in ("Greater", "GreaterOrEqual", "Less", "LessOrEqual") and len(dyn) == 1 and ins[0] == dyn[0]:
            add(Op("compare", [ins[0]], out, node, op=t, at=c[1]))
        elif t == "Where" and ins[0] not in self.const and ins[1] in self.const and ins[2] in self.const:
            self._where(node, ins, out)
        elif t in ("Add", "Sub", "Mul", "Div"):
            self._arithmetic(node, ins, out)
        elif t in ("MaxPool", "AveragePool"):
            add(Op("maxpool" if t == "MaxPool" else "avgpool", [ins[0]], out, node, **_pool_attrs(node, a)))
        elif t == "GlobalAveragePool":
            add(Op("gap", [ins[0]], out, node))
        elif t == "ReduceMean" and sorted(x % 4 for x in (_axes(node, c, a) or [])) == [2, 3]:
            add(Op("gap", [ins[0]], out, node))
        elif t in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
            self._reshape(node, ins, out, a)
        elif t == "Gemm":
            if a.get("alpha", 1.0) != 1.0 or a.get("transA", 0) or c[1] is None:
                refuse(node, "a Gemm other than x W^T + b", "bnn's Linear computes x W^T + b")
            w = c[1] if a.get("transB", 0) else c[1].T
            b = None if len(c) < 3 or c[2] is None else c[2] * a.get("beta", 1.0)
            add(Op("linear", [ins[0]], out, node, weight=w, bias=b))
        elif t == "MatMul" and c[1] is not None and c[1].ndim == 2:
            add(Op("linear", [ins[0]], out, node, weight=c[1].T, bias=None))
        else:
            refuse(node, "bnn has no module for this op in a network's activations" if t not in _NEEDED else
                   "this op is not mapped", _NEEDED.get(t, "a bnn module that computes it (docs/adding-a-layer.md) "
                                                          "and its pattern in bnn/onnx_graph.py"))

    def _where(self, node, ins, out):
        cond = next((op for op in self.ops if op.out == ins[0] and op.kind == "compare"), None)
        hi, lo = self.const[ins[1]], self.const[ins[2]]
        if cond is None or not (np.all(np.abs(hi) == 1) and np.all(lo == -hi) and np.all(hi == hi.flat[0])):
            refuse(node, "a Where that is not a sign (where(x >= t, 1, -1) and its spellings)",
                   "a bnn module that computes it")
        at = np.asarray(cond.attrs["at"], dtype=np.float32)
        op = cond.attrs["op"]
        # where(x >= t, 1, -1), where(x > t, 1, -1), where(x < t, -1, 1), where(x <= t, -1, 1): +1 above
        # t; at x = t, +1 for >= and <, -1 for > and <=.
        if (op in ("Greater", "GreaterOrEqual")) != (hi.flat[0] > 0):
            refuse(node, "a sign that gives -1 above its threshold", "its negation written as a sign")
        zero_is_plus = op in ("GreaterOrEqual", "Less")
        self.ops.append(Op("sign", [cond.ins[0]], out, node, zero="plus" if zero_is_plus else "minus", threshold=at))

    def _arithmetic_signs(self):
        """(x >= t) * 2 - 1 (the comparison cast to float, as the twin's sign_of): a sign of x - t."""
        producer = {op.out: op for op in self.ops}

        def scalar(op, kind, value):
            return op is not None and op.kind == kind and np.size(op.attrs["c"]) == 1 and \
                float(np.asarray(op.attrs["c"]).reshape(-1)[0]) == value

        for op in self.ops:
            times2 = producer.get(op.ins[0]) if op.ins else None
            if not (scalar(op, "addc", -1.0) and scalar(times2, "mulc", 2.0)):
                continue
            cmp = producer.get(times2.ins[0])
            if cmp is not None and cmp.kind == "compare" and cmp.attrs["op"] in ("Greater", "GreaterOrEqual"):
                op.kind, op.ins = "sign", [cmp.ins[0]]
                op.attrs = dict(zero="plus" if cmp.attrs["op"] == "GreaterOrEqual" else "minus",
                                threshold=np.asarray(cmp.attrs["at"], dtype=np.float32))

    def _arithmetic(self, node, ins, out):
        t = node.op_type
        dyn = [v for v in ins if v not in self.const]
        if len(dyn) == 2:
            kind = {"Add": "add", "Sub": "sub", "Mul": "mul"}.get(t)
            if kind is None:
                refuse(node, "a division of two activations", "a bnn module that computes it")
            self.ops.append(Op(kind, ins, out, node))
            return
        x, k = (ins[0], self.const[ins[1]]) if ins[0] in dyn else (ins[1], self.const[ins[0]])
        k = np.asarray(k, dtype=np.float32)
        if t == "Sub" and ins[0] not in dyn:
            refuse(node, "a constant minus an activation", "x - c or c * x written as such")
        if t == "Div" and ins[0] not in dyn:
            refuse(node, "a constant divided by an activation", "a bnn module that computes it")
        if t in ("Add", "Sub"):
            self.ops.append(Op("addc", [x], out, node, c=k if t == "Add" else -k))
        else:
            self.ops.append(Op("mulc", [x], out, node, c=k if t == "Mul" else (1 / k).astype(np.float32)))

    def _reshape(self, node, ins, out, a):
        shape_in, shape_out = self.shape(ins[0]), self.shape(out)
        if shape_in is None or shape_out is None:
            refuse(node, "a reshape of unknown shapes", "an export with fixed input shapes")
        if shape_in == shape_out:
            self.alias[out] = ins[0]
        elif len(shape_out) == 2 and len(shape_in) in (2, 4):
            self.ops.append(Op("flatten", [ins[0]], out, node, chw=shape_in[1:] if len(shape_in) == 4 else None))
        elif len(shape_in) == 2 and shape_out[:2] == shape_in and all(d == 1 for d in shape_out[2:]):
            if len(shape_out) == 4:  # [N, C] -> [N, C, 1, 1], as a gate is applied
                self.ops.append(Op("expand", [ins[0]], out, node))
            else:
                self.alias[out] = ins[0]
        else:
            refuse(node, f"a reshape from {shape_in} to {shape_out}", "bnn flattens [N, H, W, C] to [N, H*W*C] only")


def _conv_attrs(node, a, w):
    if w is None:
        refuse(node, "a convolution whose weights are not constant", "weights that fold to constants")
    k = list(a.get("kernel_shape", w.shape[2:]))
    strides, pads = list(a.get("strides", [1, 1])), list(a.get("pads", [0, 0, 0, 0]))
    if a.get("group", 1) != 1:
        refuse(node, f"a grouped convolution (group {a['group']})", "bnn's convolutions are dense (group 1)")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        refuse(node, f"a dilated convolution {a['dilations']}", "bnn's convolutions are not dilated")
    if k[0] != k[1] or strides[0] != strides[1] or len(set(pads)) != 1 or a.get("auto_pad", b"NOTSET") not in (
            b"NOTSET", "NOTSET"):
        refuse(node, f"kernel {k}, strides {strides}, pads {pads}",
               "a square kernel with one stride and the same padding on every side")
    return dict(kernel=k[0], stride=strides[0], padding=pads[0])


def _pool_attrs(node, a):
    k, strides, pads = list(a["kernel_shape"]), list(a.get("strides", a["kernel_shape"])), list(a.get("pads", [0] * 4))
    if k[0] != k[1] or strides[0] != strides[1] or len(set(pads)) != 1 or a.get("ceil_mode", 0):
        refuse(node, f"kernel {k}, strides {strides}, pads {pads}, ceil_mode {a.get('ceil_mode', 0)}",
               "a square window with one stride, the same padding on every side and ceil_mode off")
    if node.op_type == "AveragePool" and pads[0] and not a.get("count_include_pad", 0):
        refuse(node, "an average pool that leaves its zero padding out of the mean",
               "count_include_pad=True (bnn counts the padding, as PyTorch's default)")
    return dict(kernel=k[0], stride=strides[0], padding=pads[0])
