"""One multipart policy for every upload route (``/estimate``, ``/refine``): which parts may
come, how many, which are files and which text, and the content types each may carry. Anything
else is refused with a 422 naming the part (a 415 for a part's content type) before any work is
spent, instead of being silently ignored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from app.core.errors import DomainError

__all__ = ["FILE_TYPES", "MultipartPolicy", "Uploads", "read_multipart"]

FILE_TYPES = ("image/*", "application/octet-stream")
TEXT_TYPES = ("text/plain", "application/json")


def _type_ok(ctype: str, allowed: tuple[str, ...]) -> bool:
    return any(ctype == a or (a.endswith("/*") and ctype.startswith(a[:-1])) for a in allowed)


@dataclass(frozen=True)
class MultipartPolicy:
    """``files``: file parts (``required`` ones must come), ``fields``: text parts;
    ``misplaced``: names that are no part of this route, with the hint that says where they go
    (e.g. query options); ``max_field_bytes``: the largest text part."""

    files: tuple[str, ...]
    required: tuple[str, ...]
    fields: tuple[str, ...] = ()
    misplaced: dict[str, str] = field(default_factory=dict)
    file_types: tuple[str, ...] = FILE_TYPES
    max_field_bytes: int = 1024 * 1024  # bounds parsing; the routes check their fields' sizes

    def describe(self) -> str:
        parts = [f"files {', '.join(self.files)}"]
        if self.fields:
            parts.append(f"text fields {', '.join(self.fields)}")
        return " and ".join(parts)

    def openapi(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The OpenAPI media type object of this multipart body: ``schema`` and the content
        types each file part may carry."""
        types = ", ".join(self.file_types)
        return {"schema": schema, "encoding": {f: {"contentType": types} for f in self.files}}


@dataclass(frozen=True)
class Uploads:
    """The parts of a request that passed the policy: file bytes and text values by name."""

    files: dict[str, bytes]
    fields: dict[str, str]


def _check_part(name: str, value: UploadFile | str, policy: MultipartPolicy) -> None:
    if name in policy.misplaced:
        raise DomainError(f"{name}: {policy.misplaced[name]}", "invalid", name)
    if name not in policy.files and name not in policy.fields:
        raise DomainError(
            f"{name}: unexpected form part (this route takes {policy.describe()})",
            "invalid",
            name,
        )
    ctype = ""
    if isinstance(value, UploadFile):
        ctype = (value.content_type or "").split(";")[0].strip().lower()
    if name in policy.files:
        if not isinstance(value, UploadFile):
            raise DomainError(f"{name}: must be a file upload, not a text field", "invalid", name)
        if ctype and not _type_ok(ctype, policy.file_types):
            raise DomainError(
                f"{name}: content type {ctype!r} is not an image "
                f"({' or '.join(policy.file_types)} expected)",
                "unsupported",
                name,
            )
    elif isinstance(value, UploadFile) and ctype and not _type_ok(ctype, TEXT_TYPES):
        raise DomainError(f"{name}: a text field, not a {ctype} file", "invalid", name)


async def read_multipart(request: Request, policy: MultipartPolicy) -> Uploads:
    """Parse a multipart/form-data body under ``policy`` (bounded: one part more than the
    policy allows is read to name it; past that the parser stops with a 400)."""
    form = await request.form(
        max_files=len(policy.files) + len(policy.fields) + 1,
        max_fields=len(policy.fields) + len(policy.misplaced) + 1,
        max_part_size=policy.max_field_bytes,
    )
    try:
        seen: set[str] = set()
        for name, value in form.multi_items():
            if name in seen:
                raise DomainError(f"{name}: sent more than once", "invalid", name)
            seen.add(name)
            _check_part(name, value, policy)
        for name in policy.required:
            if name not in seen:
                raise DomainError(
                    f"{name}: missing; this route takes {policy.describe()}", "invalid", name
                )
        files: dict[str, bytes] = {}
        fields: dict[str, str] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile) and name in policy.files:
                files[name] = await value.read()
            elif isinstance(value, UploadFile):  # a text field sent as a small file
                raw = await value.read(policy.max_field_bytes + 1)
                if len(raw) > policy.max_field_bytes:
                    raise DomainError(
                        f"{name}: over {policy.max_field_bytes} bytes", "invalid", name
                    )
                fields[name] = raw.decode("utf-8", errors="replace")
            else:
                fields[name] = value
        return Uploads(files, fields)
    finally:
        await form.close()  # closes every upload (their spooled temporary files)
