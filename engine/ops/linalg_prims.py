"""Matrix primitives (matmul, tril/triu, diagonal, einsum, cross, vector norm) with the top-level
ops built on them: mm, bmm, mv, dot, outer, diag, trace, block_diag, ... Each primitive is one
record: forward, VJP, JVP, batching rule and shape rule together. The ``engine.linalg`` namespace
is :mod:`engine.linalg`; the LAPACK primitives it also builds on are :mod:`engine.ops.lapack_prims`."""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

from .._autograd import (
    Primitive,
    apply,
    dims_batch,
    leading_batch,
    linear_jvp,
    multilinear_jvp,
    primitive,
    transpose_jvp,
)
from .._autograd import _align as _align_batch
from .._meta import BLAS_FLOP, _as_meta, _bound, _broadcast, _fresh, _passes, _probe, _probe_dtype
from ..tensor import Tensor
from ._registry import as_tensor_arg, op, promote
from .elementwise import binary_dtype, type_name, where
from .reduction import _reduction_shape
from .shape import expand, norm_dim, reshape, squeeze, transpose, unsqueeze


# ---------------------------------------------------------------- matmul
@primitive(save=(0, 1), save_if=(1, 0))  # each operand's values only for the other's gradient
def _matmul(a, b):
    return np.matmul(a, b)


@_matmul.defvjp
def _matmul_vjp(ctx, g, a, b):
    # Lift 1-D operands to matrices, differentiate, then drop the lifted dims again;
    # batch-broadcast dims are summed away centrally.
    a1, b1 = a._data.ndim == 1, b._data.ndim == 1
    a2 = unsqueeze(a, 0) if a1 else a
    b2 = unsqueeze(b, -1) if b1 else b
    g2 = g
    if a1 and b1:
        g2 = reshape(g, (1, 1))
    elif a1:
        g2 = unsqueeze(g, -2)
    elif b1:
        g2 = unsqueeze(g, -1)
    ga = gb = None
    if ctx.edges[0] is not None:
        if not a1 and _column_major(a._data):
            ga = transpose(matmul(b2, transpose(g2, -1, -2)), -1, -2)
        else:
            ga = matmul(g2, transpose(b2, -1, -2))
            if a1:
                ga = squeeze(ga, -2)
    if ctx.edges[1] is not None:
        if not b1 and _column_major(b._data):
            gb = transpose(matmul(transpose(g2, -1, -2), a2), -1, -2)
        else:
            gb = matmul(transpose(a2, -1, -2), g2)
            if b1:
                gb = squeeze(gb, -1)
    return ga, gb


def _column_major(x: np.ndarray) -> bool:
    """Whether a matrix operand (or each of a batch) is laid out column by column, as ``W.T`` is.

    Its gradient is then computed as the transpose of the transposed product, as torch's mm
    backward does: the same products, laid out as the operand is, so that handing the gradient
    back through the transpose gives a C-ordered array. A transposed gradient would make every
    sum it later joins a strided numpy loop (~20x slower than a contiguous one)."""
    n, m = x.shape[-2:]
    s = x.strides
    return n > 1 and m > 1 and s[-2] == x.itemsize and s[-1] == n * x.itemsize


_matmul.defjvp(multilinear_jvp)


def _matmul_batch(prim, arrs, flags, **params):
    # 1-D operands become matrices (as matmul itself does), the batch dims are aligned, then the
    # lifted dims are dropped again.
    (a, b), (fa, fb) = arrs, flags
    a1, b1 = np.ndim(a) - fa == 1, np.ndim(b) - fb == 1
    if a1:
        a = np.expand_dims(a, -2)
    if b1:
        b = np.expand_dims(b, -1)
    out = np.matmul(*_align_batch([a, b], [fa, fb]))
    if a1 and b1:
        return out[..., 0, 0]
    return out[..., 0, :] if a1 else out[..., 0] if b1 else out


_matmul.defbatch(_matmul_batch)


def _matmul_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    a = arrays[0]
    k = a.shape[-1] if a.ndim else 1
    return 2 * outs[0].size * k * BLAS_FLOP + _passes(prim, arrays, params, outs)


_MATMUL_SIG = "(n?,k),(k,m?)->(n?,m?)"


