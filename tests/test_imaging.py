"""app.imaging: gray conversion, the half-pixel resize matrix (against cv2.resize) and the
working-resolution pair (homographies round-trip between the frames)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.ndimage
from hypothesis import given, settings
from hypothesis import strategies as st

from app.geometry.points import corner_distance
from app.imaging import (
    local_contrast,
    resize_gray,
    resize_matrix,
    shrink_pair,
    shrink_to,
    to_gray,
)


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


# ------------------------------------------------------------------------------ local_contrast


def texture(seed: int = 0, shape: tuple[int, int] = (120, 160)) -> np.ndarray:
    """(H, W) float32 in [0.2, 0.8]: fine random texture (plenty of local contrast)."""
    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 1.5)
    return (x - x.min()) / (x.max() - x.min()) * 0.6 + 0.2


INNER = (slice(12, -12), slice(12, -12))  # 3 sigma from the border


class TestLocalContrast:
    def test_matches_the_documented_formula(self) -> None:
        """Against the formula evaluated with SciPy's Gaussian filter (reflect borders)."""
        x = texture(1)
        for sigma, floor in ((4.0, 0.03), (2.0, 0.1)):
            d = x - scipy.ndimage.gaussian_filter(x.astype(np.float64), sigma, mode="reflect")
            s = scipy.ndimage.gaussian_filter(d * d, sigma, mode="reflect")
            y = np.clip(0.5 + 0.15 * d / np.sqrt(s + floor**2), 0, 1)
            np.testing.assert_allclose(local_contrast(x, sigma, floor), y, atol=2e-4)

    @pytest.mark.parametrize("shape", [(40, 50), (40, 50, 3)])
    def test_range_dtype_and_shape(self, shape: tuple[int, ...]) -> None:
        img = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
        y = local_contrast(img)
        assert y.shape == (40, 50) and y.dtype == np.float32
        assert y.min() >= 0.0 and y.max() <= 1.0
        # uint8 is divided by 255: the same as the float image in [0, 1]
        gray = to_gray(img).astype(np.float32) / 255
        np.testing.assert_allclose(y, local_contrast(gray), atol=1e-6)

    @pytest.mark.parametrize("value", [0, 37, 128, 255])
    def test_flat_image_stays_flat(self, value: int) -> None:
        for img in (np.full((30, 40), value, np.uint8), np.full((30, 40), value / 255, np.float32)):
            np.testing.assert_allclose(local_contrast(img), 0.5, atol=1e-5)

    def test_isolated_points_are_clipped(self) -> None:
        img = np.full((40, 40), 100, np.uint8)
        img[20, 20], img[10, 30] = 255, 0
        y = local_contrast(img)
        assert y[20, 20] == 1.0 and y[10, 30] == 0.0

    def test_floor_keeps_faint_noise_faint(self) -> None:
        rng = np.random.default_rng(3)
        flat = 0.5 + rng.normal(0, 0.002, (60, 80)).astype(np.float32)
        assert np.abs(local_contrast(flat) - 0.5).max() < 0.06
        assert local_contrast(flat, floor=1e-6).std() > 0.1  # without it: full contrast

    @settings(max_examples=30, deadline=None)
    @given(st.floats(0.3, 3.0), st.floats(-0.5, 0.5))
    def test_gain_and_bias_cancel_exactly_without_floor(self, gain: float, bias: float) -> None:
        x = texture(4)
        ref = local_contrast(x, floor=1e-5)
        out = local_contrast(x * gain + bias, floor=1e-5)
        assert np.abs(out - ref).max() < 2e-3

    @pytest.mark.parametrize(("gain", "bias"), [(0.7, 0.0), (1.5, 0.0), (1.0, 0.2), (2.0, -0.3)])
    def test_gain_and_bias_nearly_cancel_with_the_floor(self, gain: float, bias: float) -> None:
        x = texture(5)
        lit = x * gain + bias
        assert np.abs(lit - x).mean() > 0.05  # the input does change
        d = np.abs(local_contrast(lit) - local_contrast(x))[INNER]
        assert np.median(d) < 0.015 and np.percentile(d, 99) < 0.05

    def test_pure_bias_cancels_to_rounding(self) -> None:
        x = texture(6)
        np.testing.assert_allclose(local_contrast(x + 0.15), local_contrast(x), atol=1e-5)

    @pytest.mark.parametrize("field", ["ramp", "vignetting"])
    def test_smooth_illumination_is_removed(self, field: str) -> None:
        """A multiplicative light field that varies slowly against sigma: locally a gain."""
        x = texture(7)
        h, w = x.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        if field == "ramp":
            light = 0.5 + xs / (w - 1)  # 0.5 -> 1.5 across the image
        else:
            light = 1.0 - 0.25 * (((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2)
        lit = x * light
        base = local_contrast(x)
        d = np.abs(local_contrast(lit) - base)[INNER]
        assert np.median(d) < 0.01 and np.percentile(d, 99) < 0.05
        # the raw images differ far more than that
        assert np.median(np.abs(lit - x)[INNER]) > 0.05

    def test_ramp_docstring_example(self) -> None:
        x = np.tile(np.linspace(0, 255, 64), (32, 1)).astype(np.uint8)
        assert np.abs(local_contrast(x)[8:-8, 8:-8] - 0.5).max() < 0.05
        # a step is kept: the structure that alignment needs
        step = np.zeros((32, 64), np.uint8)
        step[:, 32:] = 200
        y = local_contrast(step)
        assert y[16, 31] < 0.35 and y[16, 32] > 0.65  # dark side down, bright side up
        assert abs(y[16, 5] - 0.5) < 0.01 and abs(y[16, 60] - 0.5) < 0.01  # far: flat
