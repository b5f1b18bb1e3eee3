"""The one place where errors become HTTP answers: :class:`DomainError` kinds to statuses, and
FastAPI's validation errors to the same ``{"detail": [{"loc", "msg"}]}`` shape."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.core.errors import DomainError, ErrorKind

__all__ = ["STATUS", "install_error_handlers"]

STATUS: dict[ErrorKind, int] = {
    "invalid": 422,
    "malformed": 400,
    "too_large": 413,
    "unsupported": 415,
    "unavailable": 503,
    "internal": 500,
}


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


def _domain_error(exc: DomainError) -> JSONResponse:
    detail = [{"loc": exc.field, "msg": exc.message}] if exc.field else exc.message
    headers = None
    if exc.kind == "unavailable" and exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return JSONResponse(status_code=STATUS[exc.kind], content={"detail": detail}, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return _domain_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": _loc(tuple(e.get("loc", ()))), "msg": e.get("msg", ""), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})
