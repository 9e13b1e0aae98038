"""Memory layout as torch reports it: ``stride()``, ``is_contiguous()``, ``contiguous()`` and
``clone``'s memory formats, against torch (the oracle) on the view ops both libraries make as
views. ``contiguous()`` used to return its input unchanged, so torch's idiom
``x.transpose(1, 2).contiguous().view(b, t, c)`` raised the view error it exists to avoid."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import engine

from .parity import assert_same_error, torch_error

VIEWS: dict[str, Callable] = {
    "plain": lambda x: x,
    "t": lambda x: x[0].t(),
    "transpose": lambda x: x.transpose(0, 2),
    "permute": lambda x: x.permute(2, 0, 1),
    "step slice": lambda x: x[:, ::2, 1:],
    "transposed step slice": lambda x: x[:, ::2, 1:].transpose(0, 2),
    "permuted expand": lambda x: x[:, :1].expand(2, 5, 4).permute(2, 1, 0),
    "select": lambda x: x[:, 1],
    "narrow": lambda x: x.narrow(2, 1, 2),
    "unsqueeze": lambda x: x.unsqueeze(1),
    "expand": lambda x: x[:, :1].expand(2, 5, 4),
    "diagonal": lambda x: x.diagonal(0, 1, 2),
    "mT": lambda x: x.mT,
    "size-1 dims": lambda x: x[:1, :, :1],
    "0-d": lambda x: x[1, 2, 3],
}


def _both(fn: Callable) -> tuple:
    a = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    return fn(engine.tensor(a)), fn(torch.tensor(a))


@pytest.mark.parametrize("name", VIEWS)
def test_strides_and_contiguity_as_torch(name: str) -> None:
    e, t = _both(VIEWS[name])
    assert e.stride() == t.stride()
    assert [e.stride(d) for d in range(e.dim())] == [t.stride(d) for d in range(t.dim())]
    assert e.is_contiguous() == t.is_contiguous()
    c, tc = e.contiguous(), t.contiguous()
    assert c.is_contiguous() and c.stride() == tc.stride()
    assert (c is e) == (tc is t)
    np.testing.assert_array_equal(c.numpy(), tc.numpy())
    for fmt in ("preserve_format", "contiguous_format"):
        ec, tcl = e.clone(memory_format=getattr(engine, fmt)), t.clone(memory_format=getattr(torch, fmt))
        assert ec.stride() == tcl.stride(), fmt
    assert e.clone().stride() == t.clone().stride()


def test_transpose_contiguous_view_and_its_gradient_as_torch() -> None:
    def run(lib):
        x = lib.tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
        y = x.transpose(1, 2).contiguous().view(2, 12)
        w = lib.tensor(np.linspace(-1.0, 1.0, 24).reshape(2, 12))
        (g,) = lib.autograd.grad((y * w).sum(), x)
        return y.detach().numpy(), g.numpy()

    (ey, eg), (ty, tg) = run(engine), run(torch)
    np.testing.assert_array_equal(ey, ty)
    np.testing.assert_array_equal(eg, tg)
    e, t = engine.ones(2, 3, requires_grad=True), torch.ones(2, 3, requires_grad=True)
    assert e.t().contiguous().grad_fn.name() == t.t().contiguous().grad_fn.name() == "CloneBackward0"
    assert e.clone().grad_fn.name() == t.clone().grad_fn.name()


def test_errors_and_sizes_as_torch() -> None:
    for lib in (engine, torch):
        x = lib.ones(2, 3, dtype=lib.float64)
        assert (x.element_size(), x.itemsize, x.nbytes) == (8, 8, 48)
    for call in (lambda lib: lib.ones(2, 3).stride(2), lambda lib: lib.ones(2, 3).stride(-3),
                 lambda lib: lib.tensor(1.0).stride(0)):
        assert str(assert_same_error(call)) == str(torch_error(call))


def test_layout_is_seen_through_vmap_and_compile() -> None:
    # under vmap a tensor's values are a stand-in: it reports C order
    out = engine.func.vmap(lambda r: engine.tensor(float(r.is_contiguous())) + r.sum() * 0)(
        engine.ones(3, 2, 4).transpose(1, 2))
    assert out.tolist() == [1.0, 1.0, 1.0]
    f = engine.compile(lambda x: x.t().contiguous().view(-1) * 2)
    x = engine.tensor(np.arange(6.0).reshape(2, 3))
    for _ in range(2):
        np.testing.assert_array_equal(f(x).numpy(), np.arange(6.0).reshape(2, 3).T.reshape(-1) * 2)


@pytest.mark.parametrize("fmt", ["contiguous_format", "channels_last", "channels_last_3d",
                                 "preserve_format"])
@pytest.mark.parametrize("shape, view", [((2, 3, 4, 5), "plain"), ((2, 3, 4, 5), "permute"),
                                         ((2, 3, 4, 5, 2), "plain"), ((2, 3), "plain"),
                                         ((2, 1, 4, 1), "plain")])
def test_memory_formats_as_torch(fmt: str, shape: tuple, view: str) -> None:
    def run(lib):
        x = lib.tensor(np.arange(float(np.prod(shape))).reshape(shape))
        if view == "permute":
            x = x.permute(0, 2, 3, 1)
        f = getattr(lib, fmt)
        out = []
        for call in (lambda: x.clone(memory_format=f).stride(),
                     lambda: x.contiguous(memory_format=f).stride(),
                     lambda: x.is_contiguous(memory_format=f) if fmt != "preserve_format" else None):
            try:
                out.append(call())
            except RuntimeError as e:
                out.append(str(e))
        return out

    assert run(engine) == run(torch)


@pytest.mark.parametrize("make, dtype", [
    (lambda lib: lib.tensor([1.5, -2.0], requires_grad=True), "int32"),
    (lambda lib: lib.tensor([1.5, -2.0]), "int16"),
    (lambda lib: lib.tensor([[1, 2], [3, 4]], dtype=lib.int16), "int32"),
    (lambda lib: lib.ones(3, dtype=lib.int16), "int32"),
    (lambda lib: lib.ones(2, 2).t(), "int16"),
    (lambda lib: lib.ones(()), "int16"),
    (lambda lib: lib.ones(()), "int32"),
    (lambda lib: lib.tensor([1.5, -2.0], dtype=lib.float64), "int64"),
    (lambda lib: lib.tensor([True, False]), "uint8"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_view_dtype_reads_the_same_bytes_as_torch(make: Callable, dtype: str) -> None:
    # view(dtype) used to cast the values (x.view(int32) of 1.5 gave 1)
    out = []
    for lib in (engine, torch):
        try:
            y = make(lib).view(getattr(lib, dtype))
            out.append((str(y.dtype).split(".")[-1], tuple(y.shape), y.tolist(), y.requires_grad))
        except RuntimeError as e:
            out.append(str(e))
    assert out[0] == out[1]


def test_a_write_through_a_dtype_view_changes_the_bytes_as_torch() -> None:
    out = []
    for lib in (engine, torch):
        x = lib.tensor([1.5, -2.0])
        x.view(lib.int32)[0] = 0
        x.view(lib.int16)[3] = 0
        out.append(x.tolist())
    assert out[0] == out[1] == [0.0, 0.0]
