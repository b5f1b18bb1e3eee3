"""Synthetic image pairs with a known homography, from scikit-image's photos."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import skimage.data

from app.geometry.points import image_corners


@cache
def photo(name: str, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A scikit-image photo as (H, W) uint8 gray, resized to ``size`` (width, height)."""
    im = getattr(skimage.data, name)()
    if im.ndim == 3:
        im = cv2.cvtColor(im[..., :3], cv2.COLOR_RGB2GRAY)
    interp = cv2.INTER_AREA if im.shape[1] > size[0] else cv2.INTER_LINEAR
    out = cv2.resize(im, size, interpolation=interp)
    out.setflags(write=False)
    return out


def corners(size: tuple[int, int]) -> np.ndarray:
    """(4, 2) pixel centres of the corner pixels, TL, TR, BR, BL."""
    return image_corners(size)


def random_homography(size: tuple[int, int], rho: float, seed: int) -> np.ndarray:
    """b_H_a moving each corner of a ``size`` image by up to ``rho`` px in x and y (``rho < 1``:
    a fraction of the width in x and of the height in y)."""
    rng = np.random.default_rng(seed)
    c = corners(size).astype(np.float32)
    limit = np.array([rho, rho]) if rho >= 1 else rho * np.array(size, np.float64)
    moved = c + (rng.uniform(-1, 1, (4, 2)) * limit).astype(np.float32)
    return cv2.getPerspectiveTransform(c, moved).astype(np.float64)


def make_pair(
    name: str, rho: float, seed: int, size: tuple[int, int] = (640, 480), border: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, b_H_a): B = cv2.warpPerspective(A, b_H_a), so B(b_H_a x) = A(x); ``border`` is
    OpenCV's border mode for B's pixels outside A (default: black)."""
    a = photo(name, size)
    H = random_homography(size, rho, seed)
    b = cv2.warpPerspective(a, H, size, flags=cv2.INTER_LINEAR, borderMode=border)
    return a, b, H


def corner_error(H_est: np.ndarray, H_true: np.ndarray, size: tuple[int, int]) -> float:
    """Mean distance (px) between the four corners of A mapped by the two homographies."""
    c = np.c_[corners(size), np.ones(4)]
    p, q = c @ np.asarray(H_est).T, c @ np.asarray(H_true).T
    return float(np.linalg.norm(p[:, :2] / p[:, 2:] - q[:, :2] / q[:, 2:], axis=1).mean())
