"""app.estimation.evidence: plausibility of camera motion, the evidence vector, the model."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.alignment.consistency import Consistency
from app.estimation.evidence import (
    DEFAULT_MODEL,
    FEATURE_NAMES,
    Evidence,
    EvidenceModel,
    extrapolation,
    implausible,
    local_jacobian,
    overlap_centre,
)
from app.features import Support
from tests.alignment.helpers import corners, random_homography
from training.data import oblique

SIZE = (320, 240)


def about_centre(M: np.ndarray, size=SIZE) -> np.ndarray:
    """``M`` (3, 3) applied about the image centre."""
    cx, cy = (size[0] - 1) / 2, (size[1] - 1) / 2
    T = np.array([[1.0, 0, cx], [0, 1, cy], [0, 0, 1]])
    return T @ M @ np.linalg.inv(T)


def rot_zoom(deg: float, s: float) -> np.ndarray:
    t = math.radians(deg)
    return about_centre(
        np.array(
            [
                [s * math.cos(t), -s * math.sin(t), 0],
                [s * math.sin(t), s * math.cos(t), 0],
                [0, 0, 1],
            ]
        )
    )


class TestImplausible:
    def test_identity_and_moderate_warps_are_plausible(self) -> None:
        assert implausible(np.eye(3), SIZE, SIZE) is None
        assert implausible(random_homography(SIZE, 0.2, 3), SIZE, SIZE) is None

    @pytest.mark.parametrize("deg", [0, 45, 90, 170, -135])
    @pytest.mark.parametrize("s", [0.125, 0.25, 1.0, 4.0, 8.0])
    def test_any_rotation_and_zooms_to_8x_are_plausible(self, deg: float, s: float) -> None:
        """The issue's 4x zoom with rotation (area 1/16) was refused; 8x either way passes."""
        assert implausible(rot_zoom(deg, s), SIZE, SIZE) is None

    @pytest.mark.parametrize("s", [1 / 20, 20.0])
    def test_zoom_beyond_16x_is_refused(self, s: float) -> None:
        why = implausible(rot_zoom(10, s), SIZE, SIZE)
        assert why is not None and "scaled" in why

    def test_anisotropy(self) -> None:
        assert implausible(about_centre(np.diag([6.0, 0.3, 1.0])), SIZE, SIZE) is None  # 20:1
        why = implausible(about_centre(np.diag([8.0, 0.1, 1.0])), SIZE, SIZE)  # 80:1
        assert why is not None and "squashed" in why

    @pytest.mark.parametrize("flip", [np.diag([-1.0, 1.0, 1.0]), np.diag([1.0, -1.0, 1.0])])
    def test_mirror_images_are_implausible(self, flip: np.ndarray) -> None:
        """A camera never sees a plane from behind: a mirrored A is rejected."""
        why = implausible(about_centre(flip), SIZE, SIZE)
        assert why is not None and "mirrored" in why

    def test_swapped_corners_are_refused(self) -> None:
        c = corners(SIZE).astype(np.float32)
        for perm in ([1, 0, 3, 2], [3, 2, 1, 0]):
            H = cv2.getPerspectiveTransform(c, c[perm]).astype(np.float64)
            assert implausible(H, SIZE, SIZE) is not None

    def test_horizon_inside_the_overlap(self) -> None:
        # w = 0 at x = 100; A's pixels beyond it land inside B: B would see them from behind
        H = np.array([[1.0, 0, -200], [0, 1, -120], [-0.01, 0, 1]])
        why = implausible(H, SIZE, SIZE)
        assert why is not None and "horizon" in why

    def test_horizon_outside_the_overlap_is_strong_perspective(self) -> None:
        """A's far side beyond B's horizon is fine when the shared part is in front of B."""
        H = np.array([[1.0, 0, 0], [0, 1, 0], [-0.01, 0, 1]])  # w = 0 at x = 100
        assert implausible(H, SIZE, SIZE) is None

    def test_singular_or_non_finite(self) -> None:
        assert "singular" in implausible(np.zeros((3, 3)), SIZE, SIZE)
        assert "singular" in implausible(np.full((3, 3), np.nan), SIZE, SIZE)

    def test_nothing_inside_b_is_left_to_the_overlap_test(self) -> None:
        far = np.array([[1.0, 0, 5000], [0, 1, 0], [0, 0, 1]])
        assert implausible(far, SIZE, SIZE) is None
        centre, inside, _ = overlap_centre(far, SIZE, SIZE)
        assert centre is None and not inside.any()

    @settings(max_examples=60, deadline=None)
    @given(st.integers(0, 2**31 - 1))
    def test_true_camera_motion_is_always_plausible(self, seed: int) -> None:
        """Any pair of cameras of the renderer (tilts to 70 deg, zoom 0.25-4x, any roll)."""
        rng = np.random.default_rng(seed)
        kind = oblique.KINDS[seed % len(oblique.KINDS)]
        size = (640, 480)
        for _ in range(200):
            va, vb = oblique._draw_views(kind, rng, size)
            Ha = oblique.plane_to_image(va, size, size)
            Hb = oblique.plane_to_image(vb, size, size)
            if oblique._views_ok(Ha, Hb, size, 0.5)[0]:
                break
        else:
            pytest.skip("no valid view pair drawn")
        assert implausible(Hb @ np.linalg.inv(Ha), size, size) is None

    def test_local_jacobian_matches_finite_differences(self) -> None:
        H = random_homography(SIZE, 0.25, 7)
        p = np.array([100.0, 70.0])
        eps = 1e-5
        f = lambda q: cv2.perspectiveTransform(q[None, None], H)[0, 0]  # noqa: E731
        J = np.stack([(f(p + d) - f(p - d)) / (2 * eps) for d in np.eye(2) * eps], 1)
        np.testing.assert_allclose(local_jacobian(H, p), J, rtol=1e-6, atol=1e-8)