@_matmul.defshape(work=_matmul_work)
def _matmul_shape(prim: Any, arrays: list, params: dict) -> Any:
    a, b = np.asarray(arrays[0]), np.asarray(arrays[1])
    for i, x in enumerate((a, b)):
        if x.ndim == 0:
            raise ValueError(f"matmul: Input operand {i} does not have enough dimensions (has 0, gufunc "
                             f"core with signature {_MATMUL_SIG} requires 1)")
    a2 = a.shape if a.ndim > 1 else (1,) + a.shape
    b2 = b.shape if b.ndim > 1 else b.shape + (1,)
    if a2[-1] != b2[-2]:
        raise ValueError(f"matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc "
                         f"signature {_MATMUL_SIG} (size {b2[-2]} is different from {a2[-1]})")
    shape = _broadcast([a2[:-2], b2[:-2]]) + (a2[-2],) * (a.ndim > 1) + (b2[-1],) * (b.ndim > 1)
    return _fresh(shape, _probe_dtype(prim, (a, b), params))


def _shape_str(s: tuple) -> str:
    return "x".join(str(d) for d in s)


# torch's C++ type names, as its mm kernel prints them in a dtype mismatch.
_C_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half", "int64": "long int",
            "int32": "int", "int16": "short int", "int8": "signed char", "uint8": "unsigned char",
            "bool": "bool"}


def _c_name(dt: np.dtype) -> str:
    return _C_NAMES.get(dt.name, dt.name)


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= x
    return n


def _dot_checks(a: np.ndarray, b: np.ndarray) -> None:
    if a.dtype != b.dtype:
        raise RuntimeError(f"dot : expected both vectors to have same dtype, but found "
                           f"{type_name(a.dtype)} and {type_name(b.dtype)}")
    ka, kb = a.shape[0], b.shape[0]
    if ka != kb:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{ka}] and src [{kb}] to have "
                           f"the same number of elements, but got {ka} and {kb} elements respectively")
    if a.dtype.kind == "b":
        raise NotImplementedError("\"dot\" not implemented for 'Bool'")


def _mv_checks(mat: tuple, mdt: np.dtype, vec: tuple, vdt: np.dtype) -> None:
    if mat[1] != vec[0]:
        raise RuntimeError(f"size mismatch, got input ({mat[0]}), mat ({_shape_str(mat)}), "
                           f"vec ({vec[0]})")
    if mdt != vdt:
        raise RuntimeError(f"addmv input tensors must have the same dtype, but got {type_name(vdt)}, "
                           f"{type_name(mdt)}, and {type_name(vdt)}")
    if mdt.kind == "b" and mat[0] * mat[1]:  # an empty product never reaches the kernel
        raise NotImplementedError("\"addmv_impl_cpu\" not implemented for 'Bool'")


def _mm_checks(m1: tuple, dt1: np.dtype, m2: tuple, dt2: np.dtype) -> None:
    if m1[1] != m2[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({_shape_str(m1)} and "
                           f"{_shape_str(m2)})")
    if dt1 != dt2:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {_c_name(dt1)} != "
                           f"{_c_name(dt2)}")
    if dt1.kind == "b" and m1[0] * m1[1] * m2[1]:
        raise NotImplementedError("\"addmm_impl_cpu_\" not implemented for 'Bool'")


def _broadcast_batch(sa: tuple, sb: tuple) -> tuple:
    """torch's infer_size over the batch dims, with its error (dims counted in the result)."""
    n = max(len(sa), len(sb))
    out = [1] * n
    for i in range(n - 1, -1, -1):
        off = n - 1 - i
        x = sa[len(sa) - 1 - off] if off < len(sa) else 1
        y = sb[len(sb) - 1 - off] if off < len(sb) else 1
        if x != y and x != 1 and y != 1:
            raise RuntimeError(f"The size of tensor a ({x}) must match the size of tensor b ({y}) at "
                               f"non-singleton dimension {i}")
        out[i] = y if x == 1 else x
    return tuple(out)


