"""engine.nn's layers against torch.nn's: every layer of a table of (constructor arguments, inputs)
is built in both libraries, the engine's gets torch's state_dict, and forward values, the input
and parameter gradients and the state after forward (running statistics) must match in float32
and float64, in train and eval mode. Also: repr, state_dict keys and shapes, parameter names,
constructor errors (torch's type and message), default initialisation by distribution, and a
few SGD steps of an MLP and a small CNN, loss for loss."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

import engine
from tests.engine.parity import assert_same_error

# ---------------------------------------------------------------- the case table


@dataclass
class In:
    """One forward input: ``fn(rng)`` gives its values; ``grad``: a float input whose gradient is
    compared (ints stay ints, float constants take the case's dtype)."""

    fn: Callable[[np.random.Generator], np.ndarray]
    grad: bool = True


def G(*shape: int) -> In:
    return In(lambda r: r.standard_normal(shape))


def Pos(*shape: int) -> In:
    return In(lambda r: r.uniform(0.5, 2.0, shape))


def Prob(*shape: int) -> In:
    return In(lambda r: r.uniform(0.05, 0.95, shape))


def K(fn: Callable[[np.random.Generator], np.ndarray]) -> In:
    return In(fn, grad=False)


def ints(high: int, *shape: int) -> In:
    return K(lambda r: r.integers(0, high, shape))


def signs(*shape: int) -> In:
    return K(lambda r: np.where(r.random(shape) < 0.5, -1.0, 1.0))


def kfloat(*shape: int) -> In:
    return K(lambda r: r.standard_normal(shape))


def kprob(*shape: int) -> In:
    return K(lambda r: r.uniform(0.05, 0.95, shape))


def ksoftmax(*shape: int) -> In:
    def fn(r: np.random.Generator) -> np.ndarray:
        e = np.exp(r.standard_normal(shape))
        return e / e.sum(-1, keepdims=True)
    return K(fn)


@dataclass
class T:
    """A tensor constructor argument (class weights...), built in each library."""

    value: np.ndarray


@dataclass
class Mod:
    """A module constructor argument (TransformerEncoder's layer), built in each library."""

    fn: Callable[[Any], Any]
    name: str

    def __repr__(self) -> str:
        return self.name


@dataclass
class Case:
    name: str
    args: tuple = ()
    kw: dict = field(default_factory=dict)
    inputs: tuple = ()
    fkw: dict = field(default_factory=dict)
    random: bool = False  # random in training (dropout): compared in eval only
    rtol64: float | None = None  # float64 tolerance when torch's kernel rounds to float32
    deep: bool = False  # many layers deep: float32 rounding compounds (float64 stays tight)
    call: Callable[..., Any] | None = None  # how the inputs are passed, if not layer(*inputs)

    @property
    def id(self) -> str:
        parts = [repr(a) if not isinstance(a, T) else "T" for a in self.args]
        parts += [f"{k}={'T' if isinstance(v, T) else repr(v)}" for k, v in self.kw.items()]
        parts += [f"{k}={v!r}" for k, v in self.fkw.items()]
        return f"{self.name}({', '.join(parts)})"


_w = np.random.default_rng(7)
W5 = _w.uniform(0.2, 2.0, 5)
W4 = _w.uniform(0.2, 2.0, 4)
W34 = _w.uniform(0.2, 2.0, (3, 4))


def _ce_target_with_ignored(r: np.random.Generator) -> np.ndarray:
    t = r.integers(0, 5, (6,))
    t[:2] = 1  # some of ignore_index=1
    return t


def _counts(r: np.random.Generator) -> np.ndarray:
    return r.poisson(2.0, (3, 4)).astype(float)


def _pad_idx_target(r: np.random.Generator) -> np.ndarray:
    t = r.integers(0, 10, (3, 4))
    t[0, :2] = 2
    t[1, 0] = 9
    return t


def LSTM_HC(layer: Any, x: Any, h: Any, c: Any) -> Any:
    return layer(x, (h, c))


def SELF(layer: Any, x: Any, *masks: Any, **kw: Any) -> Any:
    return layer(x, x, x, *masks, **kw)


def _key_padding(r: np.random.Generator) -> np.ndarray:
    m = np.zeros((3, 6), bool)
    m[0, -1] = m[2, -2:] = True
    return m


def _attn_bool(r: np.random.Generator) -> np.ndarray:
    m = r.random((5, 6)) < 0.3
    m[:, 0] = False  # every query keeps a key
    return m


def _causal(r: np.random.Generator) -> np.ndarray:
    return np.triu(np.full((5, 5), -np.inf), 1)


C = Case
CASES: list[Case] = [
    # linear
    C("Identity", (3,), {"unused": 1}, (G(2, 3),)),
    C("Linear", (3, 5), {}, (G(4, 3),)),
    C("Linear", (3, 5), {"bias": False}, (G(2, 4, 3),)),
    C("Linear", (4, 2), {}, (G(4),)),
    C("Bilinear", (3, 4, 5), {}, (G(6, 3), G(6, 4))),
    C("Bilinear", (2, 3, 4), {"bias": False}, (G(5, 2), G(5, 3))),
    # convolutions
    C("Conv1d", (4, 6, 3), {}, (G(2, 4, 9),)),
    C("Conv1d", (4, 6, 3), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}, (G(2, 4, 11),)),
    C("Conv1d", (4, 4, 3), {"padding": "same", "padding_mode": "circular"}, (G(2, 4, 7),)),
    C("Conv1d", (3, 6, 4), {"padding": "same"}, (G(2, 3, 8),)),
    C("Conv1d", (3, 6, 3), {"padding": "valid", "bias": False}, (G(3, 8),)),
    C("Conv1d", (3, 3, 3), {"padding": 2, "padding_mode": "reflect"}, (G(2, 3, 6),)),
    C("Conv1d", (3, 3, 2), {"padding": 1, "padding_mode": "replicate"}, (G(2, 3, 6),)),
    C("Conv2d", (3, 4, 3), {}, (G(2, 3, 7, 6),)),
    C("Conv2d", (4, 6, (3, 2)), {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 2), "groups": 2,
                                 "bias": False}, (G(2, 4, 7, 8),)),
    C("Conv2d", (3, 4, 3), {"padding": 1, "padding_mode": "replicate"}, (G(2, 3, 5, 5),)),
    C("Conv2d", (3, 4, 3), {"padding": (2, 1), "padding_mode": "reflect"}, (G(2, 3, 5, 6),)),
    C("Conv2d", (3, 4, (3, 2)), {"padding": (1, 2), "stride": 2, "padding_mode": "circular"},
      (G(2, 3, 5, 6),)),
    C("Conv2d", (2, 4, 3), {"padding": "same", "dilation": 2}, (G(2, 2, 7, 6),)),
    C("Conv2d", (2, 4, (4, 3)), {"padding": "same", "padding_mode": "reflect"}, (G(2, 6, 7),)),
    C("Conv2d", (4, 4, 3), {"groups": 4}, (G(2, 4, 5, 5),)),
    C("Conv3d", (2, 4, 3), {}, (G(2, 2, 5, 5, 5),)),
    C("Conv3d", (2, 4, (2, 3, 1)), {"stride": 2, "padding": 1, "groups": 2}, (G(2, 2, 5, 6, 4),)),
    C("Conv3d", (2, 2, 3), {"padding": 1, "padding_mode": "reflect"}, (G(1, 2, 4, 4, 4),)),
    C("Conv3d", (2, 3, 3), {"padding": "same", "padding_mode": "circular"}, (G(2, 4, 3, 4),)),
    C("ConvTranspose1d", (4, 3, 3), {}, (G(2, 4, 5),)),
    C("ConvTranspose1d", (4, 6, 3), {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2,
                                     "dilation": 2}, (G(2, 4, 5),)),
    C("ConvTranspose1d", (4, 2, 3), {"stride": 3, "bias": False}, (G(4, 5),), {"output_size": [16]}),
    C("ConvTranspose2d", (3, 4, 3), {"stride": 2, "padding": 1}, (G(2, 3, 5, 5),)),
    C("ConvTranspose2d", (3, 4, 3), {"stride": 2, "padding": 1}, (G(2, 3, 5, 5),),
      {"output_size": [2, 4, 10, 10]}),
    C("ConvTranspose2d", (3, 4, 3), {"stride": 2, "padding": 1}, (G(2, 3, 5, 5),), {"output_size": (10, 9)}),
    C("ConvTranspose2d", (4, 2, (3, 2)), {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2),
                                          "groups": 2, "bias": False}, (G(2, 4, 4, 3),)),
    C("ConvTranspose2d", (2, 2, 3), {"dilation": 2}, (G(2, 3, 3),)),
    C("ConvTranspose3d", (2, 3, 2), {"stride": 2}, (G(1, 2, 2, 3, 2),)),
    C("ConvTranspose3d", (2, 2, 3), {"stride": (1, 2, 2), "padding": 1, "output_padding": (0, 1, 1)},
      (G(2, 2, 3, 3, 3),)),
    # reshaping
    C("Flatten", (), {}, (G(2, 3, 4, 5),)),
    C("Flatten", (0, 2), {}, (G(2, 3, 4, 5),)),
    C("Unflatten", (1, (2, 3)), {}, (G(4, 6, 5),)),
    C("Unflatten", (-1, [2, -1]), {}, (G(4, 6),)),
    # activations
    C("ReLU", (), {}, (G(3, 4),)),
    C("ReLU", (True,), {}, (G(3, 4),)),
    C("ReLU6", (), {}, (In(lambda r: 4 * r.standard_normal((3, 4))),)),
    C("ReLU6", (), {"inplace": True}, (In(lambda r: 4 * r.standard_normal((3, 4))),)),
    C("LeakyReLU", (), {}, (G(3, 4),)),
    C("LeakyReLU", (0.2, True), {}, (G(3, 4),)),
    C("PReLU", (), {}, (G(2, 3, 4),)),
    C("PReLU", (3, 0.1), {}, (G(2, 3, 4),)),
    C("ELU", (), {}, (G(3, 4),)),
    C("ELU", (0.5, True), {}, (G(3, 4),)),
    C("SELU", (), {}, (G(3, 4),)),
    C("SELU", (True,), {}, (G(3, 4),)),
    C("CELU", (), {}, (G(3, 4),)),
    C("CELU", (2.0, True), {}, (G(3, 4),)),
    C("GELU", (), {}, (G(3, 4),)),
    C("GELU", ("tanh",), {}, (G(3, 4),)),
    C("SiLU", (), {}, (G(3, 4),)),
    C("SiLU", (True,), {}, (G(3, 4),)),
    C("Mish", (), {}, (G(3, 4),)),
    C("Mish", (), {"inplace": True}, (G(3, 4),)),
    C("Sigmoid", (), {}, (G(3, 4),)),
    C("Tanh", (), {}, (G(3, 4),)),
    C("Softplus", (), {}, (G(3, 4),)),
    C("Softplus", (2.0, 1.0), {}, (G(3, 4),)),
    C("Softsign", (), {}, (G(3, 4),)),
    C("Softshrink", (), {}, (G(3, 4),)),
    C("Softshrink", (1.0,), {}, (G(3, 4),)),
    C("Hardshrink", (), {}, (G(3, 4),)),
    C("Hardshrink", (0.2,), {}, (G(3, 4),)),
    C("Hardtanh", (), {}, (G(3, 4),)),
    C("Hardtanh", (-2.0, 0.5, True), {}, (In(lambda r: 2 * r.standard_normal((3, 4))),)),
    # torch's hardsigmoid backward multiplies by 1.0f / 6.0f, a float32 constant, in float64 too
    C("Hardsigmoid", (), {}, (In(lambda r: 4 * r.standard_normal((3, 4))),), rtol64=1e-7),
    C("Hardsigmoid", (True,), {}, (In(lambda r: 4 * r.standard_normal((3, 4))),), rtol64=1e-7),
    C("Hardswish", (), {}, (In(lambda r: 4 * r.standard_normal((3, 4))),)),
    C("Hardswish", (True,), {}, (In(lambda r: 4 * r.standard_normal((3, 4))),)),
    C("LogSigmoid", (), {}, (G(3, 4),)),
    C("Tanhshrink", (), {}, (G(3, 4),)),
    C("Threshold", (0.1, 20.0), {}, (G(3, 4),)),
    C("Threshold", (0.1, -1.0, True), {}, (G(3, 4),)),
    C("GLU", (), {}, (G(3, 4),)),
    C("GLU", (1,), {}, (G(2, 4, 3),)),
    C("Softmax", (1,), {}, (G(3, 4, 2),)),
    C("Softmax", (-1,), {}, (G(3, 4),)),
    C("Softmax", (), {}, (G(3, 4, 2),)),  # the implicit dim (with torch's deprecation warning)
    C("LogSoftmax", (1,), {}, (G(3, 4),)),
    C("LogSoftmax", (), {"dim": 0}, (G(3, 4),)),
    C("Softmin", (0,), {}, (G(3, 4),)),
    C("Softmax2d", (), {}, (G(2, 3, 4, 4),)),
    C("Softmax2d", (), {}, (G(3, 4, 4),)),
    # pooling
    C("MaxPool1d", (3,), {}, (G(2, 3, 10),)),
    C("MaxPool1d", (3, 2, 1, 2, True, True), {}, (G(2, 3, 10),)),
    C("MaxPool2d", (2,), {}, (G(2, 3, 8, 8),)),
    C("MaxPool2d", ((3, 2),), {"stride": (2, 1), "padding": 1, "return_indices": True, "ceil_mode": True},
      (G(2, 3, 7, 6),)),
    C("MaxPool2d", (3,), {"stride": 1, "dilation": 2}, (G(3, 7, 7),)),
    C("MaxPool3d", (2,), {}, (G(1, 2, 6, 6, 6),)),
    C("MaxPool3d", (3, 2, 1), {"return_indices": True}, (G(1, 2, 5, 6, 5),)),
    C("AvgPool1d", (3,), {}, (G(2, 3, 10),)),
    C("AvgPool1d", (3, 2, 1, True, False), {}, (G(2, 3, 10),)),
    C("AvgPool2d", (2,), {}, (G(2, 3, 8, 8),)),
    C("AvgPool2d", (3, 2, 1), {"ceil_mode": True, "count_include_pad": False}, (G(2, 3, 8, 7),)),
    C("AvgPool2d", (2,), {"divisor_override": 3}, (G(3, 6, 6),)),
    C("AvgPool3d", (2,), {}, (G(1, 2, 4, 4, 4),)),
    C("AvgPool3d", (3, 2, 1, False, True, 5), {}, (G(1, 2, 5, 5, 5),)),
    C("LPPool1d", (2, 3), {}, (G(2, 3, 10),)),
    C("LPPool1d", (1.5, 2), {"stride": 1}, (Pos(2, 3, 7),)),
    C("LPPool2d", (2, 2), {}, (G(2, 3, 6, 6),)),
    C("LPPool2d", (3, (2, 3)), {"stride": (1, 2), "ceil_mode": True}, (Pos(2, 3, 6, 7),)),
    C("LPPool3d", (2, 2), {}, (G(1, 2, 4, 4, 4),)),
    C("AdaptiveAvgPool1d", (4,), {}, (G(2, 3, 10),)),
    C("AdaptiveAvgPool2d", ((3, None),), {}, (G(2, 3, 7, 5),)),
    C("AdaptiveAvgPool2d", (1,), {}, (G(2, 3, 7, 5),)),
    C("AdaptiveAvgPool3d", ((2, 3, 1),), {}, (G(1, 2, 5, 7, 3),)),
    C("AdaptiveMaxPool1d", (4,), {}, (G(2, 3, 10),)),
    C("AdaptiveMaxPool2d", ((3, 2), True), {}, (G(2, 3, 7, 5),)),
    C("AdaptiveMaxPool3d", (2,), {"return_indices": True}, (G(1, 2, 5, 4, 3),)),
    # normalisation
    C("BatchNorm1d", (3,), {}, (G(4, 3),)),
    C("BatchNorm1d", (3,), {}, (G(4, 3, 5),)),
    C("BatchNorm1d", (3,), {"momentum": None, "affine": False}, (G(4, 3),)),
    C("BatchNorm1d", (3,), {"track_running_stats": False}, (G(4, 3, 2),)),
    C("BatchNorm2d", (3,), {}, (G(4, 3, 5, 5),)),
    C("BatchNorm2d", (3, 1e-3, 0.3), {"bias": False}, (G(2, 3, 4, 5),)),
    C("BatchNorm3d", (2,), {}, (G(2, 2, 3, 4, 4),)),
    C("LayerNorm", (5,), {}, (G(2, 3, 5),)),
    C("LayerNorm", ([3, 5],), {"elementwise_affine": False}, (G(2, 3, 5),)),
    C("LayerNorm", ((4,),), {"bias": False, "eps": 1e-3}, (G(3, 4),)),
    C("GroupNorm", (2, 4), {}, (G(3, 4, 5),)),
    C("GroupNorm", (3, 6), {"affine": False}, (G(2, 6, 3, 3),)),
    C("GroupNorm", (1, 4), {"bias": False, "eps": 1e-3}, (G(2, 4, 3),)),
    C("InstanceNorm1d", (3,), {}, (G(2, 3, 6),)),
    C("InstanceNorm1d", (3,), {"affine": True}, (G(3, 6),)),
    C("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}, (G(2, 3, 4, 4),)),
    C("InstanceNorm2d", (3, 1e-3, None), {"track_running_stats": True}, (G(2, 3, 4, 4),)),
    C("InstanceNorm3d", (2,), {}, (G(2, 2, 3, 3, 3),)),
    C("RMSNorm", (5,), {}, (G(2, 3, 5),)),
    C("RMSNorm", ([3, 5],), {"eps": 1e-3}, (G(2, 3, 5),)),
    C("RMSNorm", (4,), {"elementwise_affine": False}, (G(3, 4),)),
    C("LocalResponseNorm", (2,), {}, (G(2, 5, 4, 4),)),
    C("LocalResponseNorm", (3, 1e-2, 0.5, 2.0), {}, (G(2, 6, 7),)),
    # dropout: the identity in eval (training draws are checked statistically below)
    C("Dropout", (), {}, (G(3, 4),), random=True),
    C("Dropout", (0.3, True), {}, (G(3, 4),), random=True),
    C("Dropout1d", (0.2,), {}, (G(2, 3, 5),), random=True),
    C("Dropout2d", (0.2,), {}, (G(2, 3, 4, 4),), random=True),
    C("Dropout3d", (0.2,), {}, (G(2, 3, 2, 4, 4),), random=True),
    C("AlphaDropout", (0.2,), {}, (G(3, 4),), random=True),
    C("FeatureAlphaDropout", (0.2,), {}, (G(2, 3, 4, 4),), random=True),
    # embedding
    C("Embedding", (10, 3), {}, (ints(10, 2, 4),)),
    C("Embedding", (10, 3), {"padding_idx": 2}, (K(_pad_idx_target),)),
    C("Embedding", (10, 3), {"padding_idx": -1}, (K(_pad_idx_target),)),
    C("Embedding", (10, 4), {"max_norm": 1.0}, (ints(10, 3, 4),)),
    C("Embedding", (10, 4), {"max_norm": 0.5, "norm_type": 1.0}, (ints(10, 5),)),
    C("Embedding", (10, 3), {"scale_grad_by_freq": True}, (K(_pad_idx_target),)),
    # padding
    C("ZeroPad1d", (2,), {}, (G(2, 3, 5),)),
    C("ZeroPad1d", ((1, 3),), {}, (G(3, 5),)),
    C("ZeroPad2d", ((1, 0, 2, 1),), {}, (G(2, 3, 4, 4),)),
    C("ZeroPad3d", (1,), {}, (G(1, 2, 3, 3, 3),)),
    C("ConstantPad1d", (2, 3.5), {}, (G(2, 3, 5),)),
    C("ConstantPad2d", ((1, 2, 0, 1), -1.0), {}, (G(2, 3, 4, 4),)),
    C("ConstantPad3d", ((1, 0, 0, 1, 2, 0), 0.5), {}, (G(1, 2, 3, 3, 3),)),
    C("ReflectionPad1d", (2,), {}, (G(2, 3, 5),)),
    C("ReflectionPad2d", ((1, 2, 2, 0),), {}, (G(2, 3, 4, 5),)),
    C("ReflectionPad3d", (1,), {}, (G(1, 2, 3, 3, 3),)),
    C("ReplicationPad1d", ((3, 1),), {}, (G(2, 3, 5),)),
    C("ReplicationPad2d", (2,), {}, (G(2, 3, 4, 5),)),
    C("ReplicationPad3d", ((1, 2, 0, 1, 2, 0),), {}, (G(1, 2, 3, 3, 3),)),
    C("CircularPad1d", (2,), {}, (G(2, 3, 5),)),
    C("CircularPad2d", ((1, 2, 0, 1),), {}, (G(2, 3, 4, 5),)),
    C("CircularPad3d", (1,), {}, (G(1, 2, 3, 3, 3),)),
    # shuffles, resampling, distances, folding
    C("PixelShuffle", (2,), {}, (G(2, 8, 3, 3),)),
    C("PixelUnshuffle", (2,), {}, (G(2, 2, 6, 4),)),
    C("ChannelShuffle", (3,), {}, (G(2, 6, 3, 3),)),
    C("Upsample", (), {"scale_factor": 2}, (G(2, 3, 4, 4),)),
    C("Upsample", ((5, 7),), {"mode": "bilinear"}, (G(2, 3, 4, 4),)),
    C("Upsample", (), {"scale_factor": (1.5, 2), "mode": "bilinear", "align_corners": True}, (G(2, 3, 4,
                                                                                                4),)),
    C("Upsample", (), {"scale_factor": 2, "mode": "bicubic"}, (G(1, 2, 4, 3),)),
    C("Upsample", (7,), {"mode": "linear"}, (G(2, 3, 4),)),
    C("Upsample", (), {"scale_factor": 2, "mode": "trilinear"}, (G(1, 2, 3, 3, 3),)),
    C("Upsample", ((3, 5),), {"mode": "area"}, (G(2, 3, 7, 9),)),
    C("Upsample", (), {"scale_factor": 1.7, "mode": "nearest-exact"}, (G(2, 3, 4, 4),)),
    C("Upsample", (), {"scale_factor": 1.7, "recompute_scale_factor": True}, (G(2, 3, 4, 4),)),
    C("UpsamplingNearest2d", (), {"scale_factor": 2}, (G(2, 3, 4, 4),)),
    C("UpsamplingBilinear2d", ((5, 6),), {}, (G(2, 3, 4, 4),)),
    C("CosineSimilarity", (), {}, (G(4, 5), G(4, 5))),
    C("CosineSimilarity", (0, 1e-6), {}, (G(4, 5), G(4, 5))),
    C("PairwiseDistance", (), {}, (G(4, 5), G(4, 5))),
    C("PairwiseDistance", (1,), {"keepdim": True}, (G(4, 5), G(4, 5))),
    C("PairwiseDistance", (3.0, 1e-3), {}, (G(4, 5), G(5))),
    C("Fold", (), {"output_size": (4, 5), "kernel_size": (2, 2)}, (G(2, 12, 12),)),
    C("Fold", ((6, 6), 3), {"padding": 1, "stride": 2}, (G(1, 18, 9),)),
    C("Unfold", ((2, 3),), {}, (G(2, 5, 3, 4),)),
    C("Unfold", (3,), {"dilation": 2, "padding": 1, "stride": 2}, (G(1, 2, 7, 7),)),
    # losses
    C("L1Loss", (), {}, (G(3, 4), kfloat(3, 4))),
    C("L1Loss", (), {"reduction": "sum"}, (G(3, 4), kfloat(3, 4))),
    C("MSELoss", (), {}, (G(3, 4), kfloat(3, 4))),
    C("MSELoss", (), {"reduction": "none"}, (G(3, 4), kfloat(3, 4))),
    C("CrossEntropyLoss", (), {}, (G(4, 5), ints(5, 4))),
    C("CrossEntropyLoss", (), {"weight": T(W5), "ignore_index": 1, "label_smoothing": 0.1},
      (G(6, 5), K(_ce_target_with_ignored))),
    C("CrossEntropyLoss", (), {"reduction": "none"}, (G(2, 5, 3), ints(5, 2, 3))),
    C("CrossEntropyLoss", (T(W5),), {"reduction": "sum"}, (G(2, 5, 3, 2), ints(5, 2, 3, 2))),
    C("CrossEntropyLoss", (), {"label_smoothing": 0.2}, (G(4, 5), ksoftmax(4, 5))),
    C("CrossEntropyLoss", (), {"weight": T(W5), "label_smoothing": 0.2}, (G(4, 5), ints(5, 4))),
    C("NLLLoss", (), {}, (G(4, 5), ints(5, 4))),
    C("NLLLoss", (T(W5),), {"ignore_index": 0, "reduction": "sum"}, (G(6, 5), ints(5, 6))),
    C("NLLLoss", (), {"weight": T(W5)}, (G(2, 5, 3, 2), ints(5, 2, 3, 2))),
    C("BCELoss", (), {}, (Prob(3, 4), kprob(3, 4))),
    C("BCELoss", (T(W4),), {"reduction": "sum"}, (Prob(3, 4), kprob(3, 4))),
    C("BCEWithLogitsLoss", (), {}, (G(3, 4), kprob(3, 4))),
    C("BCEWithLogitsLoss", (), {"pos_weight": T(W4)}, (G(3, 4), kprob(3, 4))),
    C("BCEWithLogitsLoss", (T(W34),), {"reduction": "none"}, (G(3, 4), kprob(3, 4))),
    C("KLDivLoss", (), {"reduction": "batchmean"}, (G(3, 4), ksoftmax(3, 4))),
    C("KLDivLoss", (), {"reduction": "sum", "log_target": True}, (G(3, 4), kfloat(3, 4))),
    C("SmoothL1Loss", (), {}, (G(3, 4), kfloat(3, 4))),
    C("SmoothL1Loss", (), {"beta": 0.5, "reduction": "sum"}, (G(3, 4), kfloat(3, 4))),
    C("HuberLoss", (), {}, (In(lambda r: 2 * r.standard_normal((3, 4))), kfloat(3, 4))),
    C("HuberLoss", ("none", 0.5), {}, (G(3, 4), kfloat(3, 4))),
    C("PoissonNLLLoss", (), {}, (G(3, 4), K(_counts))),
    C("PoissonNLLLoss", (False, True), {"eps": 1e-6, "reduction": "sum"}, (Pos(3, 4), K(_counts))),
    C("GaussianNLLLoss", (), {}, (G(4, 3), kfloat(4, 3), Pos(4, 3))),
    C("GaussianNLLLoss", (), {"full": True, "eps": 1e-3, "reduction": "sum"},
      (G(4, 3), kfloat(4, 3), Pos(4, 1))),
    C("SoftMarginLoss", (), {}, (G(3, 4), signs(3, 4))),
    C("MultiLabelSoftMarginLoss", (), {}, (G(3, 5), ints(2, 3, 5))),
    C("MultiLabelSoftMarginLoss", (T(W5),), {"reduction": "none"}, (G(3, 5), ints(2, 3, 5))),
    C("MultiMarginLoss", (), {}, (G(4, 5), ints(5, 4))),
    C("MultiMarginLoss", (2, 0.5, T(W5)), {}, (G(4, 5), ints(5, 4))),
    C("HingeEmbeddingLoss", (), {}, (G(3, 4), signs(3, 4))),
    C("HingeEmbeddingLoss", (2.0,), {"reduction": "sum"}, (G(3, 4), signs(3, 4))),
    C("CosineEmbeddingLoss", (), {}, (G(4, 5), G(4, 5), signs(4))),
    C("CosineEmbeddingLoss", (0.3,), {"reduction": "none"}, (G(4, 5), G(4, 5), signs(4))),
    C("MarginRankingLoss", (), {}, (G(5), G(5), signs(5))),
    C("MarginRankingLoss", (0.5,), {"reduction": "sum"}, (G(5), G(5), signs(5))),
    C("TripletMarginLoss", (), {}, (G(4, 6), G(4, 6), G(4, 6))),
    C("TripletMarginLoss", (0.5, 1.0), {"swap": True, "reduction": "none"}, (G(4, 6), G(4, 6), G(4, 6))),
    # recurrent layers
    C("RNN", (4, 5), {}, (G(6, 3, 4),)),
    C("RNN", (4, 5, 2, "relu"), {}, (G(6, 3, 4), G(2, 3, 5))),
    C("RNN", (4, 5), {"num_layers": 2, "bidirectional": True, "batch_first": True}, (G(3, 6, 4),)),
    C("RNN", (4, 5), {"bias": False}, (G(6, 4), G(1, 5))),
    C("RNN", (4, 5, 2), {"dropout": 0.3}, (G(6, 3, 4),), random=True),
    C("LSTM", (4, 5), {}, (G(6, 3, 4),)),
    C("LSTM", (4, 5, 2), {"bidirectional": True}, (G(6, 3, 4), G(4, 3, 5), G(4, 3, 5)), call=LSTM_HC),
    C("LSTM", (4, 6), {"proj_size": 3, "batch_first": True, "num_layers": 2}, (G(3, 6, 4),)),
    C("LSTM", (4, 5), {"bias": False, "proj_size": 2}, (G(6, 4), G(1, 2), G(1, 5)), call=LSTM_HC),
    C("LSTM", (4, 5, 3), {"dropout": 0.2}, (G(6, 3, 4),), random=True),
    C("GRU", (4, 5), {}, (G(6, 3, 4),)),
    C("GRU", (4, 5, 2), {"bidirectional": True, "batch_first": True}, (G(3, 6, 4), G(4, 3, 5))),
    C("GRU", (4, 5), {"bias": False}, (G(6, 4),)),
    C("RNNCell", (4, 5), {}, (G(3, 4),)),
    C("RNNCell", (4, 5), {"nonlinearity": "relu"}, (G(3, 4), G(3, 5))),
    C("RNNCell", (4, 5, False), {}, (G(4), G(5))),
    C("LSTMCell", (4, 5), {}, (G(3, 4),)),
    C("LSTMCell", (4, 5), {}, (G(3, 4), G(3, 5), G(3, 5)), call=LSTM_HC),
    C("LSTMCell", (4, 5), {"bias": False}, (G(4), G(5), G(5)), call=LSTM_HC),
    C("GRUCell", (4, 5), {}, (G(3, 4),)),
    C("GRUCell", (4, 5, False), {}, (G(4), G(5))),
    # attention
    C("MultiheadAttention", (8, 2), {}, (G(5, 3, 8), G(6, 3, 8), G(6, 3, 8))),
    C("MultiheadAttention", (8, 2), {"batch_first": True}, (G(3, 5, 8),), call=SELF),
    C("MultiheadAttention", (8, 4), {"bias": False, "kdim": 5, "vdim": 3}, (G(5, 3, 8), G(6, 3, 5), G(6, 3,
                                                                                                      3))),
    C("MultiheadAttention", (8, 2), {"add_bias_kv": True, "add_zero_attn": True},
      (G(5, 3, 8), G(6, 3, 8), G(6, 3, 8), K(_key_padding), kfloat(5, 6)),
      call=lambda m, q, k, v, kp, am: m(q, k, v, key_padding_mask=kp, attn_mask=am)),
    C("MultiheadAttention", (8, 2), {}, (G(5, 3, 8), G(6, 3, 8), G(6, 3, 8), K(_attn_bool)),
      call=lambda m, q, k, v, am: m(q, k, v, attn_mask=am, need_weights=False)),
    C("MultiheadAttention", (8, 2), {"batch_first": True}, (G(3, 5, 8), G(3, 6, 8), G(3, 6, 8), kfloat(6, 5,
                                                                                                       6)),
      call=lambda m, q, k, v, am: m(q, k, v, attn_mask=am, average_attn_weights=False)),
    C("MultiheadAttention", (8, 2), {}, (G(5, 8), G(6, 8), G(6, 8), K(lambda r: np.arange(6) > 3)),
      call=lambda m, q, k, v, kp: m(q, k, v, key_padding_mask=kp)),
    C("MultiheadAttention", (8, 2), {}, (G(5, 3, 8), K(_causal)),
      call=lambda m, x, am: m(x, x, x, attn_mask=am, need_weights=False, is_causal=True)),
    C("MultiheadAttention", (8, 2), {"dropout": 0.3}, (G(5, 3, 8), G(6, 3, 8), G(6, 3, 8)), random=True),
    C("TransformerEncoderLayer", (8, 2, 16, 0.0), {}, (G(5, 3, 8),), deep=True),
    C("TransformerEncoderLayer", (8, 2, 16, 0.0, "gelu"), {"batch_first": True, "norm_first": True},
      (G(3, 5, 8),), deep=True),
    C("TransformerEncoderLayer", (8, 2, 16, 0.0), {"bias": False, "layer_norm_eps": 1e-3},
      (G(5, 3, 8), kfloat(5, 5), K(_key_padding)),
      call=lambda m, x, am, kp: m(x, src_mask=am, src_key_padding_mask=kp[:, :5]), deep=True),
    C("TransformerEncoderLayer", (8, 2, 16), {}, (G(5, 3, 8),), random=True, deep=True),
    C("TransformerEncoder", (Mod(lambda lib: lib.nn.TransformerEncoderLayer(8, 2, 16, 0.0), "layer"), 2),
      {"enable_nested_tensor": False}, (G(5, 3, 8),), deep=True),
    C("TransformerEncoder", (Mod(lambda lib: lib.nn.TransformerEncoderLayer(8, 2, 16, 0.0, batch_first=True),
                                 "layer"), 2, Mod(lambda lib: lib.nn.LayerNorm(8), "norm")), {},
      (G(3, 5, 8), K(_causal)), call=lambda m, x, am: m(x, mask=am), deep=True),
    C("TransformerDecoderLayer", (8, 2, 16, 0.0), {}, (G(4, 3, 8), G(6, 3, 8)), deep=True),
    C("TransformerDecoderLayer", (8, 2, 16, 0.0, "gelu"), {"batch_first": True, "norm_first": True,
                                                           "bias": False},
      (G(3, 5, 8), G(3, 6, 8), K(_causal), K(_key_padding)),
      call=lambda m, t, mem, tm, kp: m(t, mem, tgt_mask=tm, memory_key_padding_mask=kp, tgt_is_causal=True),
      deep=True),
    C("TransformerDecoderLayer", (8, 2, 16), {}, (G(4, 3, 8), G(6, 3, 8)), random=True, deep=True),
    C("TransformerDecoder", (Mod(lambda lib: lib.nn.TransformerDecoderLayer(8, 2, 16, 0.0), "layer"), 2,
                             Mod(lambda lib: lib.nn.LayerNorm(8), "norm")), {},
      (G(5, 3, 8), G(6, 3, 8), K(_causal)), call=lambda m, t, mem, tm: m(t, mem, tgt_mask=tm), deep=True),
    C("Transformer", (8, 2, 2, 1, 16, 0.0), {}, (G(6, 3, 8), G(5, 3, 8), K(_causal)),
      call=lambda m, s, t, tm: m(s, t, tgt_mask=tm), deep=True),
    C("Transformer", (), {"d_model": 8, "nhead": 4, "num_encoder_layers": 1, "num_decoder_layers": 2,
                          "dim_feedforward": 8, "dropout": 0.0, "batch_first": True, "norm_first": True,
                          "activation": "gelu"}, (G(3, 6, 8), G(3, 5, 8)), deep=True),
]
IDS = [c.id for c in CASES]
TRAIN_CASES = [c for c in CASES if not c.random]  # dropout's training draws: test_dropout_training


