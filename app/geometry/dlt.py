"""Normalised direct linear transform (least squares over N >= 4 correspondences), batched."""

from __future__ import annotations

import numpy as np

from app.geometry.four_point import FourPointResult
from app.geometry.reasons import Reason

__all__ = ["dlt_homography", "normalize_homographies"]

_RANK_TOL = 1e-10


def _hartley(pts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B, 3, 3) similarity moving the weighted centroid to 0 and mean distance to sqrt(2)."""
    cnt = np.maximum(w.sum(1), 1.0)
    c = (pts * w[..., None]).sum(1) / cnt[:, None]
    d = np.sqrt(((pts - c[:, None]) ** 2).sum(-1))
    md = (d * w).sum(1) / cnt
    s = np.sqrt(2.0) / np.where(md > 0, md, 1.0)
    T = np.zeros((pts.shape[0], 3, 3))
    T[:, 0, 0] = T[:, 1, 1] = s
    T[:, 0, 2] = -s * c[:, 0]
    T[:, 1, 2] = -s * c[:, 1]
    T[:, 2, 2] = 1.0
    return T


def normalize_homographies(H: np.ndarray, reason: np.ndarray) -> np.ndarray:
    """Scale (B, 3, 3) matrices to H[2, 2] = 1 in place of valid items; flags ``H33_NEAR_ZERO`` and
    ``NON_FINITE_RESULT`` in ``reason`` (modified in place) and zeroes those items."""
    h33 = H[:, 2, 2]
    amax = np.abs(H).max(axis=(1, 2))
    ok = reason == Reason.OK
    bad_h33 = ok & ~(np.abs(h33) > 1e-14 * amax)
    reason[bad_h33] = Reason.H33_NEAR_ZERO
    ok &= ~bad_h33
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.where(ok[:, None, None], H / np.where(ok, h33, 1.0)[:, None, None], 0.0)
    fin = np.isfinite(out).all(axis=(1, 2))
    reason[ok & ~fin] = Reason.NON_FINITE_RESULT
    out[~fin] = 0.0
    return out


def dlt_homography(
    src: np.ndarray, dst: np.ndarray, mask: np.ndarray | None = None
) -> FourPointResult:
    """Least-squares homographies by the normalised DLT (Hartley), solved through QR + SVD.

    Args:
        src, dst: (B, N, 2) or (N, 2) correspondences in pixels, N >= 4.
        mask: optional (B, N) bool, the correspondences to use (e.g. RANSAC inliers).

    Returns:
        :class:`~app.geometry.four_point.FourPointResult` (float64): ``dst_H_src`` minimising the
        algebraic error on normalised points, H[2, 2] = 1; items with fewer than four usable
        points or a rank-deficient system are flagged.
    """
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.ndim == 2:
        s, d = s[None], d[None]
        mask = None if mask is None else np.asarray(mask).reshape(1, -1)
    if s.ndim != 3 or s.shape[-1] != 2 or s.shape != d.shape:
        raise ValueError(f"src and dst must both be (B, N, 2), got {s.shape} and {d.shape}")
    B, N = s.shape[:2]
    w = np.ones((B, N)) if mask is None else np.asarray(mask, dtype=bool).astype(np.float64)
    finite = np.isfinite(s).all(-1) & np.isfinite(d).all(-1)
    reason = np.zeros(B, dtype=np.uint8)
    reason[~(finite | (w == 0)).all(1)] = Reason.NON_FINITE_INPUT
    w = w * finite
    s = np.where(finite[..., None], s, 0.0)
    d = np.where(finite[..., None], d, 0.0)
    reason[(reason == 0) & (w.sum(1) < 4)] = Reason.TOO_FEW_POINTS

    T1, T2 = _hartley(s, w), _hartley(d, w)
    sn = s * T1[:, None, 0, 0:1] + T1[:, None, :2, 2]
    dn = d * T2[:, None, 0, 0:1] + T2[:, None, :2, 2]
    x, y = sn[..., 0], sn[..., 1]
    u, v = dn[..., 0], dn[..., 1]
    z, o = np.zeros_like(x), np.ones_like(x)
    r1 = np.stack([-x, -y, -o, z, z, z, u * x, u * y, u], -1) * w[..., None]
    r2 = np.stack([z, z, z, -x, -y, -o, v * x, v * y, v], -1) * w[..., None]
    A = np.concatenate([r1, r2], axis=1)  # (B, 2N, 9)
    if A.shape[1] < 9:
        A = np.concatenate([A, np.zeros((B, 9 - A.shape[1], 9))], axis=1)
    R = np.linalg.qr(A, mode="r") if A.shape[1] > 9 else A
    _, sv, Vt = np.linalg.svd(R, full_matrices=True)
    Hn = Vt[:, -1, :].reshape(B, 3, 3)
    rank_ok = sv[:, 7] > _RANK_TOL * sv[:, 0]
    reason[(reason == 0) & ~rank_ok] = Reason.SINGULAR_SYSTEM
    H = np.linalg.solve(T2, Hn @ T1)
    H = normalize_homographies(H, reason)
    return FourPointResult(H, reason == Reason.OK, reason)