def _matmul_slow(input: Tensor, other: Tensor) -> np.dtype | None:
    """Everything but the same-dtype valid product: walk the path torch's matmul takes (dot,
    mv, mm or bmm, after folding batch dims) and raise that kernel's error, in its order.
    Returns the result dtype when there is no error (only an empty batched product of mixed
    dtypes gets here: torch skips the kernel and gives ``other``'s dtype)."""
    a, b = input._data, other._data
    na, nb = a.ndim, b.ndim
    if na == 0 or nb == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{na}D and {nb}D")
    da, db = a.dtype, b.dtype
    sa, sb = a.shape, b.shape
    if na == 1 and nb == 1:
        _dot_checks(a, b)
    elif na <= 2 and nb == 1:
        _mv_checks(sa, da, sb, db)
    elif na <= 2 and nb == 2:
        _mm_checks(sa if na == 2 else (1,) + sa, da, sb, db)
    elif na >= 3 and nb <= 2:
        # torch folds the batch dims of the left operand into its rows: one mv or mm
        folded = (_prod(sa[:-1]), sa[-1])
        if nb == 1:
            _mv_checks(folded, da, sb, db)
        else:
            _mm_checks(folded, da, sb, db)
    elif na <= 2 and (input.requires_grad or na == 1 and (b.size == 0 or sb[-2] == 1)):
        # torch folds the right operand transposed when that needs no copy, or when the small
        # operand requires grad (its gradient then needs no batch-sized intermediate):
        # other.mT reshaped to rows, times input (transposed)
        folded = (_prod(sb[:-2]) * sb[-1], sb[-2])
        if na == 1:
            _mv_checks(folded, db, sa, da)
        else:
            _mm_checks(folded, db, (sa[1], sa[0]), da)
    else:
        batch = _broadcast_batch(sa[:-2], sb[:-2])
        n = sa[-2] if na > 1 else 1
        k1 = sa[-1]
        k2, p = (sb[-2], sb[-1]) if nb > 1 else (sb[0], 1)
        bs = _prod(batch)
        if k1 != k2:
            raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                               f"[{bs}, {k1}] but got: [{bs}, {k2}].")
        if bs * n * p == 0 or k1 == 0:
            return db
        if da.kind == "b":
            raise NotImplementedError("\"bmm\" not implemented for 'Bool'")
        if da != db:
            raise RuntimeError(f"expected scalar type {type_name(da)} but found {type_name(db)}")
    return None


@op(differentiable=("input", "other"), method=True)
def matmul(input, other):
    """Matrix product with torch's broadcasting (1-D, 2-D and batched).

    Both operands must have the same dtype (torch does not promote here).

    >>> import engine
    >>> engine.matmul(engine.ones(4, 2, 3), engine.ones(3)).shape
    torch.Size([4, 2])
    """
    a, b = input._data, other._data
    dt = a.dtype
    # Fast path: one dtype comparison and the core-dim check. Every error (and bool, which
    # torch's kernels reject) is sorted out by _matmul_slow, in torch's order.
    if (dt is not b.dtype and dt != b.dtype) or dt.kind == "b" or a.ndim == 0 or b.ndim == 0 \
            or a.shape[-1] != (b.shape[0] if b.ndim == 1 else b.shape[-2]):
        return apply(_matmul, (input, other), None, _matmul_slow(input, other))
    if a.ndim > 2 and b.ndim > 2 and a.shape[:-2] != b.shape[:-2]:
        _broadcast_batch(a.shape[:-2], b.shape[:-2])
    return apply(_matmul, (input, other))


Tensor.__matmul__ = matmul
Tensor.__rmatmul__ = lambda self, other: matmul(other if isinstance(other, Tensor) else
                                                Tensor._make(np.asarray(other)), self)


@op(differentiable=("input", "mat2"), method=True)
def mm(input, mat2):
    """Product of two matrices."""
    if input._data.ndim != 2:
        raise RuntimeError("self must be a matrix")
    if mat2._data.ndim != 2:
        raise RuntimeError("mat2 must be a matrix")
    return matmul(input, mat2)


@op(differentiable=("input", "mat2"), method=True)
def bmm(input, mat2):
    """Batched product of two 3-D tensors with equal batch sizes."""
    if input._data.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor")
    if mat2._data.ndim != 3:
        raise RuntimeError("batch2 must be a 3D tensor")
    if input._data.shape[0] != mat2._data.shape[0]:
        raise RuntimeError("batch1 and batch2 must have same number of batches, got "
                           f"{input._data.shape[0]} and {mat2._data.shape[0]}")
    return matmul(input, mat2)


@op(differentiable=("input", "vec"), method=True)
def mv(input, vec):
    """Matrix-vector product."""
    if input._data.ndim != 2 or vec._data.ndim != 1:
        raise RuntimeError(f"vector + matrix @ vector expected, got 1, {input._data.ndim}, "
                           f"{vec._data.ndim}")
    return matmul(input, vec)


@op(differentiable=("input", "other"), method=True)
def dot(input, other):
    """Dot product of two 1-D tensors."""
    if input._data.ndim != 1 or other._data.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input._data.ndim}D and "
                           f"{other._data.ndim}D tensors")
    return matmul(input, other)


