"""Feature-based homography between two images: OpenCV keypoints (SIFT, ORB, or SIFT on
affine-simulated views: ``asift``), nearest-two matching with Lowe's ratio test, then a robust
fit, either our RANSAC whose minimal solver is the batched ACA
(:func:`app.geometry.ransac.ransac_homography`) or OpenCV's USAC (MAGSAC++).

Conventions as in :mod:`app.geometry`: pixel coordinates with the origin at the centre of the
top-left pixel (OpenCV's keypoint convention), ``x_b ~ b_H_a @ x_a``, ``H[2, 2] = 1``.

Large images are matched at a working resolution (``max_pixels``; ``asift_max_pixels`` for the
simulated views, which cost about ``1 + sum(n_views / t)`` times one image); keypoints are
mapped back to the original pixels at once, so callers never see the working frame, and
thresholds given in working pixels are converted with the working scale. The tentative matches,
the keypoints and the inlier mask travel with the estimate, so that any other homography can be
checked against the same evidence (:func:`support`) and matched again around a guess
(:func:`guided_matches`). No HTTP here.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal

import cv2
import numpy as np

from app.features.affine import simulate_view, tilt_longitudes
from app.geometry.points import transform_points
from app.geometry.ransac import ransac_homography
from app.imaging import shrink_to, to_gray

__all__ = [
    "Correspondences",
    "Detector",
    "FeatureEstimate",
    "FeatureOptions",
    "Keypoints",
    "Robust",
    "Support",
    "detect",
    "estimate_features",
    "fit_homography",
    "guided_matches",
    "match_keypoints",
    "support",
]

Detector = Literal["sift", "orb", "asift"]
Robust = Literal["aca", "usac"]


@dataclass(frozen=True)
class FeatureOptions:
    """``detector``: SIFT (default, float descriptors, L2), ORB (binary, Hamming) or ``asift``
    (SIFT on image A's affine-simulated views at ``tilts``, for strong foreshortening; slower).
    ``max_features``: keypoints kept per image (strongest first; per view for ``asift``:
    ``asift_features``). ``ratio``: Lowe's test, a match is kept when its distance is below
    ``ratio`` times the second best (within one simulated view). ``robust``: ``"aca"`` (our
    RANSAC + MSAC with ACA hypotheses and a least-squares refit) or ``"usac"`` (OpenCV's
    ``USAC_MAGSAC``, MAGSAC++). ``threshold_px``: inlier transfer error in working pixels.
    ``max_pixels``: images larger than this are matched at about this many pixels
    (``asift_max_pixels`` for ``asift``). ``normalize``: stretch each image's contrast (1st to
    99th percentile) before detection, so that dark or washed-out photos give keypoints too.
    ``threads``: simulated views detected at once (OpenCV releases the GIL).
    ``min_inliers``: fewer matches agreeing on a homography is no estimate (a handful of
    chance matches always agree on some map). ``seed``: makes our RANSAC deterministic."""

    detector: Detector = "sift"
    max_features: int = 4000
    ratio: float = 0.75
    robust: Robust = "aca"
    threshold_px: float = 3.0
    confidence: float = 0.999
    max_iterations: int = 5000
    max_pixels: int = 1_000_000
    normalize: bool = True
    tilts: tuple[float, ...] = (2.0, 2.83)
    asift_max_pixels: int = 300_000
    asift_features: int = 1500
    threads: int = 2
    min_inliers: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "detector": self.detector in ("sift", "orb", "asift"),
            "robust": self.robust in ("aca", "usac"),
            "max_features": 8 <= self.max_features <= 100_000,
            "ratio": 0 < self.ratio <= 1,
            "threshold_px": math.isfinite(self.threshold_px) and self.threshold_px > 0,
            "confidence": 0 < self.confidence < 1,
            "max_iterations": 1 <= self.max_iterations <= 1_000_000,
            "max_pixels": self.max_pixels >= 4096,
            "tilts": len(self.tilts) <= 8 and all(1 < t <= 8 for t in self.tilts),
            "asift_max_pixels": self.asift_max_pixels >= 4096,
            "asift_features": 8 <= self.asift_features <= 100_000,
            "min_inliers": 4 <= self.min_inliers <= 10_000,
            "threads": 1 <= self.threads <= 64,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: invalid value {getattr(self, name)!r}")


@dataclass(frozen=True)
class Keypoints:
    """One image's keypoints: ``points`` (N, 2) float64 original pixels, ``descriptors``
    (N, D) (float32 for SIFT, uint8 for ORB), ``view`` (N,) int the simulated view each comes
    from (0: the image itself), ``norm`` the OpenCV distance for the descriptors,
    ``work_scale``: working pixels per original pixel."""

    points: np.ndarray
    descriptors: np.ndarray
    view: np.ndarray
    norm: int
    work_scale: float

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class Correspondences:
    """Tentative matches: ``src`` (N, 2) points of A, ``dst`` (N, 2) of B, original pixels;
    ``px`` original pixels of B per working pixel (threshold conversion)."""

    src: np.ndarray
    dst: np.ndarray
    px: float = 1.0

    def __len__(self) -> int:
        return len(self.src)

    def __add__(self, other: Correspondences) -> Correspondences:
        return Correspondences(
            np.concatenate([self.src, other.src]),
            np.concatenate([self.dst, other.dst]),
            max(self.px, other.px),
        )


@dataclass(frozen=True)
class Support:
    """How many tentative matches a homography explains: ``inliers`` (count within the
    threshold), ``ratio`` (over all ``matches``), ``rms_px`` their transfer error (working
    pixels), ``spread`` the smaller of the areas covered by the inliers' convex hulls in A and
    in B, as fractions of each image; ``mask`` (N,) bool."""

    inliers: int
    ratio: float
    rms_px: float
    spread: float
    mask: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))
    matches: int = 0


@dataclass(frozen=True)
class FeatureEstimate:
    """``b_H_a``: (3, 3) float64, A pixel -> B pixel, ``H[2, 2] = 1``, or None with ``detail``
    saying why. ``keypoints``: counts (in A, in B); ``matches``: pairs passing the ratio test;
    ``inliers``: matches within the threshold of ``b_H_a``; ``rms_px``: their transfer error at
    the matching resolution; ``scale``: matching width over A's width (1.0: full resolution);
    ``spread``: see :class:`Support`; ``detector`` that produced it. ``correspondences``,
    ``inlier_mask`` and the keypoint sets ``kp_a``/``kp_b`` are kept for later checks (not part
    of any response)."""

    b_H_a: np.ndarray | None
    keypoints: tuple[int, int]
    matches: int
    inliers: int
    rms_px: float
    seconds: float
    scale: float
    detail: str | None = None
    spread: float = 0.0
    detector: str = "sift"
    correspondences: Correspondences | None = field(default=None, repr=False)
    inlier_mask: np.ndarray | None = field(default=None, repr=False)
    kp_a: Keypoints | None = field(default=None, repr=False)
    kp_b: Keypoints | None = field(default=None, repr=False)

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.matches if self.matches else 0.0


def _normalized(gray: np.ndarray) -> np.ndarray:
    """Contrast stretched so that the 1st..99th percentiles span 0..255 (uint8 in, uint8 out);
    an image that already spans most of the range, or is flat, comes back unchanged."""
    lo, hi = np.percentile(gray[::4, ::4], (1, 99))
    if hi - lo >= 160 or hi - lo < 4:
        return gray
    return cv2.convertScaleAbs(gray, alpha=255.0 / (hi - lo), beta=-255.0 * lo / (hi - lo))


def _work_gray(
    image: np.ndarray, max_pixels: int, normalize: bool
) -> tuple[np.ndarray, np.ndarray]:
    gray = to_gray(image)
    if gray.dtype != np.uint8:
        gray = cv2.convertScaleAbs(gray, alpha=255.0 if gray.dtype == np.float32 else 1.0)
    small, T = shrink_to(gray, max_pixels, 16)
    return (_normalized(small) if normalize else small), T


def detect(image: np.ndarray, options: FeatureOptions, simulate: bool = False) -> Keypoints:
    """Keypoints of one image (H, W) or (H, W, 3) at the working resolution, in original
    pixels; ``simulate``: also on the affine-simulated views (``options.tilts``)."""
    max_pixels = options.asift_max_pixels if simulate else options.max_pixels
    gray, T = _work_gray(image, max_pixels, options.normalize)
    T_inv = np.linalg.inv(T)
    orb = options.detector == "orb"
    norm = cv2.NORM_HAMMING if orb else cv2.NORM_L2
    n = options.asift_features if simulate else options.max_features
    sims = [None, *tilt_longitudes(options.tilts)] if simulate else [None]

    def one(sim: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray | None]:
        det = cv2.ORB_create(nfeatures=n) if orb else cv2.SIFT_create(nfeatures=n)  # per thread
        if sim is None:
            kps, d = det.detectAndCompute(gray, None)
            return np.array([k.pt for k in kps], np.float64).reshape(-1, 2), d
        v = simulate_view(gray, *sim)
        kps, d = det.detectAndCompute(v.image, v.mask)
        return v.to_original(np.array([k.pt for k in kps], np.float64).reshape(-1, 2)), d

    if len(sims) > 1 and options.threads > 1:  # OpenCV releases the GIL: views in parallel
        with ThreadPoolExecutor(options.threads) as pool:
            found = list(pool.map(one, sims))
    else:
        found = [one(sim) for sim in sims]
    pts, descs, views = [], [], []
    for i, (p, d) in enumerate(found):
        if d is None or not len(p):
            continue
        pts.append(transform_points(T_inv, p)[0])
        descs.append(d)
        views.append(np.full(len(p), i, np.int32))
    if not pts:
        width = 32 if options.detector == "orb" else 128
        dtype = np.uint8 if options.detector == "orb" else np.float32
        return Keypoints(
            np.zeros((0, 2)), np.zeros((0, width), dtype), np.zeros(0, np.int32), norm, T[0, 0]
        )
    return Keypoints(
        np.concatenate(pts), np.concatenate(descs), np.concatenate(views), norm, T[0, 0]
    )


def match_keypoints(kp_a: Keypoints, kp_b: Keypoints, ratio: float) -> Correspondences:
    """Nearest-two matching of A's keypoints (every simulated view's) against B's, Lowe's ratio
    test on B's two nearest descriptors."""
    px = 1.0 / kp_b.work_scale if kp_b.work_scale > 0 else 1.0
    if not len(kp_a) or len(kp_b) < 2:
        return Correspondences(np.zeros((0, 2)), np.zeros((0, 2)), px)
    pairs = cv2.BFMatcher(kp_a.norm).knnMatch(kp_a.descriptors, kp_b.descriptors, k=2)
    good = [
        (m[0].queryIdx, m[0].trainIdx)
        for m in pairs
        if len(m) == 2 and m[0].distance < ratio * m[1].distance
    ]
    if not good:
        return Correspondences(np.zeros((0, 2)), np.zeros((0, 2)), px)
    ia, ib = np.array(good).T
    return Correspondences(kp_a.points[ia], kp_b.points[ib], px)


