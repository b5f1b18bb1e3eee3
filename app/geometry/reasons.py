"""Per-item reason codes returned beside every batched solve (``0`` means the item is valid)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Reason(IntEnum):
    OK = 0
    NON_FINITE_INPUT = 1
    REPEATED_SOURCE_POINT = 2
    COLLINEAR_SOURCE = 3
    REPEATED_TARGET_POINT = 4
    COLLINEAR_TARGET = 5
    H33_NEAR_ZERO = 6
    NON_FINITE_RESULT = 7
    SINGULAR_SYSTEM = 8
    TOO_FEW_POINTS = 9
    NO_CONSENSUS = 10


MESSAGES: dict[Reason, str] = {
    Reason.OK: "ok",
    Reason.NON_FINITE_INPUT: "input contains NaN or infinity",
    Reason.REPEATED_SOURCE_POINT: "two source points coincide",
    Reason.COLLINEAR_SOURCE: "three source points are collinear",
    Reason.REPEATED_TARGET_POINT: "two target points coincide",
    Reason.COLLINEAR_TARGET: "three target points are collinear",
    Reason.H33_NEAR_ZERO: "H[2,2] is ~0 (the source origin maps to infinity): cannot set H33 = 1",
    Reason.NON_FINITE_RESULT: "the solution overflowed (non-finite entries)",
    Reason.SINGULAR_SYSTEM: "the solver's system is singular for this configuration",
    Reason.TOO_FEW_POINTS: "fewer than 4 usable correspondences",
    Reason.NO_CONSENSUS: "RANSAC found no hypothesis with at least 4 inliers",
}

NAMES: dict[int, str] = {int(r): r.name.lower() for r in Reason}


def describe(codes: np.ndarray) -> list[str | None]:
    """Human-readable reason per item; ``None`` for valid items."""
    return [None if c == 0 else NAMES[int(c)] for c in np.asarray(codes).ravel()]