@op(differentiable=("input", "vec2"), method=True, aliases=("ger",))
def outer(input, vec2):
    """Outer product of two 1-D tensors."""
    return unsqueeze(input, -1) * unsqueeze(vec2, 0)


# ---------------------------------------------------------------- triangles
@primitive()
def _tril(x, diagonal):
    return np.tril(x, diagonal)


@primitive()
def _triu(x, diagonal):
    return np.triu(x, diagonal)


_tril.defvjp(lambda ctx, g, diagonal: _tril(g, diagonal=diagonal))
_tril.defjvp(linear_jvp)
_tril.defbatch(leading_batch)
_triu.defvjp(lambda ctx, g, diagonal: _triu(g, diagonal=diagonal))
_triu.defjvp(linear_jvp)
_triu.defbatch(leading_batch)


@_tril.defshape
def _tri_shape(prim: Any, arrays: list, params: dict) -> Any:
    x = arrays[0]
    if x.ndim < 2:
        return _as_meta(_probe(prim, arrays, params))
    return _fresh(x.shape, x.dtype)


_triu.defshape(_tri_shape)


@op(method=True)
def tril(input, diagonal=0):
    """Lower triangle of the last two dims; the rest zero."""
    if input._data.ndim < 2:
        raise RuntimeError("tril: input tensor must have at least 2 dimensions")
    return _tril(input, diagonal=diagonal)


@op(method=True)
def triu(input, diagonal=0):
    """Upper triangle of the last two dims; the rest zero."""
    if input._data.ndim < 2:
        raise RuntimeError("triu: input tensor must have at least 2 dimensions")
    return _triu(input, diagonal=diagonal)


# ---------------------------------------------------------------- diagonals
@primitive()
def _diagonal(x, offset, dim1, dim2):
    v = np.diagonal(x, offset, dim1, dim2)
    if x.flags.writeable:  # a view in torch: in-place ops on it write into x (engine.ops.inplace)
        v.flags.writeable = True
    return v


@primitive()
def _diag_scatter(g, shape, offset, dim1, dim2):
    # zeros of ``shape`` with ``g`` (diagonal last) written on the (dim1, dim2) diagonal
    out = np.zeros(shape, g.dtype)
    i = np.arange(g.shape[-1])
    np.moveaxis(out, (dim1, dim2), (-2, -1))[..., i + max(-offset, 0), i + max(offset, 0)] = g
    return out


_diagonal.defvjp(lambda ctx, g, offset, dim1, dim2: _diag_scatter(
    g, shape=ctx.in_meta[0][0], offset=offset, dim1=dim1, dim2=dim2))
_diagonal.defjvp(linear_jvp)
_diagonal.defbatch(dims_batch("dim1", "dim2"))
_diag_scatter.defvjp(lambda ctx, g, shape, offset, dim1, dim2: _diagonal(
    g, offset=offset, dim1=dim1, dim2=dim2))
_diag_scatter.defjvp(linear_jvp)


@_diagonal.defshape
def _diagonal_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    v = np.diagonal(a["x"], a["offset"], a["dim1"], a["dim2"])  # a view, as the forward's
    return _fresh(v.shape, v.dtype)


@_diag_scatter.defshape
def _diag_scatter_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    return _fresh(a["shape"], a["g"].dtype)


def _diag_dims(dim1: int, dim2: int, ndim: int) -> tuple[int, int]:
    d1, d2 = norm_dim(dim1, ndim), norm_dim(dim2, ndim)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    return d1, d2


@op(method=True)
def diagonal(input, offset=0, dim1=0, dim2=1):
    """The diagonal of the (dim1, dim2) planes, ``offset`` above the main one, as the last dim."""
    d1, d2 = _diag_dims(dim1, dim2, input._data.ndim)
    return _diagonal(input, offset=offset, dim1=d1, dim2=d2)


@op(method=True)
def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """Place the last dim of ``input`` on the (dim1, dim2) diagonal of a new, larger tensor."""
    n = input._data.ndim + 1
    d1, d2 = _diag_dims(dim1, dim2, n)
    size = input._data.shape[-1] + builtins.abs(offset)
    rest = iter(input._data.shape[:-1])
    shape = tuple(size if p in (d1, d2) else next(rest) for p in range(n))
    return _diag_scatter(input, shape=shape, offset=offset, dim1=d1, dim2=d2)


@op(method=True)
def diag(input, diagonal=0):
    """A 1-D tensor's diagonal matrix, or a matrix's diagonal (``diagonal`` picks which)."""
    nd = input._data.ndim
    if nd == 1:
        return diag_embed(input, diagonal)
    if nd == 2:
        return _diagonal(input, offset=diagonal, dim1=0, dim2=1)
    raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {nd}D")


