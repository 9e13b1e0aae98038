"""Samples for the layers of engine.nn.functional: linear, convolution, pooling, normalization,
dropout, embedding, attention, padding, interpolation and unfold/fold.

Leaves stay small (finite differences cost two forward passes per element). Max-pooling samples
use distinct values so that no window has a tie; windows with ties sit at a kink and are checked
against torch's convention only (``fd: False``): the gradient goes to the first maximum.
Running statistics, masks of integer/bool type and indices are never differentiated.

Two torch oracles need a wrapper: ``scaled_dot_product_attention`` runs torch's math backend
(torch's default CPU kernel has no double backward, the math reference has), and ``dropout``
compares with torch arithmetic on the same keep-mask (torch's random stream differs from
numpy's, so the mask is drawn from the sample's seed the way the engine documents it).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from . import add, distinct, ints, pos, randn

F = "nn.functional."
KINK = {"fd": False, "note": "ties inside a window: torch's convention (first maximum)"}


def pooled(*shape: int, seed: int = 0) -> np.ndarray:
    """Distinct values (no ties in any window), spread enough for finite differences."""
    return distinct(*shape, seed=seed)


# ---------------------------------------------------------------- linear
add(F + "linear", randn(3, 4), randn(5, 4, seed=1), randn(5, seed=2))
add(F + "linear", randn(2, 3, 4), randn(2, 4, seed=1), opts={"note": "batched input, no bias"})
add(F + "linear", randn(4), randn(3, 4, seed=1), randn(3, seed=2), opts={"note": "1-D input"})
add(F + "linear", randn(3, 4), randn(4, seed=1), opts={"note": "1-D weight"})
add(F + "bilinear", randn(3, 2), randn(3, 4, seed=1), randn(2, 2, 4, seed=2), randn(2, seed=3))
add(F + "bilinear", randn(2, 2, 3), randn(2, 2, 2, seed=1), randn(3, 3, 2, seed=2),
    opts={"note": "extra batch dim, no bias"})

# ---------------------------------------------------------------- convolutions
X2 = randn(2, 2, 4, 4)  # 32 elements
add(F + "conv2d", X2, randn(3, 2, 2, 2, seed=1), randn(3, seed=2))
add(F + "conv2d", X2, randn(2, 2, 3, 3, seed=1), None, 2, 1, opts={"note": "stride 2, padding 1"})
add(F + "conv2d", X2, randn(2, 2, 2, 3, seed=1), stride=(1, 2), padding=(2, 1), dilation=(2, 1))
add(F + "conv2d", X2, randn(2, 2, 3, 2, seed=1), randn(2, seed=2), padding="same",
    opts={"note": "'same' with an even kernel: the extra padding goes right/bottom"})
add(F + "conv2d", X2, randn(2, 2, 3, 3, seed=1), padding="same", dilation=(1, 2))
add(F + "conv2d", X2, randn(2, 2, 3, 3, seed=1), padding="valid")
add(F + "conv2d", randn(1, 4, 3, 3), randn(4, 2, 2, 2, seed=1), randn(4, seed=2), groups=2)
add(F + "conv2d", randn(1, 4, 3, 3), randn(4, 1, 2, 2, seed=1), groups=4, padding=1,
    opts={"note": "depthwise"})
add(F + "conv2d", randn(2, 3, 3), randn(2, 2, 2, 2, seed=1), opts={"note": "unbatched"})
add(F + "conv1d", randn(2, 2, 5), randn(3, 2, 3, seed=1), randn(3, seed=2))
add(F + "conv1d", randn(2, 2, 6), randn(4, 1, 2, seed=1), None, 2, 1, 2, 2,
    opts={"note": "stride, padding, dilation, groups"})
add(F + "conv1d", randn(2, 5), randn(2, 2, 2, seed=1), padding="same", opts={"note": "unbatched"})
add(F + "conv3d", randn(1, 1, 3, 3, 3), randn(2, 1, 2, 2, 2, seed=1), randn(2, seed=2))
add(F + "conv3d", randn(1, 2, 3, 3, 2), randn(2, 1, 2, 2, 1, seed=1), stride=(2, 1, 1),
    padding=(1, 0, 1), groups=2)

add(F + "conv_transpose2d", randn(1, 2, 3, 3), randn(2, 3, 2, 2, seed=1), randn(3, seed=2))
add(F + "conv_transpose2d", randn(1, 2, 3, 3), randn(2, 2, 3, 3, seed=1), None, 2, 1, 1,
    opts={"note": "stride 2, padding 1, output_padding 1"})
add(F + "conv_transpose2d", randn(2, 2, 2, 3), randn(2, 1, 2, 2, seed=1), randn(2, seed=2),
    stride=(2, 1), padding=(0, 1), output_padding=(1, 0), groups=2, dilation=(1, 2))
add(F + "conv_transpose2d", randn(2, 3, 3), randn(2, 2, 2, 2, seed=1), dilation=2,
    output_padding=1, opts={"note": "unbatched; output_padding below the dilation"})
add(F + "conv_transpose1d", randn(2, 2, 4), randn(2, 3, 3, seed=1), randn(3, seed=2), stride=2,
    padding=1, output_padding=1)
add(F + "conv_transpose1d", randn(1, 4, 3), randn(4, 1, 2, seed=1), groups=2, dilation=2)
add(F + "conv_transpose3d", randn(1, 1, 2, 2, 2), randn(1, 2, 2, 2, 2, seed=1), randn(2, seed=2),
    stride=2, padding=(1, 0, 0), output_padding=(0, 1, 0))

add(F + "unfold", randn(1, 2, 4, 4), 2)
add(F + "unfold", randn(2, 1, 4, 5), (2, 3), dilation=(1, 2), padding=1, stride=(2, 1))
add(F + "unfold", randn(2, 3, 4), 2, stride=2, opts={"note": "unbatched"})
add(F + "fold", randn(1, 8, 4), (3, 3), 2)
add(F + "fold", randn(2, 4, 6), (3, 4), (2, 2), padding=(1, 0), stride=(2, 1))
add(F + "fold", randn(4, 4), (4, 3), 2, dilation=(2, 1), opts={"note": "unbatched"})

# ---------------------------------------------------------------- pooling
P2 = pooled(2, 2, 4, 5)  # 80 elements, but cheap: one pooling pass per evaluation
add(F + "max_pool2d", P2, 2)
add(F + "max_pool2d", P2, (3, 2), stride=(1, 2), padding=1, dilation=(1, 2), ceil_mode=True)
add(F + "max_pool2d", P2, 2, 1, 1, return_indices=True)
add(F + "max_pool2d", pooled(2, 4, 4), 3, 2, ceil_mode=True, opts={"note": "unbatched, ceil_mode"})
add(F + "max_pool2d", np.array([[[[1.0, 2.0, 2.0], [0.5, 2.0, -1.0], [2.0, 0.0, 2.0]]]]), 2, 1,
    return_indices=True, opts=KINK)
add(F + "max_pool2d", pooled(2, 3, 6, 8), 2, opts={"note": "2x2 windows, stride 2 (tiled)"})
add(F + "max_pool2d", pooled(2, 2, 7, 5), 2, opts={"note": "2x2 windows cropping odd sizes"})
add(F + "max_pool2d", pooled(1, 2, 7, 8), (2, 3), 3, opts={"note": "windows with gaps between"})
add(F + "max_pool1d", pooled(2, 3, 9), 2, opts={"note": "tiled 1-d windows"})
add(F + "max_pool1d", pooled(2, 3, 7), 3)
add(F + "max_pool1d", pooled(2, 3, 7), 3, 2, 1, 2, True, True)
add(F + "max_pool1d", np.array([[1.0, 3.0, 3.0, 2.0, 3.0, 3.0]]), 3, 1, opts=KINK)
add(F + "max_pool3d", pooled(1, 2, 3, 4, 3), 2, 1, (1, 0, 1))
add(F + "max_pool3d", pooled(1, 1, 3, 3, 4), (2, 2, 3), stride=2, ceil_mode=True, return_indices=True)

add(F + "avg_pool2d", randn(2, 2, 4, 5), 2)
add(F + "avg_pool2d", randn(2, 2, 4, 5), 3, 2, 1, ceil_mode=True)
add(F + "avg_pool2d", randn(2, 2, 4, 5), 3, 2, 1, ceil_mode=True, count_include_pad=False)
add(F + "avg_pool2d", randn(2, 2, 4, 5), (2, 3), 1, (1, 0), divisor_override=4)
add(F + "avg_pool2d", randn(2, 4, 4), (3, 2), (1, 2), opts={"note": "unbatched"})
add(F + "avg_pool1d", randn(2, 3, 7), 3)
add(F + "avg_pool1d", randn(2, 3, 7), 4, 3, 2, True, False)
add(F + "avg_pool3d", randn(1, 2, 3, 4, 3), 2, 1, (1, 0, 1), count_include_pad=False)
add(F + "avg_pool3d", randn(1, 1, 3, 3, 4), (2, 2, 3), stride=2, ceil_mode=True, divisor_override=5)

add(F + "adaptive_avg_pool2d", randn(2, 2, 5, 4), (3, 2))
add(F + "adaptive_avg_pool2d", randn(2, 5, 4), 3, opts={"note": "unbatched, overlapping windows"})
add(F + "adaptive_avg_pool2d", randn(1, 3, 5, 4), (None, 3))
add(F + "adaptive_avg_pool1d", randn(2, 3, 7), 3)
add(F + "adaptive_avg_pool3d", randn(1, 2, 3, 4, 3), (2, 3, 2))
add(F + "adaptive_max_pool2d", pooled(2, 2, 5, 4), (3, 2))
add(F + "adaptive_max_pool2d", pooled(2, 5, 4), 3, True, opts={"note": "overlapping windows"})
add(F + "adaptive_max_pool1d", pooled(2, 3, 7), 3, return_indices=True)
add(F + "adaptive_max_pool3d", pooled(1, 2, 3, 4, 3), (2, 3, 2))
for _nd, _x in ((1, pos(2, 3, 7)), (2, pos(1, 2, 4, 5)), (3, pos(1, 1, 3, 4, 3))):
    add(F + f"lp_pool{_nd}d", _x, 2, 2)
    add(F + f"lp_pool{_nd}d", _x, 3.0, 3, 2, True, opts={"note": "p=3, stride, ceil_mode"})
    add(F + f"lp_pool{_nd}d", pooled(*_x.shape), float("inf"), 2, opts={"note": "p=inf: max of |x|"})
add(F + "lp_pool2d", randn(1, 2, 4, 4), 1, 2, opts={"note": "p=1 on signed input: |sum| of windows"})

# ---------------------------------------------------------------- normalization
STATS = {"nondiff": (1, 2)}
add(F + "batch_norm", randn(4, 3), None, None, training=True)
add(F + "batch_norm", randn(2, 3, 2, 2), None, None, pos(3, seed=1), randn(3, seed=2), True)
add(F + "batch_norm", randn(3, 2, 4), randn(2, seed=1), pos(2, seed=2), pos(2, seed=3), randn(2, seed=4),
    opts={**STATS, "note": "eval mode: running statistics"})
add(F + "batch_norm", randn(3, 2, 4), randn(2, seed=1), pos(2, seed=2), None, None, True, 0.3, 1e-3,
    opts={**STATS, "note": "training with running stats passed (updated in place, as in torch)"})
add(F + "instance_norm", randn(2, 3, 4))
add(F + "instance_norm", randn(2, 2, 2, 3), None, None, pos(2, seed=1), randn(2, seed=2), eps=1e-3)
add(F + "instance_norm", randn(2, 2, 3), randn(2, seed=1), pos(2, seed=2), use_input_stats=False,
    opts=STATS)
add(F + "layer_norm", randn(3, 4), (4,))
add(F + "layer_norm", randn(2, 2, 3), (2, 3), randn(2, 3, seed=1), randn(2, 3, seed=2))
add(F + "layer_norm", randn(3, 5), [5], None, randn(5, seed=1), 1e-3,
    opts={"second_order": False, "note": "bias without weight: torch's layer_norm double backward "
                                         "fails (None 'other'); sample 1 covers second order"})
add(F + "group_norm", randn(2, 4, 3), 2)
add(F + "group_norm", randn(2, 4, 2, 2), 2, pos(4, seed=1), randn(4, seed=2), 1e-3)
add(F + "group_norm", randn(2, 3, 4), 3, opts={"note": "one channel per group"})
add(F + "rms_norm", randn(3, 4), (4,))
add(F + "rms_norm", randn(2, 2, 3), (2, 3), randn(2, 3, seed=1), 1e-4)
add(F + "normalize", randn(3, 4))
add(F + "normalize", randn(2, 3, 2), 3.0, 2)
add(F + "normalize", randn(3, 4), 1.0, 0)
add(F + "local_response_norm", randn(2, 4, 3), 3)
add(F + "local_response_norm", randn(2, 5, 2, 2), 2, 0.1, 0.5, 2.0)

# ---------------------------------------------------------------- dropout


def _torch_dropout(input, p=0.5, training=True, inplace=False, *, generator=None, channels=0):
    """torch arithmetic on the engine's documented mask: keep where uniform(seed) >= p."""
    if not training or p == 0:
        return input
    shape = tuple(input.shape)
    if channels:  # channel-wise: one draw per (sample, channel)
        batched = input.dim() == channels + 2
        shape = (shape[:2] if batched else shape[:1]) + (1,) * channels
    keep = np.random.default_rng(generator).random(shape) >= p
    scale = np.zeros(shape) if p == 1 else keep / (1.0 - p)
    return input * torch.tensor(scale, dtype=input.dtype)


