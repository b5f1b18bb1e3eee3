"""Compile (or load from Numba's on-disk cache) the refinement's CPU kernels
(:mod:`app.alignment._kernels`), so that no request pays the JIT cost.

Every array the kernels receive is built inside
:func:`app.alignment.gauss_newton.align_gauss_newton` (C-contiguous float32 images and template
data, float64 matrices), whatever the caller's input, so one least-squares and one robust
refinement compile every specialisation a request can need (``tests/alignment/test_warmup.py``).
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from app.alignment.gauss_newton import align_gauss_newton
from app.alignment.types import RefineOptions

__all__ = ["warm_up_alignment", "warmup_pair"]


def warmup_pair(device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A small textured (1, 1, 48, 64) pair in [0, 1]: B is A under a slight shear and shift."""
    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur((rng.random((48, 64)) * 255).astype(np.uint8), (5, 5), 1.5)
    H = np.array([[1.0, 0.01, 1.0], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    b = cv2.warpPerspective(a, H, (64, 48))

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32) / 255.0)[None, None].to(device)

    return tensor(a), tensor(b)


def warm_up_alignment(device: torch.device | str = "cpu") -> float:
    """Run a least-squares and a robust refinement of :func:`warmup_pair` on ``device`` (on the
    CPU: every kernel of :mod:`app.alignment._kernels`). Returns the seconds it took."""
    start = time.perf_counter()
    a, b = warmup_pair(device)
    align_gauss_newton(a, b, None, RefineOptions(max_iterations=5))
    # the robust losses run their own kernel (weighted_terms)
    align_gauss_newton(a, b, None, RefineOptions(max_iterations=2, robust="huber"))
    return time.perf_counter() - start