@op(method=True)
def trace(input):
    """Sum of a matrix's main diagonal."""
    if input._data.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {input._data.ndim}")
    return _diagonal(input, offset=0, dim1=0, dim2=1).sum()


@op(differentiable=("tensors",))
def block_diag(*tensors):
    """A block-diagonal matrix from 0-, 1- and 2-D tensors (1-D ones are single rows)."""
    from .shape import cat
    mats = []
    for i, t in enumerate(tensors):
        t = as_tensor_arg(t)
        nd = t._data.ndim
        if nd > 2:
            raise RuntimeError(f"torch.block_diag: Input tensors must have 2 or fewer dimensions. "
                               f"Input {i} has {nd} dimensions")
        mats.append(reshape(t, (1, 1)) if nd == 0 else unsqueeze(t, 0) if nd == 1 else t)
    if not mats:
        return Tensor._make(np.zeros((1, 0), np.float32))
    dt = promote(*mats)
    cols = builtins.sum(m._data.shape[1] for m in mats)
    rows, left = [], 0
    for m in mats:
        r, c = m._data.shape
        rows.append(cat([Tensor._make(np.zeros((r, left), dt)), m,
                         Tensor._make(np.zeros((r, cols - left - c), dt))], 1))
        left += c
    return cat(rows, 0)


# ---------------------------------------------------------------- einsum
# Subscripts are ints: 0-25 'A'-'Z', 26-51 'a'-'z', 52+ ellipsis dims; ``_einsum_np`` relabels
# them compactly because numpy's sublist form accepts labels below 52 only.
_EINSUM: dict[int, Primitive] = {}


def _einsum_np(*ops, subs, out):
    labels = {lab: i for i, lab in enumerate(dict.fromkeys([*(s for sub in subs for s in sub), *out]))}
    if len(labels) > 52:
        raise RuntimeError("einsum(): at most 52 distinct subscripts (ellipsis dims included) are "
                           "supported")
    args = []
    for o, sub in zip(ops, subs):
        args += [o, [labels[s] for s in sub]]
    r = np.einsum(*args, [labels[s] for s in out], optimize=len(ops) > 2)
    return np.asarray(r, dtype=ops[0].dtype)


def _einsum_batch(prim, arrays, flags, subs, out):
    # the batch is one more subscript, shared by the batched operands and leading the output
    fresh = builtins.max([*(s for sub in subs for s in sub), *out], default=0) + 1
    subs = tuple((fresh, *sub) if f else sub for sub, f in zip(subs, flags))
    return prim.fwd(*arrays, subs=subs, out=(fresh, *out))


def _einsum_work(prim: Any, arrays: Sequence, params: dict, outs: tuple) -> float:
    # a contraction visits every combination of its labels' sizes once (numpy may do better)
    a = _bound(prim, arrays, params)
    ops, subs = a["ops"], a["subs"]
    size: dict[Any, int] = {}
    for o, sub in zip(ops, subs):
        for lab, n in zip(sub, np.shape(o)):
            size[lab] = max(size.get(lab, 1), n)
    return 2 * math.prod(size.values()) * BLAS_FLOP + _passes(prim, arrays, params, outs)


def _einsum_shape(prim: Any, arrays: list, params: dict) -> Any:
    a = _bound(prim, arrays, params)
    ops, subs, out = a["ops"], a["subs"], a["out"]
    if len(dict.fromkeys([*(s for sub in subs for s in sub), *out])) > 52:
        raise RuntimeError("einsum(): at most 52 distinct subscripts (ellipsis dims included) are "
                           "supported")
    size: dict[int, int] = {}
    for o, sub in zip(ops, subs):
        for lab, n in zip(sub, np.shape(o)):
            if size.get(lab, 1) == 1:  # a size-1 (ellipsis) dim broadcasts
                size[lab] = n
    return _fresh(tuple(size.get(lab, 1) for lab in out), np.asarray(ops[0]).dtype)


def _einsum_prim(n: int) -> Primitive:
    prim = _EINSUM.get(n)
    if prim is None:
        prim = _EINSUM[n] = Primitive(f"einsum{n}" if n > 1 else "einsum", _einsum_np,
                                      save=tuple(range(n)))
        prim.defvjp(_einsum_vjp)
        prim.defjvp(multilinear_jvp)
        prim.defbatch(_einsum_batch)
        prim.defshape(_einsum_shape, work=_einsum_work)
    return prim


