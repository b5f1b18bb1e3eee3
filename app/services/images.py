"""Decode uploaded images safely: the format and pixel count are read from the header (Pillow,
lazily) before any pixel is decoded, so a decompression bomb is refused without inflating it."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import cv2  # OpenCV's own pixel limit is set before this import, in ``app/__init__.py``
import numpy as np
from PIL import Image, UnidentifiedImageError

from app.core.errors import DomainError

# Pillow only reads headers here; the pixel limit is ours (settings.max_image_pixels), checked
# before OpenCV decodes anything, so Pillow's own bomb check (a warning past 89.5 Mpx that would
# hide the size) is switched off.
Image.MAX_IMAGE_PIXELS = None

SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM", "PGM"})


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
        raise DomainError(f"{field}: not valid base64 ({exc})", "invalid", field) from exc


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
        raise DomainError(f"{field}: the file is empty", "invalid", field)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = (im.format or "").upper(), im.size
    except UnidentifiedImageError:
        fmt, w, h = "", 0, 0
    except Exception as exc:  # truncated or corrupt headers
        raise DomainError(
            f"{field}: cannot read the image header ({exc})", "invalid", field
        ) from exc
    if not fmt:
        raise DomainError(
            f"{field}: not a decodable image (supported: {', '.join(sorted(SUPPORTED_FORMATS))})",
            "invalid",
            field,
        )
    if fmt not in SUPPORTED_FORMATS:
        raise DomainError(f"{field}: image format {fmt} is not supported", "unsupported", field)
    if w * h > max_pixels:
        raise DomainError(
            f"{field}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}",
            "too_large",
            field,
        )
    if min(w, h) < min_side:
        raise DomainError(
            f"{field}: {w}x{h} is too small (each side must be >= {min_side} px)", "invalid", field
        )
    flags = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:  # OpenCV 5 raises where 4.x returned None
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):  # OpenCV's own limit (app/__init__.py)
            raise DomainError(
                f"{field}: the {fmt} image has more pixels than the decoder accepts",
                "too_large",
                field,
            ) from exc
        pixels = None
    if pixels is None or pixels.size == 0:
        raise DomainError(
            f"{field}: the {fmt} data could not be decoded (corrupt?)", "invalid", field
        )
    if pixels.dtype != np.uint8:  # 16-bit PNG/TIFF
        pixels = cv2.convertScaleAbs(pixels, alpha=255.0 / max(1.0, float(pixels.max())))
    return DecodedImage(pixels, fmt)
