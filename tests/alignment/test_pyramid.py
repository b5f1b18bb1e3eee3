"""Pyramid levels and the pixel maps between them (half-pixel convention of pyrdown)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.alignment.pyramid import (
    coarse_from_fine,
    gaussian_pyramid,
    level_from_full,
    num_levels_for,
    scale_homography,
)


def _ramp(w: int, h: int, a: float, b: float, c: float) -> torch.Tensor:
    y, x = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return (a * x + b * y + c)[None, None]


class TestCoarseFromFine:
    @pytest.mark.parametrize("size", [(64, 48), (67, 45), (131, 97)])
    def test_pins_pyrdown_pixel_centres(self, size):
        """On a linear ramp (preserved by the symmetric blur and by bilinear resampling) each
        coarse pixel must hold the ramp's value at its centre mapped back by inv(T)."""
        w, h = size
        a, b, c = 0.37, -0.21, 5.0
        levels = gaussian_pyramid(_ramp(w, h, a, b, c), 3)
        sizes = [(lv.shape[-1], lv.shape[-2]) for lv in levels]
        T = level_from_full(sizes)
        for lvl in (1, 2):
            hc, wc = levels[lvl].shape[-2:]
            yc, xc = np.mgrid[0:hc, 0:wc]
            pts = np.stack([xc.ravel(), yc.ravel(), np.ones(xc.size)])
            full = np.linalg.inv(T[lvl].numpy()) @ pts
            expected = (a * full[0] + b * full[1] + c).reshape(hc, wc)
            got = levels[lvl][0, 0].numpy()
            m = 3  # the reflect-padded border is not a ramp
            np.testing.assert_allclose(got[m:-m, m:-m], expected[m:-m, m:-m], atol=1e-9)

    def test_even_side_is_exact_half_pixel_shift(self):
        T = coarse_from_fine((640, 480), (320, 240)).numpy()
        np.testing.assert_allclose(T, [[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]])


class TestScaleHomography:
    def test_round_trip_and_point_consistency(self):
        sizes = [(640, 480), (320, 240), (160, 120), (80, 60)]
        T = level_from_full(sizes)
        H = torch.tensor(
            [[1.02, 0.03, 12.0], [-0.01, 0.98, -7.0], [1e-5, -2e-5, 1.0]], dtype=torch.float64
        )
        for lvl in range(1, 4):
            Hl = scale_homography(H, T[lvl], T[lvl])
            back = scale_homography(Hl, torch.linalg.inv(T[lvl]), torch.linalg.inv(T[lvl]))
            torch.testing.assert_close(back / back[2, 2], H, atol=1e-12, rtol=1e-12)
            # a point mapped at the level equals the full-resolution map seen at the level
            p = torch.tensor([100.0, 50.0, 1.0], dtype=torch.float64)
            q_full = H @ p
            lhs = Hl @ (T[lvl] @ p)
            rhs = T[lvl] @ q_full
            torch.testing.assert_close(lhs[:2] / lhs[2], rhs[:2] / rhs[2], atol=1e-9, rtol=0)


class TestNumLevels:
    @pytest.mark.parametrize(
        ("size", "min_side", "levels"),
        [
            ((640, 480), 40, 5),
            ((640, 480), 80, 4),
            ((640, 480), 20, 6),
            ((32, 32), 40, 1),
            ((1280, 40), 40, 3),
        ],
    )
    def test_counts(self, size, min_side, levels):
        assert num_levels_for(size, min_side) == levels
