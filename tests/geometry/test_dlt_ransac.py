"""Least squares and RANSAC against OpenCV's findHomography, judged by reprojection."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.geometry.dlt import dlt_homography
from app.geometry.ransac import ransac_homography
from app.geometry.reasons import Reason
from tests.geometry.helpers import project

H_TRUE = np.array([[1.1, 0.05, 10.0], [0.02, 0.95, -5.0], [1e-4, 2e-4, 1.0]])


def scene(n: int, outlier_ratio: float, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 640, (n, 2))
    clean = project(H_TRUE, src)
    dst = clean + rng.normal(0, noise, clean.shape)
    out = rng.random(n) < outlier_ratio
    dst[out] = rng.uniform(0, 640, (out.sum(), 2))
    return src, dst, clean, ~out


class TestDLT:
    @settings(max_examples=50, deadline=None)
    @given(n=st.integers(4, 200), seed=st.integers(0, 2**16))
    def test_exact_on_noiseless(self, n, seed):
        src, dst, _, _ = scene(n, 0.0, 0.0, seed)
        r = dlt_homography(src, dst)
        assert r.valid[0]
        np.testing.assert_allclose(project(r.dst_H_src[0], src), dst, atol=1e-8)

    def test_matches_opencv_least_squares(self):
        src, dst, clean, _ = scene(300, 0.0, 1.0, 1)
        ours = dlt_homography(src, dst).dst_H_src[0]
        ref, _ = cv2.findHomography(src, dst, 0)
        e_ours = np.sqrt(((project(ours, src) - dst) ** 2).sum(1)).mean()
        e_ref = np.sqrt(((project(ref, src) - dst) ** 2).sum(1)).mean()
        assert e_ours <= e_ref * 1.02

    def test_mask_and_batch(self):
        src, dst, _, inl = scene(100, 0.3, 0.0, 2)
        both = dlt_homography(np.stack([src, src]), np.stack([dst, dst]), np.stack([inl, inl]))
        assert both.valid.all()
        np.testing.assert_allclose(project(both.dst_H_src[1], src[inl]), dst[inl], atol=1e-8)

    def test_degenerate(self):
        line = np.stack([np.arange(6.0), 2 * np.arange(6.0)], 1)
        assert dlt_homography(line, line).reason[0] == Reason.SINGULAR_SYSTEM
        src, dst, _, _ = scene(6, 0.0, 0.0, 3)
        mask = np.array([True, True, True, False, False, False])
        assert dlt_homography(src, dst, mask[None]).reason[0] == Reason.TOO_FEW_POINTS
        bad = src.copy()
        bad[0, 0] = np.nan
        assert dlt_homography(bad, dst).reason[0] == Reason.NON_FINITE_INPUT


class TestRansac:
    @pytest.mark.parametrize("outliers", [0.0, 0.3, 0.6])
    def test_recovers_inliers_like_opencv(self, outliers):
        src, dst, clean, inl = scene(500, outliers, 0.5, 4)
        r = ransac_homography(src, dst, threshold=3.0, seed=0)
        assert r.valid
        _, m = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
        assert r.num_inliers >= int(m.sum()) - 5
        assert (r.inliers & ~inl).sum() <= 0.02 * len(src)
        err = np.sqrt(((project(r.dst_H_src, src[inl]) - clean[inl]) ** 2).sum(1)).mean()
        assert err < 0.2

    def test_seed_is_deterministic(self):
        src, dst, _, _ = scene(300, 0.5, 1.0, 5)
        a = ransac_homography(src, dst, seed=7)
        b = ransac_homography(src, dst, seed=7)
        assert np.array_equal(a.dst_H_src, b.dst_H_src) and np.array_equal(a.inliers, b.inliers)

    def test_failures_are_reported(self):
        src, dst, _, _ = scene(3, 0.0, 0.0, 6)
        assert ransac_homography(src, dst).reason == Reason.TOO_FEW_POINTS
        src, dst, _, _ = scene(10, 0.0, 0.0, 6)
        dst[0, 1] = np.inf
        assert ransac_homography(src, dst).reason == Reason.NON_FINITE_INPUT
        pts = np.zeros((20, 2))
        r = ransac_homography(pts, pts, max_iters=50)
        assert r.reason == Reason.NO_CONSENSUS and not r.inliers.any()

    def test_arguments_checked(self):
        with pytest.raises(ValueError):
            ransac_homography(np.zeros((5, 2)), np.zeros((5, 2)), threshold=0)


class TestExtremeInputs:
    """Regressions: inputs that used to raise inside the solvers (500 over HTTP)."""

    @pytest.mark.parametrize("scale", [1e-300, 1e100, 1e300, 1e307])
    def test_dlt_coordinates_near_the_float64_range_never_raise(self, scale):
        rng = np.random.default_rng(0)
        src = rng.uniform(-1, 1, (3, 12, 2)) * scale
        dst = rng.uniform(-1, 1, (3, 12, 2)) * scale
        r = dlt_homography(src, dst)
        assert r.dst_H_src.shape == (3, 3, 3) and np.isfinite(r.dst_H_src).all()
        assert ((r.reason == 0) == r.valid).all()

    def test_dlt_is_scale_invariant_where_representable(self):
        src, dst, _, _ = scene(20, 0.0, 0.0, 4)
        H = dlt_homography(src, dst).dst_H_src[0]
        k = 1e10  # (far larger scales leave H33 below 1e-14 of the translation: flagged)
        Hk = dlt_homography(src * k, dst * k)
        assert Hk.valid[0]
        # the same map in scaled pixels: diag(k, k, 1) H diag(1/k, 1/k, 1)
        S = np.diag([k, k, 1.0])
        np.testing.assert_allclose(Hk.dst_H_src[0], S @ H @ np.linalg.inv(S), rtol=1e-6)

    def test_dlt_all_points_equal_is_flagged(self):
        pts = np.full((1, 8, 2), 1e300)
        assert dlt_homography(pts, pts).reason[0] != Reason.OK

    def test_required_iterations_when_the_inlier_fraction_underflows(self):
        from app.geometry.ransac import _required_iterations

        assert _required_iterations(4 / 50_000, 0.999) > 1e15
        assert 1e20 < _required_iterations(1e-5, 0.999) < 1e21  # 1 - 1e-20 rounds to 1: log1p
        assert _required_iterations(1e-90, 0.999) == float("inf")  # ratio**4 underflows
        assert _required_iterations(0.0, 0.999) == float("inf")
        assert _required_iterations(1.0, 0.999) == 1.0
        assert abs(_required_iterations(0.5, 0.99) - 71.36) < 0.01

    def test_ransac_on_50000_random_points_at_a_tiny_threshold(self):
        rng = np.random.default_rng(2)
        s, d = rng.uniform(0, 1000, (2, 50_000, 2))
        r = ransac_homography(s, d, threshold=1e-3, max_iters=256)
        assert r.iterations == 256
