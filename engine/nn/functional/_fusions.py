"""Rewrites of compiled programs around convolutions and max pooling (``engine.compile``; see
:func:`engine._compile.register_rewrite`). Each computes the program's results to the same bits.

A convolution block ``max_pool(relu(conv(x)))`` with its gradient records, per layer, a full-size
conv output, its relu, the pool's scatter of the gradient and relu's backward over it: four
passes over the largest arrays of a CNN step, each on one core, besides the convolution's own
parallel regions (its forward, input gradient and weight gradient). Four rewrites take these
passes to the pooled size or into the convolution's threads, and merge two of its regions:

- **relu's backward before the scatter.** ``relu_backward(max_pool_scatter(gp, am), y)`` with
  ``(p, am) = max_pool(y)`` becomes ``max_pool_scatter(relu_backward(gp, p), am)``: the mask is
  read at the pooled size. The same bits: the scatter puts each window's gradient at its argmax
  and +0.0 elsewhere; at an argmax ``y`` is the window's ``p`` (pooling copies it; padding never
  wins), so ``y <= 0`` there exactly where ``p <= 0``; elsewhere both give +0.0 (relu's backward
  gives +0.0 where ``y <= 0``, and passes the scatter's +0.0 where not). Overlapping windows
  that share an argmax share its mask, so their sum is masked alike. It holds for any ``y``, not
  only a relu's output.
- **relu and max_pool inside the convolution's chunks.** ``max_pool(relu(conv(x)))``, where the
  conv's output and the relu's are read by nothing else (after the first rewrite, relu's output
  no longer is), becomes one step: each engine thread, once it has convolved its run of the
  batch, passes those samples through relu and max_pool while they are still in its core's
  cache (``conv_into``'s ``then``). relu's full-size output is never stored, and relu and the
  pooling run in the convolution's threads. The same bits: the conv's output is the
  primitive's, and relu and max_pool compute each sample on its own with the same numpy code.
- **A convolution's input and weight gradients together.** ``conv_xgrad(g, w)`` and
  ``conv_wgrad(x, g)`` of one convolution become one step (``conv_grads``): each chunk of ``g``
  is laid out as columns once for both products, in one parallel region instead of two. The
  same chunks and the same numpy calls on each, so the same bits.
- **max_pool's scatter in the gradients' threads.** ``g = max_pool_scatter(gp, am)`` read by that
  pass (or by a weight gradient alone) is written by the pass's threads, each scattering the
  samples it is about to lay out as columns (``conv_grads``' ``before``). ``g`` is still made
  whole (the bias gradient sums it); the scatter of each sample is the same numpy code on the
  same planes, so the same bits.

Measured with ``python -m bench.compile_passes`` (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._compile import Graph, _Ref, register_rewrite
from ..._kernels import relu_into
from ...ops.elementwise import _relu_backward, relu
from ._conv import _conv_gemm, _conv_wgrad, _conv_xgrad, conv_grads, conv_into
from ._pooling import _am_dtype, _max_pool_prim, _max_pool_scatter, scatter_into


@register_rewrite
def _relu_backward_pooled(g: Graph) -> int:
    made = 0
    for rb in list(g.steps):
        if rb.prim is not _relu_backward or rb.kwargs or len(rb.args) != 2:
            continue
        grad, y = rb.args
        sc = g.made_by(grad, _max_pool_scatter)
        if sc is None or len(sc.args) != 2 or not g.read_only_by(grad.slot, rb):
            continue
        gp, am = sc.args
        pool = g.made_by(am, _max_pool_prim)
        if pool is None or type(y) is not _Ref or pool.outs[1] != am.slot \
                or type(pool.args[0]) is not _Ref or pool.args[0].slot != y.slot:
            continue
        masked = g.new_step(rb, rb.fn, [gp, _Ref(pool.outs[0])], {})
        scatter = g.new_step(sc, sc.fn, [_Ref(masked.outs[0]), am], dict(sc.kwargs), outs=rb.outs)
        made += g.replace([sc, rb], [masked, scatter])
    return made


def conv_relu_max_pool(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, conv: dict[str, Any],
                       pool: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``max_pool(relu(conv_gemm(x, w, b, **conv)), **pool)``, pooled chunk by chunk."""
    lead = (x.shape[0], w.shape[0])
    y = np.empty(lead + tuple(conv["out"]), np.result_type(x, w))
    p, am = np.empty(lead + tuple(pool["out"]), y.dtype), np.empty(lead + tuple(pool["out"]),
                                                                   _am_dtype(tuple(pool["kernel"])))
    pool_fwd = _max_pool_prim.fwd

    def then(a: int, b: int) -> None:  # a thread's samples, once it has convolved them all
        relu_into(y[a:b], y[a:b])
        p[a:b], am[a:b] = pool_fwd(y[a:b], **pool)

    conv_into(y, x, w, b, then=then, **conv)
    return p, am


