"""Shared generators and references for geometry tests."""

from __future__ import annotations

import numpy as np


def project(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply (3, 3) H to (N, 2) points in float64 (reference for reprojection checks)."""
    p = np.c_[pts, np.ones(len(pts))] @ np.asarray(H, np.float64).T
    return p[:, :2] / p[:, 2:]


def min_sine(pts: np.ndarray) -> float:
    """Smallest |sin| of the angle at any vertex of any triple of the four points (1 = ideal)."""
    best = 1.0
    for i, j, k in ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)):
        for a, b, c in ((i, j, k), (j, i, k), (k, i, j)):
            u, v = pts[b] - pts[a], pts[c] - pts[a]
            nu, nv = np.linalg.norm(u), np.linalg.norm(v)
            if nu == 0 or nv == 0:
                return 0.0
            best = min(best, abs(u[0] * v[1] - u[1] * v[0]) / (nu * nv))
    return best
