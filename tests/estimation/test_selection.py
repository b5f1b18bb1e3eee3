"""app.estimation.selection: ranking, refining and trusting homography starts on photo pairs."""

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

from app.alignment.consistency import Consistency
from app.alignment.types import RefineOptions, RefineResult
from app.estimation.selection import (
    SelectionOptions,
    confidence_features,
    confidence_of,
    implausible,
    select_homography,
)
from app.geometry.points import corner_distance
from tests.alignment.helpers import corner_error, corners, random_homography

SIZE = (320, 240)


@cache
def photo() -> np.ndarray:
    """scikit-image's astronaut, (240, 320, 3) uint8 BGR."""
    img = cv2.imread(str(Path(skimage.data_dir) / "astronaut.png"), cv2.IMREAD_COLOR)
    out = cv2.resize(img, SIZE, interpolation=cv2.INTER_AREA)
    out.setflags(write=False)
    return out


def warp(H: np.ndarray) -> np.ndarray:
    """B = A seen through ``H`` (reflected border: no black area in B)."""
    return cv2.warpPerspective(
        photo(), H, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


@cache
def moderate_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, b_H_a) with A's corners moved by up to 10 % of the side."""
    H = random_homography(SIZE, 0.1, 1)
    return photo(), warp(H), H


def shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]])


def rotation(deg: float) -> np.ndarray:
    """Rotation by ``deg`` about A's centre."""
    cx, cy = (SIZE[0] - 1) / 2, (SIZE[1] - 1) / 2
    t = math.radians(deg)
    R = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1.0]])
    return shift(cx, cy) @ R @ shift(-cx, -cy)


class TestSelect:
    def test_good_start_wins_after_refinement(self) -> None:
        a, b, H = moderate_pair()
        good, bad = shift(1.5, -1.0) @ H, shift(40, 0) @ H
        sel = select_homography(a, b, {"good": good, "bad": bad})
        best = sel.best
        assert best is not None
        assert best.name == "good+refine" and best.source == "good" and best.refined
        assert corner_error(good, H, SIZE) > 1.5  # the refinement did the work
        assert corner_error(best.b_H_a, H, SIZE) < 0.1
        assert best.b_H_a[2, 2] == pytest.approx(1.0)
        assert sel.confidence >= 0.5 and not sel.low_confidence
        assert sel.confidence == best.confidence and sel.reasons == []
        assert "good" in sel.agreeing and "bad" not in sel.agreeing
        assert sel.work_scale == 1.0 and sel.seconds > 0
        by_name = {c.name: c for c in sel.candidates}
        assert [c.name for c in sel.candidates][:2] == ["good", "bad"]  # starts first
        assert by_name["bad"].score.score < by_name["good"].score.score < best.score.score
        assert by_name["bad"].confidence < 0.5 <= best.confidence
        # the refined good start is good enough: the bad one is not refined
        assert by_name["bad"].detail == "not refined: a refined candidate already matches well"
        assert "bad+refine" not in by_name

    def test_only_a_far_start_is_low_confidence(self) -> None:
        a, truth = photo(), rotation(30)
        sel = select_homography(
            a, warp(truth), {"identity": np.eye(3)}, SelectionOptions(refine=False)
        )
        assert sel.best is not None and sel.best.name == "identity"
        assert corner_error(sel.best.b_H_a, truth, SIZE) > 50
        assert sel.low_confidence and sel.confidence < 0.5
        assert sel.reasons and "weak photometric consistency" in sel.reasons[0]
        assert not any(c.refined for c in sel.candidates)

    def test_none_and_non_finite_starts_are_skipped(self) -> None:
        a, b, H = moderate_pair()
        starts = {"net": None, "nan": np.full((3, 3), np.nan), "sift": H}
        sel = select_homography(a, b, starts, SelectionOptions(refine=False))
        assert [c.name for c in sel.candidates] == ["sift"]
        assert sel.best is not None and sel.best.name == "sift"
        np.testing.assert_allclose(sel.best.b_H_a, H, atol=1e-12)

    def test_a_start_outside_b_is_not_eligible(self) -> None:
        a, b, H = moderate_pair()
        sel = select_homography(a, b, {"out": shift(1000, 0) @ H, "good": H})
        out = next(c for c in sel.candidates if c.name == "out")
        assert out.score.overlap == 0.0 and not out.score.usable
        assert out.confidence == 0.0 and out.agreeing == []
        assert out.detail is not None and out.detail.startswith("not refined: overlap")
        assert sel.best is not None and sel.best.source == "good"
        assert "out" not in sel.agreeing
        assert not any(c.name == "out+refine" for c in sel.candidates)

    def test_no_eligible_start_gives_no_answer(self) -> None:
        a, b, H = moderate_pair()
        starts = {"right": shift(1000, 0) @ H, "down": shift(0, 800) @ H}
        sel = select_homography(a, b, starts)
        assert sel.best is None
        assert sel.low_confidence and sel.confidence == 0.0
        assert len(sel.candidates) == 2 and sel.agreeing == []
        assert sel.reasons and "no candidate" in sel.reasons[0]

    def test_implausible_start_is_rejected(self) -> None:
        a, b, H = moderate_pair()
        c = corners(SIZE).astype(np.float32)
        folded = cv2.getPerspectiveTransform(c, c[[0, 2, 1, 3]]).astype(np.float64)
        sel = select_homography(a, b, {"folded": folded, "good": H})
        rejected = sel.candidates[0]
        assert rejected.name == "folded"
        assert rejected.detail is not None and rejected.detail.startswith("rejected:")
        assert not rejected.score.usable and rejected.confidence == 0.0
        assert sel.best is not None and sel.best.source == "good"

    def test_working_resolution_keeps_original_pixels(self) -> None:
        a, b, H = moderate_pair()
        good, bad = shift(1.5, -1.0) @ H, shift(40, 0) @ H
        opts = SelectionOptions(max_pixels=20_000)
        sel = select_homography(a, b, {"good": good, "bad": bad}, opts)
        assert sel.work_scale == pytest.approx(0.5, abs=0.05)
        by_name = {c.name: c for c in sel.candidates}
        # starts come back exactly as given (working frame and back)
        np.testing.assert_allclose(by_name["good"].b_H_a, good, atol=1e-9)
        np.testing.assert_allclose(by_name["bad"].b_H_a, bad, atol=1e-9)
        assert sel.best is not None and sel.best.name == "good+refine"
        assert corner_error(sel.best.b_H_a, H, SIZE) < 0.3
        assert not sel.low_confidence

    def test_agreeing_starts_are_refined_once(self) -> None:
        a, b, H = moderate_pair()
        sel = select_homography(a, b, {"net": H, "sift": shift(0.5, 0) @ H})
        assert sum(c.refined for c in sel.candidates) == 1
        skipped = [c for c in sel.candidates if (c.detail or "").startswith("not refined: agrees")]
        assert len(skipped) == 1
        assert sel.agreeing == ["net", "sift"]
        assert sel.best is not None and corner_error(sel.best.b_H_a, H, SIZE) < 0.1

    def test_refiner_is_used_and_its_failure_is_kept_local(self) -> None:
        a, b, H = moderate_pair()
        calls: list[tuple[tuple[int, ...], RefineOptions]] = []

        def failing(
            ta: torch.Tensor, tb: torch.Tensor, init: np.ndarray, o: RefineOptions
        ) -> RefineResult:
            calls.append((tuple(ta.shape), o))
            raise RuntimeError("boom")

        sel = select_homography(a, b, {"good": H}, refiner=failing)
        assert len(calls) == 1 and calls[0][0] == (1, 1, SIZE[1], SIZE[0])
        assert calls[0][1].max_seconds == SelectionOptions().seconds_per_refine
        assert sel.candidates[0].detail == "refinement failed: boom"
        assert sel.best is not None and sel.best.name == "good"