def sup(inliers: int, ratio: float, rms: float, spread: float) -> Support:
    """A support of ``inliers`` among ``inliers / ratio`` matches."""
    return Support(inliers, ratio, rms, spread, np.zeros(0, bool), round(inliers / ratio))


def score(ncc=0.9, g=0.7, overlap=1.0) -> Consistency:
    return Consistency(ncc, overlap, 2.0, g, overlap)


class TestEvidence:
    def test_features_layout(self) -> None:
        ev = Evidence(score(0.9, 0.7), sup(99, 0.5, 1.0, 0.3), agreeing=2)
        f = ev.features()
        assert len(f) == len(FEATURE_NAMES) == len(DEFAULT_MODEL.weights)
        np.testing.assert_allclose(f, [0.9, 0.7, math.log(100), 0.5, 0.3, 1.0, 1.0, 0.0, 1.0])
        far = Evidence(score(), None, extrapolation=1.5).features()
        assert far[FEATURE_NAMES.index("corners_inside")] == -1.5

    def test_without_matches_the_geometric_terms_are_zero(self) -> None:
        f = Evidence(score(), None).features()
        np.testing.assert_array_equal(f[2:7], [0, 0, 0, 0, 0])

    def test_a_handful_of_matches_is_no_evidence(self) -> None:
        """Seven chance matches on a textureless pair neither support nor contradict."""
        few = Evidence(score(), Support(0, 0.0, math.nan, 0.0, np.zeros(7, bool), 7))
        np.testing.assert_array_equal(few.features(), Evidence(score(), None).features())
        enough = Evidence(score(), Support(0, 0.0, math.nan, 0.0, np.zeros(40, bool), 40))
        assert enough.features()[5] == 1.0  # 40 matches, none explained: evidence against


