"""Points under a homography: an image's corner pixel centres and their mapping (NumPy, one
matrix at a time; conventions as in :mod:`app.geometry`)."""

from __future__ import annotations

import numpy as np

__all__ = ["image_corners", "transform_points"]


def image_corners(size: tuple[int, int]) -> np.ndarray:
    """(4, 2) float64 corner pixel centres of a (width, height) image: TL, TR, BR, BL."""
    w, h = size
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)


def transform_points(dst_H_src: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, 3) matrix and (N, 2) points -> ((N, 2) mapped points, (N,) homogeneous w); a point
    with ``w = 0`` maps to inf/NaN (no warning)."""
    ph = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.asarray(dst_H_src).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return ph[:, :2] / ph[:, 2:3], ph[:, 2]
