"""/refine: photometric refinement of a homography between two images (multipart or JSON)."""

from __future__ import annotations

import base64
import json
import math
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile
from pydantic import ValidationError

from app.alignment import RefineOptions
from app.api.deps import EnginesDep, SettingsDep
from app.api.errors import InputError
from app.api.schemas.refine import (
    ChainedRefine,
    LevelOut,
    PhotometricErrorOut,
    RefineJsonRequest,
    RefineOptionsIn,
    RefineResponse,
)
from app.core.config import Settings
from app.core.engines import EngineRegistry
from app.core.metrics import ITEMS
from app.services.images import ImageError, decode_base64
from app.services.refine import Aligner, RefineInputError, RefineOutput, refine_images

__all__ = ["refine_after_estimate", "router"]

router = APIRouter(tags=["refine"])

DESCRIPTION = """Refine the homography `b_H_a` (A pixel -> B pixel, the convention of `/estimate`
and `/solve`: `cv2.warpPerspective(image_a, b_H_a, (W_b, H_b))` lines A up with B) so that B
warped onto A matches A photometrically: coarse-to-fine inverse-compositional Gauss-Newton /
Levenberg-Marquardt on the 8 parameters over Kornia Gaussian pyramids, with gain/bias
normalisation (brightness/contrast changes), optional robust weights and pixel mask, and an
iteration/time budget. The start `init` must be close enough for its basin (tens of pixels at
640x480 from the identity; use `/estimate` for larger motions, or `/estimate?refine=true`).

A budget that runs out is not an error: the answer is the best estimate so far with
`budget_exhausted: true` and `converged: false`. Images larger than `refine_max_work_pixels` are
aligned at a reduced resolution (`work_scale` < 1); `b_H_a` is always in the original pixels.

Errors: 422 singular or non-finite `init` (or one that maps A outside B), undecodable image, mask
of the wrong size, an option out of range (named, e.g. `options.max_seconds`); 413 image with too
many pixels (read from its header) or body too large; 415 unsupported image format."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "Image with too many pixels, or body over the size limit"},
    415: {"description": "Image format not supported"},
    422: {"description": "Bad init, undecodable image, mask size, option out of range"},
}


def registered_aligner(engines: EngineRegistry) -> Aligner | None:
    """The start-up aligner engine, or None when it did not build (callers fall back to CPU)."""
    obj = engines.get("aligner")
    return obj if isinstance(obj, Aligner) else None


def _options(opts: RefineOptionsIn) -> tuple[RefineOptions, bool]:
    data = opts.model_dump()
    overlay = data.pop("overlay")
    try:
        return RefineOptions(**data), overlay
    except ValueError as exc:  # dataclass checks beyond the schema's (e.g. inf)
        name = str(exc).split(":", 1)[0]
        raise InputError(str(exc), 422, f"options.{name}") from exc


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _response(out: RefineOutput) -> RefineResponse:
    r = out.result
    before, after = r.error_before, r.error_after
    assert before is not None and after is not None
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


def _run(
    data_a: bytes,
    data_b: bytes,
    init: Any,
    opts: RefineOptionsIn,
    mask: bytes | None,
    settings: Settings,
    engines: EngineRegistry,
) -> RefineResponse:
    options, overlay = _options(opts)
    try:
        out = refine_images(
            data_a,
            data_b,
            init,
            options,
            settings,
            registered_aligner(engines),
            mask=mask,
            overlay=overlay,
        )
    except RefineInputError as exc:
        raise InputError(exc.message, exc.status, exc.field) from exc
    ITEMS.labels("refine").inc()
    return _response(out)


def _json_field(text: str | None, name: str) -> Any:
    if text is None or not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: not valid JSON ({exc.msg})", 422, name) from exc


@router.post(
    "/refine",
    response_model=RefineResponse,
    summary="Refine a homography photometrically (multipart upload)",
    description=DESCRIPTION,
    responses=_ERRORS,
)
def refine(
    settings: SettingsDep,
    engines: EnginesDep,
    image_a: Annotated[UploadFile, File(description="Image A (the template).")],
    image_b: Annotated[UploadFile, File(description="Image B.")],
    init: Annotated[
        str | None,
        Form(
            description="JSON 3x3 start b_H_a (A pixel -> B pixel); default: identity.",
            examples=["[[1, 0, 12.5], [0, 1, -4], [0, 0, 1]]"],
        ),
    ] = None,
    options: Annotated[
        str | None,
        Form(
            description="JSON object of solver options (see RefineOptionsIn).",
            examples=['{"max_seconds": 2, "robust": "huber", "overlay": true}'],
        ),
    ] = None,
    mask: Annotated[
        UploadFile | None, File(description="Optional image of A's size; nonzero = use.")
    ] = None,
) -> RefineResponse:
    """Plain ``def``: FastAPI runs it in the thread pool, off the event loop."""
    raw = _json_field(options, "options") or {}
    if not isinstance(raw, dict):
        raise InputError("options: must be a JSON object", 422, "options")
    try:
        opts = RefineOptionsIn.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in ("options", *err["loc"]))
        raise InputError(f"{loc}: {err['msg']}", 422, loc) from exc
    data_a, data_b = image_a.file.read(), image_b.file.read()
    data_m = mask.file.read() if mask is not None else None
    return _run(data_a, data_b, _json_field(init, "init"), opts, data_m, settings, engines)


@router.post(
    "/refine/json",
    response_model=RefineResponse,
    summary="Refine a homography photometrically (base64 JSON)",
    description=DESCRIPTION,
    responses=_ERRORS,
)
def refine_json(
    req: RefineJsonRequest, settings: SettingsDep, engines: EnginesDep
) -> RefineResponse:
    """The same as ``POST /refine`` with the images as base64 strings."""
    try:
        data_a = decode_base64(req.image_a, "image_a")
        data_b = decode_base64(req.image_b, "image_b")
        data_m = decode_base64(req.mask, "mask") if req.mask is not None else None
    except ImageError as exc:
        raise InputError(exc.message, exc.status, exc.field) from exc
    return _run(data_a, data_b, req.init, req.options, data_m, settings, engines)


def refine_after_estimate(
    data_a: bytes,
    data_b: bytes,
    b_H_a: np.ndarray,
    settings: Settings,
    engines: EngineRegistry,
    options: RefineOptions | None = None,
) -> ChainedRefine:
    """``/estimate?refine=true``: refine the estimate with /refine's pipeline (default
    options, the service's default time budget). Synchronous: call it in the thread pool. A start
    that cannot be refined (e.g. it maps A outside B) is reported, not raised."""
    try:
        out = refine_images(
            data_a, data_b, b_H_a, options or RefineOptions(), settings, registered_aligner(engines)
        )
    except RefineInputError as exc:
        return ChainedRefine(applied=False, detail=exc.message)
    ITEMS.labels("refine").inc()
    return ChainedRefine(applied=True, result=_response(out))
