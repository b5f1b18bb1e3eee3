"""Decoding uploads: straight to gray, and JPEGs at a fraction of their size with the exact
pixel map back to the full resolution (EXIF orientation included)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from app.core.errors import DomainError
from app.services.images import (
    MinimumSize,
    decode_image,
    decode_pixels,
    read_header,
    reduction_for,
)

LIMIT = 50_000_000


def smooth_image(size: tuple[int, int], seed: int = 0, cell: int = 24) -> np.ndarray:
    """(h, w, 3) uint8 with detail at ``cell`` px: an average over blocks well under ``cell``
    and a bilinear sample agree, while a sample half a block off does not."""
    w, h = size
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (h // cell + 2, w // cell + 2, 3)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, orientation: int = 1) -> bytes:
    im = Image.fromarray(img[..., ::-1])
    exif = im.getexif()
    if orientation != 1:
        exif[0x0112] = orientation
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95, exif=exif)
    return out.getvalue()


def png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


class TestGray:
    def test_png_is_gray_as_cvtcolor_makes_it(self):
        img = smooth_image((120, 90))
        gray = decode_image(png(img), "a", max_pixels=LIMIT).pixels
        assert gray.shape == (90, 120) and gray.dtype == np.uint8
        np.testing.assert_array_equal(gray, cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)  # a gray PNG stays one channel
        np.testing.assert_array_equal(decode_image(png(g), "a", max_pixels=LIMIT).pixels, g)

    def test_jpeg_is_its_luma_plane(self):
        data = jpeg(smooth_image((120, 96)))
        gray = decode_image(data, "a", max_pixels=LIMIT).pixels
        colour = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        diff = gray.astype(int) - cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
        assert gray.shape == (96, 120) and np.abs(diff).mean() < 0.5  # rounding, not content

    def test_colour_on_request(self):
        img = smooth_image((64, 48))
        assert decode_image(png(img), "a", max_pixels=LIMIT, gray=False).pixels.shape == (48, 64, 3)


class TestReductionFor:
    @pytest.mark.parametrize(
        ("size", "need", "expected"),
        [
            ((1024, 768), MinimumSize(128, 128), 4),  # 1/8 would leave 96 rows
            ((4096, 3072), MinimumSize(128, 128), 8),
            ((4096, 3072), MinimumSize(128, 128, 1_000_000), 2),  # 1/4 has 786,432 pixels
            ((640, 480), MinimumSize(128, 128, 1_000_000), 1),
            ((1001, 757), MinimumSize(500, 100), 2),  # ceil(1001 / 2) = 501
        ],
    )
    def test_largest_factor_that_meets_the_need(self, size, need, expected):
        header = read_header(jpeg(smooth_image(size)), "a", max_pixels=LIMIT)
        assert reduction_for(header, need) == expected

    def test_only_jpeg(self):
        header = read_header(png(smooth_image((1024, 768))), "a", max_pixels=LIMIT)
        assert reduction_for(header, MinimumSize(16, 16)) == 1

    def test_rotated_jpeg_uses_the_oriented_size(self):
        header = read_header(jpeg(smooth_image((1024, 512)), 6), "a", max_pixels=LIMIT)
        assert header.size == (512, 1024) and header.orientation == 6
        assert reduction_for(header, MinimumSize(200, 20)) == 2  # 256 wide at 1/2, 128 at 1/4


class TestReducedDecode:
    @pytest.mark.parametrize("orientation", [1, 2, 3, 6, 8])
    @pytest.mark.parametrize(("size", "s"), [((1001, 757), 4), ((640, 480), 2), ((333, 250), 8)])
    def test_pixel_map_is_exact(self, orientation, size, s):
        data = jpeg(smooth_image(size, seed=s, cell=6 * s), orientation)
        header = read_header(data, "a", max_pixels=LIMIT)
        full = decode_pixels(data, header, "a")
        small = decode_pixels(data, header, "a", reduction=s)
        assert small.reduction == s and small.size == full.size == header.size
        assert small.pixels.shape == (
            -(-full.size[1] // s),  # ceil
            -(-full.size[0] // s),
        )
        T = small.pixels_T_full
        shape = small.pixels.shape[::-1]

        def mismatch(M: np.ndarray) -> float:
            # the full decode sampled where the map says each reduced pixel lies, against the
            # reduced decode (away from the border, where the last partial block is padded)
            seen = cv2.warpAffine(
                full.pixels.astype(np.float32),
                np.linalg.inv(M)[:2],
                shape,
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            )
            return float(np.abs(seen - small.pixels)[2:-2, 2:-2].mean())

        shifted = np.array([[1, 0, 0.5], [0, 1, 0.0], [0, 0, 1]]) @ T  # half a pixel off
        assert mismatch(T) < 1.0
        assert mismatch(shifted) > 2 * mismatch(T) + 0.5  # the comparison can tell

    def test_full_resolution_map_is_identity(self):
        data = jpeg(smooth_image((64, 48)))
        img = decode_pixels(data, read_header(data, "a", max_pixels=LIMIT), "a")
        assert img.reduction == 1 and img.size == (64, 48)
        np.testing.assert_array_equal(img.pixels_T_full, np.eye(3))

    def test_png_is_never_reduced(self):
        data = png(smooth_image((256, 256)))
        img = decode_pixels(data, read_header(data, "a", max_pixels=LIMIT), "a", reduction=4)
        assert img.reduction == 1 and img.pixels.shape == (256, 256)

    def test_checks_come_before_any_decode(self):
        with pytest.raises(DomainError, match="exceeds the limit") as exc:
            read_header(jpeg(smooth_image((300, 200))), "image_a", max_pixels=50_000)
        assert exc.value.field == "image_a" and exc.value.kind == "too_large"
