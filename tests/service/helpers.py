"""Helpers for the service tests: wire tensors built and read independently of service.codec."""

from __future__ import annotations

import base64
import copy
import struct
from typing import Any

import numpy as np
import orjson

OIP = {np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64",
       np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64", np.dtype(np.bool_): "BOOL"}
NP = {v: k for k, v in OIP.items()}


def wire_tensor(name: str, arr: Any, *, requires_grad: bool = False, encoding: str = "data") -> dict:
    """A request tensor object; encoding "data" (nested list), "b64" or "binary" (size only)."""
    a = np.asarray(arr)
    t: dict[str, Any] = {"name": name, "datatype": OIP[a.dtype], "shape": list(a.shape)}
    if encoding == "data":
        t["data"] = a.tolist()
    elif encoding == "b64":
        t["b64"] = base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode()
    else:
        t["parameters"] = {"binary_data_size": a.nbytes}
    if requires_grad:
        t["requires_grad"] = True
    return t


def _special(v: Any) -> Any:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.get(v, v) \
        if isinstance(v, str) else v


def read_tensor(t: dict | None, blob: bytes | None = None) -> np.ndarray | None:
    """A response tensor object as a numpy array (data, b64 or a binary blob)."""
    if t is None:
        return None
    dt = NP[t["datatype"]].newbyteorder("<")
    if "data" in t:
        flat = np.array([_special(v) for v in t["data"]], dtype=dt)
    elif "b64" in t:
        flat = np.frombuffer(base64.b64decode(t["b64"]), dtype=dt)
    else:
        assert blob is not None and len(blob) == t["parameters"]["binary_data_size"]
        flat = np.frombuffer(blob, dtype=dt)
    return flat.reshape(t["shape"])


def binary_body(header: dict, arrays: list[np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """A Triton binary-extension body and its headers."""
    js = orjson.dumps(header)
    body = js + b"".join(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes() for a in arrays)
    return body, {"content-type": "application/octet-stream",
                  "inference-header-content-length": str(len(js))}


def split_binary_response(content: bytes, header_length: int) -> tuple[dict, list[bytes]]:
    """Cut a binary response into its JSON header and one blob per binary tensor, in order."""
    header = orjson.loads(content[:header_length])
    tensors = [t for t in header["grads"] if t is not None] + [t for t in header["values"].values() if t]
    blobs, off = [], header_length
    for t in tensors:
        n = t["parameters"]["binary_data_size"]
        blobs.append(content[off:off + n])
        off += n
    assert off == len(content), "the binary response has trailing or missing bytes"
    return header, blobs


def f32(x: float) -> float:
    """Round to float32 (for comparing JSON numbers)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


SEED_NODES = [
    {"op": "mul", "inputs": [2, "x"], "outputs": ["t"]},
    {"op": "add", "inputs": ["t", 1], "outputs": ["y"]},
    {"op": "mul", "inputs": ["w", "x"], "outputs": ["p"]},
    {"op": "add", "inputs": ["p", "b"], "outputs": ["q"]},
    {"op": "sub", "inputs": ["y", "q"], "outputs": ["r"]},
    {"op": "pow", "inputs": ["r", 2], "outputs": ["s"]},
    {"op": "mean", "inputs": ["s"], "outputs": ["loss"]},
]
SEED_SOURCE = "y = 2 * x + 1\nloss = mean((y - (w * x + b)) ** 2)\n"


def seed_request(x: np.ndarray, *, form: str = "nodes", encoding: str = "data", **top: Any) -> dict:
    """The issue's seed example: w = 0.5, b = 0.9, y = 2x + 1, loss = mean((y - (w x + b))^2)."""
    graph: dict[str, Any] = {"inputs": [
        wire_tensor("w", np.array([0.5], np.float32), requires_grad=True, encoding=encoding),
        wire_tensor("b", np.array([0.9], np.float32), requires_grad=True, encoding=encoding),
        wire_tensor("x", x, encoding=encoding),
    ]}
    if form == "nodes":
        graph["nodes"] = copy.deepcopy(SEED_NODES)
    else:
        graph["source"] = SEED_SOURCE
    req = {"graph": graph, "outputs": ["loss"], "inputs": ["w", "b"], "grad_outputs": None,
           "retain_graph": None, "create_graph": False, "allow_unused": False}
    req.update(top)
    return req


def seed_torch(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(dloss/dw, dloss/db, loss) computed by torch, the oracle."""
    import torch
    w = torch.tensor([0.5], requires_grad=True)
    b = torch.tensor([0.9], requires_grad=True)
    xt = torch.from_numpy(x)
    loss = ((2 * xt + 1 - (w * xt + b)) ** 2).mean()
    gw, gb = torch.autograd.grad(loss, [w, b])
    return gw.numpy(), gb.numpy(), loss.item()