# ---------------------------------------------------------------- helpers

DTYPES = {"float32": (engine.float32, torch.float32), "float64": (engine.float64, torch.float64)}
TOL = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-10, "atol": 1e-12}}


def _arg(a: Any, lib: Any) -> Any:
    if isinstance(a, T):
        return lib.tensor(np.asarray(a.value, np.float32))
    if isinstance(a, Mod):
        return a.fn(lib)
    return a


def build(case: Case, lib: Any) -> Any:
    args = [_arg(a, lib) for a in case.args]
    kw = {k: _arg(v, lib) for k, v in case.kw.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(lib.nn, case.name)(*args, **kw)


def perturb(layer: torch.nn.Module, seed: int) -> None:
    """Move torch's parameters and running statistics away from their (often ones/zeros) initial
    values, so that a copied state and every gradient path matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in layer.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.mul_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.5)
            else:
                t.add_(0.3 * torch.randn(t.shape, generator=g, dtype=t.dtype))


def copy_state(tl: torch.nn.Module, el: engine.nn.Module) -> None:
    el.load_state_dict({k: engine.tensor(v.detach().numpy()) for k, v in tl.state_dict().items()})


def assert_close(e: engine.Tensor, t: torch.Tensor, dt: str, what: str, rtol: float | None = None,
                 deep: bool = False) -> None:
    assert tuple(e.shape) == tuple(t.shape), (what, tuple(e.shape), tuple(t.shape))
    assert str(e.dtype).split(".")[-1] == str(t.dtype).split(".")[-1], (what, e.dtype, t.dtype)
    tol = dict(TOL[dt], **({"rtol": rtol} if rtol is not None else {}))
    if deep and dt == "float32":
        tol = {"rtol": 1e-4, "atol": 1e-5}
    expected = t.detach().numpy()
    # the absolute floor scales with the tensor's magnitude: sums that cancel (gradients through
    # several steps) keep the rounding of their largest terms
    tol["atol"] *= max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(e.detach().numpy(), expected, err_msg=what, **tol)


def make_inputs(case: Case, dt: str, seed: int) -> tuple[list, list, list, list]:
    """(engine leaves, engine layer inputs, torch leaves, torch layer inputs)."""
    r = np.random.default_rng(seed)
    edt, tdt = DTYPES[dt]
    e_leaves, e_in, t_leaves, t_in = [], [], [], []
    for spec in case.inputs:
        a = np.asarray(spec.fn(r))
        if a.dtype.kind == "f":
            a = a.astype(np.float64 if dt == "float64" else np.float32)
        et = engine.tensor(a, requires_grad=spec.grad)
        tt = torch.tensor(a, requires_grad=spec.grad)
        e_leaves.append(et)
        t_leaves.append(tt)
        # a non-leaf copy, so that in-place layers may write into it
        e_in.append(et * 1 if spec.grad else et)
        t_in.append(tt * 1 if spec.grad else tt)
    return e_leaves, e_in, t_leaves, t_in


def _flat(o: Any) -> list:
    if isinstance(o, (tuple, list)):
        return [x for y in o for x in _flat(y)]
    return [o]


def run_pair(case: Case, dt: str, train: bool, seed: int = 0) -> None:
    edt, tdt = DTYPES[dt]
    torch.manual_seed(seed)  # torch seeds its generator randomly at start-up
    engine.manual_seed(seed)
    tl, el = build(case, torch), build(case, engine)
    if dt == "float64":
        tl.double()
        el.double()
    perturb(tl, seed)
    copy_state(tl, el)
    tl.train(train)
    el.train(train)
    e_leaves, e_in, t_leaves, t_in = make_inputs(case, dt, seed + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.call is not None:
            to, eo = case.call(tl, *t_in), case.call(el, *e_in)
        else:
            to, eo = tl(*t_in, **case.fkw), el(*e_in, **case.fkw)
    touts, eouts = _flat(to), _flat(eo)
    assert len(touts) == len(eouts) and isinstance(to, tuple) == isinstance(eo, tuple)
    assert [b is None for b in touts] == [a is None for a in eouts]
    touts, eouts = [b for b in touts if b is not None], [a for a in eouts if a is not None]
    for i, (a, b) in enumerate(zip(eouts, touts)):
        if b.is_floating_point():
            assert_close(a, b, dt, f"output {i}", deep=case.deep)
        else:  # pooling indices
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # backward of a random weighting of the differentiable outputs
    pairs = [(a, b) for a, b in zip(eouts, touts) if b.requires_grad]
    if not pairs:
        return
    r = np.random.default_rng(seed + 2)
    ws = [r.standard_normal(tuple(b.shape)) for _, b in pairs]
    sum((b * torch.tensor(w, dtype=b.dtype)).sum() for (_, b), w in zip(pairs, ws)).backward()
    sum((a * engine.tensor(w, dtype=a.dtype)).sum() for (a, _), w in zip(pairs, ws)).backward()
    for i, (a, b) in enumerate(zip(e_leaves, t_leaves)):
        if b.requires_grad:
            assert a.grad is not None and b.grad is not None, f"input {i} grad"
            assert_close(a.grad, b.grad, dt, f"input {i} grad", case.rtol64 if dt == "float64" else None,
                         deep=case.deep)
    eparams = dict(el.named_parameters())
    for name, p in tl.named_parameters():
        if p.grad is None:
            assert eparams[name].grad is None, name
        else:
            assert_close(eparams[name].grad, p.grad, dt, f"grad of {name}", deep=case.deep)
    # the state after forward: running statistics, max_norm's renormalised rows
    es = el.state_dict()
    for name, t in tl.state_dict().items():
        if t.is_floating_point():
            assert_close(es[name], t, dt, f"state {name}", deep=case.deep)
        else:
            np.testing.assert_array_equal(es[name].numpy(), t.numpy(), err_msg=name)


# ---------------------------------------------------------------- parity


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c.id for c in TRAIN_CASES])
def test_parity_train(case: Case, dt: str) -> None:
    run_pair(case, dt, train=True)


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parity_eval(case: Case, dt: str) -> None:
    run_pair(case, dt, train=False)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_repr_and_state(case: Case) -> None:
    tl, el = build(case, torch), build(case, engine)
    assert repr(el) == repr(tl)
    ts, es = tl.state_dict(), el.state_dict()
    assert list(es) == list(ts)
    for k in ts:
        assert tuple(es[k].shape) == tuple(ts[k].shape), k
        assert str(es[k].dtype).split(".")[-1] == str(ts[k].dtype).split(".")[-1], k
    assert [n for n, _ in el.named_parameters()] == [n for n, _ in tl.named_parameters()]
    assert [n for n, _ in el.named_buffers()] == [n for n, _ in tl.named_buffers()]


def test_every_layer_is_exported_and_covered() -> None:
    names = set(engine.nn.modules.__all__)
    assert all(hasattr(engine.nn, n) for n in names)
    containers = {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
                  "RNNBase", "RNNCellBase"}
    assert names - containers - {c.name for c in CASES} == set()
    assert all(hasattr(torch.nn, n) for n in names)


@pytest.mark.parametrize("name,args", [
    ("Linear", (3, 4)), ("Bilinear", (2, 3, 4)), ("Conv2d", (2, 4, 3)), ("ConvTranspose1d", (2, 3, 3)),
    ("PReLU", (3,)), ("BatchNorm2d", (3,)), ("InstanceNorm1d", (3, 1e-5, 0.1, True, True)),
    ("LayerNorm", ((2, 3),)), ("GroupNorm", (2, 4)), ("RMSNorm", (3,)), ("Embedding", (5, 2)),
])
@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_dtype_factory_kwarg(name: str, args: tuple, dt: str) -> None:
    edt, tdt = DTYPES[dt]
    tl = getattr(torch.nn, name)(*args, dtype=tdt, device="cpu")
    el = getattr(engine.nn, name)(*args, dtype=edt, device="cpu")
    assert repr(el) == repr(tl)
    ts, es = tl.state_dict(), el.state_dict()
    assert list(es) == list(ts)
    for k in ts:
        assert str(es[k].dtype).split(".")[-1] == str(ts[k].dtype).split(".")[-1], k


# ---------------------------------------------------------------- constructor and input errors

ERRORS: dict[str, Callable[[Any], Any]] = {
    "conv in_channels groups": lambda m: m.nn.Conv2d(3, 4, 3, groups=2),
    "conv out_channels groups": lambda m: m.nn.Conv2d(4, 3, 3, groups=2),
    "conv zero groups": lambda m: m.nn.Conv1d(4, 4, 3, groups=0),
    "conv negative groups": lambda m: m.nn.Conv3d(4, 4, 3, groups=-2),
    "conv padding string": lambda m: m.nn.Conv2d(3, 4, 3, padding="full"),
    "conv same strided": lambda m: m.nn.Conv2d(3, 4, 3, stride=(1, 2), padding="same"),
    "conv padding_mode": lambda m: m.nn.Conv2d(3, 4, 3, padding_mode="bogus"),
    "conv_transpose padding_mode": lambda m: m.nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect"),
    "conv_transpose groups": lambda m: m.nn.ConvTranspose1d(3, 4, 3, groups=2),
    "conv_transpose output_size range": lambda m: m.nn.ConvTranspose2d(3, 4, 3, stride=2)(
        m.ones(1, 3, 4, 4), output_size=[13, 13]),
    "conv_transpose output_size length": lambda m: m.nn.ConvTranspose2d(3, 4, 3, stride=2)(
        m.ones(1, 3, 4, 4), output_size=[9]),
    "conv forward channels": lambda m: m.nn.Conv2d(3, 4, 3)(m.ones(1, 2, 5, 5)),
    "hardtanh bounds": lambda m: m.nn.Hardtanh(1.0, 0.0),
    "dropout p > 1": lambda m: m.nn.Dropout(1.5),
    "dropout p < 0": lambda m: m.nn.Dropout2d(-0.1),
    "alpha dropout p": lambda m: m.nn.AlphaDropout(2),
    "embedding padding_idx high": lambda m: m.nn.Embedding(5, 3, padding_idx=5),
    "embedding padding_idx low": lambda m: m.nn.Embedding(5, 3, padding_idx=-6),
    "embedding _weight shape": lambda m: m.nn.Embedding(5, 3, _weight=m.ones(4, 3)),
    "embedding from_pretrained 1-D": lambda m: m.nn.Embedding.from_pretrained(m.ones(4)),
    "group_norm divisibility": lambda m: m.nn.GroupNorm(4, 6),
    "multi_margin p": lambda m: m.nn.MultiMarginLoss(p=3),
    "multi_margin weight dims": lambda m: m.nn.MultiMarginLoss(weight=m.ones(2, 2)),
    "triplet margin": lambda m: m.nn.TripletMarginLoss(margin=0),
    "huber delta type": lambda m: m.nn.HuberLoss(delta="1"),
    "unflatten not a tuple": lambda m: m.nn.Unflatten(1, 3),
    "unflatten element": lambda m: m.nn.Unflatten(1, (2, 1.5)),
    "bilinear in1_features": lambda m: m.nn.Bilinear(0, 2, 3),
    "batchnorm1d 4-D": lambda m: m.nn.BatchNorm1d(3)(m.ones(2, 3, 4, 4)),
    "batchnorm2d 3-D": lambda m: m.nn.BatchNorm2d(3)(m.ones(2, 3, 4)),
    "batchnorm3d 4-D": lambda m: m.nn.BatchNorm3d(3)(m.ones(2, 3, 4, 4)),
    "instancenorm1d 4-D": lambda m: m.nn.InstanceNorm1d(3)(m.ones(2, 3, 4, 4)),
    "instancenorm2d 2-D": lambda m: m.nn.InstanceNorm2d(3)(m.ones(3, 4)),
    "instancenorm3d 3-D": lambda m: m.nn.InstanceNorm3d(3)(m.ones(3, 4, 4)),
    "instancenorm affine channels": lambda m: m.nn.InstanceNorm1d(3, affine=True)(m.ones(2, 4, 5)),
    "softmax2d 2-D": lambda m: m.nn.Softmax2d()(m.ones(3, 4)),
    "circular pad 2-D input to 2d": lambda m: m.nn.CircularPad2d(1)(m.ones(3, 4)),
    "circular pad 4-D input to 1d": lambda m: m.nn.CircularPad1d(1)(m.ones(1, 2, 3, 4)),
    "linear shape": lambda m: m.nn.Linear(3, 2)(m.ones(4, 5)),
    "layer_norm shape": lambda m: m.nn.LayerNorm(4)(m.ones(2, 3)),
    "rnn nonlinearity": lambda m: m.nn.RNN(3, 4, nonlinearity="gelu"),
    "gru proj_size": lambda m: m.nn.GRU(3, 4, proj_size=2),
    "rnn proj_size": lambda m: m.nn.RNN(3, 4, 1, "tanh", proj_size=2),
    "lstm proj_size >= hidden": lambda m: m.nn.LSTM(3, 4, proj_size=4),
    "lstm negative proj_size": lambda m: m.nn.LSTM(3, 4, proj_size=-1),
    "rnn dropout range": lambda m: m.nn.RNN(3, 4, 2, dropout=1.5),
    "rnn dropout bool": lambda m: m.nn.GRU(3, 4, 2, dropout=True),
    "rnn hidden_size 0": lambda m: m.nn.LSTM(3, 0),
    "rnn hidden_size type": lambda m: m.nn.GRU(3, 4.0),
    "rnn input_size 0": lambda m: m.nn.RNN(0, 4),
    "rnn num_layers 0": lambda m: m.nn.RNN(3, 4, 0),
    "rnn bias type": lambda m: m.nn.LSTM(3, 4, bias=1),
    "rnn 4-D input": lambda m: m.nn.RNN(3, 4)(m.ones(2, 2, 2, 3)),
    "gru 1-D input": lambda m: m.nn.GRU(3, 4)(m.ones(3)),
    "lstm 4-D input": lambda m: m.nn.LSTM(3, 4)(m.ones(2, 2, 2, 3)),
    "rnn input_size mismatch": lambda m: m.nn.GRU(3, 4)(m.ones(5, 2, 2)),
    "rnn hidden size mismatch": lambda m: m.nn.RNN(3, 4)(m.ones(5, 2, 3), m.zeros(1, 3, 4)),
    "rnn hx dims": lambda m: m.nn.RNN(3, 4)(m.ones(5, 2, 3), m.zeros(2, 4)),
    "rnn unbatched hx dims": lambda m: m.nn.GRU(3, 4)(m.ones(5, 3), m.zeros(1, 1, 4)),
    "lstm hx dims": lambda m: m.nn.LSTM(3, 4)(m.ones(5, 2, 3), (m.zeros(2, 4), m.zeros(1, 2, 4))),
    "lstm cell size mismatch": lambda m: m.nn.LSTM(3, 4, proj_size=2)(
        m.ones(5, 2, 3), (m.zeros(1, 2, 2), m.zeros(1, 2, 2))),
    "rnn cell 3-D input": lambda m: m.nn.RNNCell(3, 4)(m.ones(1, 2, 3)),
    "gru cell 3-D hidden": lambda m: m.nn.GRUCell(3, 4)(m.ones(2, 3), m.zeros(1, 2, 4)),
    "lstm cell hx dims": lambda m: m.nn.LSTMCell(3, 4)(m.ones(2, 3), (m.zeros(2, 4), m.zeros(1, 2, 4))),
    "rnn cell nonlinearity": lambda m: m.nn.RNNCell(3, 4, nonlinearity="gelu")(m.ones(2, 3)),
    "mha embed_dim 0": lambda m: m.nn.MultiheadAttention(0, 2),
    "mha heads divide": lambda m: m.nn.MultiheadAttention(6, 4),
    "mha 4-D query": lambda m: _mha(m)(m.ones(1, 2, 3, 4), m.ones(1, 2, 3, 4), m.ones(1, 2, 3, 4)),
    "mha key dims": lambda m: _mha(m)(m.ones(2, 3, 4), m.ones(2, 4), m.ones(2, 3, 4)),
    "mha unbatched key dims": lambda m: _mha(m)(m.ones(2, 4), m.ones(1, 2, 4), m.ones(2, 4)),
    "mha key_padding_mask dims": lambda m: _mha(m)(m.ones(2, 3, 4), m.ones(2, 3, 4), m.ones(2, 3, 4),
                                                   key_padding_mask=m.zeros(3, 2, 1).bool()),
    "mha attn_mask dims": lambda m: _mha(m)(m.ones(2, 3, 4), m.ones(2, 3, 4), m.ones(2, 3, 4),
                                            attn_mask=m.zeros(2)),
    "mha attn_mask 2-D shape": lambda m: _mha(m)(m.ones(2, 3, 4), m.ones(5, 3, 4), m.ones(5, 3, 4),
                                                 attn_mask=m.zeros(2, 2)),
    "mha attn_mask 3-D shape": lambda m: _mha(m)(m.ones(2, 3, 4), m.ones(5, 3, 4), m.ones(5, 3, 4),
                                                 attn_mask=m.zeros(3, 2, 5)),
    "mha unbatched 3-D attn_mask": lambda m: _mha(m)(m.ones(2, 4), m.ones(5, 4), m.ones(5, 4),
                                                     attn_mask=m.zeros(3, 2, 5)),
    "mha key_padding_mask shape": lambda m: _mha(m)(m.ones(2, 3, 4), m.ones(5, 3, 4), m.ones(5, 3, 4),
                                                    key_padding_mask=m.zeros(3, 4).bool()),
    "mha int mask": lambda m: _mha(m)(m.ones(2, 3, 4), m.ones(5, 3, 4), m.ones(5, 3, 4),
                                      attn_mask=m.zeros(2, 5).long()),
    "mha is_causal without mask": lambda m: _mha(m)(m.ones(2, 3, 4), m.ones(2, 3, 4), m.ones(2, 3, 4),
                                                    is_causal=True),
    "mha key value shapes": lambda m: _mha(m)(m.ones(2, 3, 4), m.ones(5, 3, 4), m.ones(4, 3, 4)),
    "mha embed_dim mismatch": lambda m: _mha(m)(m.ones(2, 3, 6), m.ones(5, 3, 6), m.ones(5, 3, 6)),
    "transformer activation": lambda m: m.nn.TransformerEncoderLayer(4, 2, 8, activation="tanh"),
    "transformer decoder activation": lambda m: m.nn.TransformerDecoderLayer(4, 2, 8, activation="tanh"),
    "transformer batch": lambda m: m.nn.Transformer(4, 2, 1, 1, 8, batch_first=True)(
        m.ones(3, 5, 4), m.ones(2, 5, 4)),
    "transformer d_model": lambda m: m.nn.Transformer(4, 2, 1, 1, 8, batch_first=True)(
        m.ones(3, 5, 4), m.ones(3, 5, 6)),
}


def _mha(m: Any) -> Any:
    return m.nn.MultiheadAttention(4, 2)


# these messages print a set, whose order depends on the process's string hashing (in torch too)
SET_KEYS = {"conv padding string": "Invalid padding string 'full', should be one of {",
            "conv padding_mode": "padding_mode must be one of {"}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors(case: str) -> None:
    err = assert_same_error(ERRORS[case], key=SET_KEYS.get(case))
    if case == "conv padding_mode":
        assert str(err).endswith("}, but got padding_mode='bogus'")
        assert sorted(str(err).split("{")[1].split("}")[0].split(", ")) == [
            "'circular'", "'reflect'", "'replicate'", "'zeros'"]


def test_instance_norm_mismatch_warns() -> None:
    msg = "input's size at dim=1 does not match num_features"
    with pytest.warns(UserWarning, match=msg):
        engine.nn.InstanceNorm1d(3)(engine.ones(2, 4, 5))


def test_hardtanh_deprecated_kwargs() -> None:
    with pytest.warns(FutureWarning, match="keyword argument `min_value` is deprecated"):
        m = engine.nn.Hardtanh(min_value=-2.0)
    assert m.min_val == -2.0


# ---------------------------------------------------------------- behaviour


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("kw", [{}, {"momentum": None}, {"momentum": 0.5, "affine": False}])
@pytest.mark.parametrize("name,shape", [("BatchNorm1d", (6, 3)), ("BatchNorm2d", (4, 3, 3, 2)),
                                        ("BatchNorm3d", (2, 3, 2, 2, 3))])
def test_batchnorm_running_stats(name: str, shape: tuple, kw: dict, dt: str) -> None:
    """A few training steps: the same running mean/var (momentum, or the cumulative average for
    momentum=None) and count as torch's; eval then normalises with them."""
    edt, tdt = DTYPES[dt]
    tl = getattr(torch.nn, name)(3, **kw).to(tdt)
    el = getattr(engine.nn, name)(3, **kw).to(edt)
    r = np.random.default_rng(3)
    for step in range(4):
        x = r.standard_normal(shape) * (step + 1) + step
        tl(torch.tensor(x, dtype=tdt))
        el(engine.tensor(x, dtype=edt))
        for k, v in tl.state_dict().items():
            np.testing.assert_allclose(el.state_dict()[k].numpy(), v.numpy(), err_msg=k, **TOL[dt])
    assert int(el.num_batches_tracked) == 4
    tl.eval()
    el.eval()
    x = r.standard_normal(shape)
    assert_close(el(engine.tensor(x, dtype=edt)), tl(torch.tensor(x, dtype=tdt)), dt, "eval output")
    el.reset_running_stats()
    assert int(el.num_batches_tracked) == 0 and float(el.running_var.sum()) == 3.0


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval() -> None:
    bn = engine.nn.BatchNorm1d(2, track_running_stats=False).eval()
    y = bn(engine.tensor([[1.0, 10.0], [3.0, 30.0]]))
    np.testing.assert_allclose(y.detach().numpy(), [[-1, -1], [1, 1]], atol=1e-4)
    assert bn.running_mean is None and bn.num_batches_tracked is None


@pytest.mark.parametrize("name,shape", [("Dropout", (400, 500)), ("Dropout1d", (400, 500, 2)),
                                        ("Dropout2d", (200, 500, 2, 2)), ("Dropout3d", (200, 500, 1, 2, 2))])
@pytest.mark.parametrize("p", [0.2, 0.7])
def test_dropout_training(name: str, shape: tuple, p: float) -> None:
    engine.manual_seed(0)
    m = getattr(engine.nn, name)(p)
    x = engine.ones(*shape, requires_grad=True)
    y = m(x)
    a = y.detach().numpy()
    kept = a != 0
    np.testing.assert_allclose(a[kept], 1 / (1 - p), rtol=1e-6)
    if name != "Dropout":  # whole channels: each (n, c) slice all kept or all dropped
        per = kept.reshape(shape[0], shape[1], -1)
        assert (per.all(-1) | ~per.any(-1)).all()
        kept = per[..., 0]
    n = kept.size
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), a)
    m.eval()
    assert m(x) is x or np.array_equal(m(x).detach().numpy(), x.detach().numpy())