DROP = "mask drawn from the sample's seed; torch arithmetic on the same mask"
add(F + "dropout", randn(3, 4), 0.4, generator=3, opts={"torch_fn": _torch_dropout, "note": DROP})
add(F + "dropout", randn(2, 3, 2), generator=7, opts={"torch_fn": _torch_dropout, "note": DROP})
add(F + "dropout", randn(3, 4), 1.0, generator=1, opts={"torch_fn": _torch_dropout, "note": "p=1"})
add(F + "dropout", randn(3, 4), 0.5, False, opts={"note": "eval mode: identity"})
add(F + "dropout", randn(3, 4), 0.0, opts={"note": "p=0: identity"})
for _nd, _x in ((1, randn(2, 3, 4)), (2, randn(2, 3, 2, 2)), (3, randn(2, 2, 2, 2, 2))):
    add(F + f"dropout{_nd}d", _x, 0.5, generator=5,
        opts={"torch_fn": lambda *a, _c=_nd, **k: _torch_dropout(*a, channels=_c, **k), "note": DROP})
    add(F + f"dropout{_nd}d", _x[0], 0.3, generator=2,
        opts={"torch_fn": lambda *a, _c=_nd, **k: _torch_dropout(*a, channels=_c, **k),
              "note": DROP + "; unbatched"})
    add(F + f"dropout{_nd}d", _x, 0.5, training=False, opts={"note": "eval mode: identity"})



