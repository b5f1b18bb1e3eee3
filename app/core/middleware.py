"""Pure ASGI middleware: admission (starting/draining), request-size limit, per-route metrics
and one structured log line per request. Pure ASGI (not ``BaseHTTPMiddleware``) so large
binary bodies stream through."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.metrics import LATENCY, REFUSED, REQUESTS

log = structlog.get_logger("app.request")


class BodyTooLargeError(Exception):
    pass


async def send_json_error(
    send: Send, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Answer ``{"detail": ...}`` with ``status`` straight from ASGI middleware."""
    body = json.dumps({"detail": detail}).encode()
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


async def _send_413(send: Send, limit: int) -> None:
    detail = f"request body too large: the limit is {limit} bytes for this content type"
    await send_json_error(send, 413, detail, ((b"connection", b"close"),))


class BodyLimitMiddleware:
    """Answer 413 before reading a body whose Content-Length is over the limit, and stop
    reading a streamed body as soon as it passes the limit. JSON bodies get a lower limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int) -> None:
        self.app, self.max_bytes, self.max_json_bytes = app, max_bytes, max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = self.max_json_bytes if "json" in ctype else self.max_bytes
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > limit:
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
                    raise BodyTooLargeError
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


class AdmissionMiddleware:
    """Admit a request only while the service is ready (``scope["app"].state.lifecycle``, see
    :class:`app.core.lifecycle.Lifecycle`), count it in flight until answered, and answer 503 +
    Retry-After while starting, draining or failed. A request still running when the shutdown
    drain bound passes is cut: answered 503 if its response has not started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        lifecycle = scope["app"].state.lifecycle
        refusal = lifecycle.admit()
        if refusal is not None:
            REFUSED.labels(refusal.reason).inc()
            retry = str(refusal.retry_after_s).encode()
            await send_json_error(send, 503, refusal.detail, ((b"retry-after", retry),))
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        # the handler runs in a task of its own so that the drain can stop waiting for it (a
        # handler blocked on a worker thread cannot be cancelled promptly)
        handler = asyncio.ensure_future(self.app(scope, receive, tracking_send))
        handler.add_done_callback(_retrieve)
        try:
            try:
                await asyncio.wait({handler, lifecycle.cut_signal()}, return_when="FIRST_COMPLETED")
            except asyncio.CancelledError:
                handler.cancel()
                raise
            if handler.done():
                handler.result()  # re-raise what the handler raised
                return
            handler.cancel()
            if not started:
                detail = "the service shut down before this request finished; retry it"
                await send_json_error(send, 503, detail, ((b"retry-after", b"1"),))
        finally:
            lifecycle.release()


def _retrieve(task: asyncio.Future) -> None:
    """Mark a cut handler's late outcome as seen (no 'exception was never retrieved')."""
    if not task.cancelled():
        task.exception()


class ObservabilityMiddleware:
    """Prometheus counters/latency by route template, a request id header, one log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
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
                    request_id=request_id,
                    method=method,
                    path=scope.get("path"),
                    route=template,
                    status=status,
                    ms=round(elapsed * 1e3, 2),
                )
