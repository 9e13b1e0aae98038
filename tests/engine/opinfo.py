"""Run engine ops over torch's own OpInfo sample inputs and compare with torch (test_opinfo.py).

torch ships its operator test data, ``op_db`` in ``torch.testing._internal.common_methods_invocations``
(it needs ``expecttest``). Each OpInfo names an op, gives sample inputs per dtype, and records which
of torch's own tests are expected to fail or are skipped for it. This module maps OpInfos to
engine ops, converts torch's samples to engine tensors (through numpy), runs both, and reports per
sample whether the forward, the first-order and the second-order results agree.

Checks per sample, as torch's own tests do them:

- forward: ``op(sample.input, *sample.args, **sample.kwargs)``; same structure, shapes, dtypes,
  ``requires_grad`` and values (NaN equal NaN);
- first order: the vector-Jacobian product of the (``output_process_fn_grad``-processed) floating
  outputs with a fixed random cotangent, with respect to every input tensor that requires grad,
  through the OpInfo's ``gradcheck_wrapper`` (torch's ``test_fn_grad``);
- second order: the gradient of ``<u, vjp>`` with respect to the inputs and the cotangent
  (what ``gradgradcheck`` checks, ``test_fn_gradgrad``).

Reference inputs (``reference_inputs``, where an OpInfo has its own) are generated without grad, as
torch's reference tests do; their gradients are taken with respect to ``sample.input`` alone.
"""

from __future__ import annotations

import functools
import math
import types
import unittest
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import engine

# The samples are tiny: torch's intra-op thread pool only adds waits (on a shared CI machine, tens
# of milliseconds per call).
torch.set_num_threads(1)

DTYPES = (torch.float32, torch.float64)
CHECKS = ("forward", "first", "second")
# torch's own tests whose skip/xfail marks apply to each of our checks.
TORCH_TESTS = {"forward": ("TestCommon", "test_noncontiguous_samples"),
               "first": ("TestBwdGradients", "test_fn_grad"),
               "second": ("TestBwdGradients", "test_fn_gradgrad")}
# Default tolerances (rtol, atol): torch.testing's for float64; float32 a little looser, because
# numpy and ATen sum in different orders.
TOL = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-7, 1e-7)}
# Reference inputs include large tensors (a million elements) for the forward; their gradients
# are compared up to this size (torch's own gradient tests use the sample inputs only).
REF_GRAD_NUMEL = 10_000
# OpInfos whose outputs are random (or uninitialised): only structure, shapes and dtypes are
# compared, for the values and for the gradients (a dropout mask is drawn by each library's own
# generator).
RANDOM = {"randn", "randn_like", "rand_like", "randint", "empty", "empty_like", "multinomial", "randperm",
          "nn.functional.dropout", "nn.functional.dropout1d", "nn.functional.dropout2d",
          "nn.functional.dropout3d", "nn.functional.alpha_dropout",
          "nn.functional.feature_alpha_dropout.with_train"}


# Decompositions defined up to a gauge (the signs of singular vectors and eigenvectors, the
# basis of a null space): their forward is compared after the OpInfo's output_process_fn_grad,
# the gauge-invariant function torch's own gradient tests differentiate.
GAUGE = {"linalg.svd", "svd", "linalg.eigh", "linalg.eig", "linalg.svd_lowrank", "pca_lowrank"}


@functools.cache
def op_db() -> list:
    from torch.testing._internal.common_methods_invocations import op_db as db
    return list(db)


def op_id(op: Any) -> str:
    """``name`` or ``name.variant`` (``max.reduction_with_dim``), unique over op_db."""
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


def engine_name(op: Any) -> str | None:
    """The engine op an OpInfo tests: its name or one of its aliases, if registered."""
    for n in (op.name, *(a.name for a in op.aliases)):
        if n in engine.OPS:
            return n
    return None


def matched_ops() -> list:
    """The OpInfos with an engine op, tested in at least one of our float dtypes on CPU."""
    return [op for op in op_db() if engine_name(op) is not None
            and any(dt in op.supported_dtypes("cpu") for dt in DTYPES)]


