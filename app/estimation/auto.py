"""``method=auto``: the fast candidates first, stronger matching only when they are weak.

1. The fast candidates (HomographyNet's and SIFT's ``b_H_a``, given by the caller, which runs
   them concurrently) are judged and refined (:class:`app.estimation.selection.Selector`).
2. When the best of them is less confident than ``escalate_below`` (a strong perspective, a
   large zoom, repeated texture), a bounded budget is spent on stronger matching, each step
   only if the time left allows it:

   - affine-simulated SIFT (``asift``: image A seen at tilts 2-4, at a reduced working
     resolution), whose matches join the pooled evidence; its estimate is a new candidate;
   - guided matching around the best candidate so far: SIFT's own keypoints at the full
     working resolution, each compared only with keypoints near where the candidate maps it,
     with a looser ratio test (repeated texture), then a robust fit: a precise candidate when
     the guess was roughly right;
   - the photometric refinement of the new candidates.

3. Everything is judged again on the same evidence; the answer is the most confident candidate
   (:meth:`Selector.result`), with what the escalation did in ``Selection.escalation``.

Easy pairs (the fast candidates are confident) cost exactly what they did before. No HTTP here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from app.estimation.selection import Refiner, Selection, SelectionOptions, Selector
from app.features import (
    FeatureEstimate,
    FeatureOptions,
    estimate_features,
    fit_homography,
    guided_matches,
)

__all__ = ["AutoOptions", "estimate_auto"]


@dataclass(frozen=True)
class AutoOptions:
    """``escalate_below``: escalate when the best fast candidate's confidence is below this;
    ``budget_seconds``: wall time the escalation may take (0: never escalate); ``asift``: the
    affine-simulated matcher's options; ``features``: the fast matcher's (its working size, the
    robust fit of guided matches); ``guided_radius_px``/``guided_ratio``: guided
    matching's search radius (working pixels of B) and ratio test."""

    selection: SelectionOptions = field(default_factory=SelectionOptions)
    escalate_below: float = 0.9
    budget_seconds: float = 4.0
    asift: FeatureOptions = field(
        default_factory=lambda: FeatureOptions(detector="asift", robust="usac")
    )
    features: FeatureOptions = field(default_factory=FeatureOptions)
    guided_radius_px: float = 8.0
    guided_ratio: float = 0.9


def _asift_seconds(
    features: FeatureEstimate | None,
    pixels: tuple[int, int],
    sift: FeatureOptions,
    asift: FeatureOptions,
) -> float:
    """A forecast of the affine-simulated matcher's time from the fast SIFT's: the pixels it
    will process (A's views, about ``1 + 1.3 sum(1 / t)`` times A at its working size because
    rotated frames are larger, and B) over the pixels SIFT processed; ``pixels``: A's and B's."""
    from app.features.affine import tilt_longitudes

    if features is None or features.seconds <= 0:
        return 3.0
    views = 1.0 + 1.3 * sum(1.0 / t for t, _ in tilt_longitudes(asift.tilts))
    pa, pb = (min(p, asift.asift_max_pixels) for p in pixels)
    sa, sb = (min(p, sift.max_pixels) for p in pixels)
    return features.seconds * (views * pa + pb) / max(1, sa + sb)


def estimate_auto(
    image_a: np.ndarray,
    image_b: np.ndarray,
    network: np.ndarray | None,
    features: FeatureEstimate | None,
    options: AutoOptions | None = None,
    *,
    budget_seconds: float | None = None,
    refiner: Refiner | None = None,
    device: torch.device | str = "cpu",
) -> Selection:
    """The best ``b_H_a`` for a pair, escalating when the fast candidates are weak.

    Args:
        image_a, image_b: (H, W) uint8 gray or (H, W, 3) uint8 BGR, sizes may differ.
        network: HomographyNet's (3, 3) ``b_H_a`` in original pixels, or None.
        features: the fast keypoint estimate (its matches are the geometric evidence), or None.
        options: :class:`AutoOptions`.
        budget_seconds: overrides ``options.budget_seconds`` (0: no escalation).
        refiner, device: see :class:`app.estimation.selection.Selector`.

    Returns:
        :class:`Selection`.
    """
    o = options or AutoOptions()
    budget = o.budget_seconds if budget_seconds is None else budget_seconds
    sel = Selector(
        image_a,
        image_b,
        o.selection,
        matches=None if features is None else features.correspondences,
        refiner=refiner,
        device=device,
    )
    sel.add("network", network)
    if features is not None:
        sel.add("features", features.b_H_a)
    sel.refine()
    res = sel.result()
    if res.best is not None and res.confidence >= o.escalate_below:
        return res
    if budget <= 0:
        res.escalation = ["not escalated: the budget is 0"]
        return res
    start = time.perf_counter()
    deadline = start + budget
    steps: list[str] = []
    pixels = (image_a.shape[0] * image_a.shape[1], image_b.shape[0] * image_b.shape[1])
    forecast = _asift_seconds(features, pixels, o.features, o.asift)
    if forecast <= budget:
        asift = estimate_features(image_a, image_b, o.asift)
        sel.add_matches(asift.correspondences)
        sel.add("asift", asift.b_H_a)
        steps.append(
            f"asift: {asift.inliers} inliers among {asift.matches} matches, "
            f"{asift.seconds * 1e3:.0f} ms"
            + ("" if asift.b_H_a is not None else f" ({asift.detail})")
        )
    else:
        steps.append(f"asift skipped: forecast {forecast:.1f} s over the {budget:.1f} s budget")
    guess = sel.result().best
    if features is not None and features.kp_a is not None and features.kp_b is not None and guess:
        g = guided_matches(
            features.kp_a, features.kp_b, guess.b_H_a, o.guided_radius_px, o.guided_ratio
        )
        H, inl = fit_homography(g, o.features)
        if H is not None and inl is not None and inl.sum() >= o.features.min_inliers:
            sel.add("guided", H, source=guess.source)
        steps.append(
            f"guided matching around {guess.name}: {0 if inl is None else int(inl.sum())} "
            f"inliers among {len(g)} matches"
        )
    sel.refine(deadline)
    res = sel.result()
    steps.append(f"escalation took {(time.perf_counter() - start) * 1e3:.0f} ms")
    res.escalation = steps
    return res
