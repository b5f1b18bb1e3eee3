"""Response classes beyond Starlette's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` serialised now (call it in a worker thread: FastAPI would validate and encode
    a returned model again on the event loop; a ``Response`` it passes through untouched)."""
    return Response(model.model_dump_json(), status_code, media_type="application/json")


class ChunkedResponse(Response):
    """A body made of several buffers sent one after another with a known Content-Length, so a
    large binary answer is never joined into one copy."""

    def __init__(
        self,
        chunks: Sequence[bytes | memoryview],
        length: int,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.chunks = chunks
        self.status_code = status_code
        self.media_type = media_type
        self.background = background
        self.body = b""
        self.init_headers(headers)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"] + [
            (b"content-length", str(length).encode())
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        for i, chunk in enumerate(self.chunks):
            await send(
                {
                    "type": "http.response.body",
                    "body": chunk,
                    "more_body": i < len(self.chunks) - 1,
                }
            )
        if not self.chunks:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()