class TestImplausible:
    def test_identity_and_moderate_warps_are_plausible(self) -> None:
        assert implausible(np.eye(3), SIZE, 16.0) is None
        assert implausible(random_homography(SIZE, 0.2, 3), SIZE, 16.0) is None
        assert implausible(rotation(170), SIZE, 16.0) is None

    @pytest.mark.parametrize("perm", [[0, 2, 1, 3], [1, 0, 2, 3], [0, 1, 3, 2]])
    def test_swapped_corners_are_flagged(self, perm: list[int]) -> None:
        c = corners(SIZE).astype(np.float32)
        H = cv2.getPerspectiveTransform(c, c[perm]).astype(np.float64)
        assert implausible(H, SIZE, 16.0) is not None

    def test_degenerate_map_is_folded(self) -> None:
        H = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1]])  # every corner onto the line y = x
        why = implausible(H, SIZE, 16.0)
        assert why is not None and "folded" in why

    def test_horizon(self) -> None:
        H = np.array([[1.0, 0, 0], [0, 1, 0], [-0.01, 0, 1]])  # w = 0 at x = 100
        why = implausible(H, SIZE, 16.0)
        assert why is not None and "horizon" in why

    @pytest.mark.parametrize(
        ("s", "max_ratio", "flagged"),
        [
            (5.0, 16.0, True),
            (0.2, 16.0, True),
            (3.9, 16.0, False),
            (0.26, 16.0, False),
            (3.0, 4.0, True),
            (1.9, 4.0, False),
        ],
    )
    def test_area_change(self, s: float, max_ratio: float, flagged: bool) -> None:
        why = implausible(np.diag([s, s, 1.0]), SIZE, max_ratio)
        assert (why is not None) == flagged
        if flagged:
            assert "area" in why