@pytest.mark.parametrize("name,shape", [("AlphaDropout", (400, 500)),
                                        ("FeatureAlphaDropout", (200, 500, 2, 2))])
def test_alpha_dropout_keeps_moments(name: str, shape: tuple) -> None:
    engine.manual_seed(1)
    x = engine.randn(*shape)
    y = getattr(engine.nn, name)(0.3)(x).numpy()
    assert abs(y.mean()) < 0.02 and abs(y.std() - 1) < 0.02
    assert not np.array_equal(y, x.numpy())


def test_dropout_inplace_writes_input() -> None:
    engine.manual_seed(0)
    x = engine.ones(50, 50)
    y = engine.nn.Dropout(0.5, inplace=True)(x)
    assert y is x and (x.numpy() == 0).any()


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_rnn_dropout_between_layers(name: str) -> None:
    """Dropout on every layer's output but the last, in training only; the warning for one layer."""
    engine.manual_seed(0)
    m = getattr(engine.nn, name)(4, 6, 2, dropout=0.5)
    x = engine.randn(5, 3, 4)
    a, b = (_flat(m(x))[0].detach().numpy() for _ in range(2))
    assert not np.array_equal(a, b)
    m.eval()
    a, b = (_flat(m(x))[0].detach().numpy() for _ in range(2))
    np.testing.assert_array_equal(a, b)
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        getattr(engine.nn, name)(4, 6, dropout=0.5)


