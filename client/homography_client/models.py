"""Typed results, built from the server's JSON.

Every class names the OpenAPI schema it mirrors (``__schema__``); its field names and types are
checked against the service's schema in the service's test suite, so the client cannot drift.
Matrices and point arrays become float64 NumPy arrays; ``raw`` keeps the whole JSON report.

Conventions (the service's): points are pixels ``(x, y)``, ``b_H_a`` maps image-A pixels to
image-B pixels (``x_b ~ b_H_a @ x_a``, ``H[2, 2] = 1``), corners are ordered TL, TR, BR, BL.
"""

from __future__ import annotations

import base64
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, Union

import numpy as np

__all__ = [
    "Candidate",
    "ChainedRefine",
    "EstimateResult",
    "FeaturesInfo",
    "KeypointSupport",
    "ModelInfo",
    "PhotometricError",
    "PhotometricScore",
    "PoseLossGradients",
    "PoseLossResult",
    "Quality",
    "RefineLevel",
    "RefineResult",
    "SolveResult",
    "from_json",
]

T = TypeVar("T")

Matrix = np.ndarray
"""(3, 3) float64."""


CLIENT_ONLY = {"client_only": True}
"""Field metadata: the client adds this field (it is not in the server's schema)."""


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(args[0], value)
    if hint is np.ndarray:
        a = np.asarray([np.nan if v is None else v for v in value] if _flat(value) else value)
        return a.astype(np.float64) if a.dtype.kind in "iu" else a
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value)  # type: ignore[arg-type]
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, v) for v in value]
    if origin is tuple:
        return tuple(value)
    return value


def _flat(value: Any) -> bool:
    return isinstance(value, list) and any(v is None for v in value)


