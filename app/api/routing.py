"""The route class of every API router: before FastAPI's own handling, each request's query
string is checked against the parameters the route declares (an unknown or repeated one is a 422
naming it, never silently dropped or overwritten), and a JSON body declared as a pydantic model
is read, pre-scanned and validated off the event loop (:func:`app.api.bodies.parse_json_model`)
so that FastAPI receives the finished model instead of parsing on the loop."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.core.errors import DomainError

__all__ = ["CheckedRoute", "check_query"]


def _query_names(dependant: Dependant) -> frozenset[str]:
    names: set[str] = set()
    stack = [dependant]
    while stack:
        d = stack.pop()
        names.update(f.alias for f in d.query_params)
        stack.extend(d.dependencies)
    return frozenset(names)


def check_query(request: Request, allowed: frozenset[str]) -> None:
    """A :class:`DomainError` naming the first query parameter that the route does not take or
    that is given twice."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            takes = ", ".join(sorted(allowed)) or "none"
            raise DomainError(
                f"unknown query parameter {name!r} (this endpoint takes: {takes}){hint}",
                "invalid",
                name,
            )
        if name in seen:
            raise DomainError(f"query parameter {name!r} is given more than once", "invalid", name)
        seen.add(name)


class _ParsedRequest(Request):
    """The request as FastAPI's handler sees it once the body is parsed: ``json()`` answers the
    validated model (which FastAPI passes through unchanged), ``body()`` a non-empty stand-in
    (the stream is consumed; FastAPI only checks that there was a body)."""

    def __init__(self, request: Request, raw: bytes, value: BaseModel) -> None:
        super().__init__(request.scope, request.receive)
        self._raw, self._value = raw, value

    async def body(self) -> bytes:
        return self._raw

    async def json(self) -> Any:
        return self._value


class CheckedRoute(APIRoute):
    """See the module docstring; used as ``APIRouter(route_class=CheckedRoute)``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = _query_names(self.dependant)
        model = None
        if self.body_field is not None and not isinstance(self.body_field.field_info, params.Form):
            annotation = self.body_field.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
        if model is not None:
            # here, not at the top: the pre-scanner compiles with Numba, which the probes'
            # routes (same class, no JSON body) must not import (app.main stays light)
            from app.api.bodies import parse_json_model

        async def checked(request: Request) -> Response:
            check_query(request, allowed)
            if model is not None:
                value = await parse_json_model(request, model, request.app.state.settings)
                request = _ParsedRequest(request, b"{}", value)
            return await handler(request)

        return checked
