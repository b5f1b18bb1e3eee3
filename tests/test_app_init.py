"""``app/__init__.py``: OpenCV's own decoder limit (``OPENCV_IO_MAX_IMAGE_PIXELS``, read once
when cv2 is imported) is set before any module of the package imports cv2."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from app import OPENCV_MAX_IMAGE_PIXELS

ROOT = Path(__file__).resolve().parents[1]


def _png_1bit(width: int, height: int) -> bytes:
    """A black 1-bit gray PNG: tiny on the wire, ``width * height`` pixels once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = zlib.compress(row * height, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _decode_in_fresh_python(first_import: str, png: bytes) -> str:
    code = (
        f"import {first_import}\n"
        "import app.services.images, cv2, numpy as np, sys\n"
        "try:\n"
        "    img = cv2.imdecode(np.frombuffer(sys.stdin.buffer.read(), np.uint8), 0)\n"
        "except cv2.error:  # OpenCV 5 raises where 4.x returned None\n"
        "    img = None\n"
        "print('refused' if img is None else 'decoded %dx%d' % (img.shape[1], img.shape[0]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    out = subprocess.run(
        [sys.executable, "-c", code], input=png, env=env, cwd=ROOT, capture_output=True, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    return out.stdout.decode().strip()


@pytest.mark.slow
def test_opencv_refuses_images_over_the_package_limit() -> None:
    """Importing the package before cv2 puts OpenCV's own limit in effect: an image one row
    over it is refused by ``cv2.imdecode`` itself (regression: the variable was set in
    ``app.services.images`` after cv2 had been imported, and OpenCV kept its default of 2^30).
    The control imports cv2 first, as that bug did: the same image then decodes."""
    width = 10_000
    png = _png_1bit(width, OPENCV_MAX_IMAGE_PIXELS // width + 1)
    assert len(png) < 200_000
    assert _decode_in_fresh_python("app", png) == "refused"
    assert _decode_in_fresh_python("cv2", png).startswith("decoded 10000x10001")
