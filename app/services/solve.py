"""The /solve use case on NumPy arrays: pick the solver, run it, collect per-item results.
No HTTP here; routes turn :class:`SolveOutput` into JSON or NPZ."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from app.geometry.dlt import dlt_homography
from app.geometry.four_point import solve_four_point
from app.geometry.ransac import ransac_homography

SolveMethod = Literal["aca", "sks", "dlt"]


@dataclass(frozen=True)
class RansacOptions:
    threshold: float = 3.0
    confidence: float = 0.999
    max_iters: int = 2000
    seed: int | None = 0


@dataclass
class SolveOutput:
    """Per-item results: ``dst_H_src`` (B, 3, 3) zeros where invalid, ``reason`` (B,) uint8;
    robust fits add ``inliers`` (one (N_i,) bool array per item) and ``rms_error`` (B,)."""

    dst_H_src: np.ndarray
    reason: np.ndarray
    inliers: list[np.ndarray] | None = None
    rms_error: np.ndarray | None = None
    iterations: np.ndarray | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def valid(self) -> np.ndarray:
        return self.reason == 0


def solve_minimal(
    src: np.ndarray,
    dst: np.ndarray,
    method: Literal["aca", "sks"] = "aca",
    normalize: Literal["h33", "frobenius"] = "h33",
    dtype: type = np.float64,
) -> SolveOutput:
    """(B, 4, 2) correspondences -> B homographies by a 4-point solver."""
    r = solve_four_point(src, dst, method=method, normalize=normalize, dtype=dtype)
    return SolveOutput(r.dst_H_src, r.reason)


def solve_least_squares(
    src: list[np.ndarray], dst: list[np.ndarray], normalize: Literal["h33", "frobenius"] = "h33"
) -> SolveOutput:
    """Items of N_i >= 4 correspondences (N_i may differ) -> normalised DLT fits."""
    H = np.zeros((len(src), 3, 3))
    reason = np.zeros(len(src), dtype=np.uint8)
    by_n: dict[int, list[int]] = {}
    for i, s in enumerate(src):
        by_n.setdefault(len(s), []).append(i)
    for n, idx in by_n.items():
        s = np.stack([src[i] for i in idx]).reshape(len(idx), n, 2)
        d = np.stack([dst[i] for i in idx]).reshape(len(idx), n, 2)
        r = dlt_homography(s, d)
        H[idx], reason[idx] = r.dst_H_src, r.reason
    if normalize == "frobenius":
        H = _to_frobenius(H, reason)
    return SolveOutput(H, reason)


def solve_robust(
    src: list[np.ndarray],
    dst: list[np.ndarray],
    options: RansacOptions,
    normalize: Literal["h33", "frobenius"] = "h33",
) -> SolveOutput:
    """RANSAC (ACA hypotheses, MSAC score, LS refit on the inliers) per item."""
    B = len(src)
    H = np.zeros((B, 3, 3))
    reason = np.zeros(B, dtype=np.uint8)
    rms = np.zeros(B)
    iters = np.zeros(B, dtype=np.int64)
    inliers = []
    for i in range(B):
        r = ransac_homography(
            np.asarray(src[i], dtype=np.float64).reshape(-1, 2),
            np.asarray(dst[i], dtype=np.float64).reshape(-1, 2),
            threshold=options.threshold,
            confidence=options.confidence,
            max_iters=options.max_iters,
            seed=options.seed,
        )
        H[i], reason[i], iters[i] = r.dst_H_src, r.reason, r.iterations
        rms[i] = r.rms_error if np.isfinite(r.rms_error) else 0.0
        inliers.append(r.inliers)
    if normalize == "frobenius":
        H = _to_frobenius(H, reason)
    return SolveOutput(H, reason, inliers=inliers, rms_error=rms, iterations=iters)


def _to_frobenius(H: np.ndarray, reason: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(H.reshape(len(H), 9), axis=1)
    n = np.where((reason == 0) & (n > 0), n, 1.0)
    out = H / n[:, None, None]
    out[reason != 0] = 0.0
    return out