def test_rnn_all_weights_order() -> None:
    m, t = engine.nn.LSTM(3, 4, 2, proj_size=2, bidirectional=True), torch.nn.LSTM(3, 4, 2, proj_size=2,
                                                                                    bidirectional=True)
    assert m._flat_weights_names == t._flat_weights_names
    assert [[tuple(w.shape) for w in ws] for ws in m.all_weights] == \
        [[tuple(w.shape) for w in ws] for ws in t.all_weights]


def test_transformer_encoder_nested_tensor_warning() -> None:
    def make(lib: Any) -> Any:
        return lib.nn.TransformerEncoder(lib.nn.TransformerEncoderLayer(4, 2, 8), 2)

    msgs = []
    for lib in (torch, engine):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            enc = make(lib)
        msgs.append([str(x.message) for x in w if "enable_nested_tensor" in str(x.message)])
        assert enc.use_nested_tensor is False
    assert msgs[0] == msgs[1] and len(msgs[0]) == 1


def test_transformer_square_subsequent_mask() -> None:
    for n in (1, 4):
        np.testing.assert_array_equal(engine.nn.Transformer.generate_square_subsequent_mask(n).numpy(),
                                      torch.nn.Transformer.generate_square_subsequent_mask(n).numpy())
    m = engine.nn.Transformer.generate_square_subsequent_mask(3, dtype=engine.float64)
    assert m.dtype == engine.float64


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
def test_transformer_init_xavier() -> None:
    engine.manual_seed(0)
    m = engine.nn.Transformer(16, 2, 1, 1, 32)
    w = m.encoder.layers[0].linear1.weight.detach().numpy()
    bound = math.sqrt(6 / (16 + 32))
    assert np.abs(w).max() <= bound and w.std() > 0.4 * bound
    np.testing.assert_array_equal(m.encoder.layers[0].self_attn.in_proj_bias.detach().numpy(), 0.0)