# ---------------------------------------------------------------- torch's own skip marks
def _decorator_kind(dec: Any) -> str | None:
    """'xfail' or 'skip' for the decorators that stop a torch test on CPU, else None."""
    if dec is unittest.expectedFailure:
        return "xfail"
    q = getattr(dec, "__qualname__", "")
    if q.startswith("skip.") or q == "onlyCUDA":
        return "skip"
    return None


def torch_skip(op: Any, check: str, dtype: torch.dtype) -> str | None:
    """Why torch's own OpInfo skips this check on CPU for this dtype (None: it does not).

    The checks are torch's ``test_noncontiguous_samples`` (forward over every sample input),
    ``test_fn_grad`` and ``test_fn_gradgrad``; OpInfo flags ``supports_autograd`` and
    ``supports_gradgrad`` turn the gradient tests off entirely."""
    if check != "forward" and not op.supports_autograd:
        return "supports_autograd=False"
    if check == "second" and not op.supports_gradgrad:
        return "supports_gradgrad=False"
    cls, test = TORCH_TESTS[check]
    for d in op.decorators:
        if not hasattr(d, "is_active") or not d.is_active(cls, test, "cpu", dtype, {}):
            continue
        for dec in d.decorators:
            kind = _decorator_kind(dec)
            if kind is not None:
                return f"{kind} in {cls}.{test}"
    return None


def tolerance(op: Any, dtype: torch.dtype) -> tuple[float, float]:
    """Our default tolerance, widened by the OpInfo's own overrides for CPU and this dtype."""
    rtol, atol = TOL[dtype]
    for d in op.decorators:
        decs = d.decorators if hasattr(d, "is_active") else [d]
        if hasattr(d, "is_active") and not any(
                d.is_active(c, t, "cpu", dtype, {}) for c, t in TORCH_TESTS.values()):
            continue
        for dec in decs:
            if type(dec).__name__ == "toleranceOverride" and dtype in dec.d:
                rtol, atol = max(rtol, dec.d[dtype].rtol), max(atol, dec.d[dtype].atol)
            elif type(dec).__name__ == "precisionOverride" and dtype in dec.d:
                atol = max(atol, dec.d[dtype])
    return rtol, atol


# ---------------------------------------------------------------- samples
def samples(op: Any, dtype: torch.dtype) -> list[tuple[Any, bool]]:
    """``(sample, is_reference)`` pairs: the sample inputs, then any extra reference inputs.

    Seeded, so a sample index names the same input on every run. The generator functions are
    called directly: ``op.sample_inputs`` wraps them in an iterator that inspects the call stack
    for every sample, which costs more than running most ops."""
    torch.manual_seed(0)
    out = [(s, False) for s in op.sample_inputs_func(op, "cpu", dtype, op.supports_autograd)]
    if op.reference_inputs_func is not None:
        torch.manual_seed(0)
        refs = list(op.reference_inputs_func(op, "cpu", dtype, False))
        n = len(out)  # reference_inputs begin with the sample inputs
        out += [(s, True) for s in refs[n:]]
    return out