def from_json(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from the server's JSON object (nested objects and arrays converted)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.metadata.get("client_only"):
            continue
        key = f.metadata.get("json", f.name)  # the JSON key, where the names differ
        kwargs[f.name] = _convert(hints[f.name], data.get(key))
    if "raw" in hints:
        kwargs["raw"] = data
    return cls(**kwargs)


@dataclass(frozen=True)
class PhotometricScore:
    """How well a matrix lines the images up on the overlap (brightness/contrast blind)."""

    __schema__: ClassVar[str] = "PhotometricScore"
    score: float | None
    ncc: float | None
    gradient_ncc: float | None
    overlap: float
    mean_abs: float | None


@dataclass(frozen=True)
class KeypointSupport:
    """The keypoint evidence for a matrix: the tentative matches (all matchers pooled) it
    explains, their share, the area they cover and their transfer error."""

    __schema__: ClassVar[str] = "KeypointSupport"
    inliers: int
    inlier_ratio: float
    spread: float
    rms_px: float | None


@dataclass(frozen=True)
class Candidate:
    """One estimate the selection considered."""

    __schema__: ClassVar[str] = "CandidateReport"
    name: str
    source: Literal["network", "features", "asift"]
    refined: bool
    b_H_a: Matrix
    corners_in_b: np.ndarray | None
    photometric: PhotometricScore
    support: KeypointSupport | None
    confidence: float
    agreeing: list[str]
    seconds: float
    detail: str | None


@dataclass(frozen=True)
class Quality:
    """How far to trust the answer: ``confidence`` ~ P(A's corners within 5 px of the truth)."""

    __schema__: ClassVar[str] = "QualityReport"
    confidence: float
    low_confidence: bool
    reasons: list[str]
    photometric: PhotometricScore
    support: KeypointSupport | None
    photometric_before_refine: PhotometricScore | None
    agreeing: list[str]
    work_scale: float
    escalation: list[str]


@dataclass(frozen=True)
class ModelInfo:
    __schema__: ClassVar[str] = "ModelReport"
    name: str
    version: str
    kind: Literal["regression", "classification"]
    sha256: str
    providers: list[str]


@dataclass(frozen=True)
class FeaturesInfo:
    """The keypoint pipeline's figures."""

    __schema__: ClassVar[str] = "FeaturesReport"
    detector: Literal["sift", "orb", "asift"]
    robust: Literal["aca", "usac"]
    keypoints_a: int
    keypoints_b: int
    matches: int
    inliers: int
    inlier_ratio: float
    rms_px: float | None
    scale: float
    spread: float
    detail: str | None


@dataclass(frozen=True)
class PhotometricError:
    __schema__: ClassVar[str] = "PhotometricErrorOut"
    mean_abs: float | None
    overlap: float


@dataclass(frozen=True)
class RefineLevel:
    __schema__: ClassVar[str] = "LevelOut"
    level: int
    width: int
    height: int
    iterations: int
    last_step_px: float | None
    converged: bool
    cost: float | None


@dataclass(frozen=True)
class RefineResult:
    """``/refine``'s answer: the refined ``b_H_a`` (3, 3) and how the solver got there."""

    __schema__: ClassVar[str] = "RefineResponse"
    b_H_a: Matrix
    converged: bool
    budget_exhausted: bool
    error_before: PhotometricError
    error_after: PhotometricError
    levels: list[RefineLevel]
    iterations: int
    device: str
    work_scale: float
    timings_ms: dict[str, float]
    overlay_png: str | None
    raw: dict[str, Any] = field(metadata=CLIENT_ONLY, repr=False)

    @property
    def overlay(self) -> bytes | None:
        """The overlay PNG (asked with ``overlay=True``) as bytes."""
        return None if self.overlay_png is None else base64.b64decode(self.overlay_png)


@dataclass(frozen=True)
class ChainedRefine:
    """``estimate(..., refine=True)``: the photometric refinement of the estimate; when
    applied, the estimate's top-level ``b_H_a`` is the refined one and ``start_b_H_a`` the
    estimate it started from."""

    __schema__: ClassVar[str] = "ChainedRefine"
    applied: bool
    detail: str | None
    start_b_H_a: np.ndarray | None
    result: RefineResult | None


@dataclass(frozen=True)
class EstimateResult:
    """``/estimate``'s answer for one pair.

    ``b_H_a`` (3, 3) maps image-A pixels to image-B pixels at the images' own resolutions;
    ``confidence`` and ``low_confidence`` are the quality's (``quality.confidence``);
    ``corner_confidence`` is the classification model's per-corner confidence (JSON
    ``confidence``), None otherwise. ``raw`` is the full JSON report.
    """

    __schema__: ClassVar[str] = "EstimateResponse"
    method: Literal["network", "features", "auto"]
    chosen: str
    quality: Quality
    model: ModelInfo | None
    offsets: np.ndarray | None
    corners_in_b: np.ndarray
    b_H_a: Matrix
    corner_confidence: np.ndarray | None = field(metadata={"json": "confidence"}, default=None)
    image_a_size: tuple[int, int] = (0, 0)
    image_b_size: tuple[int, int] = (0, 0)
    timings_ms: dict[str, Any] = field(default_factory=dict)
    features: FeaturesInfo | None = None
    candidates: list[Candidate] = field(default_factory=list)
    refine: ChainedRefine | None = None
    raw: dict[str, Any] = field(metadata=CLIENT_ONLY, default_factory=dict, repr=False)

    @property
    def confidence(self) -> float:
        return self.quality.confidence

    @property
    def low_confidence(self) -> bool:
        return self.quality.low_confidence

    @property
    def reasons(self) -> list[str]:
        return self.quality.reasons


@dataclass(frozen=True)
class PoseLossGradients:
    """d loss_i / d (estimated position, rotation), in the request's representation."""

    __schema__: ClassVar[str] = "PoseLossGradients"
    position: np.ndarray
    quaternion: np.ndarray | None
    rotation: np.ndarray | None


@dataclass(frozen=True)
class PoseLossResult:
    """Per-pair loss (B,) and its three terms, ``loss = rotation + cross + translation``."""

    __schema__: ClassVar[str] = "PoseLossResponse"
    count: int
    mean: float
    loss: np.ndarray
    rotation: np.ndarray
    cross: np.ndarray
    translation: np.ndarray
    xmin: np.ndarray
    xmax: np.ndarray
    gradients: PoseLossGradients | None
    raw: dict[str, Any] = field(metadata=CLIENT_ONLY, repr=False)


@dataclass(frozen=True)
class SolveResult:
    """B homographies: ``dst_H_src`` (B, 3, 3) (NaN where invalid), ``valid`` (B,) bool and
    ``reason`` (B,) (None where valid). Robust fits add ``inliers`` (a bool mask per item),
    ``num_inliers`` (B,) and ``rms_error`` (B,) (NaN where invalid)."""

    __schema__: ClassVar[str] = "SolveResponse"
    __ignored__: ClassVar[frozenset[str]] = frozenset({"count", "valid_count", "elapsed_ms"})
    method: str
    robust: bool
    dst_H_src: np.ndarray
    valid: np.ndarray
    reason: list[str | None]
    num_inliers: np.ndarray | None = None
    inliers: list[np.ndarray] | None = None
    rms_error: np.ndarray | None = None
    requests: int = field(metadata=CLIENT_ONLY, default=1)
    binary: bool = field(metadata=CLIENT_ONLY, default=False)

    def __len__(self) -> int:
        return len(self.valid)
