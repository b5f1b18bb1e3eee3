"""Normalised direct linear transform (least squares over N >= 4 correspondences), batched."""

from __future__ import annotations

import numpy as np

from app.geometry.four_point import FourPointResult
from app.geometry.reasons import Reason

__all__ = ["dlt_homography", "normalize_homographies"]

_RANK_TOL = 1e-10


def _hartley(pts: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Similarity moving the weighted centroid to 0 and the mean distance to sqrt(2).

    Computed on the points divided by their largest magnitude first, so that coordinates up to
    the float64 range (1e300) neither overflow nor underflow.

    Returns:
        ``T`` (B, 3, 3), its exact inverse ``T_inv`` (B, 3, 3) (no linear solve, so nothing
        raises on a degenerate item) and ``ok`` (B,): items whose normalisation is finite and
        non-singular.
    """
    B = pts.shape[0]
    m = (np.abs(pts) * (w[..., None] > 0)).max(axis=(1, 2)) if pts.shape[1] else np.zeros(B)
    m = np.where(m > 0, m, 1.0)
    p = pts / m[:, None, None]
    cnt = np.maximum(w.sum(1), 1.0)
    c = (p * w[..., None]).sum(1) / cnt[:, None]
    d = np.hypot(p[..., 0] - c[:, None, 0], p[..., 1] - c[:, None, 1])
    md = (d * w).sum(1) / cnt  # in units of m: within (0, 2] for distinct points
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        s = np.sqrt(2.0) / (md * m)  # scale in pixels^-1
        inv_s = md * m / np.sqrt(2.0)
    cx, cy = c[:, 0] * m, c[:, 1] * m
    ok = (md > 0) & np.isfinite(s) & (s > 0) & np.isfinite(inv_s) & (inv_s > 0)
    s, inv_s = np.where(ok, s, 1.0), np.where(ok, inv_s, 1.0)
    cx, cy = np.where(ok, cx, 0.0), np.where(ok, cy, 0.0)
    T = np.zeros((B, 3, 3))
    T[:, 0, 0] = T[:, 1, 1] = s
    T[:, 0, 2] = -s * cx
    T[:, 1, 2] = -s * cy
    T[:, 2, 2] = 1.0
    T_inv = np.zeros((B, 3, 3))
    T_inv[:, 0, 0] = T_inv[:, 1, 1] = inv_s
    T_inv[:, 0, 2] = cx
    T_inv[:, 1, 2] = cy
    T_inv[:, 2, 2] = 1.0
    return T, T_inv, ok


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


def _null_vectors(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, M, 9) systems, M >= 9 -> (B, 3, 3) least-squares null vectors and (B,) rank-8 flags.
    LAPACK's rare non-convergence fails one item (flagged), never the batch."""
    B = A.shape[0]
    try:
        R = np.linalg.qr(A, mode="r") if A.shape[1] > 9 else A
        _, sv, Vt = np.linalg.svd(R, full_matrices=True)
    except np.linalg.LinAlgError:
        if B == 1:
            return np.zeros((1, 3, 3)), np.zeros(1, dtype=bool)
        parts = [_null_vectors(A[i : i + 1]) for i in range(B)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return Vt[:, -1, :].reshape(B, 3, 3), sv[:, 7] > _RANK_TOL * sv[:, 0]


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

    T1, _, ok1 = _hartley(s, w)
    T2, T2_inv, ok2 = _hartley(d, w)
    # all points of an item coincide (or their spread is not representable): no fit
    reason[(reason == 0) & ~(ok1 & ok2)] = Reason.SINGULAR_SYSTEM
    w = w * (ok1 & ok2)[:, None]
    sn = s * T1[:, None, 0, 0:1] + T1[:, None, :2, 2]
    dn = d * T2[:, None, 0, 0:1] + T2[:, None, :2, 2]
    # inputs near the float64 range can still leave a non-finite normalised point: drop the item
    fin = (np.isfinite(sn).all(-1) & np.isfinite(dn).all(-1)) | (w == 0)
    reason[(reason == 0) & ~fin.all(1)] = Reason.NON_FINITE_RESULT
    w = w * fin.all(1)[:, None]
    sn = np.where(w[..., None] > 0, sn, 0.0)
    dn = np.where(w[..., None] > 0, dn, 0.0)
    x, y = sn[..., 0], sn[..., 1]
    u, v = dn[..., 0], dn[..., 1]
    z, o = np.zeros_like(x), np.ones_like(x)
    r1 = np.stack([-x, -y, -o, z, z, z, u * x, u * y, u], -1) * w[..., None]
    r2 = np.stack([z, z, z, -x, -y, -o, v * x, v * y, v], -1) * w[..., None]
    A = np.concatenate([r1, r2], axis=1)  # (B, 2N, 9)
    if A.shape[1] < 9:
        A = np.concatenate([A, np.zeros((B, 9 - A.shape[1], 9))], axis=1)
    Hn, rank_ok = _null_vectors(A)
    reason[(reason == 0) & ~rank_ok] = Reason.SINGULAR_SYSTEM
    with np.errstate(over="ignore", invalid="ignore"):
        H = T2_inv @ Hn @ T1
    H = normalize_homographies(H, reason)
    return FourPointResult(H, reason == Reason.OK, reason)
