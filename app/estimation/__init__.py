"""Combining homography estimates: photometric scoring, refinement, choice and confidence."""

from app.estimation.selection import (
    Candidate,
    Selection,
    SelectionOptions,
    confidence_of,
    select_homography,
)

__all__ = [
    "Candidate",
    "Selection",
    "SelectionOptions",
    "confidence_of",
    "select_homography",
]