def test_transformer_encoder_layers_are_copies() -> None:
    enc = engine.nn.TransformerEncoder(engine.nn.TransformerEncoderLayer(4, 2, 8), 3,
                                       enable_nested_tensor=False)
    ws = [layer.linear1.weight for layer in enc.layers]
    assert len({id(w) for w in ws}) == 3
    np.testing.assert_array_equal(ws[0].detach().numpy(), ws[2].detach().numpy())
    t = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(4, 2, 8), 3, enable_nested_tensor=False)
    assert [n for n, _ in enc.named_parameters()] == [n for n, _ in t.named_parameters()]


def test_embedding_padding_idx() -> None:
    engine.manual_seed(0)
    emb = engine.nn.Embedding(6, 3, padding_idx=-2)
    assert emb.padding_idx == 4
    np.testing.assert_array_equal(emb.weight[4].detach().numpy(), 0.0)
    emb(engine.tensor([4, 1, 4])).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[4].numpy(), 0.0)
    np.testing.assert_array_equal(emb.weight.grad[1].numpy(), 1.0)


@pytest.mark.parametrize("freeze", [True, False])
def test_embedding_from_pretrained(freeze: bool) -> None:
    w = engine.tensor(np.arange(12.0).reshape(4, 3))
    emb = engine.nn.Embedding.from_pretrained(w, freeze=freeze, padding_idx=1, max_norm=None)
    t = torch.nn.Embedding.from_pretrained(torch.tensor(w.numpy()), freeze=freeze, padding_idx=1)
    assert repr(emb) == repr(t)
    assert emb.weight.requires_grad is (not freeze)
    np.testing.assert_array_equal(emb(engine.tensor([[3, 1]])).detach().numpy(),
                                  t(torch.tensor([[3, 1]])).detach().numpy())


