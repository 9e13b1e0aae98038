"""Samples for engine.nn.functional: activations, losses, affine_grid and grid_sample.

Smooth samples stay away from kinks and are checked by finite differences; samples exactly at a
kink (``fd: False``) are checked against torch's convention only (values, gradients and second
derivatives). Class weights, ``pos_weight`` and ±1 labels are ``nondiff`` where torch does not
differentiate them.
"""

from __future__ import annotations

import numpy as np

from . import add, away, ints, pos, randn, rng

F = "nn.functional."
KINK = {"fd": False, "note": "at the kink: torch's convention"}


def probs(*shape: int, seed: int = 0, axis: int = 1) -> np.ndarray:
    e = np.exp(randn(*shape, seed=seed))
    return e / e.sum(axis=axis, keepdims=True)


def between(*shape: int, seed: int = 0, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    return rng(seed).uniform(lo, hi, shape)


def signs(*shape: int, seed: int = 0) -> np.ndarray:
    return rng(seed).choice([-1.0, 1.0], shape)


# ---------------------------------------------------------------- activations
for name in ("sigmoid", "tanh", "silu", "mish", "gelu", "tanhshrink", "logsigmoid"):
    add(F + name, randn(3, 4))
add(F + "logsigmoid", np.array([-40.0, -3.0, 3.0, 40.0]), opts={"note": "saturated tails"})
add(F + "gelu", randn(3, 4, seed=1), approximate="tanh")
add(F + "softsign", away(3, 4))
add(F + "softsign", np.array([0.0, 1.0]), opts=KINK)
for name in ("silu", "mish", "gelu", "logsigmoid"):
    add(F + name, np.array([0.0, -1e-3]), opts={"note": "smooth through 0"})

add(F + "relu", away(3, 4))
add(F + "relu", np.array([0.0, -1.0, 2.0]), opts=KINK)
add(F + "leaky_relu", away(3, 4))
add(F + "leaky_relu", away(3, 4, seed=1), 0.2)
add(F + "leaky_relu", np.array([0.0, -1.0]), negative_slope=0.1, opts=KINK)
add(F + "hardtanh", np.array([-2.0, -0.7, 0.3, 0.9, 1.5]))
add(F + "hardtanh", np.array([-2.0, -0.7, 0.3, 1.9, 2.5]), min_val=-0.5, max_val=2.0)
add(F + "hardtanh", np.array([-1.0, 1.0, -0.5, 2.0]), -0.5, 2.0, opts=KINK)
add(F + "relu6", np.array([-1.0, 0.5, 3.0, 5.9, 7.0]))
add(F + "relu6", np.array([0.0, 6.0]), opts=KINK)
add(F + "threshold", np.array([-1.0, 0.05, 0.2, 3.0]), 0.1, -2.0)
add(F + "threshold", np.array([0.1, 0.3]), 0.1, -2.0, opts=KINK)
add(F + "hardsigmoid", np.array([-4.0, -2.0, 0.5, 2.5, 4.0]),
    opts={"second_order": False, "note": "torch: hardsigmoid_backward has no derivative"})
add(F + "hardsigmoid", np.array([-3.0, 3.0]), opts={**KINK, "second_order": False})
add(F + "hardswish", np.array([-4.0, -2.0, 0.5, 2.5, 4.0]))
add(F + "hardswish", np.array([-3.0, 3.0, 0.0]), opts=KINK)
add(F + "softshrink", np.array([-1.2, -0.3, 0.2, 0.7, 1.5]))
add(F + "softshrink", np.array([-1.2, -0.3, 0.2, 1.7, 1.5]), 1.0)
add(F + "softshrink", np.array([-0.5, 0.5, 0.0]), opts=KINK)
add(F + "hardshrink", np.array([-1.2, -0.3, 0.2, 0.7, 1.5]))
add(F + "hardshrink", np.array([-1.2, -0.3, 0.2, 1.7, 1.5]), lambd=1.0)
add(F + "hardshrink", np.array([-0.5, 0.5, 0.0]), opts=KINK)

add(F + "elu", away(3, 4))
add(F + "elu", away(3, 4, seed=1), 0.5)
add(F + "elu", np.array([0.0, -1.0]), alpha=2.0, opts=KINK)
add(F + "selu", away(3, 4))
add(F + "selu", np.array([0.0]), opts=KINK)
add(F + "celu", away(3, 4))
add(F + "celu", away(3, 4, seed=1), alpha=0.7)
add(F + "celu", np.array([0.0]), 2.0, opts=KINK)
add(F + "softplus", randn(3, 4))
add(F + "softplus", np.array([-2.0, 0.3, 1.2, 2.5, 4.0]), beta=2.0, threshold=4.0)
add(F + "softplus", np.array([2.0, 1.0]), 2.0, 4.0, opts={**KINK, "note": "beta*x == threshold"})
add(F + "glu", randn(3, 4))
add(F + "glu", randn(4, 3, seed=1), 0)
add(F + "prelu", away(2, 3, 4), pos(3, seed=1, lo=0.1, hi=0.9))
add(F + "prelu", away(3, 4), np.array([0.25]))
add(F + "prelu", away(5), np.array([0.3]))
add(F + "prelu", np.array([[0.0, -1.0, 2.0], [0.0, 1.0, -2.0]]), np.array([0.25, 0.5, 0.75]), opts=KINK)

add(F + "softmax", randn(3, 4), dim=1)
add(F + "softmax", randn(2, 3, 4), 0)
add(F + "log_softmax", randn(3, 4), dim=-1)
add(F + "log_softmax", randn(2, 3, 4), 1)
add(F + "softmin", randn(3, 4), dim=1)
add(F + "softmin", randn(2, 3, 4), 2)

# ---------------------------------------------------------------- regression losses
W = {"nondiff": ("weight",)}
for name in ("mse_loss", "l1_loss"):
    add(F + name, randn(3, 4), randn(3, 4, seed=1))
    add(F + name, randn(3, 4), randn(3, 4, seed=1), reduction="sum")
    add(F + name, randn(3, 4), randn(3, 4, seed=1), reduction="none")
    add(F + name, randn(3, 4), randn(4, seed=1), opts={"note": "target broadcast (torch warns)"})
    add(F + name, randn(3, 4), randn(3, 4, seed=1), weight=pos(3, 4, seed=2))
    add(F + name, randn(3, 4), randn(3, 4, seed=1), weight=pos(3, 4, seed=2), reduction="none")
    add(F + name, randn(3, 4), randn(3, 4, seed=1), size_average=False, opts={"note": "legacy flags"})
add(F + "l1_loss", np.array([1.0, 2.0, -1.0]), np.array([1.0, 0.0, -1.0]), opts=KINK)

add(F + "smooth_l1_loss", randn(3, 4), randn(3, 4, seed=1))
add(F + "smooth_l1_loss", randn(3, 4), randn(3, 4, seed=1), beta=0.5, reduction="none")
add(F + "smooth_l1_loss", randn(3, 4), randn(3, 4, seed=1), beta=0.0, reduction="sum")
add(F + "smooth_l1_loss", np.array([0.5, -0.5, 0.0, 2.0]), np.zeros(4), beta=0.5, reduction="sum",
    opts={**KINK, "nondiff": (1,)})
add(F + "huber_loss", randn(3, 4), randn(3, 4, seed=1))
add(F + "huber_loss", randn(3, 4), randn(3, 4, seed=1), reduction="sum", delta=0.7)
add(F + "huber_loss", randn(3, 4), randn(3, 4, seed=1), weight=pos(3, 4, seed=2))
add(F + "huber_loss", np.array([0.5, -0.5, 0.0, 2.0]), np.zeros(4), "sum", 0.5,
    opts={**KINK, "nondiff": (1,)})

add(F + "gaussian_nll_loss", randn(3, 4), randn(3, 4, seed=1), pos(3, 4, seed=2))
add(F + "gaussian_nll_loss", randn(3, 4), randn(3, 4, seed=1), pos(3, seed=2), full=True)
add(F + "gaussian_nll_loss", randn(3, 4), randn(3, 4, seed=1), pos(3, 1, seed=2), reduction="none")
add(F + "gaussian_nll_loss", randn(3, 4), randn(3, 4, seed=1), 0.5, reduction="sum")
add(F + "gaussian_nll_loss", randn(3), randn(3, seed=1), np.array([1e-9, 0.5, 2.0]), eps=1e-6,
    opts={"fd": False, "note": "var below eps: clamped value, unclamped gradient (torch)"})

add(F + "poisson_nll_loss", randn(3, 4), pos(3, 4, seed=1))
add(F + "poisson_nll_loss", pos(3, 4), pos(3, 4, seed=1), log_input=False, reduction="sum")
add(F + "poisson_nll_loss", randn(3, 4), pos(3, 4, seed=1, lo=0.2, hi=4.0), full=True, reduction="none")
add(F + "poisson_nll_loss", pos(3, 4), pos(3, 4, seed=1, lo=0.2, hi=4.0), False, True, eps=1e-4)

# ---------------------------------------------------------------- classification losses
add(F + "cross_entropy", randn(4, 5), ints(4, high=5))
add(F + "cross_entropy", randn(4, 5), ints(4, high=5), reduction="sum")
add(F + "cross_entropy", randn(4, 5), ints(4, high=5), reduction="none")
add(F + "cross_entropy", randn(4, 5), ints(4, high=5), weight=pos(5, seed=1), opts=W)
add(F + "cross_entropy", randn(4, 5), np.array([1, -100, 3, -100]), opts={"note": "ignore_index"})
add(F + "cross_entropy", randn(4, 5), np.array([1, 2, 3, 2]), pos(5, seed=1), ignore_index=2,
    reduction="none", opts={"nondiff": (2,)})
add(F + "cross_entropy", randn(4, 5), np.array([1, 2, 3, 2]), pos(5, seed=1), ignore_index=2,
    opts={"nondiff": (2,)})
add(F + "cross_entropy", randn(4, 5), ints(4, high=5), label_smoothing=0.1)
add(F + "cross_entropy", randn(4, 5), np.array([1, 2, 3, 2]), weight=pos(5, seed=1), ignore_index=2,
    label_smoothing=0.2, opts=W)
add(F + "cross_entropy", randn(4, 5), np.array([1, 2, 3, 2]), weight=pos(5, seed=1), ignore_index=2,
    label_smoothing=0.2, reduction="sum", opts=W)
add(F + "cross_entropy", randn(4, 5), np.array([1, -100, 3, 2]), label_smoothing=0.3, reduction="none")
add(F + "cross_entropy", randn(2, 3, 4), ints(2, 4, high=3), opts={"note": "K-dim (N, C, d1)"})
add(F + "cross_entropy", randn(2, 3, 2, 2), ints(2, 2, 2, high=3), weight=pos(3, seed=1),
    label_smoothing=0.1, opts=W)
add(F + "cross_entropy", randn(2, 3, 2, 1, 2), ints(2, 2, 1, 2, high=3), reduction="none")
add(F + "cross_entropy", randn(5), np.array(2), opts={"note": "unbatched"})
add(F + "cross_entropy", randn(4, 5), probs(4, 5, seed=1), opts={"note": "class probabilities"})
add(F + "cross_entropy", randn(4, 5), probs(4, 5, seed=1), weight=pos(5, seed=2), reduction="none")
add(F + "cross_entropy", randn(4, 5), probs(4, 5, seed=1), weight=pos(5, seed=2), label_smoothing=0.2)
add(F + "cross_entropy", randn(2, 3, 4), probs(2, 3, 4, seed=1), reduction="sum")
add(F + "cross_entropy", randn(5), probs(5, seed=1, axis=0))

add(F + "nll_loss", randn(4, 5), ints(4, high=5))
add(F + "nll_loss", randn(4, 5), ints(4, high=5), pos(5, seed=1), opts={"nondiff": (2,)})
add(F + "nll_loss", randn(4, 5), np.array([0, 4, -100, 4]), reduction="sum")
add(F + "nll_loss", randn(4, 5), np.array([0, 4, 1, 4]), weight=pos(5, seed=1), ignore_index=4,
    reduction="none", opts=W)
add(F + "nll_loss", randn(2, 3, 4), ints(2, 4, high=3), weight=pos(3, seed=1), opts=W)
add(F + "nll_loss", randn(2, 3, 2, 2), ints(2, 2, 2, high=3), reduction="none")
add(F + "nll_loss", randn(2, 3, 2, 2, 2), ints(2, 2, 2, 2, high=3), reduction="sum")
add(F + "nll_loss", randn(5), np.array(3))
add(F + "nll_loss", randn(5), np.array(3), reduction="none")

add(F + "binary_cross_entropy", between(3, 4), between(3, 4, seed=1))
add(F + "binary_cross_entropy", between(3, 4), between(3, 4, seed=1), pos(3, 4, seed=2), reduction="none",
    opts={"nondiff": (2,)})
add(F + "binary_cross_entropy", between(3, 4), between(3, 4, seed=1), weight=pos(4, seed=2),
    reduction="sum", opts=W)
add(F + "binary_cross_entropy_with_logits", randn(3, 4), between(3, 4, seed=1))
add(F + "binary_cross_entropy_with_logits", randn(3, 4), between(3, 4, seed=1), pos(3, 4, seed=2),
    reduction="none", opts={"nondiff": (2,)})
add(F + "binary_cross_entropy_with_logits", randn(3, 4), between(3, 4, seed=1), pos_weight=pos(4, seed=2),
    opts={"nondiff": ("pos_weight",)})
add(F + "binary_cross_entropy_with_logits", randn(3, 4), between(3, 4, seed=1), weight=pos(4, seed=3),
    reduction="sum", pos_weight=pos(4, seed=2), opts={"nondiff": ("weight", "pos_weight")})
add(F + "binary_cross_entropy_with_logits", np.array([-50.0, 50.0, 0.0]), np.array([0.3, 0.7, 1.0]),
    opts={"note": "saturated logits"})

add(F + "kl_div", randn(3, 4), probs(3, 4, seed=1), reduction="batchmean")
add(F + "kl_div", randn(3, 4), probs(3, 4, seed=1), reduction="sum")
add(F + "kl_div", randn(3, 4), probs(3, 4, seed=1), reduction="none")
add(F + "kl_div", randn(3, 4), probs(3, 4, seed=1), opts={"note": "'mean' (torch warns)"})
add(F + "kl_div", randn(3, 4), randn(3, 4, seed=1), reduction="batchmean", log_target=True)
add(F + "kl_div", randn(3), np.array([0.0, 0.4, 0.6]), reduction="sum",
    opts={"nondiff": (1,), "note": "zero target probability"})

add(F + "soft_margin_loss", randn(3, 4), signs(3, 4, seed=1), opts={"nondiff": (1,)})
add(F + "soft_margin_loss", randn(3, 4), signs(3, 4, seed=1), reduction="none", opts={"nondiff": (1,)})
add(F + "multilabel_soft_margin_loss", randn(3, 4), (randn(3, 4, seed=1) > 0).astype(float))
add(F + "multilabel_soft_margin_loss", randn(3, 4), between(3, 4, seed=1), pos(4, seed=2), reduction="none")
add(F + "multilabel_soft_margin_loss", randn(4), between(4, seed=1), reduction="sum")
MM = {"second_order": False, "note": "torch: multi_margin_loss_backward has no derivative"}
add(F + "multi_margin_loss", randn(4, 5), ints(4, high=5), opts=MM)
add(F + "multi_margin_loss", randn(4, 5), ints(4, high=5), p=2, margin=0.5, reduction="none", opts=MM)
add(F + "multi_margin_loss", randn(4, 5), ints(4, high=5), weight=pos(5, seed=1), reduction="sum",
    opts={**MM, "nondiff": ("weight",)})
add(F + "multi_margin_loss", randn(5), np.array(2), opts=MM)
add(F + "multi_margin_loss", np.array([[0.5, 0.0, 2.0]]), np.array([0]), opts={**MM, **KINK})

add(F + "hinge_embedding_loss", randn(6), signs(6, seed=1), opts={"nondiff": (1,)})
add(F + "hinge_embedding_loss", randn(2, 3), signs(2, 3, seed=1), margin=0.5, reduction="none",
    opts={"nondiff": (1,)})
add(F + "hinge_embedding_loss", np.array([1.0, 0.5]), np.array([-1.0, -1.0]), reduction="sum",
    opts={**KINK, "nondiff": (1,)})
add(F + "margin_ranking_loss", randn(5), randn(5, seed=1), signs(5, seed=2))
add(F + "margin_ranking_loss", randn(5), randn(5, seed=1), signs(5, seed=2), margin=0.3, reduction="none")
add(F + "margin_ranking_loss", np.array([0.5, 1.0]), np.array([0.0, 0.0]), np.array([1.0, 1.0]), 0.5,
    reduction="sum", opts=KINK)
add(F + "cosine_embedding_loss", randn(4, 3), randn(4, 3, seed=1), np.array([1.0, -1.0, 1.0, -1.0]),
    opts={"nondiff": (2,)})
add(F + "cosine_embedding_loss", randn(4, 3), randn(4, 3, seed=1), np.array([1.0, -1.0, -1.0, -1.0]),
    margin=-0.9, reduction="none", opts={"nondiff": (2,)})
add(F + "cosine_embedding_loss", randn(3), randn(3, seed=1), np.array(-1.0), margin=-0.5,
    opts={"nondiff": (2,)})

add(F + "cosine_similarity", randn(3, 4), randn(3, 4, seed=1))
add(F + "cosine_similarity", randn(3, 4), randn(3, 4, seed=1), dim=0)
add(F + "cosine_similarity", randn(3, 4), randn(4, seed=1), -1)
add(F + "cosine_similarity", randn(4), randn(4, seed=1), 0)
add(F + "cosine_similarity", np.array([[3e-9, -4e-9], [1.0, 2.0]]), np.array([[1.0, 2.0], [3.0, -1.0]]),
    opts={"fd": False, "note": "norm below eps: clamped value, the unclamped norm's gradient (torch)"})
add(F + "pairwise_distance", randn(3, 4), randn(3, 4, seed=1))
add(F + "pairwise_distance", randn(3, 4), randn(3, 4, seed=1), p=1)
add(F + "pairwise_distance", randn(3, 4), randn(3, 4, seed=1), 3.0, keepdim=True)
add(F + "pairwise_distance", randn(3, 4), randn(4, seed=1), eps=0.0)
add(F + "pairwise_distance", randn(4), randn(4, seed=1))
add(F + "triplet_margin_loss", randn(4, 3), randn(4, 3, seed=1), randn(4, 3, seed=2))
add(F + "triplet_margin_loss", randn(4, 3), randn(4, 3, seed=1), randn(4, 3, seed=2), margin=0.5, p=1,
    reduction="none")
add(F + "triplet_margin_loss", randn(4, 3), randn(4, 3, seed=1), randn(4, 3, seed=2), swap=True,
    reduction="sum")
add(F + "triplet_margin_loss", randn(3), randn(3, seed=1), randn(3, seed=2), margin=2.0)


# ---------------------------------------------------------------- affine_grid, grid_sample
add(F + "affine_grid", randn(2, 2, 3), (2, 3, 4, 5), align_corners=False)
add(F + "affine_grid", randn(2, 2, 3, seed=1), [2, 1, 3, 2], True)
add(F + "affine_grid", randn(1, 3, 4), (1, 2, 2, 3, 4), align_corners=False)
add(F + "affine_grid", randn(1, 3, 4, seed=1), (1, 1, 3, 1, 2), align_corners=True,
    opts={"note": "a unit-size dim: torch warns"})


def grid(n: int, out: tuple, size: tuple, align: bool, nearest: bool = False, seed: int = 0) -> np.ndarray:
    """A grid of (x, y[, z]) points for an input of spatial ``size``, each at an integer plus a
    fraction of the pixel grid, from two pixels outside the input to two past its end: away from
    the kinks (cell boundaries, and the clip and reflection points, which lie on integers or
    half-integers) and, for ``nearest``, from the rounding jumps at the half-integers."""
    r = rng(seed)
    shape = (n, *out, len(size))
    frac = r.uniform(0.15, 0.85, shape) if not nearest else \
        r.uniform(0.1, 0.4, shape) + 0.5 * r.integers(0, 2, shape)
    s = np.array(size[::-1], dtype=np.float64)  # grid entry k runs along spatial dim -1 - k
    u = np.floor(r.uniform(0, 1, shape) * (s + 4)) - 2 + frac
    if not align:
        return (2 * u + 1) / s - 1
    # align_corners with a unit-size dim: every point maps to pixel 0, any grid value will do
    return np.where(s > 1, 2 * u / np.maximum(s - 1, 1) - 1, frac)


for mode in ("bilinear", "nearest", "bicubic"):
    for pad in ("zeros", "border", "reflection"):
        for align in (False, True):
            add(F + "grid_sample", randn(1, 2, 3, 4), grid(1, (2, 3), (3, 4), align, mode == "nearest"),
                mode=mode, padding_mode=pad, align_corners=align)
for k, pad in enumerate(("zeros", "border", "reflection")):
    add(F + "grid_sample", randn(1, 2, 2, 3, 3), grid(1, (2, 1, 2), (2, 3, 3), k == 1), mode="bilinear",
        padding_mode=pad, align_corners=k == 1, opts={"note": "trilinear"})
    add(F + "grid_sample", randn(1, 1, 2, 3, 3), grid(1, (1, 2, 2), (2, 3, 3), k != 1, True), mode="nearest",
        padding_mode=pad, align_corners=k != 1)
add(F + "grid_sample", randn(2, 1, 2, 3), grid(2, (1, 3), (2, 3), False, seed=1), "bilinear", "zeros", False,
    opts={"note": "batch of two, positional mode and padding"})
add(F + "grid_sample", randn(1, 1, 1, 3), grid(1, (1, 4), (1, 3), True), mode="bilinear",
    padding_mode="reflection", align_corners=True, opts={"note": "a unit-size dim reflects to 0"})