def guided_matches(
    kp_a: Keypoints, kp_b: Keypoints, b_H_a: np.ndarray, radius_px: float, ratio: float = 0.9
) -> Correspondences:
    """Matches around a guess: each keypoint of A is compared only with B's keypoints within
    ``radius_px`` (working pixels of B) of where ``b_H_a`` puts it, with a looser ratio test
    among those; finds the matches a global ratio test loses to repeated texture."""
    from scipy.spatial import cKDTree

    px = 1.0 / kp_b.work_scale if kp_b.work_scale > 0 else 1.0
    empty = Correspondences(np.zeros((0, 2)), np.zeros((0, 2)), px)
    if len(kp_a) < 4 or len(kp_b) < 4:
        return empty
    pred, w = transform_points(np.asarray(b_H_a, np.float64), kp_a.points)
    ok = np.flatnonzero((w > 0) & np.isfinite(pred).all(1))
    if len(ok) < 4:
        return empty
    tree = cKDTree(kp_b.points)
    near = tree.query_ball_point(pred[ok], r=radius_px * px)
    mask = np.zeros((len(ok), len(kp_b)), np.uint8)
    for row, cols in enumerate(near):
        mask[row, cols] = 1
    keep = mask.any(1)
    if keep.sum() < 4:
        return empty
    rows = np.flatnonzero(keep)
    pairs = cv2.BFMatcher(kp_a.norm).knnMatch(
        kp_a.descriptors[ok[rows]], kp_b.descriptors, k=2, mask=mask[rows]
    )
    src, dst = [], []
    for r, m in zip(rows, pairs, strict=True):
        if len(m) == 1 or (len(m) == 2 and m[0].distance < ratio * m[1].distance):
            src.append(kp_a.points[ok[r]])
            dst.append(kp_b.points[m[0].trainIdx])
    if len(src) < 4:
        return empty
    return Correspondences(np.array(src), np.array(dst), px)


