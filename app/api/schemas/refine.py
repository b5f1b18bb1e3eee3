"""Request and response models of /refine (and of ``/estimate?refine=true``'s report)."""

from __future__ import annotations

import base64
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.services.refine import RefineOutput

Matrix3 = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]

# two 32x32 grayscale PNGs of a smooth pattern, B = A shifted 1.5 px to the right
EXAMPLE_A = (
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAAAAABWESUoAAACRElEQVQ4y0VT2W7bMBDci6QctEDQ5IP7wSmCPDQRj+V2"
    "VmpRGrYMzVDcOcQ/X16evx8W4/Pj/dfb2/vH7x56fHv+8foK4MmEKGLHvYgYS/halHf2NortPiPWAo1FrOxQM+EE1iKj"
    "vWanFWtMD5JSF4e0gkfHmoPNyOfJrrH6WJutNpohtRVlX122gjA0poSPE4i1sJWXprQvAIQeUzlPmptLaHNitWrsg6ax"
    "5fGSM28MK1XrhhgRVVqEjUmYUEpQiI9IxS/ljSBfeQVhLd8B+YZVTLErla/p090DhN6Hb4bAJlKOasrbU/kaKSyH/Oxz"
    "k1VMIKU9mvEG7gC+zpGEcX4Np+Jc4UN7HIX34NVpz/Ozezo5ztMZpq5Iox6VXXbHQauf57qsHgP+GsLApLVW8ZiwGlEA"
    "sAwToQikwAGkpcBM7rASyLjjFn6bwXxZ8ndBZu7CBpG7AzBUNh6GpyWAsPAtLlyuhHHaZPa5PI8DAqtRkUbOpRZFprOL"
    "i2M4B4DsIVPLEeZwoBZGKzTSh3N4wLWtSWghqIqWViTS4nRg9EUIVtpFkJpl01JkT1iYo6y5QiuXDMukpE5KIXs6C11F"
    "Rzqc3UhC6rtvxtgXOdk4NAEQUiCnsXOOOafvFFgKymWIHoSGDkggYnaM39F+0dq4WD1qkRzycVQ4ALzHOr86Wo3sC0kF"
    "oJcPT1VpImL4gHLMrZXsCAh/amk1DDs0NIZxOnkO/Dd07ALszqJYoOOSbcWkoXKNCgBz3i8BnqD/3g5Y4P/T/AMizrlP"
    "tkIEFgAAAABJRU5ErkJggg=="
)
EXAMPLE_B = (
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAAAAABWESUoAAACSklEQVQ4yy1TyXLbMAzFRkpODpk0+cJ+f9rJTA4WFwB9"
    "pEpzTIuA6LeRf39+fL6/vVb26+f779fXn++f5+Ty8vb+8fnx6+1VmCgzI9bMJGJmwVz7u2JCFDGnsE+PJBY1IzZFS66C"
    "rXV0DfbeZ5BYOdKo1KJMMUYzk5j9osHR2/DUcoQ42VlNco6LrHCOxtM4RutOWh5SnbWcBW82dsM6ng4o6bNP0oPNc/1T"
    "lRyXN6sS3TtAg4rjhMPABlhF0RAdnSDRCfyI18Tz+oGNvAtW55jTPXMTXENBDKdhf6BgFX2tj0gBgdP0OArwg1mLDtjD"
    "SgOWZ5+pdpKR1gfwE1BFz4nC1qE9r5lSSU80nC9VaWoO6NCvpxljbVdPDT08xep5WA4aKHi/ri31HG2EcZ1bgIIG8QLm"
    "ANpvs9xhg8UyixWDYpu1uAj9t5XuD0SA4VuKe9iOgKjud6Bn4DxJjzsbIhCWxawkaEIiNPjQTIiHAqsVOIMFFqcecJig"
    "kOFYoPaAp9VtJtvhPFcSqi7T2XUxHyjUk22ElJPKVgAKQULM9EWcoW0xNBYysAS/YjRhwQobwuEoqFsPqZZBN2byNnjb"
    "DTZSFPnsYCL3HoTJeYd/dbNUfFmvSPBNcM6ODAxfkQPpCtURj2EAeSDkcOSK4fBtBsvKBqNQbRxoeBwr1RdMhIHPgdjX"
    "kAMNj/PWASHhaDSUHelpTgXeQ6j6eGwlcR4uL/utZLsmHsrcSh67QaERe2yoKwOT03yZhI7tJu4AxJF1pXOFw1lWNtbt"
    "kH8hp8FrUgd/pgAAAABJRU5ErkJggg=="
)


class RefineOptionsIn(BaseModel):
    """Solver options; every field is optional. The service's settings cap ``max_iterations``
    (``refine_max_iterations``) and ``max_seconds`` (``refine_max_seconds``); a request over a
    cap is answered 422 naming the option."""

    model_config = ConfigDict(extra="forbid")

    solver: Literal["levenberg_marquardt", "gauss_newton"] = Field(
        "levenberg_marquardt", description="Damped (refuses cost increases) or plain Gauss-Newton."
    )
    num_levels: int | None = Field(
        None, ge=1, le=12, description="Pyramid levels; default: coarsest long side ~40-80 px."
    )
    max_iterations: int = Field(50, ge=1, description="Iterations allowed per pyramid level.")
    max_total_iterations: int | None = Field(
        None, ge=1, le=100_000, description="Iteration budget over all levels."
    )
    max_seconds: float | None = Field(
        None, gt=0, description="Time budget; default: the service's refine_default_seconds."
    )
    tolerance_px: float = Field(
        2e-3, gt=0, le=10, description="Finest-level convergence: largest corner update (px)."
    )
    photometric: Literal["gain_bias", "none"] = Field(
        "gain_bias", description="Fit gain and bias between the images (brightness/contrast)."
    )
    robust: Literal["none", "huber", "tukey"] = Field("none", description="IRLS robust loss.")
    search: bool = Field(
        True, description="Try 10 more starts at the coarsest level when the first matches poorly."
    )
    overlay: bool = Field(False, description="Return a PNG overlay of the aligned images.")


