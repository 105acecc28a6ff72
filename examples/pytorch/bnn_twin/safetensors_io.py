"""safetensors files with nothing but the standard library and torch (Debian has no
`safetensors` package): u64 little-endian header length, the JSON header padded with spaces to
a multiple of 8, then the tensors' bytes (docs/checkpoint-format.md).

Tensors are given and returned as (torch dtype, tensor); U64 has no torch type in 1.13 and is
carried as int64 with the same bits."""
import ctypes
import json
import os
import struct

import torch

_TO_NAME = {torch.float32: "F32", torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8", torch.float16: "F16",
            torch.bfloat16: "BF16", torch.float64: "F64"}
_FROM_NAME = {v: k for k, v in _TO_NAME.items()}
_FROM_NAME["U64"] = torch.int64


def _bytes_of(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()) if t.numel() else b""


def save(path, tensors, metadata=None, u64=()):
    """Writes {name: tensor} (names in `u64` are int64 tensors written as U64) and a metadata dict
    of strings."""
    header, chunks, offset = {}, [], 0
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map strings to strings")
        header["__metadata__"] = dict(metadata)
    for name, t in tensors.items():
        if name == "__metadata__" or not name:
            raise ValueError(f"safetensors: invalid tensor name {name!r}")
        if name in u64:
            if t.dtype != torch.int64:
                raise TypeError(f"safetensors: U64 tensor {name!r} must be carried as int64, got {t.dtype}")
            dtype = "U64"
        elif t.dtype in _TO_NAME:
            dtype = _TO_NAME[t.dtype]
        else:
            raise TypeError(f"safetensors: tensor {name!r} has unsupported dtype {t.dtype}")
        data = _bytes_of(t)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)
        f.flush()
        os.fsync(f.fileno())  # on disk before a caller renames it over the previous file


def load(path):
    """Returns ({name: tensor}, metadata dict, {name: dtype name as in the file})."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"safetensors '{path}': {len(blob)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"safetensors '{path}': header length {n} runs past the end of the {len(blob)}-byte file")
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    data = bytearray(blob[8 + n:])
    tensors, dtypes = {}, {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in _FROM_NAME:
            raise ValueError(f"safetensors '{path}': tensor {name!r} has unsupported dtype {dt}")
        begin, end = info["data_offsets"]
        torch_dtype = _FROM_NAME[dt]
        count = 1
        for d in info["shape"]:
            count *= d
        if end - begin != count * torch.empty((), dtype=torch_dtype).element_size() or end > len(data):
            raise ValueError(f"safetensors '{path}': tensor {name!r} of shape {info['shape']} does not fit its "
                             f"bytes [{begin}, {end}) of {len(data)}")
        if count == 0:
            t = torch.empty(info["shape"], dtype=torch_dtype)
        else:
            t = torch.frombuffer(data, dtype=torch_dtype, count=count, offset=begin).reshape(info["shape"]).clone()
        tensors[name], dtypes[name] = t, dt
    return tensors, meta, dtypes
