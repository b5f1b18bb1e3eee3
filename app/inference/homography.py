"""HomographyNet's output as a homography between the full images, and the one-call
synchronous estimate (for library use, the calibration script and tests; the service batches
through :class:`app.inference.batcher.MicroBatcher` instead).

Conventions: offsets are in pixels of the P x P network input, the content of patch B at square
corner ``c_i`` being the content of patch A at ``c_i + o_i``; ``b_H_a`` maps image-A pixels to
image-B pixels (``x_b ~ b_H_a @ x_a``, pixel centres at integers, ``H[2, 2] = 1``).
"""

from __future__ import annotations

import numpy as np

from app.geometry.four_point import FourPointResult, solve_four_point
from app.geometry.points import patch_corners
from app.inference.engine import HomographyEngine
from app.inference.preprocess import patch_to_image_matrix, prepare_pair

__all__ = ["network_homography", "offsets_to_homography"]


def offsets_to_homography(
    offsets: np.ndarray,
    size_a: tuple[int, int],
    size_b: tuple[int, int],
    patch_size: int,
) -> FourPointResult:
    """Network offsets -> ``b_H_a`` between the full images (ACA, float64).

    Args:
        offsets: (B, 4, 2) or (4, 2) px of the P x P input, corners TL, TR, BR, BL; the content
            of patch B at square corner ``c_i`` is the content of patch A at ``c_i + o_i``.
        size_a, size_b: (width, height) of the original images.
        patch_size: P.

    Returns:
        :class:`FourPointResult` whose ``dst_H_src`` is ``b_H_a`` (B, 3, 3): image-A pixels to
        image-B pixels, H[2, 2] = 1; invalid items (degenerate predicted quads) are flagged.
    """
    o = np.asarray(offsets, dtype=np.float64)
    o = o[None] if o.ndim == 2 else o
    c = patch_corners(patch_size).astype(np.float64)
    S_a, S_b = patch_to_image_matrix(size_a, patch_size), patch_to_image_matrix(size_b, patch_size)
    src = (c + o) @ S_a[:2, :2].T + S_a[:2, 2]  # image-A pixels, (B, 4, 2)
    dst = np.tile(c @ S_b[:2, :2].T + S_b[:2, 2], (len(src), 1, 1))  # image-B pixels
    return solve_four_point(src, dst, method="aca", normalize="h33", dtype=np.float64)


def network_homography(
    engine: HomographyEngine, image_a: np.ndarray, image_b: np.ndarray
) -> np.ndarray | None:
    """HomographyNet's ``b_H_a`` (3, 3) float64 for two decoded images ((H, W) gray or (H, W, 3)
    BGR uint8, any sizes), or None when the predicted quadrilateral is degenerate."""
    patch = engine.card.patch_size
    offsets = engine.predict_batch(prepare_pair(image_a, image_b, patch))["offsets"]
    if not np.isfinite(offsets).all():
        return None
    size_a, size_b = (image_a.shape[1], image_a.shape[0]), (image_b.shape[1], image_b.shape[0])
    res = offsets_to_homography(offsets.astype(np.float64), size_a, size_b, patch)
    return res.dst_H_src[0] if res.valid[0] else None
