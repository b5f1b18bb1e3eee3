"""The /refine use case: check the start and the budget, align two decoded images with the
aligner engine at a working resolution, report errors, timings and an optional overlay.
:func:`refine_images` decodes uploads first; :func:`refine_pixels` is the entry point for
callers that hold decoded images (the /estimate service's ``refine=true``). No HTTP here:
problems are :class:`DomainError`s naming the field.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import torch

from app.alignment import (
    RefineOptions,
    RefineResult,
    check_homography,
    overlay_image,
    photometric_error,
    to_tensor,
)
from app.alignment.gauss_newton import align_gauss_newton
from app.alignment.warmup import warm_up_alignment
from app.core.config import Settings
from app.core.errors import DomainError
from app.imaging import shrink_pair, to_gray
from app.services.images import decode_image

__all__ = [
    "MIN_OVERLAP",
    "Aligner",
    "RefineOutput",
    "build_aligner",
    "check_options",
    "parse_init",
    "refine_images",
    "refine_options",
    "refine_pixels",
]

MIN_OVERLAP = 0.05  # fraction of A that the start must map inside B


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
        # least squares and a robust loss: on the CPU, every refinement kernel compiled (or
        # loaded from the cache `make install` and the image builds fill), not on a request
        with self._slots:
            self.info["warmup_s"] = round(warm_up_alignment(self.device), 3)
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
    """A 3x3 nested list or array (or None: identity) -> checked float64 (3, 3), ``H[2, 2] = 1``;
    :class:`app.alignment.AlignmentInputError` (a :class:`DomainError`) naming ``init``."""
    return np.eye(3) if value is None else check_homography(value, "init")


def refine_options(values: Mapping[str, Any]) -> RefineOptions:
    """Solver options by name -> :class:`RefineOptions`; a value the dataclass refuses (beyond
    what a schema checks, e.g. inf) is a :class:`DomainError` naming ``options.<name>``."""
    try:
        return RefineOptions(**values)
    except ValueError as exc:
        name = str(exc).split(":", 1)[0]
        raise DomainError(str(exc), "invalid", f"options.{name}") from exc


def check_options(options: RefineOptions, settings: Settings) -> RefineOptions:
    """Apply the service's limits: the default time budget, and the largest iteration and time
    budgets a request may ask for (a :class:`DomainError` naming the option otherwise)."""
    if options.max_iterations > settings.refine_max_iterations:
        raise DomainError(
            f"options.max_iterations: {options.max_iterations} exceeds the limit of "
            f"{settings.refine_max_iterations}",
            "invalid",
            "options.max_iterations",
        )
    if options.max_seconds is None:
        return replace(options, max_seconds=settings.refine_default_seconds)
    if not 0 < options.max_seconds <= settings.refine_max_seconds:
        raise DomainError(
            f"options.max_seconds: {options.max_seconds} is outside (0, "
            f"{settings.refine_max_seconds}]",
            "invalid",
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
    """Decoded images ((H, W) uint8 gray, or (H, W, 3) BGR: converted to gray) ->
    :class:`RefineOutput`. ``init`` is ``b_H_a`` (A pixel -> B pixel; None: identity), checked
    here; ``aligner`` defaults to a CPU one (no warm-up).

    Raises:
        DomainError: ``invalid`` for a bad start (singular, or mapping A outside B), budget or
            mask, naming it.
    """
    t0 = time.perf_counter()
    H0 = parse_init(init)
    options = check_options(options, settings)
    a, b = to_gray(a), to_gray(b)
    if mask is not None and mask.shape[:2] != a.shape[:2]:
        raise DomainError(
            f"mask: {mask.shape[1]}x{mask.shape[0]} does not match image_a "
            f"{a.shape[1]}x{a.shape[0]}",
            "invalid",
            "mask",
        )
    if mask is not None and int(np.count_nonzero(mask)) < 64:
        raise DomainError("mask: fewer than 64 pixels are selected", "invalid", "mask")
    aligner = aligner or Aligner("cpu")
    # large images are aligned at a working resolution; H moves between the frames exactly
    work = shrink_pair(a, b, settings.refine_max_work_pixels)
    if mask is not None and work.a is not a:
        m = (mask != 0).astype(np.float32)
        mask = cv2.resize(m, work.a.shape[::-1], interpolation=cv2.INTER_AREA) > 0.999
    H0_w = work.to_work(H0)
    ta = to_tensor(work.a, "image_a", aligner.device)
    tb = to_tensor(work.b, "image_b", aligner.device)
    before = photometric_error(ta, tb, H0_w)
    if before.overlap < MIN_OVERLAP:
        raise DomainError(
            f"init: maps only {before.overlap:.1%} of image_a inside image_b "
            f"(at least {MIN_OVERLAP:.0%} needed); the images do not overlap from this start",
            "invalid",
            "init",
        )
    t1 = time.perf_counter()
    result = aligner.run(ta, tb, H0_w, options, mask)
    t2 = time.perf_counter()
    H_w = result.b_H_a
    result.error_before = before
    result.error_after = photometric_error(ta, tb, H_w)
    result.b_H_a = work.to_original(H_w)
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
    return RefineOutput(result, png, timings, str(aligner.device), work.scale)


def _decode(data: bytes, field_name: str, settings: Settings) -> np.ndarray:
    return decode_image(
        data, field_name, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side
    ).pixels


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
    array (None: identity); the mask is an image of A's size whose nonzero pixels take part.
    Synchronous: call it in a worker thread."""
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
