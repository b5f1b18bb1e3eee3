"""The one error the service raises for a request it cannot answer, in domain terms: what kind
of failure, which input it is about, and a message for the client. ``app.api`` maps the kinds
to HTTP statuses in one handler; nothing below it knows about HTTP."""

from __future__ import annotations

from typing import Literal

__all__ = ["DomainError", "ErrorKind"]

ErrorKind = Literal["invalid", "malformed", "too_large", "unsupported", "unavailable", "internal"]
"""``invalid``: well-formed input that cannot be used (a bad value, no answer for this pair);
``malformed``: a body that cannot be parsed at all (not a .npz, truncated); ``too_large``: over a
size limit; ``unsupported``: a content type or format the service does not handle;
``unavailable``: an engine is not loaded or is overloaded (``retry_after`` seconds, when known);
``internal``: the service failed (the message says why)."""


class DomainError(Exception):
    """A request that cannot be answered.

    Args:
        message: for the client, naming the input at fault.
        kind: see :data:`ErrorKind`.
        field: the input at fault (``"image_a"``, ``"options.max_seconds"``,
            ``"estimated.quaternion[3]"``), or None for the request as a whole.
        retry_after: seconds after which an ``unavailable`` request may succeed.
    """

    def __init__(
        self,
        message: str,
        kind: ErrorKind = "invalid",
        field: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.kind, self.field, self.retry_after = message, kind, field, retry_after
