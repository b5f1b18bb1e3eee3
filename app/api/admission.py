"""The ASGI side of admission control: which endpoint class a path belongs to, and a middleware
that runs each request of a class inside one of its slots (``app.services.admission``) or
answers 503 with ``Retry-After`` at once. Probes, metrics and the docs belong to no class and are
never held back."""

from __future__ import annotations

import math

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.middleware import send_json_error
from app.core.metrics import REFUSED
from app.services.admission import Admission, OverloadedError

__all__ = ["ENDPOINT_CLASSES", "AdmissionMiddleware", "endpoint_class"]

ENDPOINT_CLASSES: dict[str, str] = {
    "/estimate": "estimate",
    "/estimate/json": "estimate",
    "/refine": "refine",
    "/refine/json": "refine",
    "/solve": "solve",
    "/solve/batch": "solve_batch",
    "/pose-loss": "pose_loss",
}

# every refusal series exported at 0 from the start (a rate() needs the zero)
for _cls in (*sorted(set(ENDPOINT_CLASSES.values())), "other"):
    for _reason in ("starting", "draining", "failed", "overloaded"):
        if _cls != "other" or _reason != "overloaded":
            REFUSED.labels(_reason, _cls)


def endpoint_class(path: str) -> str:
    """The endpoint class of ``path`` as the refusal metrics label it ('other': none)."""
    return ENDPOINT_CLASSES.get(path, "other")


_SMALL_BODY = 64 * 1024


def _large_body(scope: Scope) -> bool:
    """A chunked body, or one over 64 KiB: not worth receiving just to discard it."""
    for name, value in scope.get("headers") or ():
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return not value.strip().isdigit() or int(value) > _SMALL_BODY
    return False


class AdmissionMiddleware:
    """Admit each request of an endpoint class for its whole life, or shed it with 503."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app, self.admission = app, admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = ENDPOINT_CLASSES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if name is None:
            await self.app(scope, receive, send)
            return
        admitted = False
        try:
            async with self.admission.slot(name):
                admitted = True
                await self.app(scope, receive, send)
        except OverloadedError as exc:
            if admitted:  # not ours: raised by the request's own work
                raise
            REFUSED.labels("overloaded", name).inc()
            headers = [(b"retry-after", str(math.ceil(exc.retry_after or 1)).encode())]
            if _large_body(scope):  # unread: close rather than receive it (a small one the
                headers.append(
                    (b"connection", b"close")
                )  # server discards, keeping the connection)
            await send_json_error(send, 503, exc.message, tuple(headers))
