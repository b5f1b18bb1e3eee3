"""/refine: photometric refinement of a homography between two images (multipart or JSON)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter, ValidationError

from app.api.bodies import media_type
from app.api.deps import AlignerDep, SettingsDep
from app.api.responses import json_response
from app.api.routing import CheckedRoute
from app.api.schemas.refine import (
    RefineJsonRequest,
    RefineOptionsIn,
    RefineResponse,
    refine_response,
)
from app.api.uploads import MultipartPolicy, read_multipart
from app.core.config import Settings
from app.core.errors import DomainError
from app.core.metrics import ITEMS
from app.services.admission import offload
from app.services.images import decode_base64
from app.services.refine import Aligner, refine_images, refine_options

router = APIRouter(tags=["refine"], route_class=CheckedRoute)

POLICY = MultipartPolicy(
    files=("image_a", "image_b", "mask"),
    required=("image_a", "image_b"),
    fields=("init", "options"),
)
_MAX_FIELD_CHARS = 4096  # a 3x3 matrix or the options object needs far fewer
_INIT = TypeAdapter(list[list[float]])  # finiteness, shape: app.alignment.check_homography
_OPTIONS = TypeAdapter(dict[str, Any])

_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["image_a", "image_b"],
    "properties": {
        "image_a": {"type": "string", "format": "binary", "description": "Image A (the template)."},
        "image_b": {"type": "string", "format": "binary", "description": "Image B."},
        "init": {
            "type": "string",
            "description": "JSON 3x3 start b_H_a (A pixel -> B pixel); default: identity.",
            "examples": ["[[1, 0, 12.5], [0, 1, -4], [0, 0, 1]]"],
        },
        "options": {
            "type": "string",
            "description": "JSON object of solver options (see RefineOptionsIn).",
            "examples": ['{"max_seconds": 2, "robust": "huber", "overlay": true}'],
        },
        "mask": {
            "type": "string",
            "format": "binary",
            "description": "Optional image of A's size; nonzero = use.",
        },
    },
}
_OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": POLICY.openapi(_MULTIPART_SCHEMA),
        },
    }
}

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
) -> Response:
    """The refinement and the serialised answer, in the refine class's worker thread."""
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
    return json_response(refine_response(out))


def _json_text(text: str | None, name: str, adapter: TypeAdapter) -> Any:
    """A small JSON form field, parsed by pydantic-core (bounded nesting, no Python recursion,
    big numbers refused): None when absent or blank, a :class:`DomainError` naming it when it
    is not what ``adapter`` expects."""
    if text is None or not text.strip():
        return None
    if len(text) > _MAX_FIELD_CHARS:
        raise DomainError(
            f"{name}: {len(text)} characters, over the {_MAX_FIELD_CHARS} this field may hold",
            "invalid",
            name,
        )
    try:
        return adapter.validate_json(text)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = "".join(f"[{p}]" for p in err["loc"])
        raise DomainError(f"{name}{where}: {err['msg']}", "invalid", name) from None


def _options_field(text: str | None) -> RefineOptionsIn:
    """The multipart ``options`` field: a JSON object checked by :class:`RefineOptionsIn`."""
    raw = _json_text(text, "options", _OPTIONS) or {}
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
    openapi_extra=_OPENAPI_EXTRA,
    responses=_ERRORS,
)
async def refine(request: Request, settings: SettingsDep, aligner: AlignerDep) -> Response:
    """Files ``image_a``, ``image_b`` (and ``mask``), text fields ``init`` and ``options``."""
    media = media_type(request)
    if media != "multipart/form-data":
        raise DomainError(
            f"content type {media or '(none)'!r} is not supported: send multipart/form-data "
            "(files image_a, image_b) or use POST /refine/json",
            "unsupported",
        )
    parts = await read_multipart(request, POLICY)
    opts = _options_field(parts.fields.get("options"))
    init = _json_text(parts.fields.get("init"), "init", _INIT)
    files = parts.files
    return await offload(
        _run,
        files["image_a"],
        files["image_b"],
        init,
        opts,
        files.get("mask"),
        settings,
        aligner,
    )


@router.post(
    "/refine/json",
    response_model=RefineResponse,
    summary="Refine a homography photometrically (base64 JSON)",
    description=DESCRIPTION,
    responses=_ERRORS,
)
async def refine_json(
    req: RefineJsonRequest, settings: SettingsDep, aligner: AlignerDep
) -> Response:
    """The same as ``POST /refine`` with the images as base64 strings."""
    return await offload(_run_json, req, settings, aligner)


def _run_json(req: RefineJsonRequest, settings: Settings, aligner: Aligner | None) -> Response:
    data_a = decode_base64(req.image_a, "image_a")
    data_b = decode_base64(req.image_b, "image_b")
    data_m = decode_base64(req.mask, "mask") if req.mask is not None else None
    return _run(data_a, data_b, req.init, req.options, data_m, settings, aligner)
