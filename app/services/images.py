"""Decode uploaded images safely: the format and pixel count are read from the header (Pillow,
lazily) before any pixel is decoded, so a decompression bomb is refused without inflating it.

Gray output comes straight from the decoder for JPEG (its luma plane, no colour conversion) and
through ``cv2.cvtColor`` for the other formats (decoded as stored: gray stays gray). A caller
that needs less than the full resolution (the network alone) can have JPEGs decoded at 1/2, 1/4
or 1/8 of it in the DCT (``cv2.IMREAD_REDUCED_GRAYSCALE_*``, a fraction of the work):
:func:`reduction_for` picks the factor from the header, :class:`DecodedImage` keeps the full
size and the exact pixel map."""

from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass

import cv2  # OpenCV's own pixel limit is set before this import, in ``app/__init__.py``
import numpy as np
from PIL import Image, UnidentifiedImageError

from app.core.errors import DomainError
from app.imaging import resize_matrix, to_gray

# Pillow only reads headers here; the pixel limit is ours (settings.max_image_pixels), checked
# before OpenCV decodes anything, so Pillow's own bomb check (a warning past 89.5 Mpx that would
# hide the size) is switched off.
Image.MAX_IMAGE_PIXELS = None

SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM", "PGM"})


_REDUCED = {
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, checked: ``format`` as Pillow names it, ``stored_size`` (width,
    height) as encoded, ``orientation`` the EXIF tag (1-8; 1 when absent)."""

    format: str
    stored_size: tuple[int, int]
    orientation: int = 1

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) once the EXIF orientation is applied, as OpenCV decodes it."""
        w, h = self.stored_size
        return (h, w) if self.orientation >= 5 else (w, h)


@dataclass(frozen=True)
class MinimumSize:
    """The least resolution a caller needs: each side at least ``width`` x ``height`` (as
    oriented) and at least ``pixels`` pixels in all."""

    width: int
    height: int
    pixels: int = 0


@dataclass(frozen=True)
class DecodedImage:
    """``pixels``: (h, w) uint8 gray or (h, w, 3) uint8 BGR; ``format`` as Pillow names it;
    ``reduction``: 1, or the JPEG was decoded at 1/2, 1/4 or 1/8 of its resolution;
    ``full_size``: the full resolution's (width, height) when reduced."""

    pixels: np.ndarray
    format: str
    reduction: int = 1
    full_size: tuple[int, int] | None = None
    orientation: int = 1

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) at full resolution (what a full decode gives)."""
        return self.full_size or (int(self.pixels.shape[1]), int(self.pixels.shape[0]))

    @property
    def pixels_T_full(self) -> np.ndarray:
        """(3, 3) float64 map from full-resolution pixels to ``pixels``' pixels (identity when
        not reduced). JPEG's scaled IDCT averages s x s blocks, so a stored pixel ``x`` goes to
        ``(x + 0.5) / s - 0.5`` (the half-pixel convention) in an image of ``ceil(W / s)``
        columns; the EXIF orientation is applied to both images after decoding."""
        if self.reduction == 1:
            return np.eye(3)
        s = self.reduction
        w, h = self.pixels.shape[1], self.pixels.shape[0]
        if self.orientation >= 5:
            w, h = h, w
        W, H = self.full_size if self.orientation < 5 else self.full_size[::-1]
        scale = resize_matrix((s * w, s * h), (w, h))  # stored full -> stored reduced
        to_full = _orientation_matrix(self.orientation, (W, H))
        to_reduced = _orientation_matrix(self.orientation, (w, h))
        return to_reduced @ scale @ np.linalg.inv(to_full)


def _orientation_matrix(orientation: int, stored_size: tuple[int, int]) -> np.ndarray:
    """(3, 3) stored pixel -> displayed pixel for an EXIF orientation, as OpenCV applies it
    (2: mirror, 3: 180 deg, 4: flip, 5: transpose, 6: 90 deg clockwise, 7: transverse, 8: 90
    deg counter-clockwise); ``stored_size`` (width, height) before orienting."""
    w, h = stored_size
    x, y, one = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
    mx, my = (-1.0, 0.0, w - 1.0), (0.0, -1.0, h - 1.0)  # x' = w - 1 - x, y' = h - 1 - y
    rows = {
        1: (x, y),
        2: (mx, y),
        3: (mx, my),
        4: (x, my),
        5: (y, x),
        6: (my, x),
        7: (my, mx),
        8: (y, mx),
    }[orientation if orientation in range(1, 9) else 1]
    return np.array([*rows, one])


def reduction_for(header: ImageHeader, need: MinimumSize) -> int:
    """The largest JPEG reduction (8, 4, 2) whose decoded image still meets ``need``, else 1
    (other formats decode at full resolution: OpenCV would decode fully, then resize)."""
    if header.format != "JPEG":
        return 1
    w, h = header.size
    for s in (8, 4, 2):
        rw, rh = math.ceil(w / s), math.ceil(h / s)
        if rw >= need.width and rh >= need.height and rw * rh >= need.pixels:
            return s
    return 1


def decode_base64(text: str, field: str) -> bytes:
    """Base64 (optionally a ``data:...;base64,`` URL) -> bytes."""
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DomainError(f"{field}: not valid base64 ({exc})", "invalid", field) from exc


def read_header(data: bytes, field: str, *, max_pixels: int, min_side: int = 16) -> ImageHeader:
    """The checks that need no pixels, in order: empty, unknown format, header pixel count,
    too small. Raises :class:`DomainError` naming ``field``."""
    if not data:
        raise DomainError(f"{field}: the file is empty", "invalid", field)
    orientation = 1
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = (im.format or "").upper(), im.size
            if fmt == "JPEG":
                orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
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
    return ImageHeader(fmt, (w, h), orientation if 1 <= orientation <= 8 else 1)


def decode_pixels(
    data: bytes, header: ImageHeader, field: str, *, gray: bool = True, reduction: int = 1
) -> DecodedImage:
    """The pixels of an image whose header :func:`read_header` accepted: gray (a JPEG's luma
    straight from the decoder, other formats converted with ``cv2.cvtColor``) or BGR; a JPEG
    at 1/``reduction`` of its resolution (gray only; a decode whose size is not the one
    expected falls back to full resolution)."""
    jpeg = header.format == "JPEG"
    reduced = reduction > 1 and gray and jpeg
    if reduced:
        flags = _REDUCED[reduction]
    elif gray:  # libjpeg hands out its luma plane; libpng's own conversion saves nothing
        flags = cv2.IMREAD_GRAYSCALE if jpeg else cv2.IMREAD_ANYCOLOR
    else:
        flags = cv2.IMREAD_COLOR
    fmt = header.format
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
    if gray and pixels.ndim == 3:  # a colour image decoded as stored: cv2.cvtColor's weights
        pixels = to_gray(pixels)
    if not reduced:
        return DecodedImage(pixels, fmt)
    w, h = header.size
    expected = (math.ceil(h / reduction), math.ceil(w / reduction))
    if pixels.shape[:2] != expected:  # not the DCT scaling we can map exactly: decode in full
        return decode_pixels(data, header, field, gray=gray)
    return DecodedImage(pixels, fmt, reduction, header.size, header.orientation)


def decode_image(
    data: bytes,
    field: str,
    *,
    max_pixels: int,
    min_side: int = 16,
    gray: bool = True,
) -> DecodedImage:
    """Bytes of a PNG/JPEG/BMP/TIFF/WebP/GIF/PPM image -> pixels at full resolution, with the
    checks in order: empty, unknown format, header pixel count, too small, then the real
    decode (:func:`read_header`, :func:`decode_pixels`)."""
    header = read_header(data, field, max_pixels=max_pixels, min_side=min_side)
    return decode_pixels(data, header, field, gray=gray)
