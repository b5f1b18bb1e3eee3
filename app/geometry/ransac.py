"""Robust homography estimation: RANSAC (MSAC scoring) whose minimal solver is the batched ACA,
many hypotheses solved and scored at once, then a least-squares refit on the inliers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.geometry import _kernels as K
from app.geometry.dlt import dlt_homography
from app.geometry.four_point import PARALLEL_MIN_ITEMS, solve_four_point
from app.geometry.reasons import Reason

__all__ = ["RansacResult", "ransac_homography"]


@dataclass(frozen=True)
class RansacResult:
    """``dst_H_src`` (3, 3) with H[2, 2] = 1 (zeros if invalid); ``inliers`` (N,) bool;
    ``reason`` a :class:`Reason` code; ``iterations`` hypotheses drawn; ``rms_error`` of the
    inliers' transfer error in pixels."""

    dst_H_src: np.ndarray
    inliers: np.ndarray
    reason: int
    iterations: int
    rms_error: float

    @property
    def valid(self) -> bool:
        return self.reason == Reason.OK

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def _required_iterations(inlier_ratio: float, confidence: float, sample: int = 4) -> float:
    """Draws needed to pick one all-inlier sample with probability ``confidence``; inf when the
    inlier fraction is so small that ``1 - ratio**sample`` rounds to 1 (50,000 points with one
    inlier set of 4: the log would be 0)."""
    p = inlier_ratio**sample
    if p >= 1.0:
        return 1.0
    miss = math.log1p(-p)  # exact for tiny p, where log(1 - p) would be log(1.0) = 0
    if p <= 0.0 or miss == 0.0:
        return math.inf
    return math.log1p(-confidence) / miss


def _inliers(
    H: np.ndarray, src: np.ndarray, dst: np.ndarray, thr2: float
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool inlier mask (squared transfer error below ``thr2``) and (N,) squared errors."""
    err = np.empty(src.shape[0])
    kernel = (
        K.transfer_error_kernel
        if len(src) >= PARALLEL_MIN_ITEMS
        else K.transfer_error_kernel_serial
    )
    kernel(np.ascontiguousarray(H, dtype=np.float64), src, dst, err)
    return err < thr2, err


def ransac_homography(
    src: np.ndarray,
    dst: np.ndarray,
    *,
    threshold: float = 3.0,
    confidence: float = 0.999,
    max_iters: int = 2000,
    seed: int | None = 0,
    batch: int = 256,
    local_refits: int = 5,
) -> RansacResult:
    """RANSAC over (N, 2) correspondences with the ACA minimal solver.

    Args:
        src, dst: (N, 2) points in pixels.
        threshold: inlier if the forward transfer error ``|H src - dst|`` is below it (px).
        confidence: stop when an outlier-free sample has been drawn with this probability.
        max_iters: most hypotheses drawn.
        seed: makes the result deterministic (same seed, same answer).
        batch: hypotheses solved and scored together.
        local_refits: least-squares refits on the inliers while the inlier set grows.

    Returns:
        :class:`RansacResult`.
    """
    if threshold <= 0 or not 0 < confidence < 1 or max_iters < 1 or batch < 1:
        raise ValueError("need threshold > 0, 0 < confidence < 1, max_iters >= 1, batch >= 1")
    # C order, float64 and writeable: the layout the warm-up compiled the kernels for
    s = np.array(src, dtype=np.float64, order="C", copy=None)
    d = np.array(dst, dtype=np.float64, order="C", copy=None)
    s = s if s.flags.writeable else s.copy()
    d = d if d.flags.writeable else d.copy()
    if s.ndim != 2 or s.shape[1] != 2 or s.shape != d.shape:
        raise ValueError(f"src and dst must both be (N, 2), got {s.shape} and {d.shape}")
    n = s.shape[0]
    empty = np.zeros(n, dtype=bool)
    if n < 4:
        return RansacResult(np.zeros((3, 3)), empty, int(Reason.TOO_FEW_POINTS), 0, math.nan)
    if not (np.isfinite(s).all() and np.isfinite(d).all()):
        return RansacResult(np.zeros((3, 3)), empty, int(Reason.NON_FINITE_INPUT), 0, math.nan)

    rng = np.random.default_rng(seed)
    thr2 = float(threshold) ** 2
    best_score, best_H, best_count = math.inf, None, 0
    drawn, needed = 0, float(max_iters)
    while drawn < min(needed, max_iters):
        k = int(min(batch, max_iters - drawn))
        idx = rng.integers(0, n, size=(k, 4))
        hyp = solve_four_point(s[idx], d[idx])  # repeated indices are flagged as repeated points
        scores = np.empty(k)
        counts = np.empty(k, dtype=np.int64)
        msac = K.msac_kernel if k * n >= 8 * PARALLEL_MIN_ITEMS else K.msac_kernel_serial
        msac(hyp.dst_H_src, hyp.valid, s, d, thr2, scores, counts)
        drawn += k
        j = int(np.argmin(scores))
        if scores[j] < best_score:
            best_score, best_H, best_count = scores[j], hyp.dst_H_src[j].copy(), int(counts[j])
            needed = _required_iterations(best_count / n, confidence)

    if best_H is None or best_count < 4:
        return RansacResult(np.zeros((3, 3)), empty, int(Reason.NO_CONSENSUS), drawn, math.nan)

    H = best_H
    inl, err = _inliers(H, s, d, thr2)
    for _ in range(local_refits):
        fit = dlt_homography(s[None], d[None], inl[None])
        if not fit.valid[0]:
            break
        new_inl, new_err = _inliers(fit.dst_H_src[0], s, d, thr2)
        if new_inl.sum() < inl.sum():
            break
        grew = new_inl.sum() > inl.sum()
        H, inl, err = fit.dst_H_src[0], new_inl, new_err
        if not grew:
            break
    rms = float(np.sqrt(err[inl].mean())) if inl.any() else math.nan
    return RansacResult(H, inl, int(Reason.OK), drawn, rms)