def _einsum_vjp(ctx, g, *ops, subs, out):
    # d/d(operand k): contract g with the other operands onto operand k's subscripts. A subscript
    # only operand k has is broadcast with a ones vector; a repeated one (a diagonal) is embedded
    # with an identity matrix.
    grads = []
    fresh = builtins.max([*(s for sub in subs for s in sub), *out], default=0) + 1
    for k, sk in enumerate(subs):
        if ctx.edges[k] is None:
            grads.append(None)
            continue
        args, asubs = [g], [out]
        for j, (o, sj) in enumerate(zip(ops, subs)):
            if j != k:
                args.append(o)
                asubs.append(sj)
        have = {s for sub in asubs for s in sub}
        target: list[int] = []
        dt = g._data.dtype
        for lab, size in zip(sk, ctx.in_meta[k][0]):
            if lab in target:
                args.append(Tensor._make(np.eye(size, dtype=dt)))
                asubs.append((lab, fresh))
                target.append(fresh)
                fresh += 1
                continue
            if lab not in have:
                args.append(Tensor._make(np.ones(size, dt)))
                asubs.append((lab,))
                have.add(lab)
            target.append(lab)
        grads.append(_einsum_prim(len(args))(*args, subs=tuple(asubs), out=tuple(target)))
    return tuple(grads) if len(grads) > 1 else grads[0]


def _label(c: str) -> int | None:
    if "A" <= c <= "Z":
        return ord(c) - ord("A")
    if "a" <= c <= "z":
        return ord(c) - ord("a") + 26
    return None


def _parse_term(eq: str, start: int, stop: int) -> list:
    """Subscripts of eq[start:stop]: label ints and ``...`` (as Ellipsis)."""
    out, i = [], start
    while i < stop:
        c = eq[i]
        if c == " ":
            i += 1
        elif eq.startswith("...", i):
            if Ellipsis in out:
                raise RuntimeError("einsum(): found '.' for operand for which an ellipsis was already "
                                   "found")
            out.append(Ellipsis)
            i += 3
        elif _label(c) is not None:
            out.append(_label(c))
            i += 1
        else:
            raise RuntimeError(f"einsum(): invalid subscript given at index {i} in the equation "
                               "string, subscripts must be in [a-zA-Z]")
    return out


def _letter(lab: int) -> str:
    return chr(ord("A") + lab) if lab < 26 else chr(ord("a") + lab - 26)


def _from_sublists(args: tuple) -> tuple[list, list, list | None]:
    out = None
    if len(args) % 2:  # a trailing output sublist
        out, args = args[-1], args[:-1]

    def conv(sub: object) -> list:
        return [Ellipsis if s is Ellipsis else int(s) for s in sub]

    return list(args[0::2]), [conv(t) for t in args[1::2]], None if out is None else conv(out)


