"""What speaks for or against one homography between two photos: photometric and geometric
evidence, whether the map is one a camera can produce, and the confidence that follows.

- **Photometric** (:class:`app.alignment.consistency.Consistency`): NCC of intensities and of
  gradients on the overlap, blind to brightness and contrast.
- **Geometric** (:class:`app.features.Support`): how many of the tentative keypoint matches the
  map explains (count and ratio), how much of both images those inliers cover (the convex hulls'
  area) and their transfer error. Every candidate is checked against the same pooled matches,
  whichever estimator produced it (the network's, a refined one, an affine-simulated one).
- **Agreement**: another, independent source ended within a few pixels of it.
- **Extrapolation**: how far beyond B the answer puts A's corners (a zoomed or steep view shows
  only part of A; its corners are extrapolated, and their error grows with the distance).

:class:`EvidenceModel` turns these into the probability that the mean corner error is within
``CONFIDENCE_PX`` (a logistic model fitted by ``bench/calibrate_confidence.py`` on real pairs and
rendered oblique views kept apart from the evaluation pairs).

:func:`implausible` refuses maps no camera motion produces, with bounds taken from rendered
camera pairs (``bench/calibrate_confidence.py --plausibility``): mirrored views, a horizon
crossing inside the overlap, a zoom beyond 16x either way at the overlap's centre, or an
anisotropy (foreshortening) beyond 48 there. Real zooms of 8x and tilts of 80 deg pass.

Conventions: ``b_H_a`` maps A pixels to B pixels (``x_b ~ b_H_a @ x_a``, origin at the centre of
the top-left pixel). No HTTP here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.alignment.consistency import Consistency
from app.features import Support
from app.geometry.points import image_corners, transform_points

__all__ = [
    "CONFIDENCE_PX",
    "DEFAULT_MODEL",
    "Evidence",
    "EvidenceModel",
    "extrapolation",
    "implausible",
    "local_jacobian",
    "overlap_centre",
]

CONFIDENCE_PX = 5.0
MIN_MATCHES = 16


@dataclass(frozen=True)
class Evidence:
    """One candidate's evidence: ``score`` photometric; ``support`` geometric (None when no
    keypoints were matched at all); ``agreeing``: how many other independent sources ended
    within the agreement tolerance of it; ``extrapolation``: how far beyond image B the answer
    puts A's corners (:func:`extrapolation`), which nothing in B can confirm."""

    score: Consistency
    support: Support | None
    agreeing: int = 0
    extrapolation: float = 0.0

    def features(self) -> np.ndarray:
        """(9,) inputs of :class:`EvidenceModel`: intensity NCC, gradient NCC, log(1 + inliers),
        inlier ratio, spread, whether there are matches to judge by (at least
        ``MIN_MATCHES``; otherwise the geometric terms are zero: a handful of chance matches on
        a textureless pair is no evidence either way), whether another source agrees,
        ``-extrapolation`` (0 when A's corners land inside B), and 1 (the bias)."""
        s = self.support
        has = s is not None and s.matches >= MIN_MATCHES and s.ratio == s.ratio
        return np.array(
            [
                self.score.ncc,
                self.score.gradient_ncc,
                math.log1p(s.inliers) if has else 0.0,
                s.ratio if has else 0.0,
                s.spread if has else 0.0,
                1.0 if has else 0.0,
                1.0 if self.agreeing > 0 else 0.0,
                -self.extrapolation,
                1.0,
            ]
        )


FEATURE_NAMES = (
    "ncc",
    "gradient_ncc",
    "log_inliers",
    "inlier_ratio",
    "spread",
    "has_matches",
    "agrees",
    "corners_inside",
    "bias",
)


@dataclass(frozen=True)
class EvidenceModel:
    """A logistic model of P(mean corner error <= ``CONFIDENCE_PX``) over
    :meth:`Evidence.features`; ``weights`` (9,) in that order."""

    weights: tuple[float, ...]
    min_overlap: float = 0.05

    def confidence(self, ev: Evidence) -> float:
        if ev.score.shared < self.min_overlap or not ev.score.usable:
            return 0.0
        z = float(ev.features() @ np.asarray(self.weights))
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def reasons(self, ev: Evidence, threshold: float) -> list[str]:
        """What lowers the confidence, in words (empty when it is at least ``threshold``)."""
        sc, sup = ev.score, ev.support
        if sc.shared < self.min_overlap:
            return [
                f"the images share only {sc.shared:.1%} of the smaller view (at least "
                f"{self.min_overlap:.0%} needed to judge it)"
            ]
        if not sc.usable:
            return ["the overlap is flat: no texture to compare"]
        if self.confidence(ev) >= threshold:
            return []
        out = []
        if sc.score < 0.6:
            out.append(
                f"weak photometric consistency (NCC {sc.ncc:.2f}, gradient NCC "
                f"{sc.gradient_ncc:.2f})"
            )
        if sup is None:
            out.append("no keypoint matches to confirm it")
        elif sup.inliers < 30 or sup.spread < 0.1:
            out.append(
                f"little geometric support ({sup.inliers} keypoint matches, {sup.ratio:.0%} of "
                f"all, covering {sup.spread:.0%} of the images)"
            )
        if ev.agreeing == 0:
            out.append("no other method agrees")
        if ev.extrapolation > 0.5:
            out.append("image_a's corners lie far outside image_b: they are extrapolated")
        if sc.shared < 0.25:
            out.append(f"small overlap ({sc.shared:.0%} of the smaller view)")
        return out or ["the evidence is mixed"]


