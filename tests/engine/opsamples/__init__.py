"""Sample inputs for every public op, keyed by the op's registered name.

The registry-driven tests (``tests/engine/test_gradcheck.py``) iterate ``engine.OPS`` and demand
samples here for every op, so a new op cannot skip the gradient checks. Sample modules in this
package are discovered automatically; each calls :func:`add`.

Conventions: float64 numpy arrays (also inside lists/tuples, and in kwargs) become tensors; by
default every float array argument is differentiated. Integer/bool arrays become constant tensors.
Choose inputs away from kinks and inside the op's domain.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any

import numpy as np

AUTO = "auto"


@dataclass
class Sample:
    args: tuple
    kwargs: dict = field(default_factory=dict)
    nondiff: tuple = ()               # positional args (or kwarg names) never differentiated
    torch_fn: Any = AUTO              # AUTO: resolve by name in torch; None: no torch equivalent
    second_order: bool = True         # False only where torch lacks a second derivative too
    fd: bool = True                   # finite differences (False for non-smooth-by-design ops)
    wrap: Any = None                  # wrap(op, *args, **kwargs): run the op inside the same
    #                                   composition for engine and torch (gauge-invariant outputs,
    #                                   symmetric inputs); None: call the op directly
    atol: float = 1e-6
    rtol: float = 1e-5
    note: str = ""


SAMPLES: dict[str, list[Sample]] = {}
# Ops that torch does not implement, with the reason; parity is skipped only for these.
NO_TORCH: dict[str, str] = {}
# Ops whose forward values can't be compared with torch (random), with the reason.
NO_VALUE_PARITY: dict[str, str] = {}


def add(name: str, *args: Any, **kwargs: Any) -> None:
    """Register a sample for op ``name``; options of :class:`Sample` go in ``opts={...}``."""
    opts = kwargs.pop("opts", {})
    SAMPLES.setdefault(name, []).append(Sample(args, kwargs, **opts))


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return rng(seed).standard_normal(shape)


def pos(*shape: int, seed: int = 0, lo: float = 0.5, hi: float = 2.0) -> np.ndarray:
    return rng(seed).uniform(lo, hi, shape)


def unit(*shape: int, seed: int = 0) -> np.ndarray:
    """Values in (-0.9, 0.9), away from 0 by at least 0.1 (kinks, domain edges)."""
    r = rng(seed)
    return r.uniform(0.1, 0.9, shape) * r.choice([-1.0, 1.0], shape)


def away(*shape: int, seed: int = 0, gap: float = 0.2) -> np.ndarray:
    """Normal-ish values at least ``gap`` from 0 and from each other's ties."""
    r = rng(seed)
    x = r.uniform(gap, 2.0, shape) * r.choice([-1.0, 1.0], shape)
    return x


def distinct(*shape: int, seed: int = 0) -> np.ndarray:
    """Values with distinct magnitudes (no ties), for extrema and sorting."""
    n = int(np.prod(shape)) if shape else 1
    vals = (np.arange(n) - n / 2 + 0.37) * 0.31
    return rng(seed).permutation(vals).reshape(shape)


def ints(*shape: int, high: int, seed: int = 0) -> np.ndarray:
    return rng(seed).integers(0, high, shape).astype(np.int64)


def _load() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


_load()
