"""Request and response models of /estimate."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.refine import ChainedRefine

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]
Matrix3 = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]

# two 16x16 grayscale PNGs, B = A shifted 2 px to the right (the smallest images accepted)
EXAMPLE_A = (
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAAAAAA6mKC9AAAAPUlEQVQYGV3BEQKEAAAAwdYWwzAMwzAMw/AwDHv+8T"
    "bDYOEHo8VkMVssFqvFZrFbHBanxWXxs7gtHovX+gNoIwtR13in2gAAAABJRU5ErkJggg=="
)
EXAMPLE_B = (
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAAAAAA6mKC9AAAAS0lEQVQYGU3BkRaAAAAEwXe2nxuG4WIYhmEYhmEYhn"
    "1GejMZkJYRaZmQFpGWGWlZkJYVadmQlh1pOZCWE2m5kJYbaXmQlhdp+ZD2A8EbGlHJ26XoAAAAAElFTkSuQmCC"
)


class EstimateJsonRequest(BaseModel):
    """Two images as base64 strings (plain or ``data:image/...;base64,`` URLs)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"image_a": EXAMPLE_A, "image_b": EXAMPLE_B}]},
    )

    image_a: str = Field(..., description="Image A, base64 (PNG, JPEG, BMP, TIFF, WebP, ...).")
    image_b: str = Field(..., description="Image B, base64.")


class ModelReport(BaseModel):
    name: str
    version: str
    kind: Literal["regression", "classification"]
    sha256: str = Field(..., description="First 12 hex digits of the ONNX file's sha256.")
    providers: list[str] = Field(..., description="Execution providers active in the session.")


class EstimateTimings(BaseModel):
    """Milliseconds per stage (a stage that did not run is null); ``queue_wait`` is the time
    until this pair's batch started; ``features`` runs while the network's batch waits."""

    decode: float
    preprocess: float | None = None
    queue_wait: float | None = None
    inference: float | None = Field(None, description="The whole batch's ONNX call.")
    solve: float | None = None
    features: float | None = Field(None, description="Keypoints, matching and robust fit.")
    refine: float | None = Field(None, description="refine=true: the /refine pipeline.")
    select: float = Field(..., description="Photometric scoring (and, for auto, refinement).")
    total: float = Field(..., description="From the slot's admission to the answer.")
    admission_wait: float | None = Field(
        None,
        description="Waited for a slot before any work (admission control; not in total).",
    )
    batch_size: int = Field(
        ..., description="Pairs in the ONNX call this pair was part of (0: no network)."
    )


class PhotometricScore(BaseModel):
    """How well ``b_H_a`` lines the images up, on the pixels of A that land inside B (at the
    working resolution); invariant to brightness and contrast. Null where undefined."""

    score: float | None = Field(None, description="Mean of ncc and gradient_ncc; ranks candidates.")
    ncc: float | None = Field(None, description="Zero-mean NCC of intensities, in [-1, 1].")
    gradient_ncc: float | None = Field(None, description="NCC of the image gradients, in [-1, 1].")
    overlap: float = Field(..., description="Fraction of image A's pixels that land inside B.")
    mean_abs: float | None = Field(
        None, description="Mean |A - B warped| in gray levels after fitting gain and bias."
    )


class KeypointSupport(BaseModel):
    """The geometric evidence for a matrix: how many of the tentative keypoint matches (every
    matcher that ran, pooled) it explains within the inlier threshold."""

    inliers: int
    inlier_ratio: float = Field(..., description="Inliers over all tentative matches.")
    spread: float = Field(
        ...,
        description="Area of the inliers' convex hull over the image's, the smaller of A and B.",
    )
    rms_px: float | None = Field(None, description="Inliers' transfer error (matching pixels).")


class CandidateReport(BaseModel):
    """One estimate the selection considered."""

    name: str = Field(
        ...,
        description="network, features, asift (affine-simulated SIFT), guided (guided "
        "matching around the best candidate), or any of them with +refine.",
    )
    source: Literal["network", "features", "asift"]
    refined: bool
    b_H_a: Matrix3
    corners_in_b: Quad | None = Field(None, description="Null when a corner maps to infinity.")
    photometric: PhotometricScore
    support: KeypointSupport | None = Field(
        None, description="Keypoint evidence; null when no keypoints were matched."
    )
    confidence: float = Field(
        ..., description="P(corner error <= 5 px) from all the evidence, in [0, 1]."
    )
    agreeing: list[str] = Field(..., description="Sources with a candidate at the same matrix.")
    seconds: float = Field(..., description="Refinement time (0 for a start).")
    detail: str | None = Field(None, description="Why it was not refined, or was rejected.")


