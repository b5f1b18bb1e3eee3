"""The SIMD tile transpose behind the tiled kernels, against NumPy."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from app.geometry._simd import TRANSPOSE8_MASKS, butterfly8, transpose8


@nb.njit(cache=True)
def _transpose(src, s0, ss, dst, d0, ds):
    transpose8(src, s0, ss, dst, d0, ds)


def test_butterfly_is_a_transpose():
    tile = np.arange(64).reshape(8, 8)
    cols = butterfly8(list(tile), lambda a, b, mask: np.concatenate([a, b])[list(mask)])
    np.testing.assert_array_equal(np.array(cols), tile.T)
    assert all(len(m) == 8 for stage in TRANSPOSE8_MASKS for m in stage)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("s0", "ss", "d0", "ds"), [(0, 8, 0, 8), (5, 11, 3, 9), (16, 8, 7, 32)])
def test_matches_numpy(dtype, s0, ss, d0, ds):
    rng = np.random.default_rng(0)
    src = rng.standard_normal(s0 + 7 * ss + 8 + 5).astype(dtype)
    dst = np.full(d0 + 7 * ds + 8 + 5, np.nan, dtype)
    _transpose(src, s0, ss, dst, d0, ds)
    rows = np.stack([src[s0 + r * ss : s0 + r * ss + 8] for r in range(8)])
    written = np.zeros(dst.shape, bool)
    for c in range(8):
        np.testing.assert_array_equal(dst[d0 + c * ds : d0 + c * ds + 8], rows[:, c])
        written[d0 + c * ds : d0 + c * ds + 8] = True
    assert np.isnan(dst[~written]).all()  # nothing else is touched


def test_unaligned_views():
    # binary request bodies arrive as unaligned views of a bytearray
    raw = bytearray(1 + 64 * 8)
    src = np.frombuffer(raw, np.float64, 64, 1)
    src[:] = np.arange(64)
    dst = np.frombuffer(bytearray(3 + 64 * 8), np.float64, 64, 3)
    _transpose(src, 0, 8, dst, 0, 8)
    np.testing.assert_array_equal(dst.reshape(8, 8), src.reshape(8, 8).T)


def test_refuses_mixed_dtypes():
    with pytest.raises(nb.core.errors.TypingError, match="transpose8"):
        _transpose(np.zeros(64), 0, 8, np.zeros(64, np.float32), 0, 8)
