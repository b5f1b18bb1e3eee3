"""app.geometry.points: corners and point transforms, NumPy and torch twins against OpenCV."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from app.geometry.points import (
    corner_distance,
    corners_in,
    image_corners,
    image_corners_torch,
    patch_corners,
    transform_points,
    transform_points_torch,
)


def test_corners_of_images_and_patches() -> None:
    assert image_corners((4, 3)).tolist() == [[0, 0], [3, 0], [3, 2], [0, 2]]
    assert patch_corners(128).dtype == np.float32 and patch_corners(128)[2].tolist() == [127, 127]
    t = image_corners_torch((4, 3), torch.zeros(1, dtype=torch.float64))
    assert t.shape == (1, 4, 2) and t.dtype == torch.float64
    assert np.array_equal(t[0].numpy(), image_corners((4, 3)))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_transforms_match_opencv(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = image_corners((320, 240)).astype(np.float32)
    H = cv2.getPerspectiveTransform(c, c + rng.uniform(-40, 40, (4, 2)).astype(np.float32))
    pts = rng.uniform(0, 320, (16, 2))
    ref = cv2.perspectiveTransform(pts[None], H)[0]
    np.testing.assert_allclose(transform_points(H, pts)[0], ref, rtol=1e-9, atol=1e-9)
    out = transform_points_torch(torch.as_tensor(H)[None], torch.as_tensor(pts)[None])[0]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        corners_in(H, (320, 240)),
        cv2.perspectiveTransform(c[None].astype(np.float64), H)[0],
        atol=1e-9,
    )


def test_a_corner_at_infinity() -> None:
    H = np.array([[1.0, 0, 0], [0, 1.0, 0], [-1 / 319, 0, 1.0]])  # the right edge maps to w = 0
    assert corners_in(H, (320, 240)) is None
    assert corner_distance(H, np.eye(3), (320, 240)) == math.inf
    assert corner_distance(np.eye(3), np.eye(3) * 2, (320, 240)) == 0.0
