"""app.alignment.consistency: NCC and gradient NCC of A against B warped onto A."""

from __future__ import annotations

import itertools
import math
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from app.alignment.consistency import Consistency, ConsistencyScorer, photometric_consistency
from tests.alignment.helpers import random_homography

SIZE = (320, 240)


@cache
def gray_photo(size: tuple[int, int] = SIZE) -> np.ndarray:
    """scikit-image's astronaut as (H, W) uint8 gray of ``size`` = (w, h)."""
    img = cv2.imread(str(Path(skimage.data_dir) / "astronaut.png"), cv2.IMREAD_GRAYSCALE)
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    out.setflags(write=False)
    return out


def warped_pair(rho: float = 0.1, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, b_H_a), B = A warped by b_H_a (reflected border, so B has no black area)."""
    a = gray_photo()
    H = random_homography(SIZE, rho, seed)
    b = cv2.warpPerspective(a, H, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return a, b, H


def shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]])


def test_gain_and_bias_change_keeps_correlations_at_one() -> None:
    a = gray_photo()
    b = np.clip(0.6 * a.astype(np.float32) + 40, 0, 255).astype(np.uint8)  # no clipping here
    c = photometric_consistency(a, b, np.eye(3))
    assert c.ncc == pytest.approx(1.0, abs=2e-3)
    assert c.gradient_ncc == pytest.approx(1.0, abs=1e-2)
    assert c.overlap == 1.0 and c.usable
    assert c.mean_abs < 1.0  # after the gain/bias fit only rounding is left
    assert c.score == pytest.approx(0.5 * (c.ncc + c.gradient_ncc))


def test_negative_image_anticorrelates() -> None:
    a = gray_photo()
    c = photometric_consistency(a, 255 - a, np.eye(3))
    assert c.ncc == pytest.approx(-1.0, abs=1e-6)
    assert c.gradient_ncc == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_truth_scores_higher_than_a_perturbed_homography(seed: int, sigma: float) -> None:
    a, b, H = warped_pair(0.1, seed)
    scorer = ConsistencyScorer(a, b, sigma=sigma)
    true = scorer(H)
    assert true.usable and true.overlap > 0.8
    assert true.ncc > 0.97 and true.gradient_ncc > 0.9
    for dx, dy in [(3, 0), (0, -3), (2, 2)]:
        off = scorer(shift(dx, dy) @ H)
        assert off.usable
        assert off.score < true.score - 0.05, (dx, dy)
        assert off.gradient_ncc < true.gradient_ncc
        assert off.ncc < true.ncc
        assert off.mean_abs > true.mean_abs


def test_scores_fall_with_the_misalignment() -> None:
    a, b, H = warped_pair(0.1, 1)
    scorer = ConsistencyScorer(a, b)
    scores = [scorer(shift(d, 0) @ H).score for d in (0, 0.5, 1, 2, 4, 8)]
    assert all(x > y for x, y in itertools.pairwise(scores)), scores


def test_outside_b_has_no_overlap() -> None:
    a, b, _ = warped_pair()
    c = photometric_consistency(a, b, shift(1000, 0))
    assert c.overlap == 0.0
    assert math.isnan(c.ncc) and math.isnan(c.mean_abs) and math.isnan(c.gradient_ncc)
    assert not c.usable and math.isnan(c.score)


def test_partial_overlap_fraction() -> None:
    """A shifted by half its width: about half of A lands inside B."""
    a, b, _ = warped_pair()
    c = photometric_consistency(a, b, shift(SIZE[0] / 2, 0), sigma=0)
    assert c.overlap == pytest.approx(0.5, abs=0.01)
    assert c.usable


@pytest.mark.parametrize("H", [np.full((3, 3), np.nan), np.zeros((3, 3)), np.eye(2)])
def test_degenerate_matrices_are_unusable(H: np.ndarray) -> None:
    a, b, _ = warped_pair()
    c = photometric_consistency(a, b, H)
    assert not c.usable and c.overlap == 0.0


@pytest.mark.parametrize("which", ["a", "b", "both"])
def test_flat_images_give_nan(which: str) -> None:
    a, b, _ = warped_pair()
    flat = np.full_like(a, 90)
    a = flat if which in ("a", "both") else a
    b = flat if which in ("b", "both") else b
    c = photometric_consistency(a, b, np.eye(3))
    assert c.overlap == 1.0
    assert math.isnan(c.ncc) and math.isnan(c.gradient_ncc) and not c.usable


def test_uint8_float_and_tensor_inputs_agree() -> None:
    a, b, H = warped_pair(0.1, 2)
    H = shift(1.5, -0.5) @ H
    af, bf = a.astype(np.float32) / 255, b.astype(np.float32) / 255
    variants = {
        "uint8": (a, b),
        "float32": (af, bf),
        "float64": (af.astype(np.float64), bf.astype(np.float64)),
        "tensor": (torch.from_numpy(af)[None, None], torch.from_numpy(bf)[None, None]),
        "tensor2d": (torch.from_numpy(af), torch.from_numpy(bf).double()),
        "bgr": (cv2.cvtColor(a, cv2.COLOR_GRAY2BGR), cv2.cvtColor(b, cv2.COLOR_GRAY2BGR)),
    }
    ref = photometric_consistency(a, b, H)
    assert ref.usable
    for name, (x, y) in variants.items():
        c = photometric_consistency(x, y, H)
        for field in ("ncc", "gradient_ncc", "overlap", "mean_abs"):
            got, want = getattr(c, field), getattr(ref, field)
            tol = 1e-3 if field == "mean_abs" else 1e-5  # mean_abs is in gray levels
            assert got == pytest.approx(want, abs=tol), (name, field)


def test_scorer_matches_the_function() -> None:
    a, b, H = warped_pair(0.1, 3)
    scorer = ConsistencyScorer(a, b, sigma=1.5)
    for G in (H, shift(2, 1) @ H, np.eye(3)):
        assert scorer(G) == photometric_consistency(a, b, G, sigma=1.5)


def test_score_is_the_mean_of_the_correlations() -> None:
    assert Consistency(0.8, 1.0, 3.0, 0.4).score == pytest.approx(0.6)
    assert Consistency(-0.2, 0.5, 3.0, 1.0).score == pytest.approx(0.4)
    assert math.isnan(Consistency(0.8, 1.0, 3.0).score)  # no gradient NCC: unusable
    assert math.isnan(Consistency(math.nan, 1.0, 3.0, 0.5).score)
    a, b, H = warped_pair(0.1, 1)
    c = photometric_consistency(a, b, shift(1, 0) @ H)
    assert c.ncc != c.gradient_ncc
    assert c.score == pytest.approx(0.5 * (c.ncc + c.gradient_ncc), abs=1e-12)


def test_ncc_matches_a_numpy_reference() -> None:
    """sigma=0, B bigger than A and A well inside it: every pixel of A is in the overlap."""
    big = gray_photo((480, 360))
    b = cv2.GaussianBlur(big, (0, 0), 0.7)  # something other than A's own pixels
    a = gray_photo()
    # A's pixels land in B's middle, with a mild perspective
    H = random_homography(SIZE, 6.0, 9) @ shift(80, 60)
    H = H / H[2, 2]
    c = photometric_consistency(a, b, H, sigma=0)
    assert c.overlap == 1.0
    y = cv2.warpPerspective(
        b.astype(np.float32) / 255,
        H,
        SIZE,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    ).astype(np.float64)
    x = a.astype(np.float64) / 255
    xc, yc = x - x.mean(), y - y.mean()
    want = float((xc * yc).sum() / np.sqrt((xc * xc).sum() * (yc * yc).sum()))
    assert 0.1 < abs(want) < 0.99  # a non-trivial value
    assert c.ncc == pytest.approx(want, abs=1e-4)
    # mean_abs: |A - (gain B + bias)| with the least-squares gain and bias, in gray levels
    gain = (xc * yc).sum() / (yc * yc).sum()
    assert c.mean_abs == pytest.approx(np.abs(xc - gain * yc).mean() * 255, abs=1e-2)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.2, 5.0), st.floats(-0.3, 0.3))
def test_gain_bias_invariance_property(gain: float, bias: float) -> None:
    a, b, H = warped_pair(0.1, 1)
    af, bf = a.astype(np.float32) / 255, b.astype(np.float32) / 255
    G = shift(1.0, 0.5) @ H  # slightly off, so the correlations are not saturated at 1
    ref = photometric_consistency(af, bf, G)
    c = photometric_consistency(af, (gain * bf + bias).astype(np.float32), G)
    assert ref.ncc < 0.999 and ref.gradient_ncc < 0.99
    assert c.ncc == pytest.approx(ref.ncc, abs=1e-4)
    assert c.gradient_ncc == pytest.approx(ref.gradient_ncc, abs=1e-4)
    assert c.overlap == ref.overlap
    # mean_abs is A's misfit after the gain/bias fit, so it is unchanged too
    assert c.mean_abs == pytest.approx(ref.mean_abs, rel=1e-3)


def test_edge_zero_keeps_the_gradient_correlation() -> None:
    """edge=0 leaves no pixel of B out (an empty slice ``[0:-0]`` would leave all out)."""
    a, b, H = warped_pair(0.1, 1)
    c0, c2 = ConsistencyScorer(a, b, edge=0)(H), ConsistencyScorer(a, b, edge=2)(H)
    assert c0.usable and c0.gradient_ncc > 0.9
    assert c0.ncc == c2.ncc and c0.gradient_ncc != c2.gradient_ncc


def test_float64_colour_input() -> None:
    """float64 BGR is accepted (cv2.cvtColor itself refuses CV_64F)."""
    a, b, H = warped_pair(0.1, 1)
    bgr = [cv2.cvtColor(x, cv2.COLOR_GRAY2BGR).astype(np.float64) / 255 for x in (a, b)]
    c = photometric_consistency(bgr[0], bgr[1], H)
    assert c.ncc == pytest.approx(photometric_consistency(a, b, H).ncc, abs=1e-5)
