"""How well a homography lines two images up: zero-mean normalised cross-correlation (NCC) of A
and B warped onto A, over the pixels of A that land inside B, with that overlap fraction; and
the same correlation of their gradients (central differences, away from the overlap's edge).

Both are invariant to a global gain and bias of either image (brightness and contrast change)
and lie in [-1, 1]; intensity NCC is the score ECC maximises (Evangelidis & Psarakis 2008).
Intensity NCC stays high for smooth images even when they are misaligned by many pixels;
gradient NCC falls to ~0 as soon as edges miss each other, but is noisy on flat, grainy
images; the ranking score is their mean. Both images are blurred a little first (``sigma`` px)
so that sub-pixel resampling, JPEG blocking and a blurred B cost less than a misalignment.
One bilinear warp (OpenCV) per homography, on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from app.imaging import to_gray

__all__ = ["Consistency", "ConsistencyScorer", "photometric_consistency"]

_MIN_PIXELS = 64


@dataclass(frozen=True)
class Consistency:
    """``ncc``: zero-mean NCC in [-1, 1] on the overlap (NaN when the overlap is empty or flat);
    ``overlap``: fraction of A's pixels that land inside B; ``mean_abs``: mean |A - B warped| in
    gray levels (0-255) after fitting gain and bias, for reading, not ranking;
    ``gradient_ncc``: NCC of the image gradients (x and y together) on the overlap."""

    ncc: float
    overlap: float
    mean_abs: float
    gradient_ncc: float = math.nan

    @property
    def usable(self) -> bool:
        return math.isfinite(self.ncc) and math.isfinite(self.gradient_ncc)

    @property
    def score(self) -> float:
        """The ranking score: the mean of ``ncc`` and ``gradient_ncc`` (NaN when unusable)."""
        return 0.5 * (self.ncc + self.gradient_ncc) if self.usable else math.nan


def _as_gray(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W) / (1, 1, H, W) tensor in [0, 1], or (H, W) / (H, W, 3) BGR uint8 or float array
    -> (H, W) float32 in [0, 1] (uint8 divided by 255)."""
    if isinstance(image, torch.Tensor):
        return image.detach().reshape(image.shape[-2:]).float().cpu().numpy()
    x = to_gray(np.asarray(image))
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def _gradients(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of (h, w) -> two (h - 2, w - 2) maps (x and y), interior pixels."""
    return (x[1:-1, 2:] - x[1:-1, :-2], x[2:, 1:-1] - x[:-2, 1:-1])


def _sum(x: np.ndarray) -> float:
    return float(x.sum(dtype=np.float64))


class ConsistencyScorer:
    """:func:`photometric_consistency` for many homographies of one pair: A's blur and
    gradients and B's blur are computed once; each call is one warp (OpenCV, bilinear) and a
    few reductions, on the CPU (about 5 ms at 640 x 480).

    Args:
        image_a, image_b: (H, W) or (H, W, 3) BGR arrays (uint8, or float in [0, 1]), or
            (1, 1, H, W) tensors in [0, 1]; sizes may differ.
        sigma: Gaussian pre-blur of both images, pixels (0: none).
        edge: B's pixels this close to its border are left out of the gradient correlation
            (there the warp cuts the image off).
    """

    def __init__(
        self,
        image_a: np.ndarray | torch.Tensor,
        image_b: np.ndarray | torch.Tensor,
        sigma: float = 1.0,
        edge: int = 2,
    ) -> None:
        a, b = _as_gray(image_a), _as_gray(image_b)
        if sigma > 0:
            a = cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
            b = cv2.GaussianBlur(b, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        inner = np.zeros_like(b)
        inner[edge : b.shape[0] - edge, edge : b.shape[1] - edge] = 1.0
        self.a = a
        self.b_stack = np.dstack([b, np.ones_like(b), inner])  # (Hb, Wb, 3) float32
        self.ga = _gradients(a)

    def __call__(self, b_H_a: np.ndarray) -> Consistency:
        a = self.a
        ha, wa = a.shape
        H = np.asarray(b_H_a, dtype=np.float64)
        if H.shape != (3, 3) or not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-300:
            return Consistency(math.nan, 0.0, math.nan)
        # dst(x) = B(b_H_a x): B resampled on A's grid; zero outside B
        warped = cv2.warpPerspective(
            self.b_stack,
            H,
            (wa, ha),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0.0, 0.0, 0.0, 0.0),
        )
        m = (warped[..., 1] > 0.999).astype(np.float32)
        n = _sum(m)
        overlap = n / float(ha * wa)
        if n < _MIN_PIXELS:
            return Consistency(math.nan, overlap, math.nan)
        y = warped[..., 0]
        mx, my = _sum(a * m) / n, _sum(y * m) / n
        xc, yc = (a - mx) * m, (y - my) * m
        sxx, syy, sxy = _sum(xc * xc), _sum(yc * yc), _sum(xc * yc)
        if sxx <= 1e-12 * n or syy <= 1e-12 * n:  # a flat overlap says nothing about alignment
            return Consistency(math.nan, overlap, math.nan)
        gain = sxy / syy  # least-squares fit of A by gain * B + bias on the overlap
        mean_abs = _sum(np.abs(xc - gain * yc)) / n * 255.0
        # gradients where the 3x3 cross is inside B's interior
        mi = (warped[..., 2] > 0.999).astype(np.float32)
        mi = mi[1:-1, 1:-1] * mi[1:-1, 2:] * mi[1:-1, :-2] * mi[2:, 1:-1] * mi[:-2, 1:-1]
        gx, gy = _gradients(y)
        ax, ay = self.ga
        num = _sum((ax * gx + ay * gy) * mi)
        den = math.sqrt(_sum((ax * ax + ay * ay) * mi) * _sum((gx * gx + gy * gy) * mi))
        gncc = num / den if den > 0 else math.nan
        return Consistency(sxy / math.sqrt(sxx * syy), overlap, mean_abs, gncc)


def photometric_consistency(
    image_a: np.ndarray | torch.Tensor,
    image_b: np.ndarray | torch.Tensor,
    b_H_a: np.ndarray,
    sigma: float = 1.0,
) -> Consistency:
    """Score ``b_H_a`` (A pixel -> B pixel) by NCC on the overlap.

    Args:
        image_a, image_b: see :class:`ConsistencyScorer`.
        b_H_a: (3, 3) float64.
        sigma: Gaussian pre-blur of both images, pixels (0: none).

    Returns:
        :class:`Consistency`.

    Example:
        >>> a = np.random.default_rng(0).random((60, 80), dtype=np.float32)
        >>> round(photometric_consistency(a, 0.5 * a + 0.2, np.eye(3)).ncc, 6)
        1.0
    """
    return ConsistencyScorer(image_a, image_b, sigma)(b_H_a)