# fitted by bench/calibrate_confidence.py (170 pairs: 150 rendered, 20 real, each judged after
# the fast stage and after a forced escalation; BENCHMARKS.md): monotone in the evidence; the
# intensity NCC, the inlier count and the spread got no weight beyond the gradient NCC's and the
# ratio's; each candidate is also seen with its photometric evidence alone (no keypoints)
DEFAULT_MODEL = EvidenceModel((0.384, 6.183, 0.000, 5.498, 0.000, -3.263, 1.025, 2.030, -2.919))


def extrapolation(b_H_a: np.ndarray, size_a: tuple[int, int], size_b: tuple[int, int]) -> float:
    """``log(1 + d / diagonal of B)``, with ``d`` the mean distance by which A's corners, mapped
    into B, fall outside B (0 when they all land inside; 5 when one is beyond B's horizon).

    The answer is judged by A's corners; where B shows only part of A (a zoom, a strong
    perspective), those corners are extrapolated from the shared part, and a small error there
    grows with the distance."""
    q, w = transform_points(np.asarray(b_H_a, np.float64), image_corners(size_a))
    if np.any(w <= 0) or not np.isfinite(q).all():
        return 5.0
    wb, hb = size_b
    dx = np.maximum(0.0, np.maximum(-q[:, 0], q[:, 0] - (wb - 1)))
    dy = np.maximum(0.0, np.maximum(-q[:, 1], q[:, 1] - (hb - 1)))
    return float(min(5.0, math.log1p(float(np.mean(np.hypot(dx, dy))) / math.hypot(wb, hb))))


def local_jacobian(b_H_a: np.ndarray, point: np.ndarray) -> np.ndarray:
    """(2, 2) derivative of the map ``x -> b_H_a x`` (dehomogenised) at the A pixel ``point``."""
    H = np.asarray(b_H_a, np.float64)
    p = H @ np.array([point[0], point[1], 1.0])
    return (H[:2, :2] * p[2] - np.outer(p[:2], H[2, :2])) / (p[2] * p[2])


def _grid(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 16), np.linspace(0, h - 1, 12))
    return np.stack([xs.ravel(), ys.ravel()], 1)


def _inside(q: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return (
        np.isfinite(q).all(1)
        & (q[:, 0] >= -0.5)
        & (q[:, 0] <= w - 0.5)
        & (q[:, 1] >= -0.5)
        & (q[:, 1] <= h - 0.5)
    )


def overlap_centre(
    b_H_a: np.ndarray, size_a: tuple[int, int], size_b: tuple[int, int]
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """The centre (2,) in A of the part the two images share, or None when they share nothing:
    the mean of a 16 x 12 grid of A's pixels that land inside B and of a grid of B's pixels
    that come from inside A (so that a small part of either counts); with A's grid points'
    ``inside`` mask and their homogeneous ``w`` under ``b_H_a``."""
    H = np.asarray(b_H_a, np.float64)
    grid_a = _grid(size_a)
    q, w = transform_points(H, grid_a)
    inside = _inside(q, size_b) & (w > 0)
    grid_b = _grid(size_b)
    p, wb = transform_points(np.linalg.inv(H), grid_b)
    from_a = _inside(p, size_a) & (wb > 0)
    shared = np.concatenate([grid_a[inside], p[from_a]])
    centre = shared.mean(0) if len(shared) else None
    inside_any = _inside(q, size_b)  # w <= 0 here too: a horizon crossing shows up
    return centre, inside_any, w


def implausible(
    b_H_a: np.ndarray,
    size_a: tuple[int, int],
    size_b: tuple[int, int],
    max_zoom: float = 16.0,
    max_anisotropy: float = 48.0,
) -> str | None:
    """Why ``b_H_a`` cannot be a camera's view of the same plane, or None.

    Judged on the part of A that lands inside B (a 16 x 12 grid of A's pixels), where the map
    must be continuous (no horizon crossing), keep the orientation (a camera never sees a plane
    mirrored), and at the centre of that part change the scale by at most ``max_zoom`` either
    way and squash one direction against the other by at most ``max_anisotropy``. A map under
    which nothing of A lands in B is left to the overlap test. ``size_a``/``size_b``:
    (width, height) in the pixels ``b_H_a`` maps between.
    """
    H = np.asarray(b_H_a, np.float64)
    if H.shape != (3, 3) or not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-300:
        return "the matrix is singular or not finite"
    centre, inside, w = overlap_centre(H, size_a, size_b)
    if np.any(w[inside] <= 0):
        return "image_a is seen from behind image_b's horizon"
    if centre is None:
        return None
    J = local_jacobian(H, centre)
    if np.linalg.det(J) <= 0:
        return "image_a comes out mirrored"
    sv = np.linalg.svd(J, compute_uv=False)
    zoom = math.sqrt(sv[0] * sv[1])
    if not 1.0 / max_zoom <= zoom <= max_zoom:
        return f"image_a is scaled {zoom:.3g} times (at most {max_zoom:g}x either way)"
    if sv[0] > max_anisotropy * sv[1]:
        return (
            f"image_a is squashed {sv[0] / sv[1]:.3g} times in one direction against the other "
            f"(at most {max_anisotropy:g})"
        )
    return None
