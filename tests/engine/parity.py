"""Helpers for torch-parity tests: run one scenario on ``engine`` and on ``torch``, compare.

A scenario is a function of a module ``m`` (``engine`` or ``torch``; the engine mirrors torch's
API). Expected values and error messages always come from torch in the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import engine

TDT = {engine.float32: torch.float32, engine.float64: torch.float64, engine.int64: torch.int64,
       engine.int32: torch.int32, engine.bool: torch.bool, engine.float16: torch.float16,
       engine.int16: torch.int16, engine.int8: torch.int8, engine.uint8: torch.uint8}


def run(fn: Callable, *args: Any) -> tuple[Any, Any]:
    """``fn(engine, *args)`` and ``fn(torch, *args)``."""
    return fn(engine, *args), fn(torch, *args)


def assert_same(e: Any, t: Any, rtol: float = 1e-5, atol: float = 1e-6, rg: bool = True) -> None:
    """Same structure, shapes, dtypes, values and (by default) ``requires_grad`` as torch's result."""
    if isinstance(t, torch.Tensor):
        assert isinstance(e, engine.Tensor), f"expected a tensor, got {e!r}"
        assert tuple(e.shape) == tuple(t.shape)
        assert TDT[e.dtype] == t.dtype
        if rg:
            assert e.requires_grad == t.requires_grad, (e, t)
        # force=True: torch may hand back an efficient ZeroTensor (e.g. a second derivative of abs)
        np.testing.assert_allclose(e.detach().numpy(), t.numpy(force=True), rtol=rtol, atol=atol)
    elif isinstance(t, dict):
        assert isinstance(e, dict) and list(e) == list(t)
        for k in t:
            assert_same(e[k], t[k], rtol, atol, rg)
    elif isinstance(t, (tuple, list)):
        assert type(e) is type(t) or (isinstance(e, tuple) and isinstance(t, tuple)), (e, t)
        assert len(e) == len(t)
        for a, b in zip(e, t):
            assert_same(a, b, rtol, atol, rg)
    elif t is None:
        assert e is None, f"expected None, got {e!r}"
    else:
        assert e == pytest.approx(t), (e, t)


def parity(fn: Callable, *args: Any, **kw: Any) -> None:
    e, t = run(fn, *args)
    assert_same(e, t, **kw)


def torch_error(fn: Callable, *args: Any) -> BaseException:
    try:
        fn(torch, *args)
    except Exception as exc:  # noqa: BLE001 - we want whatever torch raises
        return exc
    raise AssertionError("torch did not raise")


def assert_same_error(fn: Callable, *args: Any, key: str | None = None) -> BaseException:
    """The engine raises torch's exception type, and torch's message (or ``key``, a phrase of it)."""
    texc = torch_error(fn, *args)
    tmsg = str(texc)
    key = key if key is not None else tmsg.splitlines()[0]
    assert key in tmsg, f"key phrase {key!r} is not in torch's message {tmsg!r}"
    with pytest.raises(Exception) as info:
        fn(engine, *args)
    assert type(info.value) is type(texc), (type(info.value), type(texc), str(info.value))
    assert key in str(info.value), f"{str(info.value)!r} lacks torch's phrase {key!r}"
    return info.value
