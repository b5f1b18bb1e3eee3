"""Map validation and domain errors to clear 4xx JSON responses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class InputError(ValueError):
    """A request that parsed but cannot be processed; ``status`` is the HTTP code to answer."""

    def __init__(self, message: str, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        detail = [{"loc": exc.field, "msg": exc.message}] if exc.field else exc.message
        return JSONResponse(status_code=exc.status, content={"detail": detail})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": _loc(tuple(e.get("loc", ()))), "msg": e.get("msg", ""), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})
