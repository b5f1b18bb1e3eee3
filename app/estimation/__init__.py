"""Combining homography estimates: evidence (photometric, geometric, agreement), plausibility,
refinement, choice, confidence, and the auto method's escalation."""

from app.estimation.auto import AutoOptions, estimate_auto
from app.estimation.evidence import (
    CONFIDENCE_PX,
    DEFAULT_MODEL,
    Evidence,
    EvidenceModel,
    implausible,
)
from app.estimation.selection import (
    Candidate,
    Selection,
    SelectionOptions,
    Selector,
    select_homography,
)

__all__ = [
    "CONFIDENCE_PX",
    "DEFAULT_MODEL",
    "AutoOptions",
    "Candidate",
    "Evidence",
    "EvidenceModel",
    "Selection",
    "SelectionOptions",
    "Selector",
    "estimate_auto",
    "implausible",
    "select_homography",
]
