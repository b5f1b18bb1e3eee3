"""app.features.matching: keypoint homographies checked against the true map of synthetic pairs."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage

from app.features.matching import FeatureOptions, estimate_features
from tests.alignment.helpers import corner_error, random_homography

REFLECT = cv2.BORDER_REFLECT_101


@cache
def astronaut(size: tuple[int, int]) -> np.ndarray:
    """scikit-image's astronaut as (H, W, 3) uint8 BGR, resized to ``size`` = (w, h)."""
    img = cv2.imread(str(Path(skimage.data_dir) / "astronaut.png"), cv2.IMREAD_COLOR)
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    out.setflags(write=False)
    return out


def warped_pair(
    size: tuple[int, int], rho: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, b_H_a) with B = A seen through a random ``b_H_a`` (corners moved by ``rho``)."""
    a = astronaut(size)
    H = random_homography(size, rho, seed)
    b = cv2.warpPerspective(a, H, size, flags=cv2.INTER_LINEAR, borderMode=REFLECT)
    return a, b, H


# corner error allowed per detector (px): SIFT localises keypoints better than ORB
TOLERANCE = {"sift": 0.3, "orb": 0.75}


@pytest.mark.parametrize("robust", ["aca", "usac"])
@pytest.mark.parametrize("detector", ["sift", "orb"])
@pytest.mark.parametrize("seed", [1, 2])
def test_recovers_known_homography(detector: str, robust: str, seed: int) -> None:
    size = (320, 240)
    a, b, H = warped_pair(size, 0.1, seed)
    r = estimate_features(a, b, FeatureOptions(detector=detector, robust=robust))
    assert r.detail is None and r.b_H_a is not None
    assert r.b_H_a.shape == (3, 3) and r.b_H_a.dtype == np.float64
    assert r.b_H_a[2, 2] == pytest.approx(1.0, abs=1e-12)
    assert corner_error(r.b_H_a, H, size) < TOLERANCE[detector]
    assert r.scale == 1.0
    assert min(r.keypoints) >= 100 and r.matches >= 50
    assert 0.8 <= r.inlier_ratio <= 1.0 and r.inliers <= r.matches
    assert 0 <= r.rms_px < FeatureOptions().threshold_px and r.seconds > 0


def test_gray_input_gives_the_colour_result() -> None:
    a, b, _ = warped_pair((320, 240), 0.1, 1)
    gray = [cv2.cvtColor(x, cv2.COLOR_BGR2GRAY) for x in (a, b)]
    np.testing.assert_array_equal(estimate_features(*gray).b_H_a, estimate_features(a, b).b_H_a)


# at about a third of the resolution ORB's keypoints are coarse (several px in the original
# image); a matrix left in working pixels would be off by over 100 px
@pytest.mark.parametrize(("detector", "tolerance"), [("sift", 1.0), ("orb", 10.0)])
def test_working_resolution_returns_original_pixels(detector: str, tolerance: float) -> None:
    size = (640, 480)
    a, b, H = warped_pair(size, 0.1, 3)
    r = estimate_features(a, b, FeatureOptions(detector=detector, max_pixels=40_000))
    assert r.scale == pytest.approx(math.sqrt(40_000 / (640 * 480)), rel=0.01)
    assert r.b_H_a is not None
    assert corner_error(r.b_H_a, H, size) < tolerance


def test_working_resolution_with_different_sizes() -> None:
    """A at 640x480, B at 320x240: A and B are shrunk by different factors, both undone."""
    a = astronaut((640, 480))
    half = np.array([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]])  # pixel centres kept
    truth = half @ random_homography((640, 480), 0.1, 3)
    b = cv2.warpPerspective(
        cv2.GaussianBlur(a, (0, 0), 1.0),
        truth,
        (320, 240),
        flags=cv2.INTER_LINEAR,
        borderMode=REFLECT,
    )
    for max_pixels in (1_000_000, 40_000):
        r = estimate_features(a, b, FeatureOptions(max_pixels=max_pixels))
        assert r.b_H_a is not None
        assert corner_error(r.b_H_a, truth, (640, 480)) < 0.5, max_pixels


@pytest.mark.parametrize("detector", ["sift", "orb"])
@pytest.mark.parametrize("channels", [1, 3])
def test_flat_images_have_no_estimate(detector: str, channels: int) -> None:
    shape = (240, 320) if channels == 1 else (240, 320, 3)
    flat = np.full(shape, 128, np.uint8)
    r = estimate_features(flat, flat, FeatureOptions(detector=detector))
    assert r.b_H_a is None
    assert r.detail is not None and "keypoints" in r.detail
    assert r.keypoints == (0, 0) and r.matches == 0 and r.inliers == 0
    assert r.inlier_ratio == 0.0 and math.isnan(r.rms_px)


def test_one_flat_image_has_no_estimate() -> None:
    a, _, _ = warped_pair((320, 240), 0.1, 1)
    r = estimate_features(a, np.full_like(a, 40))
    assert r.b_H_a is None and "keypoints" in r.detail
    assert r.keypoints[0] > 100 and r.keypoints[1] == 0


@pytest.mark.parametrize(
    "kw",
    [
        {"detector": "surf"},
        {"robust": "lmeds"},
        {"max_features": 4},
        {"max_features": 200_000},
        {"ratio": 0.0},
        {"ratio": 1.5},
        {"threshold_px": 0.0},
        {"threshold_px": math.nan},
        {"threshold_px": math.inf},
        {"confidence": 1.0},
        {"confidence": 0.0},
        {"max_iterations": 0},
        {"max_pixels": 1000},
    ],
)
def test_options_reject_bad_values(kw: dict) -> None:
    (name,) = kw
    with pytest.raises(ValueError, match=name):
        FeatureOptions(**kw)


def test_options_accept_the_limits() -> None:
    o = FeatureOptions(max_features=8, ratio=1.0, max_iterations=1, max_pixels=4096)
    assert o.ratio == 1.0 and o.max_pixels == 4096


@pytest.mark.parametrize("detector", ["sift", "orb"])
def test_deterministic_for_a_seed(detector: str) -> None:
    a, b, _ = warped_pair((320, 240), 0.15, 4)
    opts = FeatureOptions(detector=detector, seed=7)
    r1, r2 = estimate_features(a, b, opts), estimate_features(a, b, opts)
    assert r1.b_H_a is not None
    np.testing.assert_array_equal(r1.b_H_a, r2.b_H_a)
    assert (r1.keypoints, r1.matches, r1.inliers, r1.rms_px) == (
        r2.keypoints,
        r2.matches,
        r2.inliers,
        r2.rms_px,
    )
