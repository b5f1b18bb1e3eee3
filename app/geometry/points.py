"""Frames and points: the corner pixel centres of an image or patch, points mapped by a
homography, and how far apart two homographies put an image's corners. Conventions as in
:mod:`app.geometry` (pixel centres at integers, corners TL, TR, BR, BL, ``x_dst ~ dst_H_src @
x_src``).

NumPy functions take one (3, 3) matrix; the ``_torch`` ones are batched and differentiable
(training, ONNX export).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "corner_distance",
    "corners_in",
    "image_corners",
    "image_corners_torch",
    "patch_corners",
    "transform_points",
    "transform_points_torch",
]

_W_EPS = 1e-12


def image_corners(size: tuple[int, int], dtype: type = np.float64) -> np.ndarray:
    """(4, 2) corner pixel centres of a (width, height) image: TL, TR, BR, BL.

    Example:
        >>> image_corners((640, 480)).tolist()
        [[0.0, 0.0], [639.0, 0.0], [639.0, 479.0], [0.0, 479.0]]
    """
    w, h = size
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=dtype)


def patch_corners(patch_size: int) -> np.ndarray:
    """(4, 2) float32 corner pixel centres of a P x P patch, TL, TR, BR, BL."""
    return image_corners((patch_size, patch_size), np.float32)


def image_corners_torch(size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """(1, 4, 2) :func:`image_corners` with the dtype and device of ``like``."""
    return torch.as_tensor(image_corners(size), dtype=like.dtype, device=like.device)[None]


def transform_points(dst_H_src: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, 3) matrix and (N, 2) points -> ((N, 2) mapped points, (N,) homogeneous w); a point
    with ``w = 0`` maps to inf/NaN (no warning)."""
    ph = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.asarray(dst_H_src).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return ph[:, :2] / ph[:, 2:3], ph[:, 2]


def transform_points_torch(dst_H_src: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) matrices, (B, N, 2) points -> (B, N, 2) mapped points (differentiable)."""
    ph = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
    q = ph @ dst_H_src.transpose(1, 2)
    return q[..., :2] / q[..., 2:3]


def corners_in(b_H_a: np.ndarray, size_a: tuple[int, int]) -> np.ndarray | None:
    """(4, 2) positions in B of A's corners under ``b_H_a`` (``size_a``: A's (width,
    height)), or None when one of them maps to infinity."""
    q, w = transform_points(b_H_a, image_corners(size_a))
    if not (np.isfinite(q).all() and np.all(np.abs(w) > _W_EPS)):
        return None
    return q


def corner_distance(H1: np.ndarray, H2: np.ndarray, size_a: tuple[int, int]) -> float:
    """Mean distance (pixels of B) between A's four corners mapped by ``H1`` and by ``H2``
    (``size_a``: A's (width, height)); inf when a corner maps to infinity."""
    p1, p2 = corners_in(H1, size_a), corners_in(H2, size_a)
    if p1 is None or p2 is None:
        return math.inf
    out = float(np.linalg.norm(p1 - p2, axis=1).mean())
    return out if math.isfinite(out) else math.inf
