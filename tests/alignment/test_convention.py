"""b_H_a follows cv2.warpPerspective's direction, and the Kornia warp we use agrees with OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from kornia.geometry.transform import warp_perspective

from app.alignment import photometric_error, refine_homography, to_tensor
from app.alignment.gauss_newton import sample_at
from tests.alignment.helpers import corner_error, make_pair, photo, random_homography


class TestKorniaWarpMatchesOpenCV:
    def test_interior_pixels_agree(self):
        size = (320, 240)
        a = cv2.GaussianBlur(photo("astronaut", size), (0, 0), 2.0).astype(np.float32)
        H = random_homography(size, 20, seed=3)
        ref = cv2.warpPerspective(a, H, size, flags=cv2.INTER_LINEAR)
        ta = torch.from_numpy(a)[None, None]
        got = warp_perspective(
            ta, torch.from_numpy(H).float()[None], (240, 320), align_corners=True
        )
        ones = warp_perspective(
            torch.ones_like(ta), torch.from_numpy(H).float()[None], (240, 320), align_corners=True
        )
        interior = cv2.erode((ones[0, 0].numpy() > 0.999).astype(np.uint8), np.ones((5, 5))) > 0
        assert interior.mean() > 0.5
        diff = np.abs(got[0, 0].numpy() - ref)[interior]
        assert diff.mean() < 0.05, diff.mean()
        # and a shifted matrix is clearly not the same warp (the test can tell them apart)
        H_off = np.array([[1, 0, 0.5], [0, 1, 0], [0, 0, 1.0]]) @ H
        off = warp_perspective(
            ta, torch.from_numpy(H_off).float()[None], (240, 320), align_corners=True
        )
        assert np.abs(off[0, 0].numpy() - ref)[interior].mean() > 0.2


class TestSolverSamplingMatchesOpenCV:
    def test_sample_at_is_warpPerspective_inverse_map(self):
        """The solver's own sampler: B at b_H_a x for every pixel x of A."""
        size = (320, 240)
        b = cv2.GaussianBlur(photo("coffee", size), (0, 0), 2.0).astype(np.float32)
        H = random_homography(size, 20, seed=8)
        ref = cv2.warpPerspective(b, H, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        ys, xs = np.mgrid[0:240, 0:320]
        pts = torch.from_numpy(
            np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)]).astype(np.float32)
        )
        values, inside = sample_at(torch.from_numpy(b)[None, None], torch.from_numpy(H), pts)
        values, inside = values.numpy().reshape(240, 320), inside.numpy().reshape(240, 320)
        interior = cv2.erode(inside.astype(np.uint8), np.ones((5, 5))) > 0
        assert interior.mean() > 0.5
        assert np.abs(values - ref)[interior].mean() < 0.05
        # inside means all bilinear neighbours exist: the projected points are within B
        p = H @ np.stack([xs[inside], ys[inside], np.ones(inside.sum())])
        q = p[:2] / p[2]
        assert q.min() >= -1e-3 and q[0].max() <= 319.001 and q[1].max() <= 239.001


class TestDirection:
    def test_refine_recovers_the_matrix_given_to_warpPerspective(self):
        a, b, H = make_pair("coffee", rho=12, seed=5, size=(320, 240))
        r = refine_homography(a, b)
        assert corner_error(r.b_H_a, H, (320, 240)) < 0.1
        assert corner_error(np.linalg.inv(r.b_H_a), H, (320, 240)) > 5  # not the inverse

    def test_photometric_error_is_small_at_the_truth_only(self):
        a, b, H = make_pair("camera", rho=12, seed=1, size=(320, 240))
        ta, tb = to_tensor(a, "a"), to_tensor(b, "b")
        at_truth = photometric_error(ta, tb, H)
        at_inverse = photometric_error(ta, tb, np.linalg.inv(H))
        assert (
            at_truth.mean_abs < 4.0 and at_inverse.mean_abs > 4 * at_truth.mean_abs
        )  # resampling blur
        assert 0.5 < at_truth.overlap <= 1.0
