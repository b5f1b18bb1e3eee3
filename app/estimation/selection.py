"""Best of several homography estimates for one image pair, and how far to trust it.

Every candidate (HomographyNet's ``b_H_a``, SIFT's, an affine-simulated matcher's, their
photometric refinements, ...) is judged on the same evidence (:mod:`app.estimation.evidence`):

1. plausibility: maps no camera produces are rejected (:func:`implausible`);
2. the photometric consistency on the overlap, at a fixed small working size
   (:class:`app.alignment.consistency.ConsistencyScorer`; ``score_pixels``);
3. the geometric support among the pooled tentative keypoint matches (count, ratio, spread);
4. agreement with other, independent sources.

The :class:`EvidenceModel` turns them into a confidence (probability that the corner error is
within 5 px); of the candidates nearly as confident as the most confident one, the one with the
best photometric score wins (the most precise measure of alignment, and the one that sees past
the keypoints' hull, where a zoomed view's corners are extrapolated): a photometric refinement
is kept only when it keeps the keypoint evidence and lines the images up better, otherwise its
start is the answer.

Starts are refined photometrically (:func:`app.alignment.gauss_newton.align_gauss_newton`,
gain/bias), best first; starts that already agree are refined once; once a refined candidate
reaches ``good_enough``, the remaining starts are not refined.

All matrices are ``b_H_a`` in the original images' pixels (``x_b ~ b_H_a @ x_a``, origin at
the centre of the top-left pixel, ``H[2, 2] = 1``); the working resolutions of scoring and
refinement are internal. No HTTP here.
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
from app.estimation.evidence import (
    DEFAULT_MODEL,
    Evidence,
    EvidenceModel,
    extrapolation,
    implausible,
)
from app.features import Correspondences, Support, support
from app.geometry.points import corner_distance
from app.imaging import WorkingPair, local_contrast, shrink_pair

__all__ = [
    "Candidate",
    "Selection",
    "SelectionOptions",
    "Selector",
    "select_homography",
]

_NO_SCORE = Consistency(math.nan, 0.0, math.nan)
# (a, b, init, options) -> RefineResult; a, b: (1, 1, H, W) tensors in [0, 1]
Refiner = Callable[[torch.Tensor, torch.Tensor, np.ndarray, RefineOptions], RefineResult]


@dataclass(frozen=True)
class SelectionOptions:
    """``max_pixels``: working resolution of the refinement; ``score_pixels``: of the
    photometric scoring. ``refine``: refine the starts at all. ``near``/``far``: refinement
    options for a start whose confidence is at least ``near_confidence`` (probably within a few
    pixels: a short pyramid on contrast-normalised images, no coarse search) and for the others
    (full pyramid on the intensities, translation and affine first, coarse search).
    ``agree_frac``: two candidates agree when A's corners under them are
    within this fraction of B's diagonal (mean over the corners). ``min_overlap``: a candidate
    must map this fraction of A inside B. ``good_enough``: a refined candidate with this
    confidence ends the refinements. ``max_zoom``/``max_anisotropy``: see
    :func:`app.estimation.evidence.implausible`. ``support_px``: a keypoint match supports a
    candidate within this transfer error (working pixels of the matching).
    ``precision_margin``: the candidates at most this much less confident than the most
    confident one compete on the photometric score. ``contrast_sigma`` /
    ``score_contrast_sigma``: near refinements and the scoring compare locally
    contrast-normalised images (:func:`app.imaging.local_contrast`, these Gaussians in their
    working pixels), blind to vignetting and lighting gradients; 0 compares the intensities.
    ``low_confidence``: below this confidence the answer is flagged. ``model``: the confidence
    model."""

    max_pixels: int = 1_000_000
    score_pixels: int = 65_536
    refine: bool = True
    near: RefineOptions = field(
        default_factory=lambda: RefineOptions(
            num_levels=3, coarse_dof=(), search=False, tolerance_px=0.01, max_iterations=20
        )
    )
    far: RefineOptions = field(default_factory=RefineOptions)
    near_confidence: float = 0.5
    seconds_per_refine: float = 2.0
    agree_frac: float = 0.01
    min_overlap: float = 0.05
    good_enough: float = 0.9
    max_zoom: float = 16.0
    max_anisotropy: float = 48.0
    support_px: float = 3.0
    precision_margin: float = 0.1
    contrast_sigma: float = 4.0
    score_contrast_sigma: float = 8.0
    low_confidence: float = 0.5
    model: EvidenceModel = DEFAULT_MODEL


@dataclass
class Candidate:
    """One estimate: ``name`` (``source`` or ``source+refine``), ``b_H_a`` (3, 3) original
    pixels, ``score`` photometric, ``support`` geometric (None without keypoint matches),
    ``seconds`` spent producing it here (refinement; 0 for a start), ``detail`` why a start was
    not refined or was rejected; ``confidence``, ``agreeing`` (the sources within the agreement
    tolerance, its own included) and ``reasons`` as :class:`Selection`'s, for this candidate;
    ``extrapolation``: see :func:`app.estimation.evidence.extrapolation`."""

    name: str
    source: str
    b_H_a: np.ndarray
    score: Consistency
    support: Support | None = None
    refined: bool = False
    seconds: float = 0.0
    detail: str | None = None
    confidence: float = 0.0
    agreeing: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    extrapolation: float = 0.0

    @property
    def rejected(self) -> bool:
        return self.detail is not None and self.detail.startswith("rejected")

    @property
    def evidence(self) -> Evidence:
        return Evidence(
            self.score, self.support, max(0, len(self.agreeing) - 1), self.extrapolation
        )


@dataclass
class Selection:
    """``best``: the winner (None when no candidate overlaps enough or all are flat);
    ``candidates``: every one scored, in the order they were produced; ``confidence`` in
    [0, 1]; ``low_confidence``: ``confidence`` under the option's threshold; ``agreeing``:
    sources whose candidates end within the agreement tolerance of the winner (its own
    included); ``reasons``: what lowered the confidence, in words; ``escalation``: what the
    auto method tried beyond the fast candidates (see :mod:`app.estimation.auto`)."""

    best: Candidate | None
    candidates: list[Candidate]
    confidence: float
    low_confidence: bool
    agreeing: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    work_scale: float = 1.0
    seconds: float = 0.0
    escalation: list[str] = field(default_factory=list)


def _default_refiner(a, b, init, options) -> RefineResult:
    return align_gauss_newton(a, b, torch.as_tensor(init), options)


def _finite(H: np.ndarray | None) -> bool:
    return H is not None and bool(np.isfinite(H).all())


class Selector:
    """Candidates of one image pair, judged on the same evidence; add starts and matches as they
    come (:meth:`add`, :meth:`add_matches`), refine (:meth:`refine`), then read the
    :meth:`result`.

    Args:
        image_a, image_b: (H, W) uint8 gray or (H, W, 3) uint8 BGR, sizes may differ.
        options: :class:`SelectionOptions`.
        matches: tentative keypoint matches (original pixels), the geometric evidence.
        refiner: runs one refinement (default: :func:`align_gauss_newton` in this thread).
        device: where the refinement's working images live.
    """

    def __init__(
        self,
        image_a: np.ndarray,
        image_b: np.ndarray,
        options: SelectionOptions | None = None,
        *,
        matches: Correspondences | None = None,
        refiner: Refiner | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.options = opts = options or SelectionOptions()
        self.t0 = time.perf_counter()
        self.image_a, self.image_b = image_a, image_b
        self.size_a = (int(image_a.shape[1]), int(image_a.shape[0]))
        self.size_b = (int(image_b.shape[1]), int(image_b.shape[0]))
        self.tolerance = opts.agree_frac * math.hypot(*self.size_b)
        self.scoring: WorkingPair = shrink_pair(image_a, image_b, opts.score_pixels)
        sigma = opts.score_contrast_sigma
        self.scorer = ConsistencyScorer(
            *(
                (local_contrast(self.scoring.a, sigma), local_contrast(self.scoring.b, sigma))
                if sigma > 0
                else (self.scoring.a, self.scoring.b)
            )
        )
        self.matches = matches if matches is not None and len(matches) else None
        self.refiner = refiner or _default_refiner
        self.device = device
        self.candidates: list[Candidate] = []
        self._work: WorkingPair | None = None
        self._tensors: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
        self._refined_from: list[np.ndarray] = []

    # -- evidence ---------------------------------------------------------------------------
    def _support(self, H: np.ndarray) -> Support | None:
        if self.matches is None:
            return None
        return support(H, self.matches, self.options.support_px, self.size_a, self.size_b)

    def add(
        self, name: str, b_H_a: np.ndarray | None, *, source: str | None = None, refined=False
    ) -> Candidate | None:
        """Score one estimate (original pixels); None (nothing added) when it is missing or
        not finite."""
        if not _finite(b_H_a):
            return None
        H = np.asarray(b_H_a, np.float64)
        H = H / H[2, 2] if H[2, 2] != 0 else H
        o = self.options
        why = implausible(H, self.size_a, self.size_b, o.max_zoom, o.max_anisotropy)
        score = _NO_SCORE if why else self.scorer(self.scoring.to_work(H))
        c = Candidate(
            name,
            source or name,
            H,
            score,
            None if why else self._support(H),
            refined,
            detail=why and f"rejected: {why}",
            extrapolation=extrapolation(H, self.size_a, self.size_b),
        )
        self.candidates.append(c)
        return c

    def add_matches(self, matches: Correspondences | None) -> None:
        """Pool more tentative matches (for example an affine-simulated matcher's) and judge
        every candidate on the whole pool."""
        if matches is None or not len(matches):
            return
        self.matches = matches if self.matches is None else self.matches + matches
        for c in self.candidates:
            if not c.rejected:
                c.support = self._support(c.b_H_a)

    def eligible(self) -> list[Candidate]:
        m = self.options.min_overlap
        return [
            c for c in self.candidates if not c.rejected and c.score.usable and c.score.overlap >= m
        ]

    def _judge(self) -> None:
        """Agreement, confidence and reasons of every candidate."""
        o = self.options
        eligible = self.eligible()
        for c in self.candidates:
            c.agreeing = (
                sorted(
                    {
                        x.source
                        for x in eligible
                        if corner_distance(x.b_H_a, c.b_H_a, self.size_a) <= self.tolerance
                    }
                )
                if c in eligible
                else []
            )
        for c in self.candidates:
            if c.rejected:
                c.confidence, c.reasons = 0.0, [c.detail or "rejected"]
                continue
            ev = c.evidence
            c.confidence = o.model.confidence(ev)
            c.reasons = o.model.reasons(ev, o.low_confidence)

    # -- refinement -------------------------------------------------------------------------
    def _prepared(self, work: WorkingPair, normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        sigma = self.options.contrast_sigma
        if sigma <= 0 or not normalise:
            return work.a, work.b
        return local_contrast(work.a, sigma), local_contrast(work.b, sigma)

    def _refine_frame(self, near: bool) -> tuple[WorkingPair, tuple[torch.Tensor, torch.Tensor]]:
        """The refinement's working images: contrast-normalised for a start that is already
        close (a short pyramid, whose levels keep the structure the normalisation leaves);
        the intensities for a far start, whose coarse levels need the low frequencies that
        the normalisation removes."""
        if self._work is None:
            self._work = shrink_pair(self.image_a, self.image_b, self.options.max_pixels)
        if near not in self._tensors:
            a, b = self._prepared(self._work, normalise=near)
            self._tensors[near] = (
                to_tensor(a, "image_a", self.device),
                to_tensor(b, "image_b", self.device),
            )
        return self._work, self._tensors[near]

    def refine(self, deadline: float | None = None) -> None:
        """Refine the unrefined starts, best first (see the module docstring); a start whose
        refinement would begin after ``deadline`` (``time.perf_counter()`` seconds) is left."""
        o = self.options
        if not o.refine:
            return
        self._judge()
        starts = [c for c in self.candidates if not c.refined and c.detail is None]
        for c in sorted(starts, key=lambda c: (c.confidence, *_rank(c)), reverse=True):
            if not c.score.usable or c.score.shared < o.min_overlap:
                c.detail = f"not refined: overlap {c.score.shared:.1%} is too small"
                continue
            if any(
                corner_distance(c.b_H_a, r, self.size_a) <= self.tolerance
                for r in self._refined_from
            ):
                c.detail = "not refined: agrees with a start refined already"
                continue
            self._judge()
            if any(x.refined and x.confidence >= o.good_enough for x in self.candidates):
                c.detail = "not refined: a refined candidate already matches well"
                continue
            if deadline is not None and time.perf_counter() >= deadline:
                c.detail = "not refined: out of time"
                continue
            near = c.confidence >= o.near_confidence
            work, (ta, tb) = self._refine_frame(near)
            seconds = o.seconds_per_refine
            if deadline is not None:
                seconds = max(0.05, min(seconds, deadline - time.perf_counter()))
            ro = replace(o.near if near else o.far, max_seconds=seconds)
            t = time.perf_counter()
            try:
                Hw_new = self.refiner(ta, tb, work.to_work(c.b_H_a), ro).b_H_a
            except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
                c.detail = f"refinement failed: {exc}"  # a degenerate start; keep the others
                continue
            self._refined_from.append(c.b_H_a)
            r = self.add(
                f"{c.name}+refine", work.to_original(Hw_new), source=c.source, refined=True
            )
            if r is not None:
                r.seconds = time.perf_counter() - t

    # -- the answer -------------------------------------------------------------------------
    def result(self) -> Selection:
        o = self.options
        self._judge()
        eligible = self.eligible()
        scale = self.scoring.scale
        seconds = time.perf_counter() - self.t0
        if not eligible:
            reason = "no candidate maps enough of image_a into image_b with texture to compare"
            return Selection(None, self.candidates, 0.0, True, [], [reason], scale, seconds)
        top = max(c.confidence for c in eligible)
        close = [c for c in eligible if c.confidence >= top - o.precision_margin]
        best = max(close, key=_rank)
        return Selection(
            best,
            self.candidates,
            best.confidence,
            best.confidence < o.low_confidence,
            best.agreeing,
            best.reasons,
            scale,
            seconds,
        )


def select_homography(
    image_a: np.ndarray,
    image_b: np.ndarray,
    starts: Mapping[str, np.ndarray | None],
    options: SelectionOptions | None = None,
    *,
    matches: Correspondences | None = None,
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
        matches: tentative keypoint matches, the geometric evidence (None: photometric only).
        refined: source name -> (3, 3) ``b_H_a`` refined elsewhere (e.g. by the /refine
            pipeline), scored as the candidate ``"{source}+refine"``.
        refiner, device: see :class:`Selector`.

    Returns:
        :class:`Selection`; every candidate carries its evidence, its confidence and the sources
        that agree with it.
    """
    sel = Selector(image_a, image_b, options, matches=matches, refiner=refiner, device=device)
    for name, H in starts.items():
        sel.add(name, H)
    for source, H in (refined or {}).items():
        sel.add(f"{source}+refine", H, source=source, refined=True)
    sel.refine()
    return sel.result()


def _rank(c: Candidate) -> tuple[float, float]:
    """Higher is better: the photometric score first (unusable last), then the overlap."""
    return (c.score.score if c.score.usable else -math.inf, c.score.shared)
