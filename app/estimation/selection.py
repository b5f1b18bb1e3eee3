"""Best of several homography estimates for one image pair, and how far to trust it.

Each start (for example HomographyNet's and SIFT+RANSAC's ``b_H_a``) is scored by the same
photometric consistency measure (:func:`app.alignment.consistency.photometric_consistency`:
the mean of the intensity and gradient NCC on the overlap, invariant to brightness and
contrast), refined photometrically (:func:`app.alignment.gauss_newton.align_gauss_newton`, with
gain/bias), and scored again; the plausible candidate (A's corners map to a convex quadrilateral
of sensible area) with the highest score on a sufficient overlap wins. Starts that already agree
are refined once; once a refined candidate reaches the confidence ``good_enough``, the remaining
starts are not refined. The confidence is a logistic model of the winner's two NCCs, fitted on
synthetic pairs with known motion (see :func:`confidence_of`); which independent sources ended
at the same matrix is reported beside it.

All matrices are ``b_H_a`` in the original images' pixels (``x_b ~ b_H_a @ x_a``, origin at
the centre of the top-left pixel, ``H[2, 2] = 1``); images larger than ``max_pixels`` are
scored and refined at a working resolution and the matrices moved between the frames exactly.
No HTTP here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from app.alignment.consistency import Consistency, ConsistencyScorer
from app.alignment.gauss_newton import align_gauss_newton
from app.alignment.refine import to_tensor
from app.alignment.types import RefineOptions, RefineResult
from app.geometry.points import corner_distance, image_corners, transform_points
from app.imaging import shrink_pair

__all__ = [
    "CONFIDENCE_PX",
    "CONFIDENCE_WEIGHTS",
    "Candidate",
    "Selection",
    "SelectionOptions",
    "confidence_features",
    "confidence_of",
    "implausible",
    "select_homography",
]

_NO_SCORE = Consistency(math.nan, 0.0, math.nan)
# the confidence is P(mean corner error <= CONFIDENCE_PX); weights of confidence_features, fitted
# by `bench/calibrate_confidence.py` (synthetic 640x480 pairs, seeds apart from the benchmark's)
CONFIDENCE_PX = 5.0
CONFIDENCE_WEIGHTS = (6.129, 8.188, -10.384)
# (a, b, init, options) -> RefineResult; a, b: (1, 1, H, W) tensors in [0, 1]
Refiner = Callable[[torch.Tensor, torch.Tensor, np.ndarray, RefineOptions], RefineResult]


@dataclass(frozen=True)
class SelectionOptions:
    """``max_pixels``: working resolution for scoring and refinement. ``refine``: refine the
    starts at all. ``near``/``far``: refinement options for a start whose score is at least
    ``near_score`` (already close: a short pyramid, no coarse search) and for the others (full
    pyramid, translation and affine first, coarse search). ``agree_px``: two refined estimates
    whose corners of A are this close (working pixels, mean over the 4 corners) are the same
    answer; an unrefined start agrees within ``agree_start_frac`` of A's diagonal (and is then
    not refined again).
    ``min_overlap``: a candidate must map this fraction of A inside B. ``good_enough``: a
    refined candidate with this confidence ends the refinements. ``max_area_ratio``: the area of A's
    quadrilateral in B over A's area must lie within [1/r, r]. ``low_confidence``: below this
    confidence the answer is flagged."""

    max_pixels: int = 1_000_000
    refine: bool = True
    near: RefineOptions = field(
        default_factory=lambda: RefineOptions(
            num_levels=3, coarse_dof=(), search=False, tolerance_px=0.01, max_iterations=20
        )
    )
    far: RefineOptions = field(default_factory=RefineOptions)
    near_score: float = 0.6
    seconds_per_refine: float = 2.0
    agree_px: float = 1.5
    agree_start_frac: float = 0.015
    min_overlap: float = 0.05
    good_enough: float = 0.9
    max_area_ratio: float = 16.0
    low_confidence: float = 0.5
    confidence_weights: tuple[float, float, float] = CONFIDENCE_WEIGHTS


@dataclass
class Candidate:
    """One estimate: ``name`` (``source`` or ``source+refine``), ``b_H_a`` (3, 3) original
    pixels, ``score`` on the working images, ``seconds`` spent producing it here (refinement;
    0 for a start), ``detail`` why a start was not refined or was rejected; ``confidence``,
    ``agreeing`` and ``reasons`` as :class:`Selection`'s, for this candidate."""

    name: str
    source: str
    b_H_a: np.ndarray
    score: Consistency
    refined: bool = False
    seconds: float = 0.0
    detail: str | None = None
    confidence: float = 0.0
    agreeing: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass
