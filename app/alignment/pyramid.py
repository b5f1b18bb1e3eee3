"""Gaussian pyramids (Kornia ``pyrdown``) and the exact pixel maps between their levels.

Convention: pixel coordinates with the origin at the centre of the top-left pixel (see
``app.geometry``). ``kornia.geometry.transform.pyrdown`` blurs and resizes with bilinear
interpolation and ``align_corners=False`` to ``floor(side / 2)``, so the centre of coarse pixel
``x_c`` sits at fine coordinate ``x_f = s (x_c + 0.5) - 0.5`` with ``s = W_fine / W_coarse``
(exactly 2 for even sides, slightly more for odd ones). :func:`coarse_from_fine` writes this as a
3x3 matrix ``T`` (:func:`app.imaging.resize_matrix` as a tensor); a homography moves between
levels as ``H_coarse = T_b @ H_fine @ inv(T_a)``.
"""

from __future__ import annotations

import itertools

import torch
from kornia.geometry.transform import pyrdown

from app.imaging import resize_matrix

__all__ = [
    "coarse_from_fine",
    "gaussian_pyramid",
    "level_from_full",
    "num_levels_for",
    "scale_homography",
]


def num_levels_for(size: tuple[int, int], min_coarse_side: int) -> int:
    """Levels (full resolution included) whose coarsest long side is the smallest one that is
    still ``>= min_coarse_side`` (at least 1 level). ``size`` is (width, height)."""
    w, h = size
    n = 1
    while max(w, h) // 2 >= min_coarse_side and min(w, h) // 2 >= 8:
        w, h, n = w // 2, h // 2, n + 1
    return n


def gaussian_pyramid(image: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """(B, C, H, W) -> ``num_levels`` tensors, finest first, each ``pyrdown`` of the previous."""
    if image.ndim != 4:
        raise ValueError(f"image must have shape (B, C, H, W), got {tuple(image.shape)}")
    levels = [image]
    for _ in range(num_levels - 1):
        levels.append(pyrdown(levels[-1]))
    return levels


def coarse_from_fine(
    fine_size: tuple[int, int], coarse_size: tuple[int, int], dtype=torch.float64, device=None
) -> torch.Tensor:
    """(3, 3) ``T`` with ``x_coarse ~ T @ x_fine`` for one ``pyrdown`` (or any
    ``F.interpolate(..., align_corners=False)`` resize); sizes are (width, height)."""
    return torch.as_tensor(resize_matrix(fine_size, coarse_size), dtype=dtype, device=device)


def level_from_full(
    sizes: list[tuple[int, int]], dtype=torch.float64, device=None
) -> list[torch.Tensor]:
    """Per level ``l`` (sizes finest first, (width, height)), the (3, 3) map from full-resolution
    pixels to level-``l`` pixels; identity for level 0."""
    out = [torch.eye(3, dtype=dtype, device=device)]
    for fine, coarse in itertools.pairwise(sizes):
        out.append(coarse_from_fine(fine, coarse, dtype, device) @ out[-1])
    return out


def scale_homography(b_H_a: torch.Tensor, T_a: torch.Tensor, T_b: torch.Tensor) -> torch.Tensor:
    """``T_b @ b_H_a @ inv(T_a)``: the same A->B map in the pixel frames that ``T_a``/``T_b``
    lead to. ``b_H_a``: (B, 3, 3) or (3, 3); ``T_a``, ``T_b``: (3, 3)."""
    return T_b.to(b_H_a) @ b_H_a @ torch.linalg.inv(T_a.to(b_H_a))
