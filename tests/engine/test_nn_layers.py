"""Layers of engine.nn.functional beyond the registry-driven gradient checks: torch's errors for
common misuse, dropout's randomness contract, and in-place updates of running statistics."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch

import engine
import engine.nn.functional as EF

r = np.random.default_rng(0)
X4 = r.standard_normal((2, 3, 5, 5))
W4 = r.standard_normal((4, 3, 3, 3))
X3 = r.standard_normal((2, 3, 5))


def _libs(fn: Callable) -> tuple[Callable, Callable]:
    """``fn(lib, F, T)`` where ``T`` builds lib tensors from numpy: run it on both libraries."""
    def run(lib):
        return lambda: fn(lib, lib.nn.functional, lambda a, **k: lib.tensor(np.asarray(a), **k))
    return run(engine), run(torch)


# Each case: an id and fn(lib, F, T). The engine must raise torch's exception type with torch's
# message (exactly: these are the messages users search for).
MISUSE = {
    "conv2d 2-D input": lambda lib, F, T: F.conv2d(T(X4[0, 0]), T(W4)),
    "conv2d 5-D input": lambda lib, F, T: F.conv2d(T(X4[None]), T(W4)),
    "conv2d channel mismatch": lambda lib, F, T: F.conv2d(T(X4[:, :2]), T(W4)),
    "conv2d groups mismatch": lambda lib, F, T: F.conv2d(T(X4), T(W4), groups=2),
    "conv2d weight not divisible": lambda lib, F, T: F.conv2d(T(X4), T(W4[:, :1]), groups=3),
    "conv2d kernel > input": lambda lib, F, T: F.conv2d(T(X4[..., :2, :2]), T(W4)),
    "conv2d dilated kernel > input": lambda lib, F, T: F.conv2d(T(X4[..., :4, :4]), T(W4), dilation=2),
    "conv2d weight dims": lambda lib, F, T: F.conv2d(T(X4), T(W4[..., 0])),
    "conv2d bias size": lambda lib, F, T: F.conv2d(T(X4), T(W4), T(np.ones(3))),
    "conv2d same + stride": lambda lib, F, T: F.conv2d(T(X4), T(W4), stride=2, padding="same"),
    "conv2d bad padding string": lambda lib, F, T: F.conv2d(T(X4), T(W4), padding="full"),
    "conv2d zero stride": lambda lib, F, T: F.conv2d(T(X4), T(W4), stride=0),
    "conv2d negative padding": lambda lib, F, T: F.conv2d(T(X4), T(W4), padding=-1),
    "conv2d zero dilation": lambda lib, F, T: F.conv2d(T(X4).float(), T(W4).float(), dilation=0),
    "conv2d zero groups": lambda lib, F, T: F.conv2d(T(X4), T(W4), groups=0),
    "conv2d 3 strides": lambda lib, F, T: F.conv2d(T(X4), T(W4), stride=(1, 1, 1)),
    "conv2d dtype mismatch": lambda lib, F, T: F.conv2d(T(X4).float(), T(W4)),
    "conv2d bias dtype": lambda lib, F, T: F.conv2d(T(X4), T(W4), T(np.ones(4)).float()),
    "conv1d 4-D input": lambda lib, F, T: F.conv1d(T(X4), T(W4[..., 0])),
    "conv1d kernel > input": lambda lib, F, T: F.conv1d(T(X3[..., :2]), T(W4[..., 0])),
    "conv3d 3-D input": lambda lib, F, T: F.conv3d(T(X3), T(W4[..., None])),
    "conv_transpose2d channels": lambda lib, F, T: F.conv_transpose2d(T(X4), T(W4)),
    "conv_transpose2d output_padding": lambda lib, F, T: F.conv_transpose2d(
        T(X4), T(W4[:3]), stride=2, output_padding=2),
    "conv_transpose2d output_padding 1 dim": lambda lib, F, T: F.conv_transpose2d(
        T(X4), T(W4[:3]), stride=(2, 1), output_padding=(1, 1)),
    "conv_transpose1d output_padding": lambda lib, F, T: F.conv_transpose1d(
        T(X3), T(W4[:3, :2, :, 0]), output_padding=2, stride=2),
    "conv_transpose3d output_padding": lambda lib, F, T: F.conv_transpose3d(
        T(X4[..., None]), T(W4[:3, ..., None]), output_padding=2, stride=2),
    "conv_transpose2d groups": lambda lib, F, T: F.conv_transpose2d(T(X4), T(W4[:3]), groups=2),
    "conv_transpose2d bias": lambda lib, F, T: F.conv_transpose2d(T(X4), T(W4[:3]), T(np.ones(4))),
    "conv_transpose2d negative output_padding": lambda lib, F, T: F.conv_transpose2d(
        T(X4), T(W4[:3]), output_padding=-1),
    "max_pool2d 1-D input": lambda lib, F, T: F.max_pool2d(T(X4[0, 0, 0]), 2),
    "max_pool2d pad > half kernel": lambda lib, F, T: F.max_pool2d(T(X4), 3, padding=2),
    "max_pool2d output too small": lambda lib, F, T: F.max_pool2d(T(X4[..., :2, :2]), 3),
    "max_pool2d zero kernel": lambda lib, F, T: F.max_pool2d(T(X4), 0),
    "max_pool2d zero dilation": lambda lib, F, T: F.max_pool2d(T(X4), 2, dilation=0),
    "max_pool2d negative padding": lambda lib, F, T: F.max_pool2d(T(X4), 1, padding=-1),
    "max_pool3d 2-D input": lambda lib, F, T: F.max_pool3d(T(X4[0, 0]), 2),
    "max_pool3d output too small": lambda lib, F, T: F.max_pool3d(T(X4[..., None][..., :2, :2, :1]), 3),
    "avg_pool2d output too small": lambda lib, F, T: F.avg_pool2d(T(X4[..., :2, :2]), 3),
    "avg_pool2d divisor 0": lambda lib, F, T: F.avg_pool2d(T(X4), 2, divisor_override=0),
    "avg_pool1d 4-D input": lambda lib, F, T: F.avg_pool1d(T(X4), 3),
    "avg_pool1d output too small": lambda lib, F, T: F.avg_pool1d(T(X3[..., :2]), 3),
    "adaptive_avg_pool2d 1-D": lambda lib, F, T: F.adaptive_avg_pool2d(T(X3[0, 0]), 3),
    "adaptive_avg_pool2d size": lambda lib, F, T: F.adaptive_avg_pool2d(T(X4), (3,)),
    "adaptive_avg_pool1d 4-D": lambda lib, F, T: F.adaptive_avg_pool1d(T(X4), 3),
    "adaptive_max_pool2d 1-D": lambda lib, F, T: F.adaptive_max_pool2d(T(X3[0, 0]), 3),
    "batch_norm eval without stats": lambda lib, F, T: F.batch_norm(T(X3), None, None),
    "batch_norm one value per channel": lambda lib, F, T: F.batch_norm(T(X3[:1, :, 0]), None, None,
                                                                       training=True),
    "batch_norm running_mean size": lambda lib, F, T: F.batch_norm(T(X3), T(np.zeros(2)), T(np.ones(2))),
    "batch_norm weight size": lambda lib, F, T: F.batch_norm(T(X3), T(np.zeros(3)), T(np.ones(3)),
                                                             T(np.ones(2))),
    "instance_norm one spatial element": lambda lib, F, T: F.instance_norm(T(X3[..., :1])),
    "layer_norm shape": lambda lib, F, T: F.layer_norm(T(X3), (3,)),
    "layer_norm weight shape": lambda lib, F, T: F.layer_norm(T(X3), (5,), T(np.ones(3))),
    "rms_norm shape": lambda lib, F, T: F.rms_norm(T(X3), (3,)),
    "group_norm groups": lambda lib, F, T: F.group_norm(T(X3), 2),
    "group_norm weight": lambda lib, F, T: F.group_norm(T(X3), 3, T(np.ones(2))),
    "linear shapes": lambda lib, F, T: F.linear(T(X3), T(np.ones((4, 3)))),
    "bilinear input2": lambda lib, F, T: F.bilinear(T(X3[:, 0]), T(X3[:, 1, :3]), T(np.ones((2, 5, 5)))),
    "bilinear batch": lambda lib, F, T: F.bilinear(T(X3[:, 0]), T(X3[:1, 0]), T(np.ones((2, 5, 5)))),
    "bilinear bias": lambda lib, F, T: F.bilinear(T(X3[:, 0]), T(X3[:, 1]), T(np.ones((2, 5, 5))),
                                                  T(np.ones(3))),
    "dropout p": lambda lib, F, T: F.dropout(T(X3), 1.5),
    "dropout1d 4-D": lambda lib, F, T: F.dropout1d(T(X4), 0.5),
    "embedding index range": lambda lib, F, T: F.embedding(T([0, 5]), T(np.ones((5, 3)))),
    "embedding padding_idx": lambda lib, F, T: F.embedding(T([0, 1]), T(np.ones((5, 3))), padding_idx=5),
    "embedding float indices": lambda lib, F, T: F.embedding(T([0.0, 1.0]).float(), T(np.ones((5, 3)))),
    "embedding 1-D weight": lambda lib, F, T: F.embedding(T([0, 1]), T(np.ones(5))),
    "one_hot too large": lambda lib, F, T: F.one_hot(T([0, 5]), 3),
    "one_hot negative": lambda lib, F, T: F.one_hot(T([0, -1]), 3),
    "one_hot float": lambda lib, F, T: F.one_hot(T([0.0, 1.0])),
    "one_hot empty": lambda lib, F, T: F.one_hot(T(np.zeros(0, np.int64))),
    "sdpa dtypes": lambda lib, F, T: F.scaled_dot_product_attention(T(X3).float(), T(X3), T(X3)),
    "sdpa mask dtype": lambda lib, F, T: F.scaled_dot_product_attention(
        T(X3), T(X3), T(X3), attn_mask=T(np.zeros((3, 3), np.int64))),
    "sdpa mask and causal": lambda lib, F, T: F.scaled_dot_product_attention(
        T(X3), T(X3), T(X3), attn_mask=T(np.ones((3, 3), bool)), is_causal=True),
    "pad odd length": lambda lib, F, T: F.pad(T(X4), (1,)),
    "pad too long": lambda lib, F, T: F.pad(T(X3), (1,) * 8),
    "pad reflect too wide": lambda lib, F, T: F.pad(T(X4), (1, 1, 5, 5), mode="reflect"),
    "pad reflect last dim": lambda lib, F, T: F.pad(T(X3), (5, 5), mode="reflect"),
    "pad circular wraps twice": lambda lib, F, T: F.pad(T(X4), (1, 1, 6, 6), mode="circular"),
    "pad unknown mode": lambda lib, F, T: F.pad(T(X4), (1, 1), mode="wrap"),
    "pad value with replicate": lambda lib, F, T: F.pad(T(X3), (1, 1), mode="replicate", value=2.0),
    "pad size for non-constant": lambda lib, F, T: F.pad(T(X4), (1, 1), mode="replicate"),
    "interpolate no size": lambda lib, F, T: F.interpolate(T(X4)),
    "interpolate both": lambda lib, F, T: F.interpolate(T(X4), size=3, scale_factor=2),
    "interpolate size length": lambda lib, F, T: F.interpolate(T(X4), size=(3, 3, 3)),
    "interpolate scale length": lambda lib, F, T: F.interpolate(T(X3), scale_factor=(2.0, 2.0)),
    "interpolate bilinear 3-D": lambda lib, F, T: F.interpolate(T(X3), size=5, mode="bilinear"),
    "interpolate linear 4-D": lambda lib, F, T: F.interpolate(T(X4), size=5, mode="linear"),
    "interpolate align_corners nearest": lambda lib, F, T: F.interpolate(T(X4), size=5,
                                                                         align_corners=True),
    "interpolate unknown mode": lambda lib, F, T: F.interpolate(T(X4), size=5, mode="cubic"),
    "interpolate zero size": lambda lib, F, T: F.interpolate(T(X4), size=(0, 2)),
    "interpolate zero size 1-d": lambda lib, F, T: F.interpolate(T(X3), scale_factor=0.1),
    "unfold kernel too big": lambda lib, F, T: F.unfold(T(X4), 6),
    "unfold 3 kernel dims": lambda lib, F, T: F.unfold(T(X4), (2, 2, 2)),
    "unfold 1 stride": lambda lib, F, T: F.unfold(T(X4), 2, stride=(1,)),
    "batch_norm float64 params": lambda lib, F, T: F.batch_norm(T(X3).float(), T(np.zeros(3)),
                                                                T(np.ones(3))),
    "batch_norm float32 params": lambda lib, F, T: F.batch_norm(T(X3), None, None,
                                                                T(np.ones(3)).float(), training=True),
    "layer_norm mixed": lambda lib, F, T: F.layer_norm(T(X3), (5,), T(np.ones(5)).float()),
    "fold block count": lambda lib, F, T: F.fold(T(np.ones((1, 4, 5))), (3, 3), 2),
    "pixel_shuffle 2-D": lambda lib, F, T: F.pixel_shuffle(T(X4[0, 0]), 2),
    "pixel_shuffle channels": lambda lib, F, T: F.pixel_shuffle(T(X4), 2),
    "pixel_unshuffle height": lambda lib, F, T: F.pixel_unshuffle(T(X4[..., :4]), 2),
    "pixel_unshuffle width": lambda lib, F, T: F.pixel_unshuffle(T(X4[..., :4, :]), 2),
    "channel_shuffle groups": lambda lib, F, T: F.channel_shuffle(T(X3), 2),
    "channel_shuffle 2-D": lambda lib, F, T: F.channel_shuffle(T(X3[:, :, 0]), 3),
    "channel_shuffle zero groups": lambda lib, F, T: F.channel_shuffle(T(X3), 0),
    "local_response_norm 2-D": lambda lib, F, T: F.local_response_norm(T(X3[:, :, 0]), 2),
    "alpha_dropout p": lambda lib, F, T: F.alpha_dropout(T(X3), 2.0),
}


@pytest.mark.parametrize("case", sorted(MISUSE))
def test_misuse_raises_torch_error(case: str) -> None:
    e_call, t_call = _libs(MISUSE[case])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as t_err:
            t_call()
        with pytest.raises(Exception) as e_err:
            e_call()
    assert type(e_err.value) is type(t_err.value), (e_err.value, t_err.value)
    assert str(e_err.value) == str(t_err.value)


# ---------------------------------------------------------------- dropout's randomness contract
def test_dropout_seed_reproducible_and_scaled() -> None:
    x = engine.ones(200, 50)
    a = EF.dropout(x, 0.3, generator=11)
    b = EF.dropout(x, 0.3, generator=11)
    c = EF.dropout(x, 0.3, generator=12)
    assert np.array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    vals = np.unique(a.numpy())
    np.testing.assert_allclose(vals, [0.0, 1 / 0.7], rtol=1e-6)
    kept = (a.numpy() != 0).mean()
    assert abs(kept - 0.7) < 0.02  # 10,000 draws: 5 sigma is about 0.023


def test_dropout_global_generator_follows_manual_seed() -> None:
    x = engine.ones(30, 30)
    engine.manual_seed(3)
    a = EF.dropout(x, 0.5)
    a2 = EF.dropout(x, 0.5)
    engine.manual_seed(3)
    b = EF.dropout(x, 0.5)
    assert np.array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), a2.numpy())  # the stream advances between calls


def test_dropout_gradient_uses_the_forward_mask() -> None:
    x = engine.tensor(np.arange(1.0, 41.0).reshape(5, 8), dtype=engine.float64, requires_grad=True)
    y = EF.dropout(x, 0.25, generator=4)
    (g,) = engine.autograd_grad(y.sum(), x)
    np.testing.assert_allclose(g.numpy(), (y.detach().numpy() != 0) / 0.75)


@pytest.mark.parametrize("nd,shape", [(1, (4, 6, 5)), (2, (4, 6, 3, 3)), (3, (4, 6, 2, 2, 2))])
def test_channel_dropout_zeroes_whole_channels(nd: int, shape: tuple) -> None:
    y = getattr(EF, f"dropout{nd}d")(engine.ones(*shape), 0.5, generator=1).numpy()
    per_channel = y.reshape(shape[0], shape[1], -1)
    assert ((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1)).all()
    assert (per_channel == 0).any() and (per_channel == 2.0).any()


def test_dropout_identity_and_zero_match_torch() -> None:
    x = r.standard_normal((3, 4))
    for kw in ({"p": 0.0}, {"p": 0.7, "training": False}, {"p": 1.0}):
        e = EF.dropout(engine.tensor(x), **kw).numpy()
        t = torch.nn.functional.dropout(torch.tensor(x), **kw).numpy()
        np.testing.assert_array_equal(e, t)


def test_dropout_inplace_writes_into_the_input() -> None:
    x = engine.ones(2, 50)
    y = EF.dropout(x, 0.5, inplace=True, generator=0)
    assert y is x and x._version == 1
    assert set(np.unique(x.numpy()).tolist()) == {0.0, 2.0}
    t = torch.ones(2, 50)
    assert torch.nn.functional.dropout(t, 0.5, inplace=True) is t  # the oracle's contract


# ---------------------------------------------------------------- running statistics, in place
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batch_norm_training_updates_running_stats_as_torch(momentum: float) -> None:
    xs = [(r.standard_normal((4, 3, 2)) * 3 + 1).astype(np.float32) for _ in range(2)]
    out = {}
    for lib in (engine, torch):
        rm, rv = lib.zeros(3), lib.ones(3)
        ys = [lib.nn.functional.batch_norm(lib.tensor(x), rm, rv, training=True, momentum=momentum)
              for x in xs]
        out[lib.__name__] = (rm.numpy().copy(), rv.numpy().copy(), rm._version, ys[-1].numpy())
    for e, t in zip(out["engine"], out["torch"]):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)


def test_instance_norm_updates_running_stats_as_torch() -> None:
    x = (r.standard_normal((4, 3, 5)) * 2 + 1).astype(np.float32)
    out = {}
    for lib in (engine, torch):
        rm, rv = lib.zeros(3), lib.ones(3)
        lib.nn.functional.instance_norm(lib.tensor(x), rm, rv, momentum=0.2)
        out[lib.__name__] = (rm.numpy().copy(), rv.numpy().copy(), rm._version)
    for e, t in zip(out["engine"], out["torch"]):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm_type", [2.0, 1.0])
def test_embedding_max_norm_renormalizes_the_weight_in_place_as_torch(norm_type: float) -> None:
    w0 = r.standard_normal((5, 3)).astype(np.float32) * 2
    out = {}
    for lib in (engine, torch):
        w = lib.tensor(w0, requires_grad=True)
        y = lib.nn.functional.embedding(lib.tensor([[0, 2], [2, 4]]), w, max_norm=1.5, norm_type=norm_type)
        y.sum().backward()
        out[lib.__name__] = (w.detach().numpy().copy(), y.detach().numpy(), w.grad.numpy(), w._version)
    for e, t in zip(out["engine"], out["torch"]):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- float32 stays float32
@pytest.mark.parametrize("name,call", [
    ("conv2d", lambda F, x: F.conv2d(x, x[:2], padding=1)),
    ("max_pool2d", lambda F, x: F.max_pool2d(x, 2)),
    ("avg_pool2d", lambda F, x: F.avg_pool2d(x, 2, padding=1)),
    ("adaptive_avg_pool2d", lambda F, x: F.adaptive_avg_pool2d(x, 3)),
    ("batch_norm", lambda F, x: F.batch_norm(x, None, None, training=True)),
    ("layer_norm", lambda F, x: F.layer_norm(x, (4,))),
    ("interpolate", lambda F, x: F.interpolate(x, scale_factor=1.5, mode="bilinear")),
    ("pad", lambda F, x: F.pad(x, (1, 1, 1, 1), mode="reflect")),
])
def test_float32_in_float32_out(name: str, call: Callable) -> None:
    x = engine.tensor(r.standard_normal((3, 3, 4, 4)).astype(np.float32), requires_grad=True)
    y = call(EF, x)
    (g,) = engine.autograd_grad(y.sum(), x)
    assert y.dtype is engine.float32 and g.dtype is engine.float32, name
