"""The HTTP side of :mod:`app.core.lifecycle`: a gate that admits work only while the service is
ready, counts it in flight until answered, and cuts what is left when the shutdown drain bound
passes. Probes, metrics, the demo page and the docs pass through ungated (``open_paths``,
``open_prefixes``): they answer from the first second and during the drain."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.admission import endpoint_class
from app.api.middleware import PROBE_PATHS, send_json_error
from app.core.metrics import REFUSED

__all__ = ["LifecycleGateMiddleware"]


class LifecycleGateMiddleware:
    """Admit a request only while the service is ready (``scope["app"].state.lifecycle``, see
    :class:`app.core.lifecycle.Lifecycle`), count it in flight until answered, and answer 503 +
    Retry-After while starting, draining or failed. A request still running when the shutdown
    drain bound passes is cut: answered 503 if its response has not started."""

    def __init__(
        self,
        app: ASGIApp,
        open_paths: frozenset[str] = PROBE_PATHS,
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.open_paths, self.open_prefixes = open_paths, open_prefixes

    def _open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope["path"]):
            await self.app(scope, receive, send)
            return
        lifecycle = scope["app"].state.lifecycle
        refusal = lifecycle.admit()
        if refusal is not None:
            REFUSED.labels(refusal.reason, endpoint_class(scope["path"])).inc()
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