def _torch_alpha_dropout(input, p=0.5, training=False, inplace=False, *, generator=None, feature=False):
    """torch's alpha-dropout arithmetic on the engine's documented mask."""
    if not training or p == 0:
        return input
    shape = tuple(input.shape)
    if feature:
        shape = shape[:2] + (1,) * (len(shape) - 2)
    keep = (np.random.default_rng(generator).random(shape) >= p).astype(float)
    alpha = 1.7580993408473766
    a = 1.0 / np.sqrt((alpha * alpha * p + 1) * (1 - p))
    return (input * torch.tensor(keep * a, dtype=input.dtype)
            + torch.tensor((keep - 1) * alpha * a + alpha * a * p, dtype=input.dtype))


add(F + "alpha_dropout", randn(3, 4), 0.3, True, generator=2,
    opts={"torch_fn": _torch_alpha_dropout, "note": DROP})
add(F + "alpha_dropout", randn(3, 4), 0.3, opts={"note": "training=False by default: identity"})
add(F + "feature_alpha_dropout", randn(2, 3, 4), 0.4, True, generator=6,
    opts={"torch_fn": lambda *a, **k: _torch_alpha_dropout(*a, feature=True, **k), "note": DROP})
add(F + "feature_alpha_dropout", randn(2, 3, 4), 0.4, opts={"note": "identity when not training"})

