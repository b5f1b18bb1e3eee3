"""Feature-based homography between two images: OpenCV keypoints (SIFT, or ORB), nearest-two
matching with Lowe's ratio test, then a robust fit, either our RANSAC whose minimal solver is the
batched ACA (:func:`app.geometry.ransac.ransac_homography`) or OpenCV's USAC (MAGSAC++).

Conventions as in :mod:`app.geometry`: pixel coordinates with the origin at the centre of the
top-left pixel (OpenCV's keypoint convention), ``x_b ~ b_H_a @ x_a``, ``H[2, 2] = 1``.

Large images are matched at a working resolution (``max_pixels``); the matrix is mapped back to
the original pixels exactly (:func:`app.imaging.shrink_pair`), so callers never see the
working frame. No HTTP here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from app.geometry.ransac import ransac_homography
from app.imaging import shrink_pair, to_gray

__all__ = ["Detector", "FeatureEstimate", "FeatureOptions", "Robust", "estimate_features"]

Detector = Literal["sift", "orb"]
Robust = Literal["aca", "usac"]


@dataclass(frozen=True)
class FeatureOptions:
    """``detector``: SIFT (default, float descriptors, L2) or ORB (binary, Hamming).
    ``max_features``: keypoints kept per image (strongest first). ``ratio``: Lowe's test, a match
    is kept when its distance is below ``ratio`` times the second best. ``robust``: ``"aca"``
    (our RANSAC + MSAC with ACA hypotheses and a least-squares refit) or ``"usac"`` (OpenCV's
    ``USAC_MAGSAC``). ``threshold_px``: inlier transfer error at the matching resolution.
    ``max_pixels``: images larger than this are matched at about this many pixels.
    ``seed``: makes our RANSAC deterministic."""

    detector: Detector = "sift"
    max_features: int = 4000
    ratio: float = 0.75
    robust: Robust = "aca"
    threshold_px: float = 3.0
    confidence: float = 0.999
    max_iterations: int = 5000
    max_pixels: int = 1_000_000
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "detector": self.detector in ("sift", "orb"),
            "robust": self.robust in ("aca", "usac"),
            "max_features": 8 <= self.max_features <= 100_000,
            "ratio": 0 < self.ratio <= 1,
            "threshold_px": math.isfinite(self.threshold_px) and self.threshold_px > 0,
            "confidence": 0 < self.confidence < 1,
            "max_iterations": 1 <= self.max_iterations <= 1_000_000,
            "max_pixels": self.max_pixels >= 4096,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: invalid value {getattr(self, name)!r}")


@dataclass(frozen=True)
class FeatureEstimate:
    """``b_H_a``: (3, 3) float64, A pixel -> B pixel, ``H[2, 2] = 1``, or None with ``detail``
    saying why. ``keypoints``: (in A, in B); ``matches``: pairs passing the ratio test;
    ``inliers``: matches within the threshold of ``b_H_a``; ``rms_px``: their transfer error at
    the matching resolution; ``scale``: matching width over A's width (1.0: full resolution)."""

    b_H_a: np.ndarray | None
    keypoints: tuple[int, int]
    matches: int
    inliers: int
    rms_px: float
    seconds: float
    scale: float
    detail: str | None = None

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.matches if self.matches else 0.0


def _detector(options: FeatureOptions):
    if options.detector == "sift":
        return cv2.SIFT_create(nfeatures=options.max_features), cv2.NORM_L2
    return cv2.ORB_create(nfeatures=options.max_features), cv2.NORM_HAMMING


def estimate_features(
    image_a: np.ndarray, image_b: np.ndarray, options: FeatureOptions | None = None
) -> FeatureEstimate:
    """Homography from keypoint matches.

    Args:
        image_a, image_b: (H, W) uint8 gray or (H, W, 3) uint8 BGR; sizes may differ.
        options: :class:`FeatureOptions`.

    Returns:
        :class:`FeatureEstimate`; ``b_H_a`` is None (and ``detail`` says why) when there are
        too few keypoints or matches, or no consensus.

    Example:
        >>> a = cv2.GaussianBlur((np.random.default_rng(0).random((240, 320)) * 255)
        ...     .astype(np.uint8), (0, 0), 2)
        >>> T = np.array([[1.0, 0, 5], [0, 1, -3], [0, 0, 1]])
        >>> r = estimate_features(a, cv2.warpPerspective(a, T, (320, 240)))
        >>> bool(np.abs(r.b_H_a - T).max() < 0.05)
        True
    """
    opts = options or FeatureOptions()
    start = time.perf_counter()
    work = shrink_pair(to_gray(image_a), to_gray(image_b), opts.max_pixels, 16)
    ga, gb, scale = work.a, work.b, work.scale
    det, norm = _detector(opts)
    ka, da = det.detectAndCompute(ga, None)
    kb, db = det.detectAndCompute(gb, None)
    nk = (len(ka), len(kb))

    def fail(detail: str, matches: int = 0) -> FeatureEstimate:
        return FeatureEstimate(
            None, nk, matches, 0, math.nan, time.perf_counter() - start, scale, detail
        )

    if da is None or db is None or min(nk) < 4:
        return fail(f"too few keypoints ({nk[0]} in image_a, {nk[1]} in image_b; 4 needed)")
    pairs = cv2.BFMatcher(norm).knnMatch(da, db, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < opts.ratio * m[1].distance]
    if len(good) < 4:
        return fail(f"too few matches pass the ratio test ({len(good)}; 4 needed)", len(good))
    src = np.array([ka[m.queryIdx].pt for m in good], dtype=np.float64)
    dst = np.array([kb[m.trainIdx].pt for m in good], dtype=np.float64)
    if opts.robust == "aca":
        fit = ransac_homography(
            src,
            dst,
            threshold=opts.threshold_px,
            confidence=opts.confidence,
            max_iters=opts.max_iterations,
            seed=opts.seed,
        )
        H, inl = (fit.dst_H_src, fit.inliers) if fit.valid else (None, None)
    else:
        H, mask = cv2.findHomography(
            src,
            dst,
            cv2.USAC_MAGSAC,
            opts.threshold_px,
            confidence=opts.confidence,
            maxIters=opts.max_iterations,
        )
        inl = None if mask is None else mask.ravel().astype(bool)
    if H is None or inl is None or not np.isfinite(H).all() or int(inl.sum()) < 4:
        return fail(f"no consensus among {len(good)} matches", len(good))
    ph = np.c_[src[inl], np.ones(int(inl.sum()))] @ H.T
    err = np.linalg.norm(ph[:, :2] / ph[:, 2:] - dst[inl], axis=1)
    b_H_a = work.to_original(H)
    if not np.isfinite(b_H_a).all():
        return fail(f"no finite homography from {len(good)} matches", len(good))
    return FeatureEstimate(
        b_H_a,
        nk,
        len(good),
        int(inl.sum()),
        float(np.sqrt(np.mean(err**2))),
        time.perf_counter() - start,
        scale,
    )
