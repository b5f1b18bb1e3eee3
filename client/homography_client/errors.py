"""The one exception the client raises for an HTTP error answer."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["HomographyError", "error_from_response"]


class HomographyError(Exception):
    """The server answered an error (4xx/5xx), or kept shedding load (503) past the deadline.

    ``status`` is the HTTP status, ``message`` the server's explanation, ``field`` the request
    field it names (``"src[0]"``, ``"image_a"``, ``"options.max_seconds"``) or None, ``detail`` the
    raw ``detail`` of the JSON body, and ``request_id`` the server's ``X-Request-Id``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        detail: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.field = status, message, field
        self.detail, self.request_id = detail, request_id


def _loc(loc: Any) -> str | None:
    """``"src[0]"`` as sent by this service, or FastAPI's default ``["body", "src", 0]``."""
    if loc is None:
        return None
    if isinstance(loc, str):
        return loc
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def error_from_response(response: httpx.Response, note: str = "") -> HomographyError:
    """Parse ``{"detail": "msg"}`` and ``{"detail": [{"loc": ..., "msg": ...}, ...]}``."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    field = None
    if isinstance(detail, str):
        message = detail
    elif isinstance(detail, list) and detail and all(isinstance(e, dict) for e in detail):
        field = _loc(detail[0].get("loc"))
        parts = []
        for e in detail:
            loc, msg = _loc(e.get("loc")), str(e.get("msg", ""))
            parts.append(f"{loc}: {msg}" if loc and not msg.startswith(loc) else msg)
        message = "; ".join(parts)
    else:
        message = response.text.strip()[:500] or response.reason_phrase or "error"
    return HomographyError(
        response.status_code,
        message + note,
        field,
        detail,
        response.headers.get("x-request-id"),
    )
