"""torch's small top-level helpers, against torch: finfo, iinfo, is_tensor, numel and
inference_mode (no graph recorded inside; mode=False changes nothing; usable as a decorator)."""

from __future__ import annotations

import pytest
import torch

import engine

from .parity import assert_same_error, torch_error

_FINFO = ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution", "dtype")


@pytest.mark.parametrize("name", ["float16", "float32", "float64", None])
def test_finfo_as_torch(name: str | None) -> None:
    e = engine.finfo(getattr(engine, name)) if name else engine.finfo()
    t = torch.finfo(getattr(torch, name)) if name else torch.finfo()
    assert {a: getattr(e, a) for a in _FINFO} == {a: getattr(t, a) for a in _FINFO}
    assert repr(e) == repr(t)


@pytest.mark.parametrize("name", ["int8", "int16", "int32", "int64", "uint8"])
def test_iinfo_as_torch(name: str) -> None:
    e, t = engine.iinfo(getattr(engine, name)), torch.iinfo(getattr(torch, name))
    assert (e.bits, e.max, e.min, e.dtype, repr(e)) == (t.bits, t.max, t.min, t.dtype, repr(t))


@pytest.mark.parametrize("call", [lambda lib: lib.finfo(lib.int32), lambda lib: lib.iinfo(lib.float32),
                                  lambda lib: lib.iinfo(lib.bool)])
def test_info_errors_as_torch(call) -> None:
    assert str(assert_same_error(call)) == str(torch_error(call))


def test_is_tensor_and_numel_as_torch() -> None:
    for lib in (engine, torch):
        assert lib.is_tensor(lib.ones(2)) and not lib.is_tensor([1.0]) and not lib.is_tensor(2.0)
        assert lib.numel(lib.ones(2, 3)) == 6 and lib.numel(lib.ones(())) == 1


def test_inference_mode_as_torch() -> None:
    for lib in (engine, torch):
        x = lib.ones(2, requires_grad=True)
        with lib.inference_mode():
            assert not (x * 2).requires_grad
        with lib.inference_mode(False):
            assert (x * 2).requires_grad
        assert (x * 2).requires_grad

        @lib.inference_mode
        def bare(x):
            return (x * 2).requires_grad

        @lib.inference_mode()
        def called(x):
            return (x * 2).requires_grad

        assert not bare(x) and not called(x) and lib.is_grad_enabled()
