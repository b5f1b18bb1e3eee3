"""How well a homography lines two images up: zero-mean normalised cross-correlation (NCC) of one
image and the other warped onto it, over the pixels where both are seen, with the overlap
fractions; and the same correlation of their gradients (central differences, away from the
overlap's edge).

Both are invariant to a global gain and bias of either image (brightness and contrast change)
and lie in [-1, 1]; intensity NCC is the score ECC maximises (Evangelidis & Psarakis 2008).
Intensity NCC stays high for smooth images even when they are misaligned by many pixels;
gradient NCC falls to ~0 as soon as edges miss each other, but is noisy on flat, grainy
images; the ranking score is their mean. Both images are blurred a little first (``sigma`` px)
so that sub-pixel resampling, JPEG blocking and a blurred image cost less than a misalignment.

The comparison is made in the frame of the *finer* image (the one with more pixels per unit
of the scene where they overlap): the coarser one is warped onto it, which only interpolates;
warping the finer one onto the coarser grid would sample it sparsely and alias (a zoom of 2x
or more). One bilinear warp (OpenCV) per homography, on the CPU.
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
    ``overlap``: fraction of A's pixels that land inside B; ``mean_abs``: mean difference in
    gray levels (0-255) after fitting gain and bias, for reading, not ranking;
    ``gradient_ncc``: NCC of the image gradients (x and y together) on the overlap;
    ``overlap_b``: fraction of B's pixels that A covers (NaN when not measured)."""

    ncc: float
    overlap: float
    mean_abs: float
    gradient_ncc: float = math.nan
    overlap_b: float = math.nan

    @property
    def usable(self) -> bool:
        return math.isfinite(self.ncc) and math.isfinite(self.gradient_ncc)

    @property
    def score(self) -> float:
        """The ranking score: the mean of ``ncc`` and ``gradient_ncc`` (NaN when unusable)."""
        return 0.5 * (self.ncc + self.gradient_ncc) if self.usable else math.nan

    @property
    def shared(self) -> float:
        """The larger overlap fraction: how much of the smaller view the other one shows (a
        4x zoom shares all of B but 1/16 of A)."""
        return (
            self.overlap if not math.isfinite(self.overlap_b) else max(self.overlap, self.overlap_b)
        )


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


class _Side:
    """One image prepared for scoring: blurred gray, a stack (image, ones, interior mask) to
    warp in one call, and its gradients."""

    def __init__(self, image: np.ndarray | torch.Tensor, sigma: float, edge: int) -> None:
        x = _as_gray(image)
        if sigma > 0:
            x = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        inner = np.zeros_like(x)
        inner[edge : x.shape[0] - edge, edge : x.shape[1] - edge] = 1.0
        self.x = x
        self.size = (x.shape[1], x.shape[0])
        self.stack = np.dstack([x, np.ones_like(x), inner])
        self.grad = _gradients(x)


def _grid(size: tuple[int, int]) -> np.ndarray:
    """(1536, 2) pixel centres of a 48 x 32 grid (for overlap fractions within ~1 %)."""
    w, h = size
    xs, ys = np.meshgrid((np.arange(48) + 0.5) * w / 48 - 0.5, (np.arange(32) + 0.5) * h / 32 - 0.5)
    return np.stack([xs.ravel(), ys.ravel()], 1)


