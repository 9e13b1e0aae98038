"""Requests that take a set time on this machine: sized by measuring, not by guessing.

Tests and the load tool need requests that outlast a deadline, or stay in flight long enough to
be caught mid-way, on any machine. A fixed graph that needs 8 s here may need 0.5 s on a host
with more cores and a faster BLAS, so a fixed size makes a test that passes here and fails there.
``timed_chain`` times a few layers of its graph with plain numpy now (the fastest of several
runs; the engine only adds overhead to that) and sets the layer count, and if need be the row
count, from it.

>>> req = timed_chain(0.05)
>>> sorted(req)
['graph', 'return']
"""

from __future__ import annotations

import base64
import math
import time

import numpy as np


def wire_tensor(name: str, arr: np.ndarray, rg: bool = False, b64: bool = False) -> dict:
    """A request tensor: a nested ``data`` list, or little-endian ``b64`` bytes."""
    t = {"name": name, "datatype": {"float32": "FP32", "float64": "FP64"}[arr.dtype.name],
         "shape": list(arr.shape)}
    if b64:
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        t["b64"] = base64.b64encode(raw).decode()
    else:
        t["data"] = arr.tolist()
    if rg:
        t["requires_grad"] = True
    return t


def _layer_seconds(rows: int, size: int, backward: bool, window: float = 0.3, layers: int = 4) -> float:
    """The fastest time of one ``tanh(y @ w)`` layer (and its backward) seen in ``window`` seconds.

    The fastest of many short runs, so that a moment of contention (another test process, BLAS
    threads waiting for a core) does not pass for this machine's speed: an inflated time would
    size the request too small, and it would finish early once the machine is free.
    """
    rng = np.random.default_rng(0)
    y0 = rng.standard_normal((rows, size), np.float32)
    w = np.full((size, size), 1 / size, np.float32)
    best = math.inf
    end = time.perf_counter() + window
    for rep in range(10_000):
        t0 = time.perf_counter()
        y = y0
        for _ in range(layers):
            y = np.tanh(y @ w)
            if backward:  # the backward of a layer: at least one more matmul, for its input
                _ = (y * (1 - y * y)) @ w.T
        best = min(best, (time.perf_counter() - t0) / layers)
        if rep >= 4 and time.perf_counter() > end:
            break
    return best


def timed_chain(seconds: float, *, grad: bool = False, max_bytes: int = 256 << 20,
                max_layers: int = 1900) -> dict:
    """A request of ``tanh(y @ w)`` layers that needs at least ``seconds`` on this machine.

    The graph is a chain (two nodes a layer, so the service's cooperative deadline check runs
    often). ``grad=False`` asks for the last layer only; ``grad=True`` asks for
    ``d sum(y_n) / d x``. Sizes as :func:`timed_layers` picks them.
    """
    return _chain(*timed_layers(seconds, grad=grad, max_bytes=max_bytes, max_layers=max_layers), grad)


def timed_layers(seconds: float, *, grad: bool = False, max_bytes: int = 256 << 20,
                 max_layers: int = 1900) -> tuple[int, int, int]:
    """``(layers, rows, size)`` of a ``tanh(y @ w)`` chain that needs ``seconds`` on this machine.

    At most ``max_layers`` layers, under GRADSERVE_MAX_GRAPH_DEPTH. The service keeps every
    node's value, so the inputs and the layers' values must fit ``max_bytes`` (about the memory
    the service's preflight estimates); the smallest ``w`` (``size`` x ``size``) and ``y``
    (``rows`` x ``size``) that reach ``seconds`` within it are taken. Raises ``RuntimeError``
    when this machine is too fast for ``seconds`` of work in ``max_bytes``: better a clear
    failure than a test that passes by luck.
    """
    best = 0.0
    for size in (1000, 2000, 3000):
        for rows in (1, 4, 16, 64):
            per_layer = _layer_seconds(rows, size, grad)
            per_layer_bytes = (3 if grad else 2) * 4 * rows * size  # values (+ saved, for grad)
            fits = min(max_layers, (max_bytes - 4 * size * (2 * size + rows)) // per_layer_bytes)
            if fits * per_layer >= seconds:
                return math.ceil(seconds / per_layer), rows, size
            best = max(best, fits * per_layer)
    raise RuntimeError(f"this machine does {best:.2f} s of tanh(y @ w) layers at most in "
                       f"{max_bytes} bytes; {seconds} s were asked for")


def _chain(layers: int, rows: int, size: int, grad: bool) -> dict:
    # w is made by the server (float32 ones / size, as timed), so the request
    # is small and its upload and parsing take no time of their own
    x = np.random.default_rng(0).standard_normal((rows, size), np.float32)
    src = (f"w = ones({size}, {size}) / {size}\ny0 = x * 1\n"
           + "".join(f"y{i + 1} = tanh(y{i} @ w)\n" for i in range(layers)))
    inputs = [wire_tensor("x", x, rg=grad, b64=True)]
    if grad:
        return {"graph": {"inputs": inputs, "source": src + f"l = sum(y{layers})\n"},
                "outputs": "l", "inputs": "x"}
    return {"graph": {"inputs": inputs, "source": src}, "return": [f"y{layers}"]}
