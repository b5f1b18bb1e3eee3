"""The second-order solver on synthetic pairs (B = warpPerspective(A, b_H_a)) judged by corner
error, from the identity."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from app.alignment import RefineOptions, align_gauss_newton, refine_homography, to_tensor
from app.alignment import gauss_newton as gn
from tests.alignment.helpers import corner_error, make_pair, photo

SIZE = (640, 480)


class TestConvergesFromIdentity:
    @pytest.mark.parametrize(("name", "seed"), [("camera", 0), ("astronaut", 11), ("coffee", 2)])
    def test_40px_corners_at_640x480(self, name, seed):
        a, b, H = make_pair(name, 40, seed)
        assert corner_error(np.eye(3), H, SIZE) > 15
        r = refine_homography(a, b)
        assert corner_error(r.b_H_a, H, SIZE) < 0.1
        assert r.converged and not r.budget_exhausted
        assert r.error_after.mean_abs < 0.5 * r.error_before.mean_abs
        assert [lv.level for lv in r.levels] == [4, 3, 2, 1, 0]
        assert r.b_H_a[2, 2] == 1.0

    @pytest.mark.parametrize("solver", ["gauss_newton", "levenberg_marquardt"])
    def test_both_solvers_at_320x240(self, solver):
        a, b, H = make_pair("chelsea", 20, 4, (320, 240))
        r = refine_homography(a, b, options=RefineOptions(solver=solver))
        assert corner_error(r.b_H_a, H, (320, 240)) < 0.1

    def test_close_init_and_any_scale_of_it(self):
        a, b, H = make_pair("brick", 40, 7)
        init = H + np.array([[0, 0, 3.0], [0, 0, -2.0], [0, 0, 0]])
        r = refine_homography(a, b, 5.0 * init)  # a homography is defined up to scale
        assert corner_error(r.b_H_a, H, SIZE) < 0.1

    def test_images_of_different_sizes(self):
        a = photo("coffee", (400, 300))
        H = np.array([[0.9, 0.05, 20.0], [-0.04, 0.95, 10.0], [1e-5, 2e-5, 1.0]])
        b = cv2.warpPerspective(a, H, (360, 280))
        r = refine_homography(a, b, np.diag([0.92, 0.93, 1.0]))
        assert corner_error(r.b_H_a, H, (400, 300)) < 0.1


class TestLargeMotion:
    def test_coarse_search_rescues_a_25_percent_warp(self):
        size = (320, 240)
        a, b, H = make_pair("coins", 0.25, 0, size, border=cv2.BORDER_REFLECT_101)
        assert corner_error(np.eye(3), H, size) > 30
        no_search = refine_homography(a, b, options=RefineOptions(search=False))
        assert corner_error(no_search.b_H_a, H, size) > 5
        r = refine_homography(a, b)
        assert corner_error(r.b_H_a, H, size) < 0.1 and r.converged


class TestPhotometric:
    def test_gain_bias_handles_brightness_and_contrast(self):
        a, b, H = make_pair("astronaut", 40, 11)
        b = np.clip(0.6 * b.astype(np.float32) + 60, 0, 255).astype(np.uint8)
        assert corner_error(refine_homography(a, b).b_H_a, H, SIZE) < 0.05
        raw = refine_homography(a, b, options=RefineOptions(photometric="none"))
        assert corner_error(raw.b_H_a, H, SIZE) > 0.2  # the test can tell the two apart

    def test_huber_resists_an_occluder(self):
        a, b, H = make_pair("coffee", 40, 2)
        b[60:260, 200:500] = photo("text", (300, 200))  # 20% of B replaced by another picture
        plain = refine_homography(a, b, compute_errors=False)
        huber = refine_homography(a, b, options=RefineOptions(robust="huber"), compute_errors=False)
        assert corner_error(huber.b_H_a, H, SIZE) < 0.1
        assert corner_error(plain.b_H_a, H, SIZE) > 2 * corner_error(huber.b_H_a, H, SIZE)


class TestMask:
    def test_pixels_outside_the_mask_are_ignored(self):
        a, _, H = make_pair("astronaut", 40, 11)
        b = cv2.warpPerspective(a, H, SIZE)  # B from the clean A
        rng = np.random.default_rng(0)
        mask = np.zeros(a.shape, bool)
        mask[60:420, 80:560] = True
        noisy = a.copy()
        noisy[~mask] = rng.integers(0, 256, int((~mask).sum()), dtype=np.uint8)
        with_mask = refine_homography(noisy, b, mask_a=mask, compute_errors=False)
        without = refine_homography(noisy, b, compute_errors=False)
        assert corner_error(with_mask.b_H_a, H, SIZE) < 0.1
        assert corner_error(without.b_H_a, H, SIZE) > 0.5


class TestBudget:
    def test_iteration_budget_returns_best_so_far_flagged(self):
        a, b, H = make_pair("camera", 40, 0)
        r = refine_homography(a, b, options=RefineOptions(max_total_iterations=12))
        assert r.budget_exhausted and not r.converged
        assert r.iterations == 12
        assert np.isfinite(r.b_H_a).all()
        assert corner_error(r.b_H_a, H, SIZE) < corner_error(np.eye(3), H, SIZE)
        assert r.error_after.mean_abs <= r.error_before.mean_abs

    def test_time_budget(self):
        a, b, _ = make_pair("camera", 40, 0)
        r = refine_homography(a, b, options=RefineOptions(max_seconds=1e-6))
        assert r.budget_exhausted and not r.converged and r.iterations == 0
        np.testing.assert_allclose(r.b_H_a, np.eye(3), atol=1e-12)  # nothing better seen

    def test_level_iterations_cap_is_not_a_budget(self):
        a, b, _ = make_pair("camera", 40, 0)
        r = refine_homography(a, b, options=RefineOptions(max_iterations=1))
        assert not r.budget_exhausted and not r.converged


class TestShapes:
    def test_rejects_batched_input(self):
        a = torch.rand(2, 1, 32, 32)
        with pytest.raises(ValueError, match="image_a"):
            align_gauss_newton(a, a)

    def test_identical_images_stay_at_identity(self):
        a = to_tensor(photo("camera", (160, 120)), "a")
        r = align_gauss_newton(a, a)
        assert corner_error(r.b_H_a, np.eye(3), (160, 120)) < 1e-3

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    def test_cuda_matches_cpu(self):
        a, b, H = make_pair("camera", 40, 0)
        r = refine_homography(a, b, device="cuda")
        assert corner_error(r.b_H_a, H, SIZE) < 0.1


class TestCpuKernels:
    """The CPU path (fused Numba passes) against the torch ops that run on CUDA, on the CPU."""

    @pytest.mark.parametrize("masked", [False, True])
    @pytest.mark.parametrize(
        "opts",
        [
            RefineOptions(),
            RefineOptions(photometric="none"),
            RefineOptions(robust="huber"),
            RefineOptions(robust="tukey", photometric="none"),
        ],
        ids=["gain_bias", "raw", "huber", "tukey"],
    )
    def test_evaluation_matches_torch(self, opts, masked):
        a, b, H = make_pair("camera", 20, 0, (160, 120))
        ta, tb = to_tensor(a, "a"), to_tensor(b, "b")
        mask = None
        if masked:
            mask = torch.zeros_like(ta, dtype=torch.bool)
            mask[..., 10:100, 20:150] = True
        tpl = gn._template(ta, mask, 1)
        reference = dataclasses.replace(tpl, cpu=None)
        shift = np.array([[1, 0.01, 2.0], [0, 1, -1.5], [0, 0, 1]])
        # all of A inside B, some of it outside (the two Hessian updates), a step off the truth
        for Hs in (
            np.eye(3),
            H,
            H @ shift,
            np.diag([1.0, 1.0, 1.0]) + [[0, 0, 70], [0, 0, 0], [0] * 3],
        ):
            ours = gn._evaluate(tpl, tb[0, 0].numpy(), Hs, opts)
            ref = gn._evaluate(reference, tb, Hs, opts)
            assert ours.n == ref.n
            np.testing.assert_allclose(ours.cost, ref.cost, rtol=1e-3)
            np.testing.assert_allclose(ours.score, ref.score, rtol=1e-4)
            # torch sums in float32; the robust weights follow a median of those sums
            tol = (2e-3 if opts.robust == "none" else 1e-2) * np.abs(ref.grad).max()
            np.testing.assert_allclose(ours.grad, ref.grad, rtol=0, atol=tol)
            np.testing.assert_allclose(ours.hess, ref.hess, rtol=1e-3, atol=1e-5 * ref.hess.max())

    def test_points_behind_the_camera_are_outside(self):
        a = to_tensor(photo("camera", (64, 48)), "a")
        tpl = gn._template(a, None, 1)
        flip = np.diag([-1.0, -1.0, -1.0])  # the same pixels, w < 0: nothing is in front
        assert gn._evaluate(tpl, a[0, 0].numpy(), flip, RefineOptions()) is None
        assert (
            gn._evaluate(tpl, a[0, 0].numpy(), np.eye(3), RefineOptions()).n == tpl.values.numel()
        )
