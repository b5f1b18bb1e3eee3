"""Decode uploaded images safely: the format and pixel count are read from the header (Pillow,
lazily) before any pixel is decoded, so a decompression bomb is refused without inflating it."""

from __future__ import annotations

import base64
import binascii
import io
import os
from dataclasses import dataclass

# defence in depth: OpenCV refuses larger images itself (read at import time by OpenCV)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow only reads headers here; the pixel limit is ours (settings.max_image_pixels), checked
# before OpenCV decodes anything, so Pillow's own bomb check (a warning past 89.5 Mpx that would
# hide the size) is switched off.
Image.MAX_IMAGE_PIXELS = None

SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM", "PGM"})


class ImageError(ValueError):
    """An upload that cannot be used; ``status`` is the HTTP code to answer, ``field`` the part."""

    def __init__(self, message: str, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


@dataclass(frozen=True)
class DecodedImage:
    """``pixels``: (H, W) uint8 grayscale or (H, W, 3) uint8 BGR; ``format`` as Pillow names it."""

    pixels: np.ndarray
    format: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


def decode_base64(text: str, field: str) -> bytes:
    """Base64 (optionally a ``data:...;base64,`` URL) -> bytes."""
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"{field}: not valid base64 ({exc})", 422, field) from exc


def decode_image(
    data: bytes,
    field: str,
    *,
    max_pixels: int,
    min_side: int = 16,
    gray: bool = True,
) -> DecodedImage:
    """Bytes of a PNG/JPEG/BMP/TIFF/WebP/GIF/PPM image -> pixels, with the checks in order:
    empty, unknown format, header pixel count, too small, then the real decode."""
    if not data:
        raise ImageError(f"{field}: the file is empty", 422, field)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = (im.format or "").upper(), im.size
    except UnidentifiedImageError:
        fmt, w, h = "", 0, 0
    except Exception as exc:  # truncated or corrupt headers
        raise ImageError(f"{field}: cannot read the image header ({exc})", 422, field) from exc
    if not fmt:
        raise ImageError(
            f"{field}: not a decodable image (supported: {', '.join(sorted(SUPPORTED_FORMATS))})",
            422,
            field,
        )
    if fmt not in SUPPORTED_FORMATS:
        raise ImageError(f"{field}: image format {fmt} is not supported", 415, field)
    if w * h > max_pixels:
        raise ImageError(
            f"{field}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}", 413, field
        )
    if min(w, h) < min_side:
        raise ImageError(
            f"{field}: {w}x{h} is too small (each side must be >= {min_side} px)", 422, field
        )
    flags = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if pixels is None or pixels.size == 0:
        raise ImageError(f"{field}: the {fmt} data could not be decoded (corrupt?)", 422, field)
    if pixels.dtype != np.uint8:  # 16-bit PNG/TIFF
        pixels = cv2.convertScaleAbs(pixels, alpha=255.0 / max(1.0, float(pixels.max())))
    return DecodedImage(pixels, fmt)