@op(differentiable=("operands",))
def einsum(equation, *operands):
    """Einstein summation with torch's equation syntax: explicit (``'ij,jk->ik'``) or implicit
    output, ``...`` for broadcast dims, repeated subscripts for diagonals, or the sublist form.

    >>> engine.einsum("ij,jk->ik", a, b)  # == a @ b
    """
    if isinstance(equation, str):
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = tuple(operands[0])
        eq = equation
        arrow = eq.find("->")
        lhs_end = arrow if arrow >= 0 else len(eq)
        terms, start = [], 0
        while True:
            comma = eq.find(",", start, lhs_end)
            stop = lhs_end if comma < 0 else comma
            terms.append(_parse_term(eq, start, stop))
            if comma < 0:
                break
            start = comma + 1
        out = _parse_term(eq, arrow + 2, len(eq)) if arrow >= 0 else None
    else:  # sublist form: einsum(op0, sub0, op1, sub1, ..., [out])
        operands, terms, out = _from_sublists((equation, *operands))
    ops = [as_tensor_arg(o) for o in operands]
    if len(terms) > len(ops):
        raise RuntimeError("einsum(): fewer operands were provided than specified in the equation")
    if len(terms) < len(ops):
        raise RuntimeError("einsum(): more operands were provided than specified in the equation")
    dt0 = ops[0]._data.dtype
    for o in ops[1:]:
        if o._data.dtype != dt0:
            raise RuntimeError(f"expected scalar type {type_name(dt0)} but found "
                               f"{type_name(o._data.dtype)}")
    # ellipsis dims get labels 52.., right-aligned across operands
    n_ell = 0
    for k, (o, t) in enumerate(zip(ops, terms)):
        n_lab = len(t) - (Ellipsis in t)
        nd = o._data.ndim
        if Ellipsis in t:
            if n_lab > nd:
                raise RuntimeError(f"einsum(): the number of subscripts in the equation ({n_lab}) is "
                                   f"more than the number of dimensions ({nd}) for operand {k}")
            n_ell = builtins.max(n_ell, nd - n_lab)
        elif n_lab != nd:
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({n_lab}) does not "
                               f"match the number of dimensions ({nd}) for operand {k} and no "
                               "ellipsis was given")
    ell = list(range(52, 52 + n_ell))
    subs = []
    for o, t in zip(ops, terms):
        if Ellipsis in t:
            e = o._data.ndim - (len(t) - 1)
            i = t.index(Ellipsis)
            t = t[:i] + ell[n_ell - e:] + t[i + 1:]
        subs.append(t)
    if out is None:
        counts: dict[int, int] = {}
        for t in subs:
            for s in t:
                counts[s] = counts.get(s, 0) + 1
        out = ell + sorted(s for s, c in counts.items() if c == 1 and s < 52)
    else:
        seen: set = set()
        for s in out:
            if s is Ellipsis:
                continue
            if s in seen:
                raise RuntimeError(f"einsum(): output subscript {_letter(s)} appears more than once "
                                   "in the output")
            seen.add(s)
            if not builtins.any(s in t for t in subs):
                raise RuntimeError(f"einsum(): output subscript {_letter(s)} does not appear in the "
                                   "equation for any input operand")
        if Ellipsis in out:
            i = out.index(Ellipsis)
            out = out[:i] + ell + out[i + 1:]
    # sizes: equal, or 1 (broadcast, as in torch)
    sizes: dict[int, int] = {}
    for k, (o, t) in enumerate(zip(ops, subs)):
        own: dict[int, int] = {}
        for s, n in zip(t, o._data.shape):
            if s in own and own[s] != n:
                raise RuntimeError(f"einsum(): subscript {_letter(s)} is repeated for operand {k} but "
                                   f"the sizes don't match, {n} != {own[s]}")
            own[s] = n
            prev = sizes.get(s, 1)
            if n != 1 and prev != 1 and n != prev:
                if s >= 52:
                    e = builtins.sum(1 for x in t if x >= 52)
                    raise RuntimeError(
                        f"einsum(): dimension {s - 52 - (n_ell - e)} "
                        f"covered by ellipsis in operand {k}has size {n} which does not broadcast "
                        f"with previously seen ellipsis with size {prev} for the respective dimension")
                raise RuntimeError(f"einsum(): subscript {_letter(s)} has size {n} for operand {k} "
                                   f"which does not broadcast with previously seen size {prev}")
            sizes[s] = builtins.max(prev, n)
    ops = [expand(o, tuple(sizes[s] for s in t)) for o, t in zip(ops, subs)]
    return _einsum_prim(len(ops))(*ops, subs=tuple(tuple(t) for t in subs), out=tuple(out))


# ---------------------------------------------------------------- linalg.cross and linalg.vector_norm
# Here, not in engine.linalg, because the top-level cross and cdist build on them too.
def _batch_check(a: tuple, b: tuple) -> None:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        for i in range(1, min(len(a), len(b)) + 1):
            if a[-i] != b[-i] and 1 not in (a[-i], b[-i]):
                raise RuntimeError(f"The size of tensor a ({a[-i]}) must match the size of tensor b "
                                   f"({b[-i]}) at non-singleton dimension "
                                   f"{max(len(a), len(b)) - i}") from None
        raise


@primitive(save=(0, 1), name="linalg_cross")
def _cross(a, b, dim):
    a, b = np.broadcast_arrays(a, b)
    return np.cross(a, b, axis=dim)


_cross.defvjp(lambda ctx, g, a, b, dim: (_cross(b, g, dim=dim) if ctx.edges[0] is not None else None,
                                         _cross(g, a, dim=dim) if ctx.edges[1] is not None else None))
_cross.defjvp(multilinear_jvp)


@_cross.defshape
def _cross_shape(prim: Any, arrays: list, params: dict) -> Any:
    bd = _bound(prim, arrays, params)
    a, b = bd["a"], bd["b"]
    shape = _broadcast([a.shape, b.shape])
    ax = normalize_axis_index(bd["dim"], len(shape))
    if shape[ax] not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n(dimension must be 2 or 3)")
    return _fresh(shape, np.result_type(a.dtype, b.dtype))