# ---------------------------------------------------------------- embedding, one_hot
W = randn(5, 3)
BY_DESIGN = {"fd": False, "note": "the gradient is changed by design (torch's convention), so it is "
                                  "not the derivative finite differences measure"}
add(F + "embedding", np.array([[0, 2, 4], [2, 2, 1]]), W)
add(F + "embedding", np.array([0, 3, 1, 3]), W, padding_idx=3, opts=BY_DESIGN)
add(F + "embedding", np.array([[0, 4], [1, 4]]), W, -1, opts={**BY_DESIGN, "note": "negative padding_idx"})
add(F + "embedding", np.array([[0, 2, 2], [4, 2, 0]]), W, scale_grad_by_freq=True, opts=BY_DESIGN)
add(F + "embedding", np.array(2), W, opts={"note": "0-d index"})
add(F + "one_hot", np.array([0, 2, 1]))
add(F + "one_hot", np.array([[0, 3], [1, 1]]), 5)
add(F + "one_hot", ints(2, 3, high=4), -1)

# ---------------------------------------------------------------- attention


def _torch_sdpa(*args, **kwargs):
    """torch's math reference (its default CPU kernel has no double backward)."""
    with sdpa_kernel(SDPBackend.MATH):
        return torch.nn.functional.scaled_dot_product_attention(*args, **kwargs)


