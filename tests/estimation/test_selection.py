"""app.estimation.selection: judging, refining and choosing homography candidates."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage
import torch

from app.alignment.types import RefineOptions, RefineResult
from app.estimation import Candidate, SelectionOptions, Selector, select_homography
from app.features import Correspondences
from tests.alignment.helpers import corner_error, corners, random_homography

SIZE = (320, 240)
# refinements here are judged by their result, not by the wall clock of a loaded test machine
OPTS = SelectionOptions(seconds_per_refine=60.0)


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


def true_matches(H: np.ndarray, n: int = 200, outliers: int = 50, seed: int = 0):
    """``n`` exact correspondences under ``H`` spread over A, plus random ``outliers``."""
    rng = np.random.default_rng(seed)
    src = rng.uniform([0, 0], [SIZE[0] - 1, SIZE[1] - 1], (n + outliers, 2))
    dst = cv2.perspectiveTransform(src[None], H)[0]
    dst[n:] = rng.uniform([0, 0], [SIZE[0] - 1, SIZE[1] - 1], (outliers, 2))
    return Correspondences(src, dst)


def by_name(cands: list[Candidate]) -> dict[str, Candidate]:
    return {c.name: c for c in cands}


class TestSelect:
    def test_good_start_wins_after_refinement(self) -> None:
        a, b, H = moderate_pair()
        good, bad = shift(1.5, -1.0) @ H, shift(40, 0) @ H
        sel = select_homography(a, b, {"good": good, "bad": bad}, OPTS)
        best = sel.best
        assert best is not None and best.source == "good" and best.refined
        assert corner_error(good, H, SIZE) > 1.5  # the refinement did the work
        assert corner_error(best.b_H_a, H, SIZE) < 0.1
        assert best.b_H_a[2, 2] == pytest.approx(1.0)
        assert sel.confidence == best.confidence and sel.seconds > 0
        assert "good" in sel.agreeing and "bad" not in sel.agreeing
        names = by_name(sel.candidates)
        assert [c.name for c in sel.candidates][:2] == ["good", "bad"]  # in the order produced
        assert names["bad"].score.score < names["good"].score.score < best.score.score
        assert names["bad"].confidence < best.confidence

    def test_only_a_far_start_is_low_confidence(self) -> None:
        a, truth = photo(), rotation(30)
        sel = select_homography(
            a, warp(truth), {"identity": np.eye(3)}, SelectionOptions(refine=False)
        )
        assert sel.best is not None and sel.best.name == "identity"
        assert corner_error(sel.best.b_H_a, truth, SIZE) > 50
        assert sel.low_confidence and sel.confidence < 0.5 and sel.reasons
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
        sel = select_homography(a, b, {"out": shift(1000, 0) @ H, "good": H}, OPTS)
        out = by_name(sel.candidates)["out"]
        assert out.score.shared == 0.0 and not out.score.usable
        assert out.confidence == 0.0 and out.agreeing == []
        assert out.detail is not None and out.detail.startswith("not refined: overlap")
        assert sel.best is not None and sel.best.source == "good"
        assert "out+refine" not in by_name(sel.candidates)

    def test_no_eligible_start_gives_no_answer(self) -> None:
        a, b, H = moderate_pair()
        sel = select_homography(a, b, {"right": shift(1000, 0) @ H, "down": shift(0, 800) @ H})
        assert sel.best is None
        assert sel.low_confidence and sel.confidence == 0.0
        assert len(sel.candidates) == 2 and sel.agreeing == []
        assert sel.reasons and "no candidate" in sel.reasons[0]

    def test_implausible_start_is_rejected(self) -> None:
        a, b, H = moderate_pair()
        c = corners(SIZE).astype(np.float32)
        mirrored = cv2.getPerspectiveTransform(c, c[[1, 0, 3, 2]]).astype(np.float64)
        sel = select_homography(a, b, {"mirrored": mirrored, "good": H})
        rejected = sel.candidates[0]
        assert rejected.name == "mirrored" and rejected.rejected
        assert "mirrored" in (rejected.detail or "")
        assert not rejected.score.usable and rejected.confidence == 0.0
        assert sel.best is not None and sel.best.source == "good"

    def test_working_resolutions_keep_original_pixels(self) -> None:
        a, b, H = moderate_pair()
        good, bad = shift(1.5, -1.0) @ H, shift(40, 0) @ H
        opts = SelectionOptions(max_pixels=20_000, score_pixels=10_000, seconds_per_refine=60.0)
        sel = select_homography(a, b, {"good": good, "bad": bad}, opts)
        assert sel.work_scale == pytest.approx(math.sqrt(10_000 / (SIZE[0] * SIZE[1])), abs=0.02)
        names = by_name(sel.candidates)
        # starts come back exactly as given (working frames and back)
        np.testing.assert_allclose(names["good"].b_H_a, good, atol=1e-9)
        np.testing.assert_allclose(names["bad"].b_H_a, bad, atol=1e-9)
        assert sel.best is not None and sel.best.name == "good+refine"
        assert corner_error(sel.best.b_H_a, H, SIZE) < 0.4

    def test_agreeing_starts_are_refined_once(self) -> None:
        a, b, H = moderate_pair()
        sel = select_homography(a, b, {"net": H, "sift": shift(0.5, 0) @ H}, OPTS)
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

    def test_a_refinement_that_leaves_the_evidence_is_not_kept(self) -> None:
        """A refinement that moves 6 px away from what the keypoints and the pixels say loses
        to its start: refinements are kept only when the evidence says they are better."""
        a, b, H = moderate_pair()

        def wander(ta, tb, init, o) -> RefineResult:
            return RefineResult(shift(6.0, 0.0) @ init, True, False)

        sel = select_homography(a, b, {"features": H}, matches=true_matches(H), refiner=wander)
        names = by_name(sel.candidates)
        assert names["features+refine"].support.inliers < names["features"].support.inliers
        assert sel.best is not None and sel.best.name == "features"

    def test_a_refinement_consistent_with_the_keypoints_and_better_aligned_is_kept(self) -> None:
        a, b, H = moderate_pair()
        start = shift(0.8, -0.6) @ H  # within the keypoints' 3 px, but visibly off
        sel = select_homography(a, b, {"features": start}, OPTS, matches=true_matches(H))
        assert sel.best is not None and sel.best.name == "features+refine"
        assert corner_error(sel.best.b_H_a, H, SIZE) < 0.1

    def test_support_counts_the_matches_a_candidate_explains(self) -> None:
        a, b, H = moderate_pair()
        m = true_matches(H, n=120, outliers=30)
        sel = select_homography(
            a, b, {"true": H, "off": shift(20, 0) @ H}, SelectionOptions(refine=False), matches=m
        )
        names = by_name(sel.candidates)
        assert 120 <= names["true"].support.inliers <= 122  # outliers may land near by chance
        assert names["true"].support.ratio == pytest.approx(names["true"].support.inliers / 150)
        assert names["true"].support.spread > 0.5
        assert names["off"].support.inliers < 5
        assert names["true"].confidence > names["off"].confidence

    def test_the_nearly_most_confident_then_the_best_aligned(self) -> None:
        """Of the candidates about as confident as the most confident one, the best aligned
        wins; a candidate the evidence does not support is not among them."""
        a, b, H = moderate_pair()
        sel = Selector(a, b, SelectionOptions(refine=False), matches=true_matches(H))
        sel.add("features", shift(0.4, 0.0) @ H)
        sel.add("asift", H)
        sel.add("network", shift(25.0, 0) @ H)
        res = sel.result()
        assert res.best is not None and res.best.name == "asift"
        assert sorted(res.agreeing) == ["asift", "features"]

    def test_escalation_empty_by_default(self) -> None:
        a, b, H = moderate_pair()
        assert select_homography(a, b, {"x": H}, SelectionOptions(refine=False)).escalation == []


class TestSelectorMatches:
    def test_adding_matches_updates_every_candidate(self) -> None:
        a, b, H = moderate_pair()
        sel = Selector(a, b, SelectionOptions(refine=False))
        c = sel.add("x", H)
        assert c is not None and c.support is None
        sel.add_matches(true_matches(H, n=50, outliers=0))
        assert c.support is not None and c.support.inliers == 50
        sel.add_matches(true_matches(H, n=30, outliers=0, seed=1))
        assert c.support.inliers == 80 and c.support.ratio == pytest.approx(1.0)
        sel.add_matches(None)  # nothing to pool
        assert c.support.inliers == 80

    def test_missing_or_non_finite_are_not_added(self) -> None:
        a, b, _ = moderate_pair()
        sel = Selector(a, b)
        assert sel.add("none", None) is None
        assert sel.add("nan", np.full((3, 3), np.nan)) is None
        assert sel.candidates == []

    def test_deadline_leaves_starts_unrefined(self) -> None:
        a, b, H = moderate_pair()
        sel = Selector(a, b)
        sel.add("x", shift(1.0, 0) @ H)
        sel.refine(deadline=0.0)  # long past
        assert sel.candidates[0].detail == "not refined: out of time"
        assert len(sel.candidates) == 1
