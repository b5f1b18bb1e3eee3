"""app.inference.preprocess: the conventions shared by training and serving."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.geometry.points import patch_corners
from app.imaging import resize_gray
from app.inference import preprocess as pp


def test_resize_gray_size() -> None:
    img = np.zeros((480, 640, 3), np.uint8)
    assert resize_gray(img, pp.WORK_SIZE).shape == (240, 320)
    assert pp.prepare_pair(img, img[:100]).shape == (1, 2, 128, 128)


@given(st.integers(0, 255))
def test_normalize_round_trip(v: int) -> None:
    x = np.array([v], np.uint8)
    y = pp.normalize(x)
    assert -1.0 <= y[0] <= 1.0 and y.dtype == np.float32
    assert np.isclose(pp.denormalize(y)[0], v, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(st.integers(40, 400), st.integers(40, 400))
def test_patch_to_image_matrix_matches_cv2_resize(w: int, h: int) -> None:
    """A linear ramp resized to the patch keeps the mapping x_img = S x_patch."""
    xs = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    ys = np.tile(np.arange(h, dtype=np.float32)[:, None], (1, w))
    P = 16
    rx = cv2.resize(xs, (P, P), interpolation=cv2.INTER_LINEAR)
    ry = cv2.resize(ys, (P, P), interpolation=cv2.INTER_LINEAR)
    S = pp.patch_to_image_matrix((w, h), P)
    u, v = 7, 9  # an interior patch pixel
    q = S @ np.array([u, v, 1.0])
    assert abs(q[0] - rx[v, u]) < 1e-3 and abs(q[1] - ry[v, u]) < 1e-3


def test_targets() -> None:
    off = np.array([16.0, -32.0])
    assert np.allclose(pp.target_to_offsets(pp.offsets_to_target(off)), off)
    assert np.allclose(patch_corners(128)[2], [127, 127])


def test_centered_pair_matches_crop_of_resized() -> None:
    rng = np.random.default_rng(1)
    img = cv2.resize(rng.integers(0, 256, (30, 40), dtype=np.uint8), (640, 480))
    x, S_a, S_b = pp.prepare_centered_pair(img, img)
    assert x.shape == (1, 2, 128, 128) and np.allclose(S_a, S_b)
    work = resize_gray(img, pp.WORK_SIZE)
    assert np.allclose(pp.denormalize(x[0, 0]), work[56:184, 96:224], atol=1e-3)
    # patch pixel (0, 0) is work pixel (96, 56), i.e. image pixel (2 * 96 + 0.5, 2 * 56 + 0.5)
    assert np.allclose(S_a @ [0, 0, 1.0], [192.5, 112.5, 1.0])