# ---------------------------------------------------------------- torch -> engine
_DT = {getattr(torch, n): getattr(engine, n) for n in
       ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")}


class Unsupported(TypeError):
    """A sample holds a dtype the engine does not have (complex, bfloat16)."""


class Converter:
    """torch values to engine values; the same torch tensor always maps to the same engine tensor."""

    def __init__(self) -> None:
        self.memo: dict[int, engine.Tensor] = {}

    def __call__(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            e = self.memo.get(id(x))
            if e is None:
                if x.dtype not in _DT:
                    raise Unsupported(str(x.dtype).removeprefix("torch."))
                e = engine.tensor(x.detach().numpy(), dtype=_DT[x.dtype])
                if x.requires_grad:
                    e.requires_grad_(True)
                self.memo[id(x)] = e
            return e
        if isinstance(x, torch.dtype):
            return _DT[x]
        if isinstance(x, torch.Size):
            return engine.Size(x)
        if isinstance(x, torch.device):
            return "cpu"
        if isinstance(x, torch.memory_format):
            return getattr(engine, str(x).removeprefix("torch."))
        if isinstance(x, complex):
            raise Unsupported("complex")
        if isinstance(x, list):
            return [self(v) for v in x]
        if isinstance(x, tuple):
            return tuple(self(v) for v in x)
        if isinstance(x, dict):
            return {k: self(v) for k, v in x.items()}
        return x


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _names(c)
    return names


_SHIM = {"torch": engine, "F": engine.nn.functional,
         "wrapper_set_seed": lambda op, *a, **k: op(*a, **k)}


@functools.cache
def rebind(fn: Callable) -> Callable:
    """A test-data function (lambda, wrapper) with ``torch`` in its globals replaced by ``engine``.

    OpInfos wrap some ops in small lambdas (``lambda x, shape: x.view(shape)``,
    ``torch.where(condition, self, other)``); the engine mirrors torch's API, so the same code
    runs on engine tensors once its global names resolve to the engine."""
    if isinstance(fn, functools.partial):
        return functools.partial(rebind(fn.func), *fn.args, **fn.keywords)
    if getattr(fn, "__name__", None) in _SHIM:  # wrapper_set_seed as a gradcheck_wrapper
        return _SHIM[fn.__name__]
    code = getattr(fn, "__code__", None)
    if code is None:
        return fn
    g = {n: _SHIM.get(n, fn.__globals__.get(n)) for n in _names(code) if n in fn.__globals__ or n in _SHIM}
    g["__builtins__"] = fn.__globals__.get("__builtins__", __builtins__)
    return types.FunctionType(code, g, fn.__name__, fn.__defaults__, fn.__closure__)


def _is_test_code(fn: Any) -> bool:
    mod = getattr(fn, "__module__", "") or ""
    return mod.startswith("torch.testing") or getattr(fn, "__name__", "") == "<lambda>"


def engine_op(op: Any) -> Callable:
    """The engine callable for an OpInfo: test-data lambdas and partials rebound, torch's own
    functions replaced by the engine op of the same name."""
    f = op.op
    if isinstance(f, functools.partial):
        inner = f.func if _is_test_code(f.func) else engine.OPS[engine_name(op)].fn
        return functools.partial(rebind(inner) if _is_test_code(inner) else inner, *f.args, **f.keywords)
    if _is_test_code(f):
        return rebind(f)
    return engine.OPS[engine_name(op)].fn


# ---------------------------------------------------------------- comparing
class Mismatch(AssertionError):
    pass


def _flat(out: Any) -> list:
    if isinstance(out, (torch.Tensor, engine.Tensor)):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def _np(t: Any) -> np.ndarray:
    if isinstance(t, engine.Tensor):
        return np.asarray(t.detach()._data)
    return t.detach().numpy(force=True)


def _dtname(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.").removeprefix("engine.")


def compare(e: Any, t: Any, tol: tuple[float, float], what: str, values: bool = True,
            rg: bool = True) -> None:
    """Raise :class:`Mismatch` unless ``e`` (engine) matches ``t`` (torch)."""
    ef, tf = _flat(e), _flat(t)
    if len(ef) != len(tf):
        raise Mismatch(f"{what}: {len(ef)} outputs, torch has {len(tf)}")
    for k, (a, b) in enumerate(zip(ef, tf)):
        w = f"{what}[{k}]" if len(tf) > 1 else what
        if isinstance(b, torch.Tensor):
            if not isinstance(a, engine.Tensor):
                raise Mismatch(f"{w}: {type(a).__name__}, torch gives a tensor")
            if tuple(a.shape) != tuple(b.shape):
                raise Mismatch(f"{w}: shape {list(a.shape)}, torch {list(b.shape)}")
            if _dtname(a) != _dtname(b):
                raise Mismatch(f"{w}: dtype {_dtname(a)}, torch {_dtname(b)}")
            if rg and a.requires_grad != b.requires_grad:
                raise Mismatch(f"{w}: requires_grad {a.requires_grad}, torch {b.requires_grad}")
            if values:
                x, y = _np(a), _np(b)
                if x.dtype.kind == "f" or y.dtype.kind == "f":
                    ok = np.allclose(x, y, rtol=tol[0], atol=tol[1], equal_nan=True)
                else:
                    ok = np.array_equal(x, y)
                if not ok:
                    with np.errstate(all="ignore"):
                        err = np.nanmax(np.abs(x.astype(np.float64) - y.astype(np.float64))) if x.size else 0
                    raise Mismatch(f"{w}: values differ (max abs diff {err:.3g})")
        elif isinstance(b, (bool, int, float)) and not isinstance(a, engine.Tensor):
            if values and not (a == b or (isinstance(b, float) and math.isnan(b) and math.isnan(a))):
                raise Mismatch(f"{w}: {a!r}, torch {b!r}")
        elif isinstance(a, engine.Tensor) != isinstance(b, torch.Tensor):
            raise Mismatch(f"{w}: {type(a).__name__}, torch {type(b).__name__}")


# ---------------------------------------------------------------- running one sample
@dataclass
class Result:
    """Per check: None (not applicable), 'skip: reason', 'ok' or the mismatch message."""

    forward: str | None = None
    first: str | None = None
    second: str | None = None
    notes: list[str] = field(default_factory=list)


def _float_outs(out: Any) -> list:
    return [o for o in _flat(out) if isinstance(o, (torch.Tensor, engine.Tensor))
            and o.dtype in (torch.float32, torch.float64, engine.float32, engine.float64)
            and o.requires_grad]


def _leaves(args: Any) -> list:
    seen, out = set(), []
    for t in _flat(args):
        if isinstance(t, (torch.Tensor, engine.Tensor)) and t.requires_grad and id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _call(fn: Callable, sample_fn: Callable, args: tuple, kwargs: dict) -> Any:
    return sample_fn(fn, *args, **kwargs)


def _grads(lib: Any, outs: list, leaves: list, vs: list, create: bool) -> list:
    return list(lib.autograd.grad(outs, leaves, vs, allow_unused=True, materialize_grads=True,
                                  create_graph=create))


def run_sample(op: Any, sample: Any, dtype: torch.dtype, reference: bool) -> Result:
    """Run one OpInfo sample through torch and the engine and compare (see the module doc)."""
    res = Result()
    tol = tolerance(op, dtype)
    # float32 rounding compounds through two backward passes (torch checks second order in
    # float64 only): ten times the tolerance there.
    tol2 = tol if dtype == torch.float64 else (tol[0] * 10, tol[1] * 10)
    random = op_id(op) in RANDOM or op.name in RANDOM or bool(sample.kwargs.get("dropout_p"))
    efn = engine_op(op)
    skip = {c: torch_skip(op, c, dtype) for c in CHECKS}
    t_args = (sample.input, *sample.args)
    outside = _outside_dtypes((t_args, sample.kwargs))
    if outside:  # not a difference: the engine has no such dtype (listed, not counted)
        res.forward = res.first = res.second = f"n/a: {outside} input"
        return res
    if reference and isinstance(sample.input, torch.Tensor) and sample.input.dtype.is_floating_point:
        sample.input.requires_grad_(op.supports_autograd)
    # forward
    if skip["forward"]:
        res.forward = "skip: " + skip["forward"]
    else:
        with torch.no_grad():
            t_out = op.op(*t_args, **sample.kwargs)
        conv = Converter()
        try:
            with engine.no_grad():
                e_out = efn(*conv(t_args), **conv(sample.kwargs))
            if op.name in GAUGE:  # compare what the OpInfo itself declares well defined
                t_out = sample.output_process_fn_grad(t_out)
                e_out = rebind(sample.output_process_fn_grad)(e_out)
            compare(e_out, t_out, tol, "output", values=not random, rg=False)
            res.forward = "ok"
        except Exception as exc:  # noqa: BLE001  (any engine failure is a mismatch)
            res.forward = _msg(exc)
    # gradients
    t_leaves = _leaves((t_args, sample.kwargs))
    if reference and any(t.numel() > REF_GRAD_NUMEL for t in t_leaves):
        return res
    if not t_leaves or skip["first"] == "supports_autograd=False":
        return res
    twrap = op.gradcheck_wrapper
    ewrap = rebind(twrap)
    try:
        t_out = sample.output_process_fn_grad(twrap(op.op, *t_args, **sample.kwargs))
        t_outs = _float_outs(t_out)
        if not t_outs:
            return res
        rnd = np.random.default_rng(1)
        v_np = [rnd.standard_normal(tuple(o.shape)) for o in t_outs]
        t_vs = [torch.tensor(v, dtype=o.dtype, requires_grad=True) for v, o in zip(v_np, t_outs)]
        t_g1 = _grads(torch, t_outs, t_leaves, t_vs, create=True)
    except Exception as exc:  # noqa: BLE001
        res.notes.append(f"torch cannot differentiate this sample: {_msg(exc)}")
        return res
    conv = Converter()
    try:
        e_args, e_kwargs = conv(t_args), conv(sample.kwargs)
        e_leaves = [conv(t) for t in t_leaves]
    except TypeError as exc:
        res.first = None if skip["first"] else _msg(exc)
        res.second = None if skip["second"] else _msg(exc)
        return res
    e_g1 = None
    if skip["first"]:
        res.first = "skip: " + skip["first"]
    else:
        try:
            e_out = rebind(sample.output_process_fn_grad)(ewrap(efn, *e_args, **e_kwargs))
            e_outs = _float_outs(e_out)
            if len(e_outs) != len(t_outs):
                raise Mismatch(f"{len(e_outs)} differentiable outputs, torch has {len(t_outs)}")
            e_vs = [engine.tensor(v, dtype=_DT[o.dtype]).requires_grad_() for v, o in zip(v_np, t_outs)]
            e_g1 = _grads(engine, e_outs, e_leaves, e_vs, create=True)
            compare(e_g1, t_g1, tol, "grad", values=not random, rg=False)
            res.first = "ok"
        except Exception as exc:  # noqa: BLE001
            res.first = _msg(exc)
    if skip["second"]:
        res.second = "skip: " + skip["second"]
        return res
    if res.first not in ("ok", None) and e_g1 is None:
        res.second = res.first
        return res
    try:
        if e_g1 is None:  # first order skipped by torch but second order tested
            e_out = rebind(sample.output_process_fn_grad)(ewrap(efn, *e_args, **e_kwargs))
            e_outs = _float_outs(e_out)
            e_vs = [engine.tensor(v, dtype=_DT[o.dtype]).requires_grad_() for v, o in zip(v_np, t_outs)]
            e_g1 = _grads(engine, e_outs, e_leaves, e_vs, create=True)
        u_np = [rnd.standard_normal(tuple(g.shape)) for g in t_g1]
        t_G = sum((g * torch.tensor(u, dtype=g.dtype)).sum() for g, u in zip(t_g1, u_np))
        e_G = sum((g * engine.tensor(u, dtype=g.dtype)).sum() for g, u in zip(e_g1, u_np))
        # A G that does not require grad (nothing left to differentiate, e.g. an empty output)
        # has zero derivatives.
        t_g2 = _grads(torch, [t_G], t_leaves + t_vs, None, create=False) if t_G.requires_grad \
            else [torch.zeros_like(t) for t in t_leaves + t_vs]
        e_g2 = _grads(engine, [e_G], e_leaves + e_vs, None, create=False) if e_G.requires_grad \
            else [engine.zeros_like(t) for t in e_leaves + e_vs]
        compare(e_g2, t_g2, tol2, "grad of grad", values=not random, rg=False)
        res.second = "ok"
    except Exception as exc:  # noqa: BLE001
        res.second = _msg(exc)
    return res


def _outside_dtypes(x: Any) -> str | None:
    for v in _flat(x) if not isinstance(x, dict) else []:
        if isinstance(v, torch.Tensor) and v.dtype not in _DT:
            return str(v.dtype).removeprefix("torch.")
        if isinstance(v, complex):
            return "complex"
        if isinstance(v, dict):
            r = _outside_dtypes(tuple(v.values()))
            if r:
                return r
    return None


def _msg(exc: BaseException) -> str:
    if isinstance(exc, Mismatch):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def run_op(op: Any) -> Iterator[tuple[str, int, bool, Result]]:
    """``(dtype name, sample index, is_reference, result)`` for every sample of an OpInfo."""
    for dtype in DTYPES:
        if dtype not in op.supported_dtypes("cpu"):
            continue
        for i, (s, ref) in enumerate(samples(op, dtype)):
            yield str(dtype).removeprefix("torch."), i, ref, run_sample(op, s, dtype, ref)
