"""Geometry only training needs: an ONNX-friendly closed-form square-to-quad homography. The
rest (corners, point transforms, the 4-point solver) comes from :mod:`app.geometry`, shared
with serving."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["square_to_quad"]


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