class QualityReport(BaseModel):
    """How far to trust ``b_H_a``: ``confidence`` estimates the probability that image A's
    corners are within 5 px of the truth (a logistic model of the photometric and keypoint
    evidence and of the agreement between methods, fitted on real and rendered photo pairs:
    ``bench/calibrate_confidence.py``); ``low_confidence`` when it is under the server's
    threshold (0.5 by default), with ``reasons``."""

    confidence: float
    low_confidence: bool
    reasons: list[str]
    photometric: PhotometricScore = Field(..., description="The answer's score.")
    support: KeypointSupport | None = Field(None, description="The answer's keypoint evidence.")
    photometric_before_refine: PhotometricScore | None = Field(
        None, description="Its start's score, when the answer is a refined candidate."
    )
    agreeing: list[str] = Field(
        ..., description="Independent sources (network, features) that end at the same matrix."
    )
    work_scale: float = Field(..., description="Scoring width over image A's width.")
    escalation: list[str] = Field(
        default_factory=list,
        description="method=auto: what was tried beyond the fast candidates when they were weak "
        "(affine-simulated SIFT, guided matching), with times; empty when they were confident.",
    )


class FeaturesReport(BaseModel):
    """The keypoint pipeline's figures (method=features or auto)."""

    detector: Literal["sift", "orb", "asift"]
    robust: Literal["aca", "usac"]
    keypoints_a: int
    keypoints_b: int
    matches: int = Field(..., description="Matches passing Lowe's ratio test.")
    inliers: int
    inlier_ratio: float
    rms_px: float | None = Field(None, description="Inliers' transfer error (matching pixels).")
    scale: float = Field(..., description="Matching width over image A's width.")
    spread: float = Field(
        ..., description="Inliers' convex hull over the image's area, the smaller of A and B."
    )
    detail: str | None = Field(None, description="Why there is no estimate, when there is none.")


class EstimateResponse(BaseModel):
    """The homography for one pair, with how far to trust it.

    ``b_H_a`` maps pixel coordinates of image A to image B at their original resolutions
    (``x_b ~ b_H_a @ x_a``, H[2][2] = 1): ``cv2.warpPerspective(image_a, b_H_a, size_b)`` lines up
    with image B. ``offsets`` are the network's raw output in pixels of its 128 x 128 input:
    the content of (resized) B at square corner i is the content of (resized) A at
    ``corner_i + offsets[i]``. Corner order: TL, TR, BR, BL.
    """

    method: Literal["network", "features", "auto"] = Field(..., description="As asked.")
    chosen: str = Field(..., description="The candidate returned, e.g. features+refine.")
    quality: QualityReport
    model: ModelReport | None = Field(None, description="Null when the network did not run.")
    offsets: Quad | None = Field(
        None, description="(4, 2) px of the network input, (x, y) per corner (network runs)."
    )
    corners_in_b: Quad = Field(
        ...,
        description="Image A's corners (0, 0), (W-1, 0), (W-1, H-1), (0, H-1) in image-B pixels.",
    )
    b_H_a: Matrix3 = Field(..., description="Image-A pixels -> image-B pixels, H[2][2] = 1.")
    confidence: tuple[float, float, float, float] | None = Field(
        None, description="Per-corner confidence (classification models only), in [0, 1]."
    )
    image_a_size: tuple[int, int] = Field(..., description="(width, height) of image A.")
    image_b_size: tuple[int, int] = Field(..., description="(width, height) of image B.")
    timings_ms: EstimateTimings
    features: FeaturesReport | None = Field(None, description="When the keypoint pipeline ran.")
    candidates: list[CandidateReport] = Field(
        ..., description="Every candidate scored: starts first, then refined ones."
    )
    refine: ChainedRefine | None = Field(
        None,
        description="With ?refine=true (methods network and features): the photometric "
        "refinement, as /refine answers, and its start; when applied, b_H_a and corners_in_b "
        "are the refined ones.",
    )
