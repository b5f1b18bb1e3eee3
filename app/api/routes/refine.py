"""/refine: photometric refinement of a homography between two images (multipart or JSON)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import ValidationError

from app.api.deps import AlignerDep, SettingsDep
from app.api.schemas.refine import (
    RefineJsonRequest,
    RefineOptionsIn,
    RefineResponse,
    refine_response,
)
from app.core.config import Settings
from app.core.errors import DomainError
from app.core.metrics import ITEMS
from app.services.images import decode_base64
from app.services.refine import Aligner, refine_images, refine_options

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


def _run(
    data_a: bytes,
    data_b: bytes,
    init: Any,
    opts: RefineOptionsIn,
    mask: bytes | None,
    settings: Settings,
    aligner: Aligner | None,
) -> RefineResponse:
    values = opts.model_dump()
    overlay = values.pop("overlay")
    out = refine_images(
        data_a,
        data_b,
        init,
        refine_options(values),
        settings,
        aligner,
        mask=mask,
        overlay=overlay,
    )
    ITEMS.labels("refine").inc()
    return refine_response(out)


def _json_field(text: str | None, name: str) -> Any:
    if text is None or not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DomainError(f"{name}: not valid JSON ({exc.msg})", "invalid", name) from exc


def _options_field(text: str | None) -> RefineOptionsIn:
    """The multipart ``options`` field: a JSON object checked by :class:`RefineOptionsIn`."""
    raw = _json_field(text, "options") or {}
    if not isinstance(raw, dict):
        raise DomainError("options: must be a JSON object", "invalid", "options")
    try:
        return RefineOptionsIn.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in ("options", *err["loc"]))
        raise DomainError(f"{loc}: {err['msg']}", "invalid", loc) from exc


@router.post(
    "/refine",
    response_model=RefineResponse,
    summary="Refine a homography photometrically (multipart upload)",
    description=DESCRIPTION,
    responses=_ERRORS,
)
def refine(
    settings: SettingsDep,
    aligner: AlignerDep,
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
    opts = _options_field(options)
    data_a, data_b = image_a.file.read(), image_b.file.read()
    data_m = mask.file.read() if mask is not None else None
    return _run(data_a, data_b, _json_field(init, "init"), opts, data_m, settings, aligner)


@router.post(
    "/refine/json",
    response_model=RefineResponse,
    summary="Refine a homography photometrically (base64 JSON)",
    description=DESCRIPTION,
    responses=_ERRORS,
)
def refine_json(
    req: RefineJsonRequest, settings: SettingsDep, aligner: AlignerDep
) -> RefineResponse:
    """The same as ``POST /refine`` with the images as base64 strings."""
    data_a = decode_base64(req.image_a, "image_a")
    data_b = decode_base64(req.image_b, "image_b")
    data_m = decode_base64(req.mask, "mask") if req.mask is not None else None
    return _run(data_a, data_b, req.init, req.options, data_m, settings, aligner)
