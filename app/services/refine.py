"""The /refine use case: decode two images, check the start and the budget, run the aligner
engine, report errors, timings and an optional overlay. No HTTP here; routes map
:class:`RefineInputError` to 4xx answers. ``refine_pixels`` is the entry point for other services
(``/estimate?refine=true``) that already hold decoded images.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import torch

from app.alignment import (
    AlignmentInputError,
    RefineOptions,
    RefineResult,
    check_homography,
    overlay_image,
    photometric_error,
    to_tensor,
)
from app.alignment.gauss_newton import align_gauss_newton
from app.imaging import shrink_to
from app.core.config import Settings
from app.services.images import ImageError, decode_image

__all__ = [
    "MIN_OVERLAP",
    "Aligner",
    "RefineInputError",
    "RefineOutput",
    "build_aligner",
    "check_options",
    "parse_init",
    "refine_images",
    "refine_pixels",
]

MIN_OVERLAP = 0.05  # fraction of A that the start must map inside B


class RefineInputError(ValueError):
    """A request that cannot be refined; ``status`` is the HTTP code, ``field`` the part."""

    def __init__(self, message: str, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


@dataclass
class RefineOutput:
    """``result``: the solver's :class:`RefineResult` (errors filled, ``b_H_a`` in the original
    pixels); ``overlay_png``: PNG bytes when asked; ``timings_ms``: per stage; ``device``: where
    it ran; ``work_scale``: A's working width over its original width (1.0: full resolution;
    the photometric errors are measured at the working resolution)."""

    result: RefineResult
    overlay_png: bytes | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    work_scale: float = 1.0


class Aligner:
    """The ``aligner`` engine: the device it runs on, warmed up once at start-up. Requests run
    in the thread pool; at most ``max_concurrent`` alignments run at once (one on a GPU), the
    others wait for a slot, so that CPU threads are not oversubscribed."""

    def __init__(self, device: str, max_concurrent: int = 2) -> None:
        self.device = torch.device(device)
        slots = 1 if self.device.type == "cuda" else max(1, max_concurrent)
        self._slots = threading.BoundedSemaphore(slots)
        self.info: dict[str, Any] = {
            "device": str(self.device),
            "solver": "ic-lm-8dof",
            "max_concurrent": slots,
        }

    def warm_up(self) -> float:
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        a = cv2.GaussianBlur((rng.random((48, 64)) * 255).astype(np.uint8), (5, 5), 1.5)
        H = np.array([[1.0, 0.01, 1.0], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
        b = cv2.warpPerspective(a, H, (64, 48))
        ta, tb = to_tensor(a, "a", self.device), to_tensor(b, "b", self.device)
        self.run(ta, tb, np.eye(3), RefineOptions(max_iterations=5), None)
        self.info["warmup_s"] = round(time.perf_counter() - start, 3)
        return self.info["warmup_s"]

    def run(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        init: np.ndarray,
        options: RefineOptions,
        mask: np.ndarray | None,
    ) -> RefineResult:
        """(1, 1, Ha, Wa) and (1, 1, Hb, Wb) images in [0, 1] on ``self.device``, (3, 3) start,
        optional (Ha, Wa) mask (nonzero = use) -> :class:`RefineResult` (errors not filled)."""
        tm = None if mask is None else torch.from_numpy(mask != 0)[None, None].to(self.device)
        with self._slots:
            return align_gauss_newton(a, b, torch.as_tensor(init), options, tm)

    def refine(
        self, a: torch.Tensor, b: torch.Tensor, init: np.ndarray, options: RefineOptions
    ) -> RefineResult:
        """:meth:`run` without a mask: the refiner that /estimate?method=auto uses."""
        return self.run(a, b, init, options, None)


def build_aligner(settings: Settings) -> Aligner:
    """The engine for the registry: CUDA when asked for (or ``auto`` and available), warmed up."""
    device = settings.refine_device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("refine_device is 'cuda' but torch sees no CUDA device")
    aligner = Aligner(device, settings.refine_max_concurrent)
    aligner.warm_up()
    return aligner


def parse_init(value: Any) -> np.ndarray:
    """A 3x3 nested list (or None: identity) -> checked float64 (3, 3), ``H[2, 2] = 1``."""
    if value is None:
        return np.eye(3)
    try:
        return check_homography(value, "init")
    except AlignmentInputError as exc:
        raise RefineInputError(exc.message, 422, "init") from exc


def check_options(options: RefineOptions, settings: Settings) -> RefineOptions:
    """Apply the service's limits: the default time budget, and the largest iteration and time
    budgets a request may ask for (422 naming the option otherwise)."""
    if options.max_iterations > settings.refine_max_iterations:
        raise RefineInputError(
            f"options.max_iterations: {options.max_iterations} exceeds the limit of "
            f"{settings.refine_max_iterations}",
            422,
            "options.max_iterations",
        )
    if options.max_seconds is None:
        return replace(options, max_seconds=settings.refine_default_seconds)
    if not 0 < options.max_seconds <= settings.refine_max_seconds:
        raise RefineInputError(
            f"options.max_seconds: {options.max_seconds} is outside (0, "
            f"{settings.refine_max_seconds}]",
            422,
            "options.max_seconds",
        )
    return options


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 images
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def refine_pixels(
    a: np.ndarray,
    b: np.ndarray,
    init: np.ndarray | None,
    options: RefineOptions,
    settings: Settings,
    aligner: Aligner | None = None,
    *,
    mask: np.ndarray | None = None,
    overlay: bool = False,
) -> RefineOutput:
    """Decoded (H, W) uint8 gray images -> :class:`RefineOutput`. ``init`` is ``b_H_a`` (A pixel
    -> B pixel; None: identity), checked here; ``aligner`` defaults to a CPU one (no warm-up)."""
    t0 = time.perf_counter()
    H0 = parse_init(None if init is None else np.asarray(init, dtype=np.float64))
    options = check_options(options, settings)
    if mask is not None and mask.shape != a.shape[:2]:
        raise RefineInputError(
            f"mask: {mask.shape[1]}x{mask.shape[0]} does not match image_a "
            f"{a.shape[1]}x{a.shape[0]}",
            422,
            "mask",
        )
    if mask is not None and int(np.count_nonzero(mask)) < 64:
        raise RefineInputError("mask: fewer than 64 pixels are selected", 422, "mask")
    aligner = aligner or Aligner("cpu")
    # large images are aligned at a working resolution; H moves between the frames exactly
    a_w, Ta = shrink_to(a, settings.refine_max_work_pixels)
    b_w, Tb = shrink_to(b, settings.refine_max_work_pixels)
    if mask is not None and a_w is not a:
        m = (mask != 0).astype(np.float32)
        mask = cv2.resize(m, a_w.shape[::-1], interpolation=cv2.INTER_AREA) > 0.999
    H0_w = Tb @ H0 @ np.linalg.inv(Ta)
    ta = to_tensor(a_w, "image_a", aligner.device)
    tb = to_tensor(b_w, "image_b", aligner.device)
    before = photometric_error(ta, tb, H0_w)
    if before.overlap < MIN_OVERLAP:
        raise RefineInputError(
            f"init: maps only {before.overlap:.1%} of image_a inside image_b "
            f"(at least {MIN_OVERLAP:.0%} needed); the images do not overlap from this start",
            422,
            "init",
        )
    t1 = time.perf_counter()
    result = aligner.run(ta, tb, H0_w, options, mask)
    t2 = time.perf_counter()
    H_w = result.b_H_a
    result.error_before = before
    result.error_after = photometric_error(ta, tb, H_w)
    H = np.linalg.inv(Tb) @ H_w @ Ta
    result.b_H_a = H / H[2, 2]
    t3 = time.perf_counter()
    png = None
    if overlay:
        png = _png(overlay_image(ta, tb, H_w, settings.refine_overlay_max_side))
    t4 = time.perf_counter()
    timings = {
        "align": (t2 - t1) * 1e3,
        "errors": (t1 - t0 + t3 - t2) * 1e3,
        "overlay": (t4 - t3) * 1e3,
    }
    timings = {k: round(v, 3) for k, v in timings.items()}
    scale = a_w.shape[1] / a.shape[1]
    return RefineOutput(result, png, timings, str(aligner.device), scale)


def _decode(data: bytes, field_name: str, settings: Settings) -> np.ndarray:
    try:
        return decode_image(
            data, field_name, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side
        ).pixels
    except ImageError as exc:
        raise RefineInputError(exc.message, exc.status, exc.field) from exc


def refine_images(
    image_a: bytes,
    image_b: bytes,
    init: Any,
    options: RefineOptions,
    settings: Settings,
    aligner: Aligner | None = None,
    *,
    mask: bytes | None = None,
    overlay: bool = False,
) -> RefineOutput:
    """Encoded images (PNG, JPEG, ...) -> :class:`RefineOutput`; ``init``: a 3x3 nested list or
    array (None: identity); the mask is an image of A's size whose nonzero pixels take part."""
    t0 = time.perf_counter()
    options = check_options(options, settings)  # refuse a bad budget before decoding
    H0 = parse_init(init)
    a = _decode(image_a, "image_a", settings)
    b = _decode(image_b, "image_b", settings)
    m = _decode(mask, "mask", settings) if mask is not None else None
    decode_ms = (time.perf_counter() - t0) * 1e3
    out = refine_pixels(a, b, H0, options, settings, aligner, mask=m, overlay=overlay)
    out.timings_ms = {"decode": round(decode_ms, 3), **out.timings_ms}
    out.timings_ms["total"] = round((time.perf_counter() - t0) * 1e3, 3)
    return out
