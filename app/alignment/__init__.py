"""Photometric image alignment (no HTTP): refine a homography ``b_H_a`` so that image B warped
onto image A matches A, coarse to fine over Kornia Gaussian pyramids.

- :func:`refine_homography`: the entry point (NumPy or torch images, checked inputs).
- :func:`align_gauss_newton`: inverse-compositional Gauss-Newton / Levenberg-Marquardt on the 8
  homography parameters, with gain/bias normalisation, robust weights, a pixel mask and an
  iteration/time budget.
- :func:`align_tutorial_adam`: the Kornia tutorial's Adam loop, kept for comparison.
- :func:`photometric_consistency` / :class:`ConsistencyScorer`: how well a homography lines two
  images up (intensity and gradient NCC on the overlap), the score /estimate ranks with.

Conventions: as in :mod:`app.geometry` (pixel coordinates, origin at the centre of the top-left
pixel, ``x_b ~ b_H_a @ x_a``, ``H[2, 2] = 1``, OpenCV's ``warpPerspective`` direction).
"""

from app.alignment.consistency import Consistency, ConsistencyScorer, photometric_consistency
from app.alignment.gauss_newton import align_gauss_newton
from app.alignment.refine import (
    AlignmentInputError,
    check_homography,
    overlay_image,
    photometric_error,
    refine_homography,
    to_tensor,
)
from app.alignment.tutorial import align_tutorial_adam
from app.alignment.types import LevelReport, PhotometricError, RefineOptions, RefineResult

__all__ = [
    "AlignmentInputError",
    "Consistency",
    "ConsistencyScorer",
    "LevelReport",
    "PhotometricError",
    "RefineOptions",
    "RefineResult",
    "align_gauss_newton",
    "align_tutorial_adam",
    "check_homography",
    "overlay_image",
    "photometric_consistency",
    "photometric_error",
    "refine_homography",
    "to_tensor",
]
