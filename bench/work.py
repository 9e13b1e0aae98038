"""Requests that stay in flight for a set wall-clock time, on any machine.

Tests and the load tool need requests that outlast a deadline, or stay in flight long enough to
be caught mid-way. Work sized for one machine finishes early on a faster one and late on a
slower or busier one, so these requests take time instead of work: a chain of
``debug.sleep`` nodes, which a server registers only with ``GRADSERVE_DEBUG_OPS=true``. The
service's deadline check runs between nodes, so a chain of short steps stops within one step of
its deadline.

>>> req = sleep_chain(1.0, grad=True)
>>> req["outputs"], req["inputs"]
('l', 'x')
"""

from __future__ import annotations

import base64
import math

import numpy as np

#: The server setting these requests need.
DEBUG_ENV = {"GRADSERVE_DEBUG_OPS": "true"}


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


def sleep_chain(seconds: float, *, step: float = 0.05, grad: bool = False, op: str = "debug.sleep",
                x: np.ndarray | None = None) -> dict:
    """A request whose forward takes ``seconds`` of wall time, in steps of ``step`` seconds.

    ``grad=False`` returns the last value; ``grad=True`` asks for ``d sum(y_n * y_n) / d x``,
    which is ``2 x`` whatever the chain's length. ``op="debug.spin"`` burns CPU instead of
    sleeping.
    """
    n = max(1, math.ceil(seconds / step))
    x = np.arange(1.0, 5.0) if x is None else x
    src = "y0 = x * 1\n" + "".join(f"y{i + 1} = {op}(y{i}, {step!r})\n" for i in range(n))
    inputs = [wire_tensor("x", x, rg=grad)]
    if grad:
        return {"graph": {"inputs": inputs, "source": src + f"l = sum(y{n} * y{n})\n"},
                "outputs": "l", "inputs": "x"}
    return {"graph": {"inputs": inputs, "source": src}, "return": [f"y{n}"]}
