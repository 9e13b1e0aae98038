"""Function-transform cases (issue #13): per-sample gradients by vmap, Jacobians by vmap over
the basis, and a forward-over-reverse Hessian-vector product, engine against torch.func.

HIPS autograd has no vmap nor forward mode over reverse: it is left out (n/a).
"""

from __future__ import annotations

import numpy as np

from ._harness import Case, Run, Target, register
from .engine_cases import _engine_loss, _param_names, _torch_loss, mlp_inputs

PS_BATCH, PS_IN, PS_OUT = 64, 16, 32  # per-sample gradients: a small tanh layer
JAC_N = 100  # the R^100 -> R^100 Jacobians


def _tanh_layer_loss(lib):
    def loss(w, x, y):
        return ((lib.tanh(x @ w.T) - y) ** 2).mean()
    return loss


def build_persample(quick: bool) -> dict[str, Run]:
    import torch
    import torch.func as tf

    import engine
    import engine.func as ef
    r = np.random.default_rng(0)
    w = r.standard_normal((PS_OUT, PS_IN)).astype(np.float32) / 4
    x = r.standard_normal((PS_BATCH, PS_IN)).astype(np.float32)
    y = r.standard_normal((PS_BATCH, PS_OUT)).astype(np.float32)
    e_fn = ef.vmap(ef.grad(_tanh_layer_loss(engine)), in_dims=(None, 0, 0))
    t_fn = tf.vmap(tf.grad(_tanh_layer_loss(torch)), in_dims=(None, 0, 0))
    ew, ex, ey = engine.tensor(w), engine.tensor(x), engine.tensor(y)
    tw, tx, ty = torch.from_numpy(w), torch.from_numpy(x), torch.from_numpy(y)
    return {"engine": lambda: [e_fn(ew, ex, ey)], "torch": lambda: [t_fn(tw, tx, ty)]}


def _jac_inputs() -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(1)
    m = (r.standard_normal((JAC_N, JAC_N)) / np.sqrt(JAC_N)).astype(np.float32)
    return m, r.standard_normal(JAC_N).astype(np.float32)


def _build_jac(kind: str):
    def build(quick: bool) -> dict[str, Run]:
        import torch
        import torch.func as tf

        import engine
        import engine.func as ef
        m, x = _jac_inputs()
        em, tm = engine.tensor(m), torch.from_numpy(m)
        ex, tx = engine.tensor(x), torch.from_numpy(x)

        def ef_(v):
            return engine.tanh(em @ v)

        def tf_(v):
            return torch.tanh(tm @ v)

        if kind == "jacobian":
            return {"engine": lambda: [engine.autograd.functional.jacobian(ef_, ex, vectorize=True)],
                    "torch": lambda: [torch.autograd.functional.jacobian(tf_, tx, vectorize=True)]}
        e_j, t_j = getattr(ef, kind)(ef_), getattr(tf, kind)(tf_)
        return {"engine": lambda: [e_j(ex)], "torch": lambda: [t_j(tx)]}
    return build


def build_hvp_fwd(quick: bool) -> dict[str, Run]:
    import torch
    import torch.func as tf

    import engine
    import engine.func as ef
    a = mlp_inputs()
    names = _param_names()
    ep = tuple(engine.tensor(a[k]) for k in names)
    ev = tuple(engine.tensor(a["v" + k]) for k in names)
    tp = tuple(torch.from_numpy(a[k]) for k in names)
    tv = tuple(torch.from_numpy(a["v" + k]) for k in names)
    ex, ey = engine.tensor(a["x"]), engine.tensor(a["y"])
    tx, ty = torch.from_numpy(a["x"]), torch.from_numpy(a["y"])
    e_grad = ef.grad(lambda p: _engine_loss(list(p), ex, ey))
    t_grad = tf.grad(lambda p: _torch_loss(list(p), tx, ty))
    return {"engine": lambda: ef.jvp(e_grad, (ep,), (ev,))[1],
            "torch": lambda: tf.jvp(t_grad, (tp,), (tv,))[1]}


_T = (Target("#13", torch=1.5),)
register(Case("persample", f"per-sample grads vmap(grad) of a tanh layer {PS_IN}->{PS_OUT}, batch {PS_BATCH}",
              build_persample, reps=200, quick_reps=6, targets=_T, rtol=1e-4, atol=1e-6))
register(Case("jacobian", f"jacobian(tanh(M @ x), vectorize=True), R^{JAC_N} -> R^{JAC_N}",
              _build_jac("jacobian"), reps=200, quick_reps=6, targets=_T, rtol=1e-4, atol=1e-6))
register(Case("jacrev", f"func.jacrev(tanh(M @ x)), R^{JAC_N} -> R^{JAC_N}",
              _build_jac("jacrev"), reps=200, quick_reps=6, targets=_T, rtol=1e-4, atol=1e-6))
register(Case("jacfwd", f"func.jacfwd(tanh(M @ x)), R^{JAC_N} -> R^{JAC_N}",
              _build_jac("jacfwd"), reps=200, quick_reps=6, targets=_T, rtol=1e-4, atol=1e-6))
register(Case("hvp_fwd", "MLP Hessian-vector product, forward-over-reverse func.jvp(func.grad)",
              build_hvp_fwd, reps=100, quick_reps=4, targets=(Target("#13", torch=1.0),),
              rtol=5e-3, atol=1e-4))
