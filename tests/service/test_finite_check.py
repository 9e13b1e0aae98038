"""service.codec.all_finite: the non-finite check of input tensors, against torch.isfinite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.codec import all_finite

SIZES = (100, 1 << 16, (1 << 20) + 3)  # under and over the size where the check reads by BLAS


def expected(a: np.ndarray) -> bool:
    return bool(torch.isfinite(torch.from_numpy(np.ascontiguousarray(a))).all())


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_non_finite_value_anywhere_is_found(dtype, n, bad) -> None:
    a = np.random.default_rng(n).standard_normal(n).astype(dtype)
    assert all_finite(a) is expected(a) is True
    for at in (0, n // 2, n - 1):
        b = a.copy()
        b[at] = bad
        assert all_finite(b) is expected(b) is False, (at, bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_values_whose_squares_overflow_are_finite(dtype) -> None:
    big = np.finfo(dtype).max / 2
    a = np.full(1 << 18, big, dtype)
    a[::3] = -big
    assert all_finite(a) is expected(a) is True
    a[7] = np.inf
    assert all_finite(a) is expected(a) is False


def test_non_contiguous_and_shaped_arrays() -> None:
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    assert all_finite(a) is all_finite(a.T) is all_finite(a[:, ::2]) is True
    a[300, 301] = np.nan
    assert all_finite(a) is all_finite(a.T) is all_finite(a[:, 1::2]) is False
    assert all_finite(a[:, ::2]) is expected(a[:, ::2]) is True  # the NaN is not in this view
