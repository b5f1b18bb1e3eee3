"""Geometry used by training: the 4-point solver and an ONNX-friendly square-to-quad map.

``solve_homography`` uses the project's solver ``app.geometry.four_point.solve_homography_torch``
when it is importable and kornia's ``get_perspective_transform`` otherwise; both return
``dst_H_src`` mapping src pixel coordinates to dst pixel coordinates (OpenCV convention, h33 = 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["corners_like", "solve_homography", "square_to_quad", "transform_points"]


def solve_homography(src: Tensor, dst: Tensor) -> Tensor:
    """(B, 4, 2) src, (B, 4, 2) dst pixel points -> (B, 3, 3) ``dst_H_src``."""
    try:
        from app.geometry.four_point import solve_homography_torch
    except ImportError:  # the project's solver is not there yet
        from kornia.geometry.transform import get_perspective_transform

        return get_perspective_transform(src, dst)
    return solve_homography_torch(src, dst)


def corners_like(x: Tensor, patch_size: int) -> Tensor:
    """(1, 4, 2) corner pixel centres TL, TR, BR, BL of a patch, dtype/device of ``x``."""
    s = float(patch_size - 1)
    c = [[0.0, 0.0], [s, 0.0], [s, s], [0.0, s]]
    return torch.tensor(c, dtype=x.dtype, device=x.device)[None]


def square_to_quad(quad: Tensor, side: float) -> Tensor:
    """Closed form (Heckbert) homography from the square [0, side]^2 to a quad.

    quad: (B, 4, 2) target corners in order TL, TR, BR, BL. Returns (B, 3, 3) ``quad_H_square``
    with h33 = 1. Only elementwise ops: differentiable and exportable to ONNX.
    """
    x0, y0 = quad[:, 0, 0], quad[:, 0, 1]
    x1, y1 = quad[:, 1, 0], quad[:, 1, 1]
    x2, y2 = quad[:, 2, 0], quad[:, 2, 1]
    x3, y3 = quad[:, 3, 0], quad[:, 3, 1]
    sx, sy = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    den = dx1 * dy2 - dx2 * dy1
    g = (sx * dy2 - dx2 * sy) / den
    h = (dx1 * sy - sx * dy1) / den
    a, b, c = x1 - x0 + g * x1, x3 - x0 + h * x3, x0
    d, e, f = y1 - y0 + g * y1, y3 - y0 + h * y3, y0
    one = torch.ones_like(a)
    H = torch.stack([a, b, c, d, e, f, g, h, one], dim=-1).reshape(-1, 3, 3)
    scale = torch.tensor([1.0 / side, 1.0 / side, 1.0], dtype=quad.dtype, device=quad.device)
    return H * scale  # H @ diag(1/side, 1/side, 1): scales the columns


def transform_points(dst_H_src: Tensor, points: Tensor) -> Tensor:
    """(B, 3, 3) matrix, (B, N, 2) points -> (B, N, 2) mapped points."""
    ph = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
    q = ph @ dst_H_src.transpose(1, 2)
    return q[..., :2] / q[..., 2:3]
