"""Image helpers shared by inference, features, alignment, estimation, the services and
training: gray conversion, resizing and the exact pixel maps that resizing implies. NumPy and
OpenCV only; no HTTP.

Convention: pixel coordinates with the origin at the centre of the top-left pixel (see
:mod:`app.geometry`). ``cv2.resize`` (and ``F.interpolate(..., align_corners=False)``, Kornia's
``pyrdown``) sample with the half-pixel convention, so resizing an image from ``(W, H)`` to
``(w, h)`` moves the point ``x`` to ``(x + 0.5) * w / W - 0.5`` (and likewise for y):
:func:`resize_matrix` writes this as a 3x3 matrix ``dst_T_src``. A homography ``b_H_a`` between
two images moves to their resized copies as ``T_b @ b_H_a @ inv(T_a)``
(:class:`WorkingPair`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "WorkingPair",
    "local_contrast",
    "resize_gray",
    "resize_matrix",
    "shrink_pair",
    "shrink_to",
    "to_gray",
]

_CV_DEPTHS = (np.uint8, np.uint16, np.float32)


def to_gray(image: np.ndarray, channel_order: str = "bgr") -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image -> (H, W) gray, OpenCV's weights.

    ``channel_order`` is ``"bgr"`` (what ``cv2.imdecode`` returns) or ``"rgb"``; a fourth
    (alpha) channel is ignored. uint8, uint16 and float32 keep their dtype; other dtypes come
    back as float32.

    Example:
        >>> to_gray(np.full((2, 3, 3), 200, np.uint8)).shape
        (2, 3)
    """
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W[, 1|3|4]) image, got shape {image.shape}")
    if image.shape[2] == 1:
        return np.ascontiguousarray(image[..., 0])
    if channel_order not in ("bgr", "rgb"):
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    colour = image[..., :3]
    if colour.dtype not in _CV_DEPTHS:
        colour = colour.astype(np.float32)
    code = cv2.COLOR_RGB2GRAY if channel_order == "rgb" else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(np.ascontiguousarray(colour), code)


def resize_gray(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Any uint8 image -> gray (size[1], size[0]) uint8; ``size`` is (width, height).
    Shrinking uses ``cv2.INTER_AREA``, anything else ``cv2.INTER_LINEAR``."""
    gray = to_gray(image)
    if gray.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {gray.dtype}")
    if (gray.shape[1], gray.shape[0]) == tuple(size):
        return gray
    shrink = gray.shape[1] >= size[0] and gray.shape[0] >= size[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(gray, tuple(size), interpolation=interp)


def resize_matrix(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """(3, 3) float64 ``dst_T_src``: pixel coordinates of an image of ``src_size`` -> those of
    the same image resized to ``dst_size`` (both (width, height), half-pixel convention).

    Example:
        >>> resize_matrix((640, 480), (320, 240)) @ [0.5, 0.5, 1.0]
        array([0., 0., 1.])
    """
    sx, sy = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
    return np.array(
        [[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]], dtype=np.float64
    )


def shrink_to(
    image: np.ndarray, max_pixels: int, min_side: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """An image larger than ``max_pixels`` resized (``cv2.INTER_AREA``) to about that many
    pixels, with the (3, 3) float64 ``work_T_orig`` (original pixel -> working pixel,
    :func:`resize_matrix`); a small enough image comes back as is with the identity. Works for
    (H, W) and (H, W, C) arrays."""
    h, w = image.shape[:2]
    if w * h <= max_pixels:
        return image, np.eye(3)
    s = math.sqrt(max_pixels / (w * h))
    size = (max(min_side, int(w * s)), max(min_side, int(h * s)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, resize_matrix((w, h), size)


def local_contrast(image: np.ndarray, sigma: float = 4.0, floor: float = 0.03) -> np.ndarray:
    """Local contrast normalisation: ``(x - G*x) / sqrt(G*(x - G*x)^2 + floor^2)`` with a
    Gaussian ``G`` of ``sigma`` px, on intensities in [0, 1], mapped back to [0, 1] as
    ``0.5 + 0.15 y`` (clipped): (H, W) float32.

    A smooth illumination field (vignetting, a lighting gradient, a change of exposure) is
    locally a gain and a bias, which this removes; the structure that photometric alignment
    needs stays. ``floor`` (intensity units) keeps flat, noisy areas from being blown up into
    full-contrast noise. Any image :func:`to_gray` takes; uint8 is divided by 255.

    Example:
        >>> x = np.tile(np.linspace(0, 255, 64), (32, 1)).astype(np.uint8)
        >>> float(np.abs(local_contrast(x)[8:-8, 8:-8] - 0.5).max()) < 0.05  # a ramp is flat
        True
    """
    gray = to_gray(image)
    x = gray.astype(np.float32) / (255.0 if gray.dtype == np.uint8 else 1.0)
    d = x - cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    s = cv2.GaussianBlur(d * d, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    y = d / np.sqrt(s + np.float32(floor * floor))
    return np.clip(0.5 + 0.15 * y, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class WorkingPair:
    """Two images at a working resolution and the maps from their original pixels:
    ``a``/``b`` the (possibly shrunk) images, ``a_T``/``b_T`` (3, 3) ``work_T_orig`` of each."""

    a: np.ndarray
    b: np.ndarray
    a_T: np.ndarray
    b_T: np.ndarray
    size_a: tuple[int, int]

    @property
    def scale(self) -> float:
        """A's working width over its original width (1.0: full resolution)."""
        return self.a.shape[1] / self.size_a[0]

    def to_work(self, b_H_a: np.ndarray) -> np.ndarray:
        """(3, 3) ``b_H_a`` between the originals -> the same map between the working images."""
        return self.b_T @ np.asarray(b_H_a, dtype=np.float64) @ np.linalg.inv(self.a_T)

    def to_original(self, work_H: np.ndarray) -> np.ndarray:
        """(3, 3) map between the working images -> ``b_H_a`` between the originals,
        ``H[2, 2] = 1``."""
        H = np.linalg.inv(self.b_T) @ np.asarray(work_H, dtype=np.float64) @ self.a_T
        return H / H[2, 2] if H[2, 2] != 0 else H


def shrink_pair(
    image_a: np.ndarray, image_b: np.ndarray, max_pixels: int, min_side: int = 8
) -> WorkingPair:
    """Both images through :func:`shrink_to`; homographies move between the frames exactly
    with :meth:`WorkingPair.to_work` / :meth:`WorkingPair.to_original`."""
    a, a_T = shrink_to(image_a, max_pixels, min_side)
    b, b_T = shrink_to(image_b, max_pixels, min_side)
    return WorkingPair(a, b, a_T, b_T, (int(image_a.shape[1]), int(image_a.shape[0])))