def _inside(H: np.ndarray, pts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    q = np.c_[pts, np.ones(len(pts))] @ H.T
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = q[:, 0] / q[:, 2], q[:, 1] / q[:, 2]
    return (q[:, 2] > 0) & (x >= -0.5) & (x <= size[0] - 0.5) & (y >= -0.5) & (y <= size[1] - 0.5)


def _zoom(H: np.ndarray, point: np.ndarray) -> float:
    """sqrt |det J| of ``x -> H x`` at ``point``: target pixels per source pixel."""
    p = H @ np.array([point[0], point[1], 1.0])
    J = (H[:2, :2] * p[2] - np.outer(p[:2], H[2, :2])) / (p[2] * p[2])
    return math.sqrt(abs(float(np.linalg.det(J))))


class ConsistencyScorer:
    """:func:`photometric_consistency` for many homographies of one pair: both images' blur and
    gradients are computed once; each call is one warp (OpenCV, bilinear) and a few
    reductions, on the CPU (a few ms at 640 x 480), in the finer image's frame.

    Args:
        image_a, image_b: (H, W) or (H, W, 3) BGR arrays (uint8, or float in [0, 1]), or
            (1, 1, H, W) tensors in [0, 1]; sizes may differ.
        sigma: Gaussian pre-blur of both images, pixels (0: none).
        edge: pixels this close to the warped image's border are left out of the gradient
            correlation (there the warp cuts the image off).
    """

    def __init__(
        self,
        image_a: np.ndarray | torch.Tensor,
        image_b: np.ndarray | torch.Tensor,
        sigma: float = 1.0,
        edge: int = 2,
    ) -> None:
        self.side_a, self.side_b = _Side(image_a, sigma, edge), _Side(image_b, sigma, edge)
        self.grid_a, self.grid_b = _grid(self.side_a.size), _grid(self.side_b.size)

    def __call__(self, b_H_a: np.ndarray) -> Consistency:
        H = np.asarray(b_H_a, dtype=np.float64)
        if H.shape != (3, 3) or not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-300:
            return Consistency(math.nan, 0.0, math.nan)
        a_H_b = np.linalg.inv(H)
        in_b = _inside(H, self.grid_a, self.side_b.size)
        in_a = _inside(a_H_b, self.grid_b, self.side_a.size)
        frac_b = float(in_a.mean())
        if in_b.any() and _zoom(H, self.grid_a[in_b].mean(0)) > 1.0:
            ncc, mean_abs, gncc, frac_t = _compare(self.side_b, self.side_a, a_H_b)
            return Consistency(ncc, float(in_b.mean()), mean_abs, gncc, frac_t)
        ncc, mean_abs, gncc, frac_t = _compare(self.side_a, self.side_b, H)
        return Consistency(ncc, frac_t, mean_abs, gncc, frac_b)


def _compare(t: _Side, m: _Side, m_H_t: np.ndarray) -> tuple[float, float, float, float]:
    """NCC, mean |difference|, gradient NCC and covered fraction of template ``t`` against
    ``m`` warped onto it (``m_H_t``: template pixel -> moving pixel)."""
    wt, ht = t.size
    # dst(x) = m(m_H_t x): the moving image resampled on the template's grid; zero outside it
    warped = cv2.warpPerspective(
        m.stack,
        m_H_t,
        (wt, ht),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0.0, 0.0, 0.0, 0.0),
    )
    mask = (warped[..., 1] > 0.999).astype(np.float32)
    n = _sum(mask)
    frac = n / float(ht * wt)
    if n < _MIN_PIXELS:
        return math.nan, math.nan, math.nan, frac
    x, y = t.x, warped[..., 0]
    mx, my = _sum(x * mask) / n, _sum(y * mask) / n
    xc, yc = (x - mx) * mask, (y - my) * mask
    sxx, syy, sxy = _sum(xc * xc), _sum(yc * yc), _sum(xc * yc)
    if sxx <= 1e-12 * n or syy <= 1e-12 * n:  # a flat overlap says nothing about alignment
        return math.nan, math.nan, math.nan, frac
    gain = sxy / syy  # least-squares fit of the template by gain * warped + bias on the overlap
    mean_abs = _sum(np.abs(xc - gain * yc)) / n * 255.0
    # gradients where the 3x3 cross is inside the moving image's interior
    mi = (warped[..., 2] > 0.999).astype(np.float32)
    mi = mi[1:-1, 1:-1] * mi[1:-1, 2:] * mi[1:-1, :-2] * mi[2:, 1:-1] * mi[:-2, 1:-1]
    gx, gy = _gradients(y)
    ax, ay = t.grad
    num = _sum((ax * gx + ay * gy) * mi)
    den = math.sqrt(_sum((ax * ax + ay * ay) * mi) * _sum((gx * gx + gy * gy) * mi))
    gncc = num / den if den > 0 else math.nan
    return sxy / math.sqrt(sxx * syy), mean_abs, gncc, frac


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
