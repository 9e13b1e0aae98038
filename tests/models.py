"""Small reference models written once for any torch-like library (``engine`` or ``torch``).

Each model is a pure function of a library, a parameter dict and a batch, so the very same code
runs on the engine, on torch (the oracle) and, through the client's recording tensors, over HTTP.
Parameters and batches are numpy arrays from one seeded generator; convert them with
:func:`to_lib`.

>>> import engine
>>> p, batch = cnn_setup(np.float64)
>>> loss = cnn_loss(engine, to_lib(engine, p, requires_grad=True), *to_lib(engine, batch))
"""

from __future__ import annotations

from typing import Any

import numpy as np

# ---------------------------------------------------------------- helpers
CNN_SHAPE = {"batch": 8, "channels": (3, 8, 16), "image": 16, "classes": 10}
TRANSFORMER_SHAPE = {"batch": 2, "seq": 16, "d_model": 32, "heads": 4, "mlp": 64}


def to_lib(lib: Any, arrays: dict[str, np.ndarray] | tuple, requires_grad: bool = False) -> Any:
    """Arrays as ``lib`` tensors (a dict stays a dict, a tuple a tuple); floats may require grad."""
    def conv(a: np.ndarray) -> Any:
        t = lib.tensor(a)
        if requires_grad and a.dtype.kind == "f":
            t.requires_grad_(True)
        return t
    if isinstance(arrays, dict):
        return {k: conv(v) for k, v in arrays.items()}
    return tuple(conv(a) for a in arrays)


def _uniform(rng: np.random.Generator, fan_in: int, shape: tuple, dtype: Any) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)  # torch's default Linear/Conv initialisation range
    return rng.uniform(-bound, bound, shape).astype(dtype)


# ---------------------------------------------------------------- a small CNN
def cnn_setup(dtype: Any = np.float32, seed: int = 0, batch: int | None = None,
              channels: tuple[int, int, int] | None = None,
              image: int | None = None) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Parameters and a batch ``(x, y)`` for :func:`cnn_loss`."""
    n = batch or CNN_SHAPE["batch"]
    c0, c1, c2 = channels or CNN_SHAPE["channels"]
    size = image or CNN_SHAPE["image"]
    k = CNN_SHAPE["classes"]
    rng = np.random.default_rng(seed)
    flat = c2 * (size // 4) ** 2
    p = {
        "conv1.weight": _uniform(rng, c0 * 9, (c1, c0, 3, 3), dtype),  # no bias: batch_norm follows
        "bn1.weight": (1.0 + 0.1 * rng.standard_normal(c1)).astype(dtype),
        "bn1.bias": (0.1 * rng.standard_normal(c1)).astype(dtype),
        "conv2.weight": _uniform(rng, c1 * 9, (c2, c1, 3, 3), dtype),
        "conv2.bias": _uniform(rng, c1 * 9, (c2,), dtype),
        "fc.weight": _uniform(rng, flat, (k, flat), dtype),
        "fc.bias": _uniform(rng, flat, (k,), dtype),
    }
    x = rng.standard_normal((n, c0, size, size)).astype(dtype)
    y = rng.integers(0, k, n).astype(np.int64)
    return p, (x, y)


def cnn_loss(lib: Any, p: dict, x: Any, y: Any) -> Any:
    """conv2d -> batch_norm (training) -> relu -> max_pool2d -> conv2d -> relu -> max_pool2d ->
    linear -> cross_entropy."""
    F = lib.nn.functional
    h = F.conv2d(x, p["conv1.weight"], padding=1)
    h = F.batch_norm(h, None, None, p["bn1.weight"], p["bn1.bias"], training=True)
    h = F.max_pool2d(F.relu(h), 2)
    h = F.conv2d(h, p["conv2.weight"], p["conv2.bias"], padding=1)
    h = F.max_pool2d(F.relu(h), 2)
    h = h.reshape(h.shape[0], -1)
    return F.cross_entropy(F.linear(h, p["fc.weight"], p["fc.bias"]), y)


# ---------------------------------------------------------------- a pre-norm transformer block
def transformer_setup(dtype: Any = np.float32, seed: int = 0, batch: int | None = None,
                      seq: int | None = None, d_model: int | None = None, mlp: int | None = None
                      ) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Parameters and a batch ``(x, target)`` for :func:`transformer_loss`."""
    b = batch or TRANSFORMER_SHAPE["batch"]
    t = seq or TRANSFORMER_SHAPE["seq"]
    d = d_model or TRANSFORMER_SHAPE["d_model"]
    m = mlp or TRANSFORMER_SHAPE["mlp"]
    rng = np.random.default_rng(seed)
    p = {
        "ln1.weight": (1.0 + 0.1 * rng.standard_normal(d)).astype(dtype),
        "ln1.bias": (0.1 * rng.standard_normal(d)).astype(dtype),
        "attn.qkv.weight": _uniform(rng, d, (3 * d, d), dtype),
        "attn.qkv.bias": _uniform(rng, d, (3 * d,), dtype),
        "attn.out.weight": _uniform(rng, d, (d, d), dtype),
        "attn.out.bias": _uniform(rng, d, (d,), dtype),
        "ln2.weight": (1.0 + 0.1 * rng.standard_normal(d)).astype(dtype),
        "ln2.bias": (0.1 * rng.standard_normal(d)).astype(dtype),
        "mlp.fc1.weight": _uniform(rng, d, (m, d), dtype),
        "mlp.fc1.bias": _uniform(rng, d, (m,), dtype),
        "mlp.fc2.weight": _uniform(rng, m, (d, m), dtype),
        "mlp.fc2.bias": _uniform(rng, m, (d,), dtype),
    }
    x = rng.standard_normal((b, t, d)).astype(dtype)
    target = rng.standard_normal((b, t, d)).astype(dtype)
    return p, (x, target)


def transformer_block(lib: Any, p: dict, x: Any, heads: int = TRANSFORMER_SHAPE["heads"]) -> Any:
    """x + attn(layer_norm(x)) (causal, ``heads`` heads), then + mlp(layer_norm(.)) with gelu."""
    F = lib.nn.functional
    b, t, d = x.shape
    h = heads
    a = F.layer_norm(x, (d,), p["ln1.weight"], p["ln1.bias"])
    qkv = F.linear(a, p["attn.qkv.weight"], p["attn.qkv.bias"])       # (B, T, 3D)
    qkv = qkv.reshape(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)      # (3, B, H, T, Dh)
    att = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
    att = att.transpose(1, 2).reshape(b, t, d)
    x = x + F.linear(att, p["attn.out.weight"], p["attn.out.bias"])
    m = F.layer_norm(x, (d,), p["ln2.weight"], p["ln2.bias"])
    m = F.linear(F.gelu(F.linear(m, p["mlp.fc1.weight"], p["mlp.fc1.bias"])),
                 p["mlp.fc2.weight"], p["mlp.fc2.bias"])
    return x + m


def transformer_loss(lib: Any, p: dict, x: Any, target: Any,
                     heads: int = TRANSFORMER_SHAPE["heads"]) -> Any:
    """Mean squared error of the block's output against ``target``."""
    return lib.nn.functional.mse_loss(transformer_block(lib, p, x, heads), target)
