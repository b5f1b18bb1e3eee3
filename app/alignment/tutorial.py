"""The Kornia tutorial's alignment loop (seed 001, "Image Alignment by Homography Optimization"),
kept as the baseline that ``bench/refine.py`` compares against.

Faithful to the tutorial: a 3x3 homography in normalised coordinates as one ``nn.Parameter``
initialised to the identity, Adam (lr 1e-3) shared across levels, a Gaussian pyramid of 6 levels
built with ``kornia.geometry.pyrdown``, 100 iterations per level from the coarsest, each warping A
into B's frame with ``HomographyWarper`` and ``torch.inverse`` of the parameter, and the L1 loss
masked by a warped image of ones (> 0.9); a level stops early when the loss changes by less than
``error_tol``. One deliberate difference: the warper uses ``align_corners=True`` so that its
normalised coordinates are the ones ``normal_transform_pixel`` defines (pixel centres at +-1);
with the tutorial's default ``False`` the result cannot be converted to pixels exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry.conversions import normal_transform_pixel
from kornia.geometry.transform import HomographyWarper, pyrdown

__all__ = ["align_tutorial_adam"]


def align_tutorial_adam(
    image_a: torch.Tensor,
    image_b: torch.Tensor,
    b_H_a_init: torch.Tensor | np.ndarray | None = None,
    *,
    num_levels: int = 6,
    num_iterations: int = 100,
    learning_rate: float = 1e-3,
    error_tol: float = 1e-8,
) -> np.ndarray:
    """Align A to B with the tutorial's Adam loop.

    Args:
        image_a: (1, C, Ha, Wa) float in [0, 1] (the tutorial's ``img_src``).
        image_b: (1, C, Hb, Wb) float in [0, 1] (``img_dst``), same device.
        b_H_a_init: optional (3, 3) start in pixels (A -> B); the tutorial starts at the identity.

    Returns:
        ``b_H_a`` (3, 3) float64 NumPy in pixels, ``H[2, 2] = 1``.
    """
    dev, dtype = image_a.device, torch.float32
    ha, wa = image_a.shape[-2:]
    hb, wb = image_b.shape[-2:]
    Na = normal_transform_pixel(ha, wa, device=dev, dtype=torch.float64)[0]
    Nb = normal_transform_pixel(hb, wb, device=dev, dtype=torch.float64)[0]
    H0 = (
        torch.eye(3, dtype=torch.float64, device=dev)
        if b_H_a_init is None
        else torch.as_tensor(b_H_a_init, dtype=torch.float64, device=dev).reshape(3, 3)
    )
    homography = torch.nn.Parameter((Nb @ H0 @ torch.linalg.inv(Na)).to(dtype)[None])
    optimizer = torch.optim.Adam([homography], lr=learning_rate)

    pyr_a, pyr_b = [image_a.to(dtype)], [image_b.to(dtype)]
    for _ in range(num_levels - 1):
        pyr_a.append(pyrdown(pyr_a[-1]))
        pyr_b.append(pyrdown(pyr_b[-1]))

    for scale in range(num_levels - 1, -1, -1):
        img_src, img_dst = pyr_a[scale], pyr_b[scale]
        height, width = img_dst.shape[-2:]
        warper = HomographyWarper(height, width, align_corners=True)
        ones = torch.ones_like(img_src)
        loss_prev = torch.finfo(dtype).max
        for _ in range(num_iterations):
            src_homo_dst = torch.inverse(homography)
            img_src_to_dst = warper(img_src, src_homo_dst)
            loss = F.l1_loss(img_src_to_dst, img_dst, reduction="none")
            valid = warper(ones, src_homo_dst)
            loss = loss.masked_select(valid > 0.9).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            if abs(value - loss_prev) < error_tol:
                break
            loss_prev = value

    G = homography.detach()[0].double()
    b_H_a = torch.linalg.inv(Nb) @ G @ Na
    return (b_H_a / b_H_a[2, 2]).cpu().numpy()
