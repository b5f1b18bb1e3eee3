"""Optional API-key check (pure ASGI), off unless ``HOMOGRAPHY_API_KEY`` is set."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.middleware import send_json_error

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})


class ApiKeyMiddleware:
    """Answer 401 unless the request carries the key in ``X-API-Key`` or
    ``Authorization: Bearer``; liveness, readiness and metrics stay open for orchestrators, and
    ``open_paths``/``open_prefixes`` (the demo page and the docs) for browsers."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str,
        open_paths: frozenset[str] = OPEN_PATHS,
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.key = api_key.encode()
        self.open_paths, self.open_prefixes = open_paths, open_prefixes

    def _open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    def _authorised(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key")
        if given is None:
            auth = headers.get(b"authorization", b"")
            if auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given, self.key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope["path"]) or self._authorised(scope):
            await self.app(scope, receive, send)
            return
        await send_json_error(
            send,
            401,
            "missing or invalid API key (X-API-Key header)",
            ((b"www-authenticate", b"Bearer"),),
        )