class TestExtrapolation:
    def test_inside_is_zero(self) -> None:
        assert extrapolation(np.eye(3), SIZE, SIZE) == 0.0
        assert extrapolation(about_centre(np.diag([0.5, 0.5, 1.0])), SIZE, SIZE) == 0.0

    def test_grows_with_the_zoom(self) -> None:
        """A 2x zoom puts A's corners half a diagonal outside B; more zoom, farther."""
        d = [extrapolation(rot_zoom(0, s), SIZE, SIZE) for s in (1.0, 2.0, 4.0, 8.0)]
        assert d[0] == 0.0 and d[1] < d[2] < d[3]
        # each corner lands as far outside B as B's corner is from B's centre
        half_diag = math.hypot((SIZE[0] - 1) / 2, (SIZE[1] - 1) / 2)
        assert d[1] == pytest.approx(math.log1p(half_diag / math.hypot(*SIZE)), rel=1e-9)

    def test_beyond_the_horizon(self) -> None:
        H = np.array([[1.0, 0, 0], [0, 1, 0], [-0.01, 0, 1]])  # w = 0 at x = 100
        assert extrapolation(H, SIZE, SIZE) == 5.0


class TestEvidenceModel:
    model = EvidenceModel((4.0, 6.0, 0.8, 1.0, 3.0, -2.5, 1.0, 1.0, -7.0), min_overlap=0.05)

    def test_logistic_of_the_weights(self) -> None:
        ev = Evidence(score(0.95, 0.6), sup(40, 0.8, 0.5, 0.4), 1)
        z = float(ev.features() @ np.array(self.model.weights))
        assert self.model.confidence(ev) == pytest.approx(1 / (1 + math.exp(-z)))

    def test_more_evidence_more_confidence(self) -> None:
        weak = Evidence(score(0.5, 0.2), sup(6, 0.05, 2.0, 0.02), 0)
        strong = Evidence(score(0.95, 0.8), sup(400, 0.8, 0.6, 0.5), 1)
        assert self.model.confidence(weak) < 0.5 < self.model.confidence(strong)
        assert self.model.reasons(strong, 0.5) == []
        why = self.model.reasons(weak, 0.5)
        assert any("photometric" in w for w in why) and any("geometric" in w for w in why)
        assert any("no other method" in w for w in why)

    def test_unjudgeable_candidates_have_zero_confidence(self) -> None:
        sliver = Evidence(Consistency(0.99, 0.01, 1.0, 0.99, 0.02), sup(500, 1, 0.1, 0.9))
        assert self.model.confidence(sliver) == 0.0
        assert "share only 2.0%" in self.model.reasons(sliver, 0.5)[0]
        flat = Evidence(Consistency(math.nan, 0.9, math.nan, math.nan, 0.9), None)
        assert self.model.confidence(flat) == 0.0
        assert self.model.reasons(flat, 0.5) == ["the overlap is flat: no texture to compare"]

    def test_zoomed_view_is_judged_on_the_shared_part(self) -> None:
        """A 4x zoom shares all of B but 1/16 of A: the larger fraction decides; its corners,
        far outside B, cost confidence."""
        zoom = Evidence(Consistency(0.95, 0.06, 1.0, 0.8, 1.0), sup(300, 0.7, 0.5, 0.4), 1)
        assert self.model.confidence(zoom) > 0.5
        far = Evidence(zoom.score, zoom.support, 1, extrapolation=1.5)
        assert self.model.confidence(far) < self.model.confidence(zoom)
        assert any("extrapolated" in r for r in self.model.reasons(far, 0.999))

    def test_default_model_orders_obvious_cases(self) -> None:
        good = Evidence(score(0.9, 0.7), sup(300, 0.7, 0.5, 0.5), 1)
        bad = Evidence(score(0.3, 0.05), sup(5, 0.02, 2.5, 0.01), 0)
        assert DEFAULT_MODEL.confidence(good) > 0.9 and DEFAULT_MODEL.confidence(bad) < 0.1
