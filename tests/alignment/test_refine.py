"""Input checks of refine_homography and the tutorial baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.alignment import (
    AlignmentInputError,
    align_tutorial_adam,
    check_homography,
    overlay_image,
    refine_homography,
    to_tensor,
)
from tests.alignment.helpers import corner_error, make_pair, photo


class TestCheckHomography:
    @pytest.mark.parametrize(
        ("H", "match"),
        [
            (np.zeros((3, 3)), "all zeros"),
            ([[1, 2, 3], [2, 4, 6], [0, 0, 1]], "singular"),
            ([[1, 0, np.nan], [0, 1, 0], [0, 0, 1]], "non-finite"),
            ([[1, 0, np.inf], [0, 1, 0], [0, 0, 1]], "non-finite"),
            ([[1, 0, 0], [0, 1, 0]], "3x3"),
            ([[1, 0, 0], [0, 1, 0], [0, 1, 0]], "H\\[2\\]\\[2\\]"),
            ("abc", "numeric"),
        ],
    )
    def test_rejects_with_the_field_named(self, H, match):
        with pytest.raises(AlignmentInputError, match=match) as exc:
            check_homography(H, "init")
        assert exc.value.field == "init"

    def test_normalises_h33(self):
        H = check_homography(2 * np.array([[1.0, 0.1, 3], [0, 1, 4], [0, 0, 1]]))
        assert H[2, 2] == 1.0 and H[0, 2] == 3.0

    def test_refine_rejects_bad_init_and_mask(self):
        a = photo("camera", (64, 48))
        with pytest.raises(AlignmentInputError, match="init"):
            refine_homography(a, a, np.full((3, 3), np.nan))
        with pytest.raises(AlignmentInputError, match="mask"):
            refine_homography(a, a, mask_a=np.ones((10, 10), bool))


class TestOverlay:
    def test_size_guard_and_colours(self):
        a, b, H = make_pair("camera", 20, 0, (320, 240))
        img = overlay_image(to_tensor(a, "a"), to_tensor(b, "b"), H, max_side=100)
        assert img.shape == (75, 100, 3) and img.dtype == np.uint8
        # aligned: warped A (channels 0, 2) matches B (channel 1) on the interior
        inner = img[10:-10, 10:-10].astype(int)
        assert np.abs(inner[..., 0] - inner[..., 1]).mean() < 8


class TestTutorial:
    def test_adam_loop_improves_on_the_identity(self):
        a, b, H = make_pair("coffee", 4, 1, (160, 120))
        ta, tb = to_tensor(a, "a"), to_tensor(b, "b")
        start = corner_error(np.eye(3), H, (160, 120))
        out = align_tutorial_adam(ta, tb, num_levels=2, num_iterations=30)
        assert out.shape == (3, 3) and out[2, 2] == pytest.approx(1.0)
        assert corner_error(out, H, (160, 120)) < 0.5 * start

    def test_identity_is_a_fixed_point(self):
        a = to_tensor(photo("camera", (64, 48)), "a")
        out = align_tutorial_adam(a, a, num_levels=2, num_iterations=5)
        assert corner_error(out, np.eye(3), (64, 48)) < 0.5
        assert torch.is_tensor(a)
