"""Request bodies, read once and checked before work is spent on them.

- :func:`read_body`: the raw body, received into one preallocated buffer (sized from
  Content-Length, or grown geometrically for a chunked body); the size limit is enforced while it
  streams (``app.api.middleware.BodyLimitMiddleware``: 413 on every route).
- :func:`parse_json_model`: a JSON body -> a validated pydantic model, after a structural
  pre-scan against the model's :class:`~app.services.json_scan.JsonBudget` (nesting depth, item
  counts: refused before parsing), parsed and validated in one pass (pydantic-core) on the
  request class's worker threads (bodies of a few KiB, where a thread hand-off would cost more
  than the parse, on the event loop).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from app.core.config import Settings
from app.core.errors import DomainError
from app.services.admission import offload
from app.services.json_scan import JsonBudget, check_json_budget, scan_json

__all__ = ["DEFAULT_BUDGET", "is_json", "media_type", "parse_json_model", "read_body"]

M = TypeVar("M", bound=BaseModel)

DEFAULT_BUDGET = JsonBudget(max_depth=16, max_arrays={})
_FIRST_CHUNK = 1 << 16
# Bodies up to this size are validated on the event loop: a few hundred microseconds at most,
# less than the hand-off to a worker thread and back costs (on a busy loop, much less).
INLINE_JSON_BYTES = 16 * 1024


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_body(request: Request) -> np.ndarray:
    """The whole body as a writable, aligned (N,) uint8 array, copied once from the server's
    chunks: into a buffer of the declared Content-Length, or (chunked) one that doubles as it
    fills. ``malformed`` when the body and its Content-Length disagree."""
    length = request.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    buf = np.empty(declared if declared is not None else _FIRST_CHUNK, np.uint8)
    pos = 0
    async for chunk in request.stream():
        end = pos + len(chunk)
        if end > len(buf):
            if declared is not None:
                raise DomainError("body is longer than its Content-Length", "malformed", "body")
            grown = np.empty(max(end, 2 * len(buf)), np.uint8)
            grown[:pos] = buf[:pos]
            buf = grown
        buf[pos:end] = np.frombuffer(chunk, np.uint8)
        pos = end
    if declared is not None and pos != declared:
        raise DomainError(f"body ended after {pos} of {declared} bytes", "malformed", "body")
    return buf[:pos]


def _validate(model: type[M], body: bytes, budget: JsonBudget) -> M:
    check_json_budget(scan_json(body, budget.max_depth), budget)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    except (ValueError, RecursionError, OverflowError) as exc:  # beyond what the schema checks
        raise DomainError(f"body: {type(exc).__name__}: {exc}", "invalid", "body") from None


def json_budget(model: type[BaseModel], settings: Settings) -> JsonBudget:
    """The model's budget (a ``json_budget(settings)`` classmethod), or the default one."""
    fn = getattr(model, "json_budget", None)
    return fn(settings) if callable(fn) else DEFAULT_BUDGET


async def parse_json_model(request: Request, model: type[M], settings: Settings) -> M:
    """Read, pre-scan and validate a JSON body as ``model`` (see the module docstring).

    Raises:
        DomainError: ``unsupported`` for a content type that is not JSON; ``invalid`` over the
            budget; ``too_large`` (413) past the size limit.
        RequestValidationError: the body does not match the model (422, fields named).
    """
    media = media_type(request)
    if not is_json(media):
        raise DomainError(
            f"content type {media or '(none)'!r} is not supported: send application/json",
            "unsupported",
        )
    body = (await read_body(request)).tobytes()
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    budget = json_budget(model, settings)
    if len(body) <= INLINE_JSON_BYTES:
        return _validate(model, body, budget)
    return await offload(_validate, model, body, budget)