def _hull_fraction(points: np.ndarray, size: tuple[int, int]) -> float:
    if len(points) < 3:
        return 0.0
    hull = cv2.convexHull(points.astype(np.float32))
    return float(cv2.contourArea(hull)) / float(max(1, size[0] * size[1]))


def support(
    b_H_a: np.ndarray,
    corr: Correspondences,
    threshold_px: float,
    size_a: tuple[int, int],
    size_b: tuple[int, int],
) -> Support:
    """The tentative matches ``corr`` that ``b_H_a`` explains: transfer error (in B) within
    ``threshold_px`` working pixels. See :class:`Support`."""
    n = len(corr)
    if n == 0:
        return Support(0, 0.0, math.nan, 0.0, np.zeros(0, bool), 0)
    pred, w = transform_points(np.asarray(b_H_a, np.float64), corr.src)
    err = np.linalg.norm(pred - corr.dst, axis=1) / corr.px
    mask = (w > 0) & (err <= threshold_px)
    k = int(mask.sum())
    rms = float(np.sqrt(np.mean(err[mask] ** 2))) if k else math.nan
    spread = min(_hull_fraction(corr.src[mask], size_a), _hull_fraction(corr.dst[mask], size_b))
    return Support(k, k / n, rms, spread, mask, n)


def fit_homography(
    corr: Correspondences, options: FeatureOptions
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Robust ``b_H_a`` from tentative matches (original pixels), threshold in working pixels:
    ``(H with H[2, 2] = 1, inlier mask)``, or ``(None, None)`` without consensus."""
    if len(corr) < 4:
        return None, None
    thr = options.threshold_px * corr.px
    if options.robust == "aca":
        fit = ransac_homography(
            corr.src,
            corr.dst,
            threshold=thr,
            confidence=options.confidence,
            max_iters=options.max_iterations,
            seed=options.seed,
        )
        H, inl = (fit.dst_H_src, fit.inliers) if fit.valid else (None, None)
    else:
        H, mask = cv2.findHomography(
            corr.src,
            corr.dst,
            cv2.USAC_MAGSAC,
            thr,
            confidence=options.confidence,
            maxIters=options.max_iterations,
        )
        inl = None if mask is None else mask.ravel().astype(bool)
    if H is None or inl is None or not np.isfinite(H).all() or int(inl.sum()) < 4 or H[2, 2] == 0:
        return None, None
    return H / H[2, 2], inl


def estimate_features(
    image_a: np.ndarray,
    image_b: np.ndarray,
    options: FeatureOptions | None = None,
    *,
    kp_b: Keypoints | None = None,
) -> FeatureEstimate:
    """Homography from keypoint matches.

    Args:
        image_a, image_b: (H, W) uint8 gray or (H, W, 3) uint8 BGR; sizes may differ.
        options: :class:`FeatureOptions`.
        kp_b: B's keypoints when already detected with the same detector and working size.

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
    simulate = opts.detector == "asift"
    ka = detect(image_a, opts, simulate=simulate)
    if kp_b is None:
        kp_b = detect(
            image_b, opts if not simulate else replace(opts, max_pixels=opts.asift_max_pixels)
        )
    nk = (len(ka), len(kp_b))
    scale = ka.work_scale
    size_a = (int(image_a.shape[1]), int(image_a.shape[0]))
    size_b = (int(image_b.shape[1]), int(image_b.shape[0]))

    def result(H=None, corr=None, sup=None, detail=None) -> FeatureEstimate:
        return FeatureEstimate(
            H,
            nk,
            0 if corr is None else len(corr),
            0 if sup is None else sup.inliers,
            math.nan if sup is None else sup.rms_px,
            time.perf_counter() - start,
            scale,
            detail,
            0.0 if sup is None else sup.spread,
            opts.detector,
            corr,
            None if sup is None else sup.mask,
            ka,
            kp_b,
        )

    if min(nk) < 4:
        return result(
            detail=f"too few keypoints ({nk[0]} in image_a, {nk[1]} in image_b; 4 needed)"
        )
    corr = match_keypoints(ka, kp_b, opts.ratio)
    if len(corr) < 4:
        return result(
            corr=corr, detail=f"too few matches pass the ratio test ({len(corr)}; 4 needed)"
        )
    H, _ = fit_homography(corr, opts)
    if H is None:
        return result(corr=corr, detail=f"no consensus among {len(corr)} matches")
    sup = support(H, corr, opts.threshold_px, size_a, size_b)
    if sup.inliers < opts.min_inliers:
        return result(
            corr=corr,
            sup=sup,
            detail=f"no consensus: only {sup.inliers} of {len(corr)} matches agree "
            f"({opts.min_inliers} needed)",
        )
    return result(H, corr, sup)