class Selection:
    """``best``: the winner (None when no candidate overlaps enough or all are flat);
    ``candidates``: every one scored, starts first; ``confidence`` in [0, 1];
    ``low_confidence``: ``confidence`` under the option's threshold; ``agreeing``: sources
    whose best candidate ends within ``agree_px`` of the winner (the winner's included);
    ``reasons``: what lowered the confidence, in words."""

    best: Candidate | None
    candidates: list[Candidate]
    confidence: float
    low_confidence: bool
    agreeing: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    work_scale: float = 1.0
    seconds: float = 0.0


def implausible(b_H_a: np.ndarray, size_a: tuple[int, int], max_area_ratio: float) -> str | None:
    """Why ``b_H_a`` cannot be a camera's view of the same plane, or None: A's corners go to
    infinity, fold (non-convex), come out mirrored (a camera never sees a plane from behind),
    or A's area changes more than ``max_area_ratio`` times. ``size_a``: (width, height) in the
    pixels ``b_H_a`` maps from."""
    w, h = size_a
    q, wq = transform_points(np.asarray(b_H_a, np.float64), image_corners(size_a))
    if not (np.isfinite(wq).all() and np.isfinite(q).all()) or np.any(wq * wq[0] <= 0):
        return "image_a's corners map across the horizon"
    e = np.roll(q, -1, axis=0) - q
    cross = e[:, 0] * np.roll(e, -1, axis=0)[:, 1] - e[:, 1] * np.roll(e, -1, axis=0)[:, 0]
    if np.all(cross < 0):  # TL, TR, BR, BL turn clockwise on screen, as A's own corners do
        return "image_a comes out mirrored"
    if not np.all(cross > 0):
        return "image_a's corners map to a folded (non-convex) quadrilateral"
    area = 0.5 * float(np.sum(q[:, 0] * np.roll(q[:, 1], -1) - np.roll(q[:, 0], -1) * q[:, 1]))
    ratio = abs(area) / max(1.0, (w - 1) * (h - 1))
    if not 1.0 / max_area_ratio <= ratio <= max_area_ratio:
        return f"image_a's area changes {ratio:.3g} times"
    return None


def confidence_features(score: Consistency) -> np.ndarray:
    """(3,) inputs of the confidence model: intensity NCC, gradient NCC and 1 (the bias).
    Two more inputs were tried and left out: the overlap (the fits gave it a small weight whose
    sign changed between calibration runs; small overlaps are refused by ``min_overlap``) and
    whether two sources agree (a small negative weight: a raw network start often "agrees"
    within its tolerance yet lies over 5 px off); both are still reported."""
    return np.array([score.ncc, score.gradient_ncc, 1.0])


def confidence_of(score: Consistency, options: SelectionOptions) -> tuple[float, list[str]]:
    """Confidence in [0, 1] that a candidate's corners are within ``CONFIDENCE_PX`` of the
    truth, with the reasons it is low: a logistic model over :func:`confidence_features`
    whose weights (``options.confidence_weights``) were fitted on synthetic pairs with known
    homographies (``bench/calibrate_confidence.py``)."""
    if score.overlap < options.min_overlap:
        return 0.0, [
            f"only {score.overlap:.1%} of image_a lands inside image_b (at least "
            f"{options.min_overlap:.0%} needed to judge it)"
        ]
    if not score.usable:
        return 0.0, ["the overlap is flat: no texture to compare"]
    z = float(confidence_features(score) @ np.asarray(options.confidence_weights))
    conf = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
    reasons: list[str] = []
    if conf < options.low_confidence:
        reasons.append(
            f"weak photometric consistency (NCC {score.ncc:.2f}, gradient NCC "
            f"{score.gradient_ncc:.2f}; for example 0.9 with 0.6 is a 50 % chance)"
        )
        if score.overlap < 0.25:
            reasons.append(f"small overlap ({score.overlap:.0%} of image_a)")
    return conf, reasons


def _default_refiner(a, b, init, options) -> RefineResult:
    return align_gauss_newton(a, b, torch.as_tensor(init), options)


