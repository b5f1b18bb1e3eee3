"""Options and results of photometric alignment (plain dataclasses, no torch in the fields that
cross the service boundary: matrices are float64 NumPy arrays)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["LevelReport", "PhotometricError", "RefineOptions", "RefineResult"]

Solver = Literal["gauss_newton", "levenberg_marquardt"]
RobustLoss = Literal["none", "huber", "tukey"]
Photometric = Literal["none", "gain_bias"]


@dataclass(frozen=True)
class RefineOptions:
    """How to align image A to image B.

    Attributes:
        solver: ``"levenberg_marquardt"`` (damped inverse-compositional Gauss-Newton; a step that
            raises the cost is refused and retried with more damping) or ``"gauss_newton"``
            (undamped, every step taken).
        num_levels: pyramid levels including the full resolution; ``None`` picks the number
            that puts the coarsest long side in ``[min_coarse_side, 2 * min_coarse_side)``.
        min_coarse_side: long side (pixels) the automatic level count aims for.
        max_iterations: iterations allowed per level (a level that hits it is not converged).
        max_total_iterations: iteration budget over all levels; ``None``: no budget.
        max_seconds: wall-clock budget; ``None`` means unlimited.
        tolerance_px: a finest-level iteration whose update moves no corner of A by more than this
            (pixels) ends the level as converged.
        coarse_tolerance_px: the same test on coarser levels, in that level's pixels.
        photometric: ``"gain_bias"`` fits ``a ~ gain * b + bias`` on the overlap at every
            iteration (ECC-like invariance to brightness and contrast); ``"none"`` compares raw
            intensities.
        robust: IRLS weights on the residuals: ``"huber"`` (c = 1.345 sigma) or ``"tukey"``
            (c = 4.685 sigma), sigma from the median absolute residual; ``"none"`` is least squares.
        border: template pixels this close to A's border (at each level) are not used.
        finest_level: 0 refines at full resolution; ``k > 0`` stops ``k`` levels above it (faster,
            less accurate).
        coarse_dof: lower-dimensional warps solved first at the coarsest level, in order
            (2: translation, 6: affine), before the full 8-parameter homography; this widens
            the basin of convergence for large motions.
        search: when the coarsest level still matches poorly (``score``, the squared residual
            over the template's variance, i.e. ``2 (1 - NCC)`` with gain/bias, above
            ``search_threshold``), also try a grid of 10 shifted/scaled starts there and keep
            the best (costs a few hundred ms on a CPU; nothing when the first start matches).
        search_threshold: see ``search``.
    """

    solver: Solver = "levenberg_marquardt"
    num_levels: int | None = None
    min_coarse_side: int = 40
    max_iterations: int = 50
    max_total_iterations: int | None = None
    max_seconds: float | None = None
    tolerance_px: float = 2e-3
    coarse_tolerance_px: float = 2e-2
    photometric: Photometric = "gain_bias"
    robust: RobustLoss = "none"
    border: int = 1
    finest_level: int = 0
    coarse_dof: tuple[int, ...] = (2, 6)
    search: bool = True
    search_threshold: float = 0.1

    def __post_init__(self) -> None:
        checks = {
            "num_levels": self.num_levels is None or 1 <= self.num_levels <= 12,
            "min_coarse_side": 8 <= self.min_coarse_side <= 4096,
            "max_iterations": 1 <= self.max_iterations <= 10_000,
            "max_total_iterations": self.max_total_iterations is None
            or 1 <= self.max_total_iterations <= 100_000,
            "max_seconds": self.max_seconds is None
            or (np.isfinite(self.max_seconds) and self.max_seconds > 0),
            "tolerance_px": np.isfinite(self.tolerance_px) and self.tolerance_px > 0,
            "coarse_tolerance_px": np.isfinite(self.coarse_tolerance_px)
            and self.coarse_tolerance_px > 0,
            "border": 0 <= self.border <= 16,
            "finest_level": 0 <= self.finest_level <= 11,
            "solver": self.solver in ("gauss_newton", "levenberg_marquardt"),
            "robust": self.robust in ("none", "huber", "tukey"),
            "photometric": self.photometric in ("none", "gain_bias"),
            "coarse_dof": all(d in (2, 6) for d in self.coarse_dof),
            "search_threshold": np.isfinite(self.search_threshold) and self.search_threshold >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: invalid value {getattr(self, name)!r}")


@dataclass(frozen=True)
class LevelReport:
    """One pyramid level: ``level`` 0 is full resolution; ``size`` is A's (width, height) there;
    ``iterations`` counts warps evaluated (refused LM steps included); ``last_step_px`` is the
    last update's largest corner displacement in that level's pixels; ``cost`` the final mean
    squared residual (intensities in [0, 1]) on the overlap."""

    level: int
    size: tuple[int, int]
    iterations: int
    last_step_px: float
    converged: bool
    cost: float


@dataclass(frozen=True)
class PhotometricError:
    """Mean absolute difference (gray levels, 0-255) between A and B warped onto A, over the
    pixels of A that land inside B (``overlap``: their fraction of A's pixels)."""

    mean_abs: float
    overlap: float


@dataclass
class RefineResult:
    """``b_H_a``: (3, 3) float64, A pixel -> B pixel, ``H[2, 2] = 1`` (``cv2.warpPerspective(a,
    b_H_a, size_b)`` lines A up with B). ``converged``: the finest level converged within its
    iterations. ``budget_exhausted``: the total iteration or time budget ran out and ``b_H_a`` is
    the best estimate so far (lowest cost at the level being refined)."""

    b_H_a: np.ndarray
    converged: bool
    budget_exhausted: bool
    levels: list[LevelReport] = field(default_factory=list)
    iterations: int = 0
    seconds: float = 0.0
    error_before: PhotometricError | None = None
    error_after: PhotometricError | None = None