def test_embedding_max_norm_renormalises_weight() -> None:
    w = np.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]])
    emb = engine.nn.Embedding.from_pretrained(engine.tensor(w), max_norm=1.0)
    emb(engine.tensor([0, 1]))
    np.testing.assert_allclose(np.linalg.norm(emb.weight.numpy(), axis=1), [1.0, 0.5, 10.0], rtol=1e-6)


def test_conv_transpose_output_size_picks_size() -> None:
    up = engine.nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1)
    x = engine.randn(1, 2, 6, 6)
    assert tuple(up(x).shape) == (1, 2, 11, 11)
    assert tuple(up(x, output_size=[1, 2, 12, 12]).shape) == (1, 2, 12, 12)


@pytest.mark.parametrize("name", ["Softmax", "LogSoftmax", "Softmin"])
def test_softmax_implicit_dim_warns(name: str) -> None:
    msgs = []
    for lib in (torch, engine):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            getattr(lib.nn, name)()(lib.ones(2, 3))
        msgs.append([str(x.message) for x in w])
    assert msgs[0] == msgs[1] and len(msgs[0]) == 1


def test_inplace_activation_returns_input() -> None:
    x = engine.tensor([-1.0, 2.0])
    assert engine.nn.ReLU(inplace=True)(x) is x
    np.testing.assert_array_equal(x.numpy(), [0.0, 2.0])


