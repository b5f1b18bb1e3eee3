"""app.imaging: gray conversion, the half-pixel resize matrix (against cv2.resize) and the
working-resolution pair (homographies round-trip between the frames)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.geometry.points import corner_distance
from app.imaging import resize_gray, resize_matrix, shrink_pair, shrink_to, to_gray


class TestToGray:
    @pytest.mark.parametrize("shape", [(7, 9), (7, 9, 1), (7, 9, 3), (7, 9, 4)])
    def test_shapes(self, shape: tuple[int, ...]) -> None:
        img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        assert to_gray(img).shape == (7, 9)

    def test_rgb_vs_bgr(self) -> None:
        img = np.zeros((2, 2, 3), np.uint8)
        img[..., 0] = 255  # blue in BGR, red in RGB
        assert to_gray(img, "bgr")[0, 0] < to_gray(img, "rgb")[0, 0]

    def test_bad_shape(self) -> None:
        with pytest.raises(ValueError, match="expected"):
            to_gray(np.zeros((2, 2, 5), np.uint8))

    @pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
    def test_matches_opencv_for_every_dtype(self, dtype) -> None:
        img = np.random.default_rng(1).integers(0, 256, (5, 6, 3)).astype(np.uint8)
        ref = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_BGR2GRAY)
        out = to_gray(img.astype(dtype))
        assert out.dtype == (np.uint8 if dtype == np.uint8 else np.float32)
        assert np.allclose(out, ref, atol=0.5 if dtype == np.uint8 else 1e-4)


def test_resize_gray_keeps_the_size_it_is_asked_for() -> None:
    img = np.zeros((480, 640, 3), np.uint8)
    assert resize_gray(img, (320, 240)).shape == (240, 320)
    assert resize_gray(img[:100, :100], (320, 240)).shape == (240, 320)


@settings(max_examples=25, deadline=None)
@given(st.integers(20, 300), st.integers(20, 300), st.integers(8, 64), st.integers(8, 64))
def test_resize_matrix_matches_cv2_resize(w: int, h: int, w2: int, h2: int) -> None:
    """A linear ramp resized by OpenCV is the ramp's coordinate mapped by dst_T_src."""
    xs = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    ys = np.tile(np.arange(h, dtype=np.float32)[:, None], (1, w))
    rx = cv2.resize(xs, (w2, h2), interpolation=cv2.INTER_LINEAR)
    ry = cv2.resize(ys, (w2, h2), interpolation=cv2.INTER_LINEAR)
    src_T_dst = np.linalg.inv(resize_matrix((w, h), (w2, h2)))
    u, v = w2 // 2, h2 // 2  # an interior pixel of the resized image
    q = src_T_dst @ np.array([u, v, 1.0])
    assert abs(q[0] - rx[v, u]) < 1e-3 and abs(q[1] - ry[v, u]) < 1e-3


def test_shrink_to_leaves_small_images_alone() -> None:
    img = np.zeros((40, 50), np.uint8)
    small, T = shrink_to(img, 10_000)
    assert small is img and np.array_equal(T, np.eye(3))


def test_shrink_pair_moves_a_homography_between_the_frames() -> None:
    """A homography between the originals, moved to the working images and back, is itself;
    in the working frame it lines the shrunk images up as it lines up the originals."""
    rng = np.random.default_rng(2)
    a = cv2.GaussianBlur((rng.random((480, 640)) * 255).astype(np.uint8), (0, 0), 3)
    H = np.array([[1.02, 0.01, 8.0], [-0.015, 0.99, -5.0], [1e-5, -2e-5, 1.0]])
    b = cv2.warpPerspective(a, H, (600, 400))
    pair = shrink_pair(a, b, 40_000)
    assert 0.2 < pair.scale < 0.4 and pair.a.shape[1] * pair.a.shape[0] <= 40_000
    assert np.allclose(pair.to_original(pair.to_work(H)), H)
    # the working map sends the working A's corners where the shrunk B shows them
    Hw = pair.to_work(H)
    expected = cv2.warpPerspective(pair.a, Hw, pair.b.shape[::-1])
    inner = (slice(10, -10), slice(10, -10))
    diff = np.abs(expected[inner].astype(float) - pair.b[inner].astype(float))
    assert np.median(diff) < 3.0
    assert corner_distance(pair.to_original(Hw), H, (640, 480)) < 1e-9