@register_rewrite
def _pool_in_conv_chunks(g: Graph) -> int:
    made = 0
    relu_prim = relu.primitive
    for mp in list(g.steps):
        if mp.prim is not _max_pool_prim or len(mp.args) != 1:
            continue
        (r,) = mp.args
        rl = g.made_by(r, relu_prim)
        if rl is None or len(rl.args) != 1 or rl.kwargs or not g.read_only_by(r.slot, mp):
            continue
        (y,) = rl.args
        cv = g.made_by(y, _conv_gemm)
        if cv is None or len(cv.args) != 3 or not g.read_only_by(y.slot, rl):
            continue
        fused = g.new_step(mp, conv_relu_max_pool, list(cv.args),
                           {"conv": dict(cv.kwargs), "pool": dict(mp.kwargs)}, outs=mp.outs, multi=mp.multi,
                           name="conv_relu_max_pool")
        made += g.replace([cv, rl, mp], [fused])
    return made


@register_rewrite
def _input_and_weight_grads_together(g: Graph) -> int:
    made = 0
    for xs in list(g.steps):
        if xs.prim is not _conv_xgrad or len(xs.args) != 2 or type(xs.args[0]) is not _Ref:
            continue
        grad, w = xs.args
        ws = next((s for s in g.readers.get(grad.slot, ()) if s.prim is _conv_wgrad and len(s.args) == 2
                   and type(s.args[1]) is _Ref and s.args[1].slot == grad.slot), None)
        if ws is None:
            continue
        x = ws.args[0]
        params = dict(ws.kwargs)
        xv = g.values[x.slot] if type(x) is _Ref else x
        gv, wv = g.values[grad.slot], g.values[w.slot] if type(w) is _Ref else w
        if {k: xs.kwargs.get(k) for k in params} != params or xs.kwargs.get("size") != tuple(xv.shape[2:]) \
                or np.result_type(xv, gv) != np.result_type(gv, wv):  # (one layout, one dtype)
            continue
        both = g.new_step(xs, conv_grads, [x, grad, w], params, outs=xs.outs + ws.outs, multi=tuple,
                          name="conv_grads")
        made += g.replace([xs, ws], [both])
    return made


def max_pool_scatter_conv_grads(gp: np.ndarray, am: np.ndarray, x: np.ndarray, w: np.ndarray | None,
                                scatter: dict[str, Any], conv: dict[str, Any]) -> tuple:
    """``g = max_pool_scatter(gp, am, **scatter)`` and ``conv_grads(x, g, w, **conv)``, each
    engine thread scattering its own samples before it convolves them: ``(g, gx, gw)``, or
    ``(g, gw)`` with ``w`` None."""
    nd = len(scatter["kernel"])
    g = np.empty(gp.shape[:-nd] + tuple(scatter["size"]), gp.dtype)
    geometry = {k: scatter[k] for k in ("kernel", "stride", "padding", "dilation")}

    def before(a: int, b: int) -> None:
        scatter_into(g[a:b], gp[a:b], am[a:b], **geometry)

    gx, gw = conv_grads(x, g, w, before=before, **conv)
    return (g, gw) if w is None else (g, gx, gw)


@register_rewrite
def _scatter_in_conv_grads(g: Graph) -> int:
    made = 0
    for sc in list(g.steps):
        if sc.prim is not _max_pool_scatter or len(sc.args) != 2 or not all(type(a) is _Ref for a in sc.args):
            continue
        gp, am = sc.args
        if g.values[gp.slot].shape != g.values[am.slot].shape:  # (vmap may batch one of them)
            continue
        grad = sc.outs[0]
        cg = next((s for s in g.readers.get(grad, ())
                   if (s.fn is conv_grads and len(s.args) == 3 or s.prim is _conv_wgrad and len(s.args) == 2)
                   and type(s.args[1]) is _Ref and s.args[1].slot == grad), None)
        if cg is None:
            continue
        x, w = cg.args[0], (cg.args[2] if cg.fn is conv_grads else None)
        fused = g.new_step(sc, max_pool_scatter_conv_grads, [gp, am, x, w],
                           {"scatter": dict(sc.kwargs), "conv": dict(cg.kwargs)}, outs=sc.outs + cg.outs,
                           multi=tuple, name="max_pool_scatter_conv_grads")
        made += g.replace([sc, cg], [fused])
    return made