class TestCornerDistance:
    def test_zero_for_equal_matrices(self) -> None:
        H = random_homography(SIZE, 0.2, 4)
        assert corner_distance(H, H, SIZE) == 0.0
        assert corner_distance(H, 3.0 * H, SIZE) == pytest.approx(0.0, abs=1e-9)  # scale-free

    def test_symmetric_and_known_value(self) -> None:
        H1, H2 = random_homography(SIZE, 0.2, 5), random_homography(SIZE, 0.2, 6)
        d = corner_distance(H1, H2, SIZE)
        assert d > 1 and d == pytest.approx(corner_distance(H2, H1, SIZE), rel=1e-12)
        assert corner_distance(np.eye(3), shift(3, 4), SIZE) == pytest.approx(5.0)

    def test_corner_at_infinity(self) -> None:
        H = np.array([[1.0, 0, 0], [0, 1, 0], [-1 / (SIZE[0] - 1), 0, 1]])  # w = 0 at x = w - 1
        assert corner_distance(H, np.eye(3), SIZE) == math.inf

    @settings(max_examples=50, deadline=None)
    @given(
        st.integers(0, 2**31 - 1),
        st.integers(0, 2**31 - 1),
        st.floats(0.01, 0.3),
        st.integers(8, 2000),
        st.integers(8, 2000),
    )
    def test_matches_opencv(self, s1: int, s2: int, rho: float, w: int, h: int) -> None:
        H1, H2 = random_homography((w, h), rho, s1), random_homography((w, h), rho, s2)
        c = corners((w, h)).reshape(1, 4, 2)
        p1, p2 = cv2.perspectiveTransform(c, H1)[0], cv2.perspectiveTransform(c, H2)[0]
        want = float(np.linalg.norm(p1 - p2, axis=1).mean())
        assert corner_distance(H1, H2, (w, h)) == pytest.approx(want, rel=1e-9, abs=1e-9)


class TestConfidence:
    def test_features(self) -> None:
        f = confidence_features(Consistency(0.9, 1.0, 2.0, 0.7))
        np.testing.assert_array_equal(f, [0.9, 0.7, 1.0])

    def test_unusable_score_has_zero_confidence(self) -> None:
        conf, reasons = confidence_of(Consistency(math.nan, 0.0, math.nan), SelectionOptions())
        assert conf == 0.0 and len(reasons) == 1 and "0.0% of image_a lands" in reasons[0]
        conf, reasons = confidence_of(Consistency(math.nan, 0.8, math.nan), SelectionOptions())
        assert conf == 0.0 and reasons == ["the overlap is flat: no texture to compare"]

    def test_small_overlap_has_zero_confidence(self) -> None:
        """However well a sliver matches, too small an overlap cannot be judged."""
        conf, reasons = confidence_of(Consistency(0.99, 0.01, 1.0, 0.99), SelectionOptions())
        assert conf == 0.0 and "1.0% of image_a" in reasons[0]

    def test_logistic_of_the_weights(self) -> None:
        score = Consistency(0.95, 0.8, 2.0, 0.6)
        w = SelectionOptions().confidence_weights
        z = w[0] * 0.95 + w[1] * 0.6 + w[2]
        conf, reasons = confidence_of(score, SelectionOptions())
        assert conf == pytest.approx(1 / (1 + math.exp(-z)))
        assert reasons == []

    def test_monotone_and_reasons_when_low(self) -> None:
        opts = SelectionOptions()
        confs = [confidence_of(Consistency(g, 1.0, 0.0, g), opts)[0] for g in (0.1, 0.5, 0.8, 0.95)]
        assert all(x < y for x, y in itertools.pairwise(confs))
        assert 0.0 <= confs[0] < 0.5 < confs[-1] <= 1.0
        conf, reasons = confidence_of(Consistency(0.2, 0.1, 50.0, 0.05), opts)
        assert conf < opts.low_confidence
        assert len(reasons) == 2 and "small overlap" in reasons[1]
        # a threshold of 0 never flags
        assert (
            confidence_of(Consistency(0.2, 0.1, 50.0, 0.05), SelectionOptions(low_confidence=0.0))[
                1
            ]
            == []
        )


@pytest.mark.parametrize("H", [np.diag([-1.0, 1.0, 1.0]), np.diag([1.0, -1.0, 1.0])])
def test_mirror_images_are_implausible(H: np.ndarray) -> None:
    """A camera never sees a plane from behind: a mirrored A is rejected."""
    w, h = SIZE
    T = np.array(
        [[1.0, 0, w - 1 if H[0, 0] < 0 else 0], [0, 1.0, h - 1 if H[1, 1] < 0 else 0], [0, 0, 1]]
    )
    why = implausible(T @ H, SIZE, 16.0)
    assert why is not None and "mirrored" in why