def select_homography(
    image_a: np.ndarray,
    image_b: np.ndarray,
    starts: Mapping[str, np.ndarray | None],
    options: SelectionOptions | None = None,
    *,
    refined: Mapping[str, np.ndarray] | None = None,
    refiner: Refiner | None = None,
    device: torch.device | str = "cpu",
) -> Selection:
    """Score, refine and rank the ``starts``; return the best with a confidence.

    Args:
        image_a, image_b: (H, W) uint8 gray or (H, W, 3) uint8 BGR, sizes may differ.
        starts: source name -> (3, 3) ``b_H_a`` in original pixels, or None (no estimate);
            non-finite matrices are left out.
        options: :class:`SelectionOptions`.
        refined: source name -> (3, 3) ``b_H_a`` refined elsewhere (e.g. by the /refine
            pipeline), scored as the candidate ``"{source}+refine"``.
        refiner: runs one refinement (default: :func:`align_gauss_newton` in this thread; the
            service passes its aligner, which limits concurrent alignments).
        device: where the working images live.

    Returns:
        :class:`Selection`; every candidate carries its score, its confidence and the sources
        that agree with it.
    """
    opts = options or SelectionOptions()
    refine = refiner or _default_refiner
    t0 = time.perf_counter()
    work = shrink_pair(image_a, image_b, opts.max_pixels)
    size_w = (work.a.shape[1], work.a.shape[0])
    tol_start = opts.agree_start_frac * math.hypot(*size_w)
    scorer = ConsistencyScorer(work.a, work.b)
    work_H: dict[int, np.ndarray] = {}

    def make(name: str, source: str, Hw: np.ndarray, **kw) -> Candidate:
        H = work.to_original(Hw)
        why = implausible(H, work.size_a, opts.max_area_ratio)
        score = scorer(Hw) if why is None else _NO_SCORE
        c = Candidate(name, source, H, score, detail=why and f"rejected: {why}", **kw)
        work_H[id(c)] = Hw
        return c

    def usable(H: np.ndarray | None) -> bool:
        return H is not None and np.isfinite(H).all()

    candidates = [make(name, name, work.to_work(H)) for name, H in starts.items() if usable(H)]
    candidates += [
        make(f"{source}+refine", source, work.to_work(H), refined=True)
        for source, H in (refined or {}).items()
        if usable(H)
    ]
    if opts.refine:
        ta, tb = to_tensor(work.a, "image_a", device), to_tensor(work.b, "image_b", device)
        refined_from: list[np.ndarray] = []
        # best start first; a start that agrees with one refined already is not refined again
        for c in sorted((c for c in candidates if not c.refined), key=_rank, reverse=True):
            Hw = work_H[id(c)]
            if c.detail is not None:
                continue
            if c.score.overlap < opts.min_overlap:
                c.detail = f"not refined: overlap {c.score.overlap:.1%} is too small"
                continue
            if any(corner_distance(Hw, r, size_w) <= tol_start for r in refined_from):
                c.detail = "not refined: agrees with a start refined already"
                continue
            done = [x for x in candidates if x.refined and x.score.usable]
            if any(confidence_of(x.score, opts)[0] >= opts.good_enough for x in done):
                c.detail = "not refined: a refined candidate already matches well"
                continue
            near = c.score.usable and c.score.score >= opts.near_score
            ro = replace(opts.near if near else opts.far, max_seconds=opts.seconds_per_refine)
            t = time.perf_counter()
            try:
                res = refine(ta, tb, Hw, ro)
            except (ValueError, RuntimeError) as exc:  # a degenerate start; keep the others
                c.detail = f"refinement failed: {exc}"
                continue
            refined_from.append(Hw)
            r = make(f"{c.name}+refine", c.source, res.b_H_a, refined=True)
            r.seconds = time.perf_counter() - t
            candidates.append(r)

    eligible = [c for c in candidates if c.score.usable and c.score.overlap >= opts.min_overlap]
    for c in eligible:
        Hc = work_H[id(c)]
        c.agreeing = sorted(
            {
                x.source
                for x in eligible
                if corner_distance(work_H[id(x)], Hc, size_w)
                <= (opts.agree_px if x.refined and c.refined else tol_start)
            }
        )
    for c in candidates:
        rejected = c.detail is not None and c.detail.startswith("rejected")
        c.confidence, c.reasons = (0.0, [c.detail]) if rejected else confidence_of(c.score, opts)
    scale = work.scale
    if not eligible:
        reason = "no candidate maps enough of image_a into image_b with texture to compare"
        return Selection(None, candidates, 0.0, True, [], [reason], scale, time.perf_counter() - t0)
    best = max(eligible, key=_rank)
    return Selection(
        best,
        candidates,
        best.confidence,
        best.confidence < opts.low_confidence,
        best.agreeing,
        best.reasons,
        scale,
        time.perf_counter() - t0,
    )


def _rank(c: Candidate) -> tuple[float, float]:
    """Higher is better: the score first (unusable last), then the overlap."""
    return (c.score.score if c.score.usable else -math.inf, c.score.overlap)
