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
    """Milliseconds per stage; ``queue_wait`` is the time until this pair's batch started."""

    decode: float
    preprocess: float
    queue_wait: float
    inference: float = Field(..., description="The whole batch's ONNX call.")
    solve: float
    total: float
    batch_size: int = Field(..., description="Pairs in the ONNX call this pair was part of.")


class EstimateResponse(BaseModel):
    """HomographyNet's estimate for one pair.

    ``b_H_a`` maps pixel coordinates of image A to image B at their original resolutions
    (``x_b ~ b_H_a @ x_a``, H[2][2] = 1): ``cv2.warpPerspective(image_a, b_H_a, size_b)`` lines up
    with image B. ``offsets`` are the network's raw output in pixels of its 128 x 128 input:
    the content of (resized) B at square corner i is the content of (resized) A at
    ``corner_i + offsets[i]``. Corner order: TL, TR, BR, BL.
    """

    model: ModelReport
    offsets: Quad = Field(..., description="(4, 2) px of the network input, (x, y) per corner.")
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
    refine: ChainedRefine | None = Field(
        None, description="With ?refine=true: b_H_a refined photometrically, as /refine answers."
    )
