"""Engine cases: the same computation written for the engine, torch and HIPS autograd.

Inputs come from one numpy generator and are handed to all three libraries, float32 throughout.
Each ``run`` returns what the case computes (gradients, Hessian-vector products) so that the
harness can compare the engine with torch before timing.
"""

from __future__ import annotations

import numpy as np

from ._harness import Case, Run, Target, register

SEED_N = 100  # issue 3's seed example: x = rand(100), y = 2x + 1, a line fit by w and b
MLP_SIZES = (784, 512, 512, 10)
BATCH = 64
CHAIN_STEPS = 1000  # 1000 x (mul, add) = the 2000-op scalar chain of issue 5


# ---------------------------------------------------------------- JAX (optional)
def _jax():
    """jax on CPU, or None when it is not installed (its column then shows n/a)."""
    try:
        import os
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax
    except ImportError:
        return None
    return jax


def _jax_run(fn, *args):
    """A zero-argument run of the jitted ``fn`` that waits for its results (JAX is asynchronous).

    The inputs go to the device on the first call: a bench worker that builds the case for
    another library never starts JAX's backend (seconds, and a pool of threads).
    """
    jax = _jax()
    placed: list = []

    def run():
        if not placed:
            placed.append(jax.device_put(args))
        return jax.block_until_ready(fn(*placed[0]))

    return run


def _flat(out) -> tuple:
    """A JAX value_and_grad's ``(value, (grads...))`` as one flat tuple."""
    value, grads = out
    return (value, *grads)