def test_loss_weight_is_a_buffer() -> None:
    ce = engine.nn.CrossEntropyLoss(weight=engine.ones(3))
    assert list(ce.state_dict()) == ["weight"] and list(ce.parameters()) == []
    assert ce.double().weight.dtype == engine.float64


def test_legacy_reduction_flags() -> None:
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        m = engine.nn.MSELoss(size_average=False)
    assert m.reduction == "sum"


# ---------------------------------------------------------------- default initialisation


def _uniform_within(t: engine.Tensor, bound: float) -> None:
    a = t.detach().numpy()
    assert np.abs(a).max() <= bound * (1 + 1e-6)
    assert a.std() > 0.3 * bound  # spread over the range, not constant
    assert len(np.unique(a)) > a.size // 2


@pytest.mark.parametrize("make,fan_in", [
    (lambda: engine.nn.Linear(50, 40), 50),
    (lambda: engine.nn.Conv2d(6, 20, 3, groups=2), 27),
    (lambda: engine.nn.Conv1d(4, 30, 5), 20),
    (lambda: engine.nn.ConvTranspose2d(8, 10, 3), 90),
])
def test_default_init_linear_conv(make: Callable, fan_in: int) -> None:
    engine.manual_seed(0)
    m = make()
    bound = 1 / math.sqrt(fan_in)
    _uniform_within(m.weight, bound)
    # kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std bound/sqrt(3)
    assert abs(m.weight.detach().numpy().std() - bound / math.sqrt(3)) < 0.1 * bound
    assert np.abs(m.bias.detach().numpy()).max() <= bound


