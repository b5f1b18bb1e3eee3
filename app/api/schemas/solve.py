"""Request and response models of /solve."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.config import Settings
from app.services.json_scan import JsonBudget

Point = tuple[float, float]
Row3 = Annotated[list[float], Field(min_length=3, max_length=3)]
Matrix3 = Annotated[list[Row3], Field(min_length=3, max_length=3, description="3x3, row-major")]


class RansacParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(3.0, gt=0, le=1e4, description="Inlier transfer error, pixels.")
    confidence: float = Field(0.999, gt=0, lt=1)
    max_iters: int = Field(2000, ge=1, le=100_000)
    seed: int | None = Field(0, ge=0, description="Same seed, same answer. null: random.")


class SolveRequest(BaseModel):
    """B items of corresponding points. ``aca``/``sks`` take exactly 4 points per item; ``dlt``
    and ``robust`` take N >= 4 (N may differ between items)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "method": "aca",
                    "src": [[[0, 0], [127, 0], [127, 127], [0, 127]]],
                    "dst": [[[3.5, -2.0], [130.0, 4.0], [120.5, 131.0], [-6.0, 125.0]]],
                }
            ]
        },
    )

    src: list[list[Point]] = Field(..., description="(B, N, 2) source points (x, y), pixels.")
    dst: list[list[Point]] = Field(..., description="(B, N, 2) target points, same order.")
    method: Literal["aca", "sks", "dlt"] = "aca"
    robust: bool = Field(False, description="RANSAC with the ACA minimal solver, then LS refit.")
    normalize: Literal["h33", "frobenius"] = "h33"
    dtype: Literal["float64", "float32"] = "float64"
    ransac: RansacParams = Field(default_factory=RansacParams)

    @classmethod
    def json_budget(cls, settings: Settings) -> JsonBudget:
        """Checked on the raw text before parsing: items are the arrays at depth 2 (``src``'s
        and ``dst``'s), points those at depth 3."""
        items = settings.max_solve_json_batch
        points = max(4 * items, settings.max_robust_work)
        return JsonBudget(
            max_depth=8,
            max_arrays={
                2: (
                    2 * items,
                    "src",
                    "more than {limit} items in src and dst together: a batch exceeds the JSON "
                    f"limit of {items} items; send large batches to POST /solve/batch as .npz",
                ),
                3: (
                    2 * points,
                    "src",
                    "more than {limit} points in src and dst together: over the limit of "
                    f"{points} points per batch",
                ),
            },
            per_parent={
                3: (
                    2,
                    settings.max_points_per_item,
                    "src",
                    "{count} points in src and dst, more than their items may hold "
                    f"({{limit}}): an item has at most {settings.max_points_per_item} points",
                )
            },
        )


class SolveResponse(BaseModel):
    """Columnar per-item results: ``dst_H_src[i]`` maps item i's src points onto its dst points
    (null when invalid; ``reason[i]`` then says why)."""

    method: str
    robust: bool
    count: int
    valid_count: int
    dst_H_src: list[Matrix3 | None]
    valid: list[bool]
    reason: list[str | None]
    num_inliers: list[int] | None = None
    inliers: list[list[bool]] | None = None
    rms_error: list[float | None] | None = Field(
        None, description="RMS transfer error of each item's inliers, pixels."
    )
    elapsed_ms: float