ATT = {"torch_fn": _torch_sdpa}
Q, K, V = randn(1, 2, 3, 2), randn(1, 2, 4, 2, seed=1), randn(1, 2, 4, 3, seed=2)
add(F + "scaled_dot_product_attention", Q, K, V, opts=ATT)
add(F + "scaled_dot_product_attention", randn(2, 3, 2), randn(2, 3, 2, seed=1), randn(2, 3, 2, seed=2),
    is_causal=True, scale=0.7, opts=ATT)
add(F + "scaled_dot_product_attention", Q, K, V, np.array([[True, False, True, True],
                                                          [False, False, True, False],
                                                          [True, True, True, True]]), opts=ATT)
add(F + "scaled_dot_product_attention", Q, K, V, np.array([[False, False, False, False],
                                                          [True, False, True, False],
                                                          [True, True, False, True]]),
    opts={**ATT, "note": "a fully masked query row: zero output and gradient, as torch's math"})
add(F + "scaled_dot_product_attention", Q, K, V, randn(3, 4, seed=3),
    opts={**ATT, "note": "additive float mask, differentiated too"})
add(F + "scaled_dot_product_attention", Q, K, V,
    np.array([[0.0, -np.inf, 0.5, 0.0], [-np.inf, -np.inf, -np.inf, -np.inf], [0.1, 0.2, 0.0, -1.0]]),
    opts={**ATT, "nondiff": (3,), "note": "float mask with -inf, one row fully masked"})
add(F + "scaled_dot_product_attention", randn(1, 4, 2, 2), randn(1, 2, 3, 2, seed=1),
    randn(1, 2, 3, 2, seed=2), enable_gqa=True, opts={**ATT, "note": "grouped-query attention"})

# ---------------------------------------------------------------- padding
for mode in ("constant", "reflect", "replicate", "circular"):
    add(F + "pad", randn(2, 3, 4), (2, 1), mode=mode)
    add(F + "pad", randn(1, 2, 3, 4), (1, 2, -1, 2), mode)
    add(F + "pad", randn(1, 2, 2, 3, 3), (1, 0, 0, 1, 1, 1), mode=mode)
add(F + "pad", randn(2, 3), (1, 1, 2, 0), value=1.5)
add(F + "pad", randn(2, 3, 4), (-1, 2, 1, -1, 1, 1), "constant", -2.0,
    opts={"note": "negative amounts crop; a new leading-dim pad"})
add(F + "pad", randn(3, 4), (2, 3), "reflect", opts={"note": "unbatched"})

# ---------------------------------------------------------------- interpolation
I2 = randn(1, 2, 3, 4)
for kw in ({"size": (5, 3)}, {"scale_factor": 1.7}, {"scale_factor": (2.0, 0.6)}):
    add(F + "interpolate", I2, mode="nearest", **kw)
    add(F + "interpolate", I2, mode="nearest-exact", **kw)
    add(F + "interpolate", I2, mode="bilinear", **kw)
    add(F + "interpolate", I2, mode="bilinear", align_corners=True, **kw)
    add(F + "interpolate", I2, mode="bicubic", **kw)
    add(F + "interpolate", I2, mode="area", **kw)
add(F + "interpolate", I2, scale_factor=2, mode="bicubic", align_corners=True)
add(F + "interpolate", I2, scale_factor=1.7, mode="bilinear", recompute_scale_factor=True)
add(F + "interpolate", randn(2, 2, 5), 8, mode="linear")
add(F + "interpolate", randn(2, 2, 5), scale_factor=0.5, mode="linear", align_corners=True)
add(F + "interpolate", randn(2, 2, 5), 3, mode="nearest")
add(F + "interpolate", randn(1, 1, 2, 3, 2), (3, 2, 4), mode="trilinear")
add(F + "interpolate", randn(1, 1, 2, 3, 2), scale_factor=2, mode="nearest")
add(F + "upsample", I2, scale_factor=2, mode="bilinear")
add(F + "upsample_nearest", I2, (5, 6))
add(F + "upsample_bilinear", I2, scale_factor=1.5)

# ---------------------------------------------------------------- shuffles
add(F + "pixel_shuffle", randn(2, 8, 2, 3), 2)
add(F + "pixel_shuffle", randn(9, 2, 2), 3, opts={"note": "unbatched"})
add(F + "pixel_unshuffle", randn(2, 2, 4, 6), 2)
add(F + "pixel_unshuffle", randn(1, 2, 1, 3, 3), 3, opts={"note": "extra leading dims"})
add(F + "channel_shuffle", randn(2, 6, 3), 3)
add(F + "channel_shuffle", randn(1, 4, 2, 2), 2)