def test_default_init_bilinear() -> None:
    engine.manual_seed(0)
    m = engine.nn.Bilinear(16, 5, 30)
    _uniform_within(m.weight, 1 / 4)
    assert np.abs(m.bias.detach().numpy()).max() <= 1 / 4


def test_default_init_embedding_prelu_norms() -> None:
    engine.manual_seed(0)
    w = engine.nn.Embedding(300, 200, padding_idx=0).weight.detach().numpy()
    np.testing.assert_array_equal(w[0], 0.0)
    assert abs(w[1:].mean()) < 0.02 and abs(w[1:].std() - 1) < 0.02
    np.testing.assert_array_equal(engine.nn.PReLU(3, init=0.1).weight.detach().numpy(), np.float32(0.1))
    for m in (engine.nn.BatchNorm2d(3), engine.nn.LayerNorm(3), engine.nn.GroupNorm(1, 3),
              engine.nn.InstanceNorm1d(3, affine=True)):
        np.testing.assert_array_equal(m.weight.detach().numpy(), 1.0)
        np.testing.assert_array_equal(m.bias.detach().numpy(), 0.0)
    bn = engine.nn.BatchNorm1d(3)
    np.testing.assert_array_equal(bn.running_mean.numpy(), 0.0)
    np.testing.assert_array_equal(bn.running_var.numpy(), 1.0)
    assert bn.num_batches_tracked.dtype == engine.int64 and int(bn.num_batches_tracked) == 0


def test_reset_parameters_redraws() -> None:
    engine.manual_seed(0)
    m = engine.nn.Linear(4, 3)
    w = m.weight
    before = w.detach().numpy().copy()
    m.reset_parameters()
    assert m.weight is w and not np.array_equal(before, w.detach().numpy())
    assert w.is_leaf and w.requires_grad


# ---------------------------------------------------------------- docstring examples

LAYER_FILES = ["linear", "conv", "activation", "pooling", "batchnorm", "instancenorm", "normalization",
               "dropout", "sparse", "flatten", "padding", "loss", "pixelshuffle", "upsampling", "distance",
               "fold", "channelshuffle", "rnn", "transformer"]


@pytest.mark.parametrize("name", LAYER_FILES)
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    engine.manual_seed(0)
    mod = importlib.import_module(f"engine.nn.modules.{name}")
    res = doctest.testmod(mod, extraglobs={"engine": engine}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 0


# ---------------------------------------------------------------- end-to-end training


def _sgd_losses(lib: Any, net: Any, xs: np.ndarray, ys: np.ndarray, steps: int, lr: float, dt: Any) -> list:
    losses = []
    loss_fn = lib.nn.CrossEntropyLoss()
    for i in range(steps):
        x = lib.tensor(xs[i % len(xs)], dtype=dt)
        y = lib.tensor(ys[i % len(ys)])
        loss = loss_fn(net(x), y)
        net.zero_grad()
        loss.backward()
        with lib.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
        losses.append(float(loss.detach()))
    return losses


def _mlp(lib: Any) -> Any:
    nn = lib.nn
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Dropout(0.0),
                         nn.Linear(16, 3))


def _cnn(lib: Any) -> Any:
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("arch,xshape", [("mlp", (8, 6)), ("cnn", (8, 1, 8, 8))])
def test_training_loop(arch: str, xshape: tuple, dt: str) -> None:
    edt, tdt = DTYPES[dt]
    torch.manual_seed(0)
    make = _mlp if arch == "mlp" else _cnn
    tnet = make(torch).to(tdt)
    enet = make(engine).to(edt)
    copy_state(tnet, enet)
    r = np.random.default_rng(0)
    # one batch, seen every step: the loss must fall
    xs = r.standard_normal((1, *xshape))
    ys = r.integers(0, 3, (1, xshape[0]))
    tl = _sgd_losses(torch, tnet, xs, ys, 8, 0.1, tdt)
    el = _sgd_losses(engine, enet, xs, ys, 8, 0.1, edt)
    rtol = 1e-4 if dt == "float32" else 1e-9  # eight steps compound float32 rounding
    np.testing.assert_allclose(el, tl, rtol=rtol)
    assert tl[-1] < tl[0]
    for k, v in tnet.state_dict().items():
        np.testing.assert_allclose(enet.state_dict()[k].numpy(), v.numpy(), rtol=rtol, atol=rtol, err_msg=k)
    tnet.eval()
    enet.eval()
    x = r.standard_normal(xshape)
    np.testing.assert_allclose(enet(engine.tensor(x, dtype=edt)).detach().numpy(),
                               tnet(torch.tensor(x, dtype=tdt)).detach().numpy(), rtol=rtol, atol=rtol)
