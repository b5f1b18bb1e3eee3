"""4-point solvers against OpenCV, by reprojection (OpenCV is only float32-accurate)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from app.geometry.four_point import (
    aca_torch,
    affine_from_3_points,
    rect_to_quad,
    solve_four_point,
    solve_homography_torch,
)
from app.geometry.reasons import Reason
from tests.geometry.helpers import min_sine, project

METHODS = ["aca", "sks"]
coords = st.floats(0, 1e4, allow_nan=False, allow_infinity=False)


SQUARE_CORNERS = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)


@st.composite
def quads(draw, scale: float) -> np.ndarray:
    """A convex-or-not quadrilateral anywhere in [0, scale]^2, sizes over 1.7 decades (a quad of
    10 px magnified 500x at 1e4 px is beyond what float64 can hold to 1e-9 px)."""
    size = draw(st.floats(1e-2 * scale, 0.5 * scale))
    centre = draw(arrays(np.float64, 2, elements=st.floats(size, scale - size)))
    angle = draw(st.floats(0, 2 * np.pi))
    jitter = draw(arrays(np.float64, (4, 2), elements=st.floats(-0.45, 0.45)))
    c, s = np.cos(angle), np.sin(angle)
    pts = (SQUARE_CORNERS + jitter) @ np.array([[c, s], [-s, c]]) * size + centre
    assume(min_sine(pts) > 0.05)
    return pts


@st.composite
def quad_pairs(draw, scale: float = 1e4):
    """Four source points in general position and four target points, both within [0, scale]."""
    return draw(quads(scale)), draw(quads(scale))


class TestSolveFourPoint:
    def test_identity_and_scale(self):
        src = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
        for m in METHODS:
            r = solve_four_point(src, src, method=m)
            np.testing.assert_allclose(r.dst_H_src[0], np.eye(3), atol=1e-15)
            r = solve_four_point(src, 3 * src + 5, method=m)
            np.testing.assert_allclose(
                r.dst_H_src[0], [[3, 0, 5], [0, 3, 5], [0, 0, 1]], atol=1e-14
            )

    @pytest.mark.parametrize("method", METHODS)
    @settings(max_examples=300, deadline=None)
    @given(pair=quad_pairs())
    def test_reprojection_float64_1e9(self, method, pair):
        src, dst = pair
        r = solve_four_point(src, dst, method=method)
        assert r.valid[0], Reason(r.reason[0])
        assert r.dst_H_src[0, 2, 2] == 1.0
        err = np.abs(project(r.dst_H_src[0], src) - dst).max()
        assert err <= 1e-9

    @pytest.mark.parametrize("method", METHODS)
    @settings(max_examples=100, deadline=None)
    @given(pair=quad_pairs(scale=2000.0))
    def test_agrees_with_opencv(self, method, pair):
        src, dst = pair
        ours = solve_four_point(src, dst, method=method).dst_H_src[0]
        ref = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
        err_ours = np.abs(project(ours, src) - dst).max()
        err_cv = np.abs(project(ref, src) - dst).max()
        assert err_ours <= err_cv + 1e-9
        # the same mapping: OpenCV's points land where ours do, to OpenCV's float32 precision
        grid = np.array([[0.25, 0.25], [0.5, 0.5], [0.75, 0.25]]) @ np.diag(
            np.ptp(src, 0)
        ) + src.min(0)
        tol = 1e-3 * (1 + np.abs(dst).max())
        assert np.abs(project(ours, grid) - project(ref, grid)).max() < max(tol, 50 * err_cv)

    @pytest.mark.parametrize("method", METHODS)
    def test_float32_output_and_accuracy(self, method):
        rng = np.random.default_rng(3)
        src = rng.uniform(0, 4e4, (2000, 4, 2))
        dst = src + rng.uniform(-4e3, 4e3, src.shape)
        r = solve_four_point(src.astype(np.float32), dst.astype(np.float32), method=method)
        assert r.dst_H_src.dtype == np.float32
        ok = r.valid & np.array(
            [min_sine(s) > 0.05 and min_sine(d) > 0.05 for s, d in zip(src, dst)]
        )
        assert ok.sum() > 1000
        assert np.isfinite(r.dst_H_src).all()  # no overflow even at 4e4 px
        errs = [
            np.abs(project(h, s.astype(np.float32)) - d.astype(np.float32)).max()
            for h, s, d in zip(r.dst_H_src[ok], src[ok], dst[ok])
        ]
        assert np.median(errs) < 0.05 and max(errs) < 5.0

    @pytest.mark.parametrize("scale", [2e3, 1e6])
    @settings(max_examples=150, deadline=None)
    @given(data=st.data())
    def test_float32_lanes_near_rounding(self, scale, data):
        # float32 lanes (a full tile and a partial one, the same answer in both) stay within 2x
        # of the float64 answer rounded to float32 (plus 1e-5 of the coordinates' magnitude)
        # and overflow nowhere (at 1e6 px the plain product of the float64 path would)
        src, dst = data.draw(quad_pairs(scale))
        s32, d32 = np.float32(src), np.float32(dst)
        r = solve_four_point(np.repeat(s32[None], 9, 0), np.repeat(d32[None], 9, 0))
        assert r.valid.all() and r.dst_H_src.dtype == np.float32
        rounded = solve_four_point(s32.astype(np.float64), d32.astype(np.float64)).dst_H_src[0]
        floor = np.abs(project(np.float32(rounded), s32) - d32).max()
        assert (r.dst_H_src == r.dst_H_src[:1]).all()
        extent = max(np.abs(s32).max(), np.abs(d32).max())
        err = np.abs(project(r.dst_H_src[0], s32) - d32).max()
        assert err <= 2 * floor + 1e-5 * extent, (err, floor, extent)

    def test_float32_median_error(self):
        # the typical case: 128 px patches moved by +-32 px anywhere in a 640 px image
        rng = np.random.default_rng(5)
        corners = np.array([[0, 0], [127, 0], [127, 127], [0, 127]], np.float64)
        src = corners + rng.uniform(0, 512, (20_000, 1, 2))
        dst = (src + rng.uniform(-32, 32, src.shape)).astype(np.float32)
        src = src.astype(np.float32)
        ours = solve_four_point(src, dst).dst_H_src
        rounded = solve_four_point(src.astype(np.float64), dst.astype(np.float64)).dst_H_src
        p = np.c_[src.reshape(-1, 2), np.ones(len(src) * 4)].reshape(-1, 4, 3)

        def err(H: np.ndarray) -> np.ndarray:
            q = p @ np.swapaxes(np.float32(H).astype(np.float64), 1, 2)
            return np.abs(q[..., :2] / q[..., 2:] - dst).max(axis=(1, 2))

        e, floor = err(ours), err(rounded)
        assert np.median(e) <= 2 * np.median(floor) and e.max() <= 2 * floor.max()

    def test_methods_agree(self):
        rng = np.random.default_rng(0)
        src = rng.uniform(0, 640, (500, 4, 2))
        dst = src + rng.uniform(-40, 40, src.shape)
        a = solve_four_point(src, dst, method="aca")
        s = solve_four_point(src, dst, method="sks")
        both = a.valid & s.valid
        assert both.mean() > 0.99
        np.testing.assert_allclose(a.dst_H_src[both], s.dst_H_src[both], rtol=1e-6, atol=1e-9)

    @pytest.mark.parametrize("n", [40_000, 40_003])
    def test_blocked_default_path_matches_per_item_path(self, n):
        # aca + h33 runs the tiled kernel (parallel above 16k items; n % 8 items on the per-item
        # path); frobenius runs the per-item kernel: same matrices up to scale and the same
        # reasons, degenerate items too
        rng = np.random.default_rng(7)
        src = rng.uniform(0, 640, (n, 4, 2))
        dst = src + rng.uniform(-40, 40, src.shape)
        bad = rng.choice(n, 300, replace=False)
        src[bad[:100], 1] = src[bad[:100], 0]  # repeated
        dst[bad[100:200], 2] = (dst[bad[100:200], 0] + dst[bad[100:200], 1]) / 2  # collinear
        src[bad[200:], 3, 0] = np.nan
        a = solve_four_point(src, dst)
        f = solve_four_point(src, dst, normalize="frobenius")
        np.testing.assert_array_equal(a.reason, f.reason)
        assert (~a.valid).sum() == 300
        ok = a.valid
        np.testing.assert_allclose(
            f.dst_H_src[ok] / f.dst_H_src[ok][:, 2:3, 2:3], a.dst_H_src[ok], rtol=1e-9, atol=1e-12
        )
        serial = solve_four_point(src[:1000], dst[:1000])
        np.testing.assert_array_equal(serial.dst_H_src, a.dst_H_src[:1000])
        # float32 lanes flag what the per-item path flags with float32's tolerance; parallel
        # and serial agree bit for bit
        a32 = solve_four_point(np.float32(src), np.float32(dst))
        f32 = solve_four_point(np.float32(src), np.float32(dst), normalize="frobenius")
        np.testing.assert_array_equal(a32.reason, f32.reason)
        serial32 = solve_four_point(np.float32(src[-1003:]), np.float32(dst[-1003:]))
        np.testing.assert_array_equal(serial32.dst_H_src, a32.dst_H_src[-1003:])

    def test_frobenius_normalisation(self):
        rng = np.random.default_rng(1)
        src = rng.uniform(0, 100, (50, 4, 2))
        dst = src + rng.uniform(-10, 10, src.shape)
        h = solve_four_point(src, dst).dst_H_src
        f = solve_four_point(src, dst, normalize="frobenius").dst_H_src
        np.testing.assert_allclose(np.linalg.norm(f.reshape(50, 9), axis=1), 1.0, rtol=1e-12)
        assert (f[:, 2, 2] >= 0).all()
        np.testing.assert_allclose(f / f[:, 2:3, 2:3], h, rtol=1e-9, atol=1e-12)


class TestDegenerate:
    SQUARE = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)

    @pytest.mark.parametrize("method", METHODS)
    def test_reasons_per_item_rest_solved(self, method):
        sq = self.SQUARE
        collinear = np.array([[0, 0], [1, 1], [2, 2], [0, 5]], float)
        repeated = np.array([[0, 0], [0, 0], [10, 10], [0, 10]], float)
        nan = sq.copy()
        nan[2, 0] = np.nan
        src = np.stack([sq, collinear, repeated, nan, sq, sq, sq])
        dst = np.stack([sq + 1, sq, sq, sq, collinear, repeated, sq * 2])
        r = solve_four_point(src, dst, method=method)
        assert [Reason(c) for c in r.reason] == [
            Reason.OK,
            Reason.COLLINEAR_SOURCE,
            Reason.REPEATED_SOURCE_POINT,
            Reason.NON_FINITE_INPUT,
            Reason.COLLINEAR_TARGET,
            Reason.REPEATED_TARGET_POINT,
            Reason.OK,
        ]
        assert np.isfinite(r.dst_H_src).all()
        assert (r.dst_H_src[~r.valid] == 0).all()
        np.testing.assert_allclose(project(r.dst_H_src[6], sq), 2 * sq, atol=1e-12)

    def test_infinite_input(self):
        src = self.SQUARE.copy()
        src[0, 0] = np.inf
        assert solve_four_point(src, self.SQUARE).reason[0] == Reason.NON_FINITE_INPUT

    @pytest.mark.parametrize("method", METHODS)
    def test_h33_zero(self, method):
        # a homography that sends the source origin to infinity: H33 = 0
        H = np.array([[1.0, 0.2, 3.0], [0.1, 1.0, -2.0], [0.01, 0.02, 0.0]])
        src = np.array([[10, 10], [60, 12], [55, 70], [8, 50]], float)
        dst = project(H, src)
        r = solve_four_point(src, dst, method=method)
        assert r.reason[0] == Reason.H33_NEAR_ZERO and (r.dst_H_src[0] == 0).all()
        f = solve_four_point(src, dst, method=method, normalize="frobenius")
        assert f.valid[0]
        np.testing.assert_allclose(project(f.dst_H_src[0], src), dst, atol=1e-9)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match=r"\(B, 4, 2\)"):
            solve_four_point(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)))
        with pytest.raises(ValueError, match="batch sizes"):
            solve_four_point(np.zeros((2, 4, 2)), np.zeros((3, 4, 2)))
        with pytest.raises(ValueError, match="method"):
            solve_four_point(self.SQUARE, self.SQUARE, method="lu")  # type: ignore[arg-type]


class TestRectToQuad:
    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
    @given(
        x0=st.floats(-500, 500),
        y0=st.floats(-500, 500),
        w=st.floats(1, 1000),
        h=st.floats(1, 1000),
        offsets=arrays(np.float64, (4, 2), elements=st.floats(-0.2, 0.2)),
    )
    def test_matches_general_solver(self, x0, y0, w, h, offsets):
        corners = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]])
        dst = corners + offsets * [w, h]
        assume(min_sine(dst) > 0.05)
        fast = rect_to_quad(dst, (x0, y0, w, h))
        ref = solve_four_point(corners, dst)
        assert fast.valid[0] and ref.valid[0]
        scale = 1 + np.abs(dst).max()
        np.testing.assert_allclose(project(fast.dst_H_src[0], corners), dst, atol=1e-9 * scale)

    def test_rejects_empty_rect(self):
        with pytest.raises(ValueError, match="positive"):
            rect_to_quad(np.zeros((1, 4, 2)), (0, 0, 0, 10))


class TestAffine:
    def test_matches_opencv(self):
        rng = np.random.default_rng(2)
        src = rng.uniform(0, 500, (100, 3, 2))
        dst = rng.uniform(0, 500, (100, 3, 2))
        r = affine_from_3_points(src, dst)
        for a, s, d in zip(r.dst_A_src, src, dst):
            np.testing.assert_allclose(a @ np.c_[s, np.ones(3)].T, d.T, atol=1e-8)
        ref = cv2.getAffineTransform(src[0].astype(np.float32), dst[0].astype(np.float32))
        np.testing.assert_allclose(r.dst_A_src[0], ref, rtol=1e-3, atol=1e-2)

    def test_collinear_flagged(self):
        src = np.array([[[0, 0], [1, 1], [2, 2]]], float)
        assert affine_from_3_points(src, src).reason[0] == Reason.COLLINEAR_SOURCE


class TestTorch:
    def test_matches_numpy(self):
        rng = np.random.default_rng(4)
        src = rng.uniform(0, 320, (64, 4, 2))
        dst = src + rng.uniform(-32, 32, src.shape)
        H, valid = aca_torch(torch.from_numpy(src), torch.from_numpy(dst))
        ref = solve_four_point(src, dst).dst_H_src
        assert valid.all()
        np.testing.assert_allclose(H.numpy(), ref, rtol=1e-9, atol=1e-12)

    def test_float32_rect_patch(self):
        corners = torch.tensor([[0.0, 0], [127, 0], [127, 127], [0, 127]]).expand(8, 4, 2)
        dst = corners + torch.empty(8, 4, 2).uniform_(
            -32, 32, generator=torch.Generator().manual_seed(0)
        )
        H = solve_homography_torch(corners, dst)
        assert H.dtype == torch.float32
        ref = solve_four_point(corners.double().numpy(), dst.double().numpy()).dst_H_src
        np.testing.assert_allclose(H.numpy(), ref, rtol=1e-4, atol=1e-5)

    def test_degenerate_is_identity_and_invalid(self):
        sq = torch.tensor([[[0.0, 0], [1, 0], [1, 1], [0, 1]]], dtype=torch.float64)
        bad = torch.tensor([[[0.0, 0], [1, 1], [2, 2], [0, 1]]], dtype=torch.float64)
        H, valid = aca_torch(bad, sq)
        assert not valid[0] and torch.equal(H[0], torch.eye(3, dtype=torch.float64))

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(0)
        src = torch.tensor([[[0.0, 0], [10, 0], [10, 10], [0, 10]]], dtype=torch.float64)
        dst = (src + torch.rand(1, 4, 2, generator=g, dtype=torch.float64)).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda d: aca_torch(src, d)[0], (dst,))

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    def test_cuda(self):
        src = torch.rand(128, 4, 2, dtype=torch.float64) * 100
        dst = src + torch.rand(128, 4, 2, dtype=torch.float64)
        H, _ = aca_torch(src.cuda(), dst.cuda())
        torch.testing.assert_close(H.cpu(), aca_torch(src, dst)[0])
