"""Request bodies: images from paths, bytes, files or NumPy arrays; ``.npz`` batches in pieces."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import IO, Union

import numpy as np

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, IO[bytes]]
"""A path, encoded image bytes (PNG, JPEG, ...), a binary file object, or pixels: (H, W) gray,
(H, W, 3) RGB or (H, W, 4) RGBA, uint8 or uint16 (sent as a lossless PNG)."""

PIECE_BYTES = 1 << 20
"""Streamed bodies go out in 1 MiB pieces: httpx/httpcore re-slices a single large ``bytes``
body after every partial socket write, which makes a 128 MB upload take seconds."""

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"GIF8", "image/gif"),
)


def _media_type(data: bytes) -> str:
    for magic, media in _MAGIC:
        if data.startswith(magic):
            return media
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def encode_png(pixels: np.ndarray, level: int = 3) -> bytes:
    """A lossless PNG of (H, W) gray, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA pixels,
    uint8 or uint16 (no filter: fast, and the server only decodes it)."""
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        colour = 0  # gray
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        colour = 2 if a.shape[2] == 3 else 6  # RGB, RGBA
    else:
        raise ValueError(
            f"image array must be (H, W), (H, W, 3) RGB or (H, W, 4) RGBA, got shape {a.shape}"
        )
    if a.dtype == np.uint8:
        depth = 8
    elif a.dtype == np.uint16:
        depth, a = 16, a.astype(">u2")
    else:
        raise TypeError(f"image array must be uint8 or uint16, got {a.dtype}")
    h, w = a.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"image array is empty: shape {a.shape}")
    rows = np.ascontiguousarray(a).view(np.uint8).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


def image_part(image: ImageInput, name: str) -> tuple[str, bytes, str]:
    """``(filename, bytes, media type)`` of one multipart file part."""
    if isinstance(image, np.ndarray):
        return f"{name}.png", encode_png(image), "image/png"
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        filename = name
    elif isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            data = f.read()
        filename = os.path.basename(os.fspath(image))
    elif hasattr(image, "read"):
        data = image.read()
        filename = os.path.basename(str(getattr(image, "name", name)))
    else:
        raise TypeError(
            f"{name}: expected a path, bytes, a binary file or a NumPy array, "
            f"got {type(image).__name__}"
        )
    return filename, data, _media_type(data)


def npz_body(**arrays: np.ndarray) -> memoryview:
    """An uncompressed ``.npz`` of ``arrays``, as one buffer (no further copy)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getbuffer()


def pieces(body: memoryview, size: int = PIECE_BYTES) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield bytes(body[i : i + size])


async def apieces(body: memoryview, size: int = PIECE_BYTES) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield bytes(body[i : i + size])
