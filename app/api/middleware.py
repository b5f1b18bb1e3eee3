"""Pure ASGI middleware: the request envelope (one Content-Type, one Content-Length, the body
size limit, streamed), per-route metrics, one structured log line per request, and the catch-all
that turns an unexpected exception into a 500 carrying the request id (the traceback goes to the
log). Pure ASGI (not ``BaseHTTPMiddleware``) so large binary bodies stream through."""

from __future__ import annotations

import itertools
import json
import os
import time

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.metrics import LATENCY, REQUESTS

log = structlog.get_logger("app.request")

# Request ids: a random per-process prefix and a counter (unique per process, and cheap: no
# os.urandom call per request, which shows under floods of small requests).
_ID_PREFIX = os.urandom(3).hex()
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFF:010x}"


class BodyTooLargeError(HTTPException):
    """Raised by ``receive`` once a streamed body passes the limit. An ``HTTPException`` so
    that FastAPI's body parsing re-raises it (a plain exception there becomes a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit), headers={"Connection": "close"})
        self.limit = limit


async def send_json_error(
    send: Send,
    status: int,
    detail: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    **extra: str,
) -> None:
    """Answer ``{"detail": ..., **extra}`` with ``status`` straight from ASGI middleware."""
    body = json.dumps({"detail": detail, **extra}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> str:
    return f"request body too large: the limit is {limit} bytes for this content type"


async def _send_413(send: Send, limit: int) -> None:
    await send_json_error(send, 413, _too_large(limit), ((b"connection", b"close"),))


def _envelope_error(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why the request's framing headers are ambiguous, or None: more than one Content-Type
    (the size limit and the parser could read different ones) or Content-Length, or a
    Content-Length that is not a number."""
    ctypes = [v for k, v in headers if k == b"content-type"]
    if len(ctypes) > 1:
        return f"{len(ctypes)} Content-Type headers; send exactly one"
    lengths = [v for k, v in headers if k == b"content-length"]
    if len(lengths) > 1:
        return f"{len(lengths)} Content-Length headers; send at most one"
    if lengths and not lengths[0].strip().isdigit():
        return "Content-Length is not a non-negative integer"
    return None


class BodyLimitMiddleware:
    """The request envelope: 400 for ambiguous framing headers (:func:`_envelope_error`), 413
    before reading a body whose Content-Length is over the limit, and 413 as soon as a streamed
    (chunked) body passes it, on every route. JSON bodies get a lower limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int) -> None:
        self.app, self.max_bytes, self.max_json_bytes = app, max_bytes, max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = list(scope.get("headers") or [])
        problem = _envelope_error(raw)
        if problem is not None:
            await send_json_error(send, 400, problem, ((b"connection", b"close"),))
            return
        headers = dict(raw)
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = self.max_json_bytes if "json" in ctype else self.max_bytes
        length = headers.get(b"content-length")
        if length is not None and int(length) > limit:
            await _send_413(send, limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if not started:
                await _send_413(send, limit)


# Orchestrators' probes and the metrics scrape: always answered, never counted as work
PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})


class ObservabilityMiddleware:
    """Prometheus counters/latency by route template, a request id (``X-Request-ID`` header,
    bound to every log line of the request), one log line per request, and the catch-all: an
    exception that escapes the app answers 500 ``{"detail", "request_id"}`` (when no response
    has started) and is logged once with its full traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception:
                log.exception(
                    "unhandled_exception",
                    method=scope.get("method", ""),
                    path=scope.get("path"),
                    response_started=started,
                )
                if started:
                    raise  # too late for an answer: the server closes the connection
                status = 500
                await send_json_error(
                    send,
                    500,
                    "internal error; quote the request id when reporting it",
                    ((b"x-request-id", request_id.encode()),),
                    request_id=request_id,
                )
            finally:
                elapsed = time.perf_counter() - start
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                method = scope.get("method", "")
                REQUESTS.labels(method, template, str(status)).inc()
                LATENCY.labels(method, template).observe(elapsed)
                if template not in PROBE_PATHS:  # probes every few seconds: metrics only
                    log.info(
                        "request",
                        method=method,
                        path=scope.get("path"),
                        route=template,
                        status=status,
                        ms=round(elapsed * 1e3, 2),
                    )
