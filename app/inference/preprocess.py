"""Preprocessing shared by HomographyNet training and the ``/estimate`` engine.

Conventions (defined once, here):

* Working resolution of the paper's protocol: images are converted to grayscale and resized
  (aspect ratio ignored, ``cv2.INTER_AREA``) to ``WORK_SIZE = (320, 240)`` (width, height).
* Patches are ``PATCH_SIZE x PATCH_SIZE`` (128). Patch pixel ``(x, y)`` is the centre of column
  ``x``, row ``y``; the four patch corners are the centres of the corner pixels, in the order
  TL, TR, BR, BL: ``(0, 0), (P-1, 0), (P-1, P-1), (0, P-1)``
  (:func:`app.geometry.points.patch_corners`).
* Network input: float32 ``(B, 2, P, P)``; channel 0 is patch A, channel 1 patch B; pixel values
  ``v`` (uint8) become ``(v / 255 - NORM_MEAN) / NORM_STD``, i.e. [-1, 1].
* Network output: ``offsets`` ``(B, 4, 2)`` in pixels of the patch, ``(x, y)`` per corner,
  ``offset_i = corner_i(in A) - corner_i(of the square)``: the content of B at square corner ``i``
  is the content of A at ``corner_i + offset_i``. Hence ``a_H_b = solve(corners, corners +
  offsets)`` maps pixel coordinates of B to pixel coordinates of A. Training targets are
  ``offsets / rho`` (``RHO = 32``).
* Resizing a full image of size ``(W, H)`` to the patch follows cv2.resize's half-pixel convention
  (:func:`app.imaging.resize_matrix`): ``x_image = (x_patch + 0.5) * W / P - 0.5``;
  :func:`patch_to_image_matrix` gives this as a 3x3
  matrix ``image_S_patch``, so between two full images ``imgB_H_imgA = S_b @ inv(a_H_b) @
  inv(S_a)``.
* The training protocol sees a P x P window of a 320x240 image (content at that scale, offsets
  up to rho = 32 px there). :func:`prepare_centered_pair` feeds a pair the same way: both images
  resized to ``WORK_SIZE``, the centred P x P window of each, with the matching
  ``image_S_patch`` (:func:`centered_patch_matrix`); the homography then extends to the whole
  image by the same conjugation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.imaging import resize_gray, resize_matrix

__all__ = [
    "NORM_MEAN",
    "NORM_STD",
    "PATCH_SIZE",
    "RHO",
    "WORK_SIZE",
    "centered_patch_matrix",
    "denormalize",
    "normalize",
    "offsets_to_target",
    "patch_to_image_matrix",
    "prepare_centered_pair",
    "prepare_pair",
    "target_to_offsets",
]

WORK_SIZE: tuple[int, int] = (320, 240)  # (width, height) of the paper's protocol
PATCH_SIZE: int = 128
RHO: float = 32.0
NORM_MEAN: float = 0.5
NORM_STD: float = 0.5


def normalize(x: Any) -> Any:
    """uint8-valued pixels (array or tensor, any shape) -> float32 in [-1, 1]."""
    if isinstance(x, np.ndarray):
        return ((x.astype(np.float32) / 255.0) - NORM_MEAN) / NORM_STD
    return ((x.float() / 255.0) - NORM_MEAN) / NORM_STD


def denormalize(x: Any) -> Any:
    """Inverse of :func:`normalize` (float pixel values in [0, 255])."""
    return (x * NORM_STD + NORM_MEAN) * 255.0


def offsets_to_target(offsets: Any, rho: float = RHO) -> Any:
    """Offsets in pixels -> regression target (offsets / rho)."""
    return offsets / rho


def target_to_offsets(target: Any, rho: float = RHO) -> Any:
    """Regression target -> offsets in pixels."""
    return target * rho


def patch_to_image_matrix(image_size: tuple[int, int], patch_size: int = PATCH_SIZE) -> np.ndarray:
    """3x3 float64 ``image_S_patch`` for an image of (width, height) resized to the patch.

    Maps patch pixel coordinates to image pixel coordinates (cv2.resize half-pixel convention).
    """
    return resize_matrix((patch_size, patch_size), image_size)


def prepare_pair(
    image_a: np.ndarray, image_b: np.ndarray, patch_size: int = PATCH_SIZE
) -> np.ndarray:
    """Two full images (any size, colour or gray, uint8) -> (1, 2, P, P) float32 network input."""
    a = resize_gray(image_a, (patch_size, patch_size))
    b = resize_gray(image_b, (patch_size, patch_size))
    return normalize(np.stack([a, b])[None])


def centered_patch_matrix(
    image_size: tuple[int, int],
    work_size: tuple[int, int] = WORK_SIZE,
    patch_size: int = PATCH_SIZE,
) -> np.ndarray:
    """3x3 float64 ``image_S_patch`` for the centred P x P window of the image resized to
    ``work_size`` (sizes are (width, height)): patch pixel coords -> original image pixel coords."""
    x0, y0 = (work_size[0] - patch_size) // 2, (work_size[1] - patch_size) // 2
    T = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    return resize_matrix(work_size, image_size) @ T


def prepare_centered_pair(
    image_a: np.ndarray,
    image_b: np.ndarray,
    work_size: tuple[int, int] = WORK_SIZE,
    patch_size: int = PATCH_SIZE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two full images -> ((1, 2, P, P) float32 input, image_S_patch of A, image_S_patch of B).

    Matches the training protocol: resize to ``work_size``, take the centred P x P window.
    """
    x0, y0 = (work_size[0] - patch_size) // 2, (work_size[1] - patch_size) // 2
    crops = [
        resize_gray(im, work_size)[y0 : y0 + patch_size, x0 : x0 + patch_size]
        for im in (image_a, image_b)
    ]
    mats = [
        centered_patch_matrix((im.shape[1], im.shape[0]), work_size, patch_size)
        for im in (image_a, image_b)
    ]
    return normalize(np.stack(crops)[None]), mats[0], mats[1]