class RefineJsonRequest(BaseModel):
    """Two images as base64 strings (plain or ``data:image/...;base64,`` URLs)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "image_a": EXAMPLE_A,
                    "image_b": EXAMPLE_B,
                    "init": [[1, 0, 1], [0, 1, 0], [0, 0, 1]],
                    "options": {"max_seconds": 1.0, "overlay": False},
                }
            ]
        },
    )

    image_a: str = Field(..., description="Image A, base64 (PNG, JPEG, BMP, TIFF, WebP, ...).")
    image_b: str = Field(..., description="Image B, base64.")
    init: list[list[float]] | None = Field(
        None, description="Start b_H_a (A pixel -> B pixel, 3x3); default: identity."
    )
    mask: str | None = Field(
        None, description="Optional image of A's size, base64; nonzero pixels of A are used."
    )
    options: RefineOptionsIn = Field(default_factory=RefineOptionsIn)


class PhotometricErrorOut(BaseModel):
    mean_abs: float | None = Field(
        ..., description="Mean |A - B warped onto A| in gray levels (0-255) on the overlap."
    )
    overlap: float = Field(..., description="Fraction of A's pixels that land inside B.")


class LevelOut(BaseModel):
    level: int = Field(..., description="0 = full resolution.")
    width: int
    height: int
    iterations: int
    last_step_px: float | None = Field(..., description="Last update, largest corner motion.")
    converged: bool
    cost: float | None = Field(..., description="Mean squared residual (intensities in [0, 1]).")


class RefineResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "b_H_a": [[1.0, 0.0, 1.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
                    "converged": True,
                    "budget_exhausted": False,
                    "error_before": {"mean_abs": 9.1, "overlap": 1.0},
                    "error_after": {"mean_abs": 0.4, "overlap": 0.95},
                    "levels": [
                        {
                            "level": 0,
                            "width": 32,
                            "height": 32,
                            "iterations": 4,
                            "last_step_px": 0.0004,
                            "converged": True,
                            "cost": 1e-5,
                        }
                    ],
                    "iterations": 4,
                    "device": "cpu",
                    "work_scale": 1.0,
                    "timings_ms": {"decode": 0.2, "align": 3.1, "errors": 0.5, "overlay": 0.0},
                    "overlay_png": None,
                }
            ]
        }
    )

    b_H_a: Matrix3 = Field(..., description="Refined homography, A pixel -> B pixel, H33 = 1.")
    converged: bool = Field(..., description="The finest level converged within its iterations.")
    budget_exhausted: bool = Field(
        ..., description="The iteration or time budget ran out; b_H_a is the best so far."
    )
    error_before: PhotometricErrorOut
    error_after: PhotometricErrorOut
    levels: list[LevelOut] = Field(..., description="Coarsest first.")
    iterations: int
    device: str
    work_scale: float = Field(
        1.0, description="Working width / original width of A (large images are shrunk first)."
    )
    timings_ms: dict[str, float]
    overlay_png: str | None = Field(
        None, description="Base64 PNG: B in green, A warped onto B in magenta (on request)."
    )


class ChainedRefine(BaseModel):
    """``/estimate?refine=true``: the photometric refinement of the estimate (network or
    features); when applied, the estimate's top-level ``b_H_a`` is ``result.b_H_a``."""

    applied: bool = Field(..., description="False when the estimate could not be refined.")
    detail: str | None = Field(None, description="Why it was not applied.")
    start_b_H_a: Matrix3 | None = Field(
        None, description="The estimate before refinement (the start), A pixel -> B pixel."
    )
    result: RefineResponse | None = Field(None, description="As /refine answers.")


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def refine_response(out: RefineOutput) -> RefineResponse:
    """The service's :class:`RefineOutput` as /refine answers it."""
    r = out.result
    before, after = r.error_before, r.error_after
    assert before is not None and after is not None  # refine_pixels fills both
    return RefineResponse(
        b_H_a=r.b_H_a.tolist(),
        converged=r.converged,
        budget_exhausted=r.budget_exhausted,
        error_before=PhotometricErrorOut(mean_abs=_finite(before.mean_abs), overlap=before.overlap),
        error_after=PhotometricErrorOut(mean_abs=_finite(after.mean_abs), overlap=after.overlap),
        levels=[
            LevelOut(
                level=lv.level,
                width=lv.size[0],
                height=lv.size[1],
                iterations=lv.iterations,
                last_step_px=_finite(lv.last_step_px),
                converged=lv.converged,
                cost=_finite(lv.cost),
            )
            for lv in r.levels
        ],
        iterations=r.iterations,
        device=out.device,
        work_scale=out.work_scale,
        timings_ms=out.timings_ms,
        overlay_png=None if out.overlay_png is None else base64.b64encode(out.overlay_png).decode(),
    )
