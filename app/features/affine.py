"""Affine-simulated views of an image, for matching across strong foreshortening (ASIFT,
Morel & Yu 2009).

SIFT tolerates a relative tilt of about 1.5-2 between two views of a plane (a viewpoint change of
40-50 deg). Beyond that, one image is resampled as a camera at other tilts would see it: rotated
by a longitude ``phi``, blurred along x (anti-aliasing, ``0.8 sqrt(t^2 - 1)`` px) and subsampled
along x by the tilt ``t``. Keypoints detected in a simulated view are mapped back to the original
pixels through the view's exact affine map, so every match is in original coordinates.

Simulating one image of the pair is enough: compressing A by ``t`` along a direction compensates
a view B compressed along it, and is a scaled copy of stretching A along the perpendicular
direction, which compensates a B compressed along that one (SIFT is scale invariant); the
longitudes span 180 deg in steps of ``72 deg / t`` as in ASIFT.

Conventions as in :mod:`app.geometry`: pixel coordinates, origin at the centre of the top-left
pixel. No HTTP here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["SimulatedView", "simulate_view", "tilt_longitudes"]


@dataclass(frozen=True)
class SimulatedView:
    """``image``: the simulated view (uint8); ``view_A_orig``: (2, 3) affine map from original
    pixels to view pixels; ``mask``: 255 where the view shows the original image (eroded a
    little, so that no keypoint sits on the border of the rotated frame); ``tilt``, ``phi_deg``."""

    image: np.ndarray
    view_A_orig: np.ndarray
    mask: np.ndarray | None
    tilt: float
    phi_deg: float

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) view pixels -> (N, 2) original pixels."""
        M = np.vstack([self.view_A_orig, [0.0, 0.0, 1.0]])
        p = np.c_[points, np.ones(len(points))] @ np.linalg.inv(M).T
        return p[:, :2]


def tilt_longitudes(tilts: tuple[float, ...]) -> list[tuple[float, float]]:
    """``(tilt, phi_deg)`` for every simulated view: ASIFT's longitudes ``0, 72/t, 144/t, ...``
    below 180 deg for each tilt ``t > 1``."""
    out = []
    for t in tilts:
        if t <= 1:
            raise ValueError(f"tilts must be > 1, got {t}")
        step = 72.0 / t
        out += [(float(t), float(phi)) for phi in np.arange(0.0, 180.0 - 1e-9, step)]
    return out


def simulate_view(image: np.ndarray, tilt: float, phi_deg: float) -> SimulatedView:
    """``image`` (H, W) uint8 seen at ``tilt`` (> 1) after a rotation by ``phi_deg``.

    Example:
        >>> v = simulate_view(np.zeros((60, 80), np.uint8), 2.0, 0.0)
        >>> v.image.shape
        (60, 40)
    """
    h, w = image.shape[:2]
    c, s = math.cos(math.radians(phi_deg)), math.sin(math.radians(phi_deg))
    R = np.array([[c, -s], [s, c]])
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64) @ R.T
    lo, hi = corners.min(0), corners.max(0)
    A = np.hstack([R, -lo[:, None]])
    size = (math.ceil(hi[0] - lo[0]) + 1, math.ceil(hi[1] - lo[1]) + 1)
    rotated = cv2.warpAffine(image, A, size, flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpAffine(np.full(image.shape[:2], 255, np.uint8), A, size, flags=cv2.INTER_NEAREST)
    blurred = cv2.GaussianBlur(
        rotated, (0, 0), sigmaX=0.8 * math.sqrt(tilt * tilt - 1), sigmaY=0.01
    )
    width = max(8, round(size[0] / tilt))
    view = cv2.resize(blurred, (width, size[1]), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(mask, (width, size[1]), interpolation=cv2.INTER_NEAREST)
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8))
    sx = width / size[0]  # the half-pixel map of the horizontal resize
    S = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    view_A = (S @ np.vstack([A, [0.0, 0.0, 1.0]]))[:2]
    return SimulatedView(view, view_A, mask, float(tilt), float(phi_deg))