# ---------------------------------------------------------------- shared inputs
def mlp_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """An MLP batch and parameters initialised like torch's Linear (uniform +-1/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {
        "x": rng.standard_normal((BATCH, MLP_SIZES[0])).astype(np.float32),
        "y": rng.integers(0, MLP_SIZES[-1], BATCH).astype(np.int64),
    }
    for i, (n_in, n_out) in enumerate(zip(MLP_SIZES, MLP_SIZES[1:])):
        bound = 1 / np.sqrt(n_in)
        arrays[f"W{i}"] = rng.uniform(-bound, bound, (n_in, n_out)).astype(np.float32)
        arrays[f"b{i}"] = rng.uniform(-bound, bound, (n_out,)).astype(np.float32)
        # the direction of the Hessian-vector product, one block per parameter
        arrays[f"vW{i}"] = rng.standard_normal((n_in, n_out)).astype(np.float32)
        arrays[f"vb{i}"] = rng.standard_normal((n_out,)).astype(np.float32)
    return arrays


def _param_names() -> list[str]:
    return [f"{k}{i}" for i in range(len(MLP_SIZES) - 1) for k in ("W", "b")]


# ---------------------------------------------------------------- the MLP loss, per library
def _engine_loss(params: list, x, y):
    import engine
    import engine.nn.functional as F
    h = x
    n = len(params) // 2
    for i in range(n):
        h = engine.matmul(h, params[2 * i]) + params[2 * i + 1]
        if i < n - 1:
            h = engine.tanh(h)
    return F.nll_loss(F.log_softmax(h, dim=1), y)


def _torch_loss(params: list, x, y):
    import torch
    import torch.nn.functional as F
    h = x
    n = len(params) // 2
    for i in range(n):
        h = torch.addmm(params[2 * i + 1], h, params[2 * i])
        if i < n - 1:
            h = torch.tanh(h)
    return F.nll_loss(F.log_softmax(h, dim=1), y)


def _array_loss(xnp, logsumexp, params: list, x, y):
    """The MLP's cross-entropy in a numpy-like library (HIPS autograd's numpy, jax.numpy)."""
    h = x
    n = len(params) // 2
    for i in range(n):
        h = xnp.dot(h, params[2 * i]) + params[2 * i + 1]
        if i < n - 1:
            h = xnp.tanh(h)
    logp = h - logsumexp(h, axis=1, keepdims=True)
    return -xnp.mean(logp[xnp.arange(BATCH), y])


def _hips_loss(params: list, x, y):
    import autograd.numpy as anp
    from autograd.scipy.special import logsumexp
    return _array_loss(anp, logsumexp, params, x, y)


# ---------------------------------------------------------------- (0) the seed example
def seed_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.random(SEED_N).astype(np.float32), np.asarray(0.5, np.float32),
            np.asarray(0.9, np.float32))


def seed_loss(x, w, b):
    """The seed example's loss, in any library's ops: mean((2x + 1 - (w x + b))^2)."""
    y = 2 * x + 1
    return ((y - (w * x + b)) ** 2).mean()


def build_seed(quick: bool) -> dict[str, Run]:
    import autograd
    import torch

    import engine
    x, w, b = seed_inputs()
    ex, ew, eb = engine.tensor(x), engine.tensor(w, requires_grad=True), engine.tensor(b, requires_grad=True)

    def engine_step(x, w, b):
        loss = seed_loss(x, w, b)
        return (loss.detach(), *engine.autograd_grad(loss, (w, b)))

    compiled = engine.compile(engine_step)
    tx, tw, tb = torch.from_numpy(x), torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)

    def run_torch():
        loss = seed_loss(tx, tw, tb)
        return (loss, *torch.autograd.grad(loss, (tw, tb)))

    hips = autograd.value_and_grad(lambda w, b: seed_loss(x, w, b), (0, 1))
    runs = {"engine": lambda: engine_step(ex, ew, eb), "compiled": lambda: compiled(ex, ew, eb),
            "torch": run_torch, "hips": lambda: _flat(hips(w, b))}
    jax = _jax()
    if jax is not None:
        step = jax.jit(jax.value_and_grad(lambda x, w, b: seed_loss(x, w, b), (1, 2)))
        run = _jax_run(step, x, w, b)
        runs["jax"] = lambda: _flat(run())
    return runs


# ---------------------------------------------------------------- (a) MLP step
def build_mlp(quick: bool) -> dict[str, Run]:
    import autograd
    import torch

    import engine
    a = mlp_inputs()
    names = _param_names()

    ep = [engine.tensor(a[k], requires_grad=True) for k in names]
    ex, ey = engine.tensor(a["x"]), engine.tensor(a["y"])

    def engine_step(p, x, y):
        return engine.autograd_grad(_engine_loss(p, x, y), p)

    compiled = engine.compile(engine_step)

    tp = [torch.tensor(a[k], requires_grad=True) for k in names]
    tx, ty = torch.from_numpy(a["x"]), torch.from_numpy(a["y"])

    def run_torch():
        return torch.autograd.grad(_torch_loss(tp, tx, ty), tp)

    hp = [a[k] for k in names]
    hips_grad = autograd.grad(lambda p: _hips_loss(p, a["x"], a["y"]))

    def run_hips():
        return hips_grad(hp)

    runs = {"engine": lambda: engine_step(ep, ex, ey), "compiled": lambda: compiled(ep, ex, ey),
            "torch": run_torch, "hips": run_hips}
    jax = _jax()
    if jax is not None:
        runs["jax"] = _jax_run(jax.jit(jax.grad(_jax_loss)), hp, a["x"], a["y"])
    from .gemm_calls import bound_runs  # the step's matrix products alone, numpy's and torch's
    runs.update(bound_runs(runs["engine"]))
    return runs


def _jax_loss(params: list, x, y):
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp
    return _array_loss(jnp, logsumexp, params, x, y)


# ---------------------------------------------------------------- (b) scalar chain
def build_chain(quick: bool) -> dict[str, Run]:
    import autograd
    import torch

    import engine
    x0 = np.array([0.5], np.float32)

    def chain(x):
        for _ in range(CHAIN_STEPS):
            x = x * 1.0001 + 0.0001
        return x

    ex = engine.tensor(x0, requires_grad=True)
    tx = torch.tensor(x0, requires_grad=True)
    hips_value_and_grad = autograd.value_and_grad(lambda x: chain(x)[0])

    def engine_step(x):
        y = chain(x)
        return (y.detach(), *engine.autograd_grad(y, x))

    compiled = engine.compile(engine_step)

    def run_torch():
        y = chain(tx)
        return (y, *torch.autograd.grad(y, tx))

    def run_hips():
        y, g = hips_value_and_grad(x0)
        return (np.reshape(y, (1,)), g)

    runs = {"engine": lambda: engine_step(ex), "compiled": lambda: compiled(ex), "torch": run_torch,
            "hips": run_hips}
    jax = _jax()
    if jax is not None:
        # a fori_loop rather than 2000 unrolled ops: the same computation, compiled in seconds
        def jax_chain(x):
            y = jax.lax.fori_loop(0, CHAIN_STEPS, lambda i, x: x * 1.0001 + 0.0001, x)
            return y[0]

        run = _jax_run(jax.jit(jax.value_and_grad(jax_chain)), x0)
        runs["jax"] = lambda: (np.reshape(run()[0], (1,)), run()[1])
    return runs


# ---------------------------------------------------------------- (c) Hessian-vector product
def build_hvp(quick: bool) -> dict[str, Run]:
    import autograd
    import autograd.numpy as anp
    import torch

    import engine
    a = mlp_inputs()
    names = _param_names()
    v = [a["v" + k] for k in names]

    ep = [engine.tensor(a[k], requires_grad=True) for k in names]
    ev = [engine.tensor(t) for t in v]
    ex, ey = engine.tensor(a["x"]), engine.tensor(a["y"])

    def engine_hvp(p, v, x, y):
        gs = engine.autograd_grad(_engine_loss(p, x, y), p, create_graph=True)
        dot = sum((g * vi).sum() for g, vi in zip(gs, v))
        return engine.autograd_grad(dot, p)

    compiled = engine.compile(engine_hvp)

    tp = [torch.tensor(a[k], requires_grad=True) for k in names]
    tv = [torch.from_numpy(t) for t in v]
    tx, ty = torch.from_numpy(a["x"]), torch.from_numpy(a["y"])

    def run_torch():
        gs = torch.autograd.grad(_torch_loss(tp, tx, ty), tp, create_graph=True)
        dot = sum((g * vi).sum() for g, vi in zip(gs, tv))
        return torch.autograd.grad(dot, tp)

    hips_g = autograd.grad(lambda p: _hips_loss(p, a["x"], a["y"]))
    hips_hvp = autograd.grad(lambda p: sum(anp.sum(g * vi) for g, vi in zip(hips_g(p), v)))
    hp = [a[k] for k in names]

    def run_hips():
        return hips_hvp(hp)

    return {"engine": lambda: engine_hvp(ep, ev, ex, ey), "compiled": lambda: compiled(ep, ev, ex, ey),
            "torch": run_torch, "hips": run_hips}


register(Case("seed", "seed example: mean((2x+1 - (w x + b))^2), x of 100, forward + grad of w, b",
              build_seed, reps=400, quick_reps=20, targets=(),
              compiled_targets=(Target("#11", torch=0.3, jax=2.0),), rtol=1e-5, atol=1e-6))
register(Case("mlp", "MLP step 64x784-512-512-10, tanh, log_softmax+NLL, grad of 6 params",
              build_mlp, reps=300, quick_reps=8,
              targets=(Target("#2", torch=1.2, hips_speedup=2), Target("#5", torch=1.1, hips_speedup=3)),
              compiled_targets=(Target("#11", gemm_slack=0.05),), rtol=2e-3, atol=1e-6))
register(Case("chain", f"scalar chain {CHAIN_STEPS} x (x*1.0001 + 0.0001), forward + backward",
              build_chain, reps=150, quick_reps=8,
              targets=(Target("#2", torch=1.0, hips_speedup=2), Target("#5", torch=0.8, hips_speedup=3),
                       Target("#11", torch=0.7)),
              compiled_targets=(Target("#11", torch=0.2),), rtol=1e-5))
register(Case("hvp", "Hessian-vector product of the MLP loss (create_graph)",
              build_hvp, reps=150, quick_reps=6,
              targets=(Target("#2", torch=1.5, hips_speedup=2), Target("#5", torch=1.2),
                       Target("#11", torch=0.8)),
              compiled_targets=(Target("#11", torch=0.8),), rtol=5e-3, atol=1e-5))