def cross_product(input: Tensor, other: Tensor, dim: int) -> Tensor:
    """Shared by ``linalg.cross`` and top-level ``cross``: broadcast, check, then the primitive."""
    _batch_check(input._data.shape, other._data.shape)
    nd = len(np.broadcast_shapes(input._data.shape, other._data.shape))
    d = norm_dim(dim, nd) - nd  # negative: valid for both operands after broadcasting
    sa, sb = (t._data.shape[d] if t._data.ndim >= -d else 1 for t in (input, other))
    if sa != 3 or sb != 3:
        raise RuntimeError(f"linalg.cross: inputs dimension {dim} must have length 3. "
                           f"Got {sa} and {sb}")
    return apply(_cross, (input, other), {"dim": d}, binary_dtype(input, other))


def _dims(dim: object, ndim: int) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    dims = tuple(sorted(norm_dim(d, ndim) for d in dims)) if dims else tuple(range(ndim))
    return dims if ndim else ()  # a 0-d tensor takes dim 0 or -1: its one element


@primitive(save=(0, -1), name="linalg_vector_norm")
def _vector_norm(x, ord, dims, keepdim):
    a = np.abs(x)
    if ord == math.inf:
        r = np.amax(a, axis=dims, keepdims=keepdim)
    elif ord == -math.inf:
        r = np.amin(a, axis=dims, keepdims=keepdim)
    elif ord == 0:
        r = np.sum(a != 0, axis=dims, keepdims=keepdim)
    elif ord == 1:
        r = np.sum(a, axis=dims, keepdims=keepdim)
    elif ord == 2:
        r = np.sqrt(np.sum(a * a, axis=dims, keepdims=keepdim))
    else:
        with np.errstate(divide="ignore"):
            r = np.sum(a ** ord, axis=dims, keepdims=keepdim) ** (1.0 / ord)
    return np.asarray(r, x.dtype)


@_vector_norm.defvjp
def _vector_norm_vjp(ctx, g, x, norm, ord, dims, keepdim):
    # torch's norm_backward: the gradient is 0 where the norm is 0 (and, for ord < 1, where an
    # entry is 0); ord=inf splits it evenly between tied extrema.
    if ord == 0:
        return None
    if not keepdim:
        for d in dims:
            g, norm = unsqueeze(g, d), unsqueeze(norm, d)
    sgn = x.sign()
    if ord == 1:
        return sgn * g
    zero = Tensor._make(norm._data == 0)
    safe_norm = where(zero, 1.0, norm)
    if ord == 2:
        return g * where(zero, 0.0, x / safe_norm)
    ax = x.abs()
    if math.isinf(ord):
        mask = ((ax._data == norm._data) | np.isnan(ax._data)).astype(x._data.dtype)
        count = mask.sum(axis=dims, keepdims=True)
        return sgn * (g / Tensor._make(count)) * Tensor._make(mask)
    if ord < 1:
        xz = Tensor._make(x._data == 0)
        return sgn * where(xz, 0.0, where(xz, 1.0, ax) ** (ord - 1)) * g * norm ** (1 - ord)
    scale = where(zero, 0.0, g / safe_norm ** (ord - 1))
    return (sgn * ax ** (ord - 1) if ord < 2 else x * ax ** (ord - 2)) * scale


_vector_norm.defjvp(transpose_jvp)
_vector_norm.defbatch(dims_batch("dims"))
_vector_norm.defshape(_reduction_shape)


def vector_norm_of(x: Tensor, ord: object, dim: object, keepdim: bool, dtype: object = None) -> Tensor:
    """Shared by ``linalg.vector_norm`` and ``cdist``: check, then the primitive."""
    if x._data.dtype.kind != "f":
        raise RuntimeError("linalg.vector_norm: Expected a floating point or complex tensor as input. "
                           f"Got {type_name(x._data.dtype)}")
    if dtype is not None:
        x = x.to(dtype)
    if isinstance(ord, str):
        raise RuntimeError(f"linalg.vector_norm: ord must be a number, got {ord!r}")
    dims = _dims(dim, x._data.ndim)
    if (ord < 0 or ord == math.inf) and any(x._data.shape[d] == 0 for d in dims):
        raise RuntimeError(f"linalg.vector_norm cannot compute the {ord} norm on an empty tensor "
                           "because the operation does not have an identity")
    return _vector_norm(x, ord=float(ord), dims=dims, keepdim=bool(keepdim))
