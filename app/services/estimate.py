"""The /estimate use case: two encoded images -> HomographyNet offsets -> ``b_H_a`` at the
images' own resolutions (ACA solver). No HTTP here; the route maps the errors to 4xx/5xx.

Pipeline per request (CPU work in threads, never on the event loop):

1. decode both images (header checks first, see :func:`app.services.images.decode_image`),
   colour as BGR, so that grayscale conversion and resizing are exactly
   :func:`app.inference.preprocess.prepare_pair`'s (training converts with ``cv2.cvtColor`` as
   well);
2. ``prepare_pair`` -> one (2, P, P) normalised pair, queued to the micro-batcher;
3. offsets ``o`` (4, 2) come back in pixels of the P x P network input: the content of patch B at
   square corner ``c_i`` is the content of patch A at ``c_i + o_i``;
4. with ``image_S_patch`` of each image (cv2.resize's half-pixel convention,
   :func:`app.inference.preprocess.patch_to_image_matrix`), the image-A point
   ``S_a (c_i + o_i)`` corresponds to the image-B point ``S_b c_i``; ACA on these four
   correspondences gives ``b_H_a`` directly (no matrix inverted): ``x_b ~ b_H_a @ x_a`` in pixel
   coordinates of the original images, so ``cv2.warpPerspective(image_a, b_H_a, size_b)`` lines
   up with image B;
5. ``corners_in_b`` = ``b_H_a`` applied to image A's corner pixel centres
   ``(0, 0), (W-1, 0), (W-1, H-1), (0, H-1)``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.config import Settings
from app.geometry.four_point import FourPointResult, solve_four_point
from app.geometry.reasons import MESSAGES, Reason
from app.inference.batcher import MicroBatcher
from app.inference.engine import HomographyEngine, OnnxHomographyEngine
from app.inference.preprocess import patch_corners, patch_to_image_matrix, prepare_pair
from app.services.images import DecodedImage, decode_image

__all__ = [
    "EstimateError",
    "EstimateResult",
    "Estimator",
    "build_estimator",
    "image_corners",
    "load_engine",
    "offsets_to_homography",
    "transform_points",
]


class EstimateError(ValueError):
    """A pair the service cannot answer for; ``status`` is the HTTP code to use."""

    def __init__(self, message: str, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


@dataclass(frozen=True)
class EstimateResult:
    """One pair's answer.

    ``offsets`` (4, 2) px of the P x P network input; ``corners_in_b`` (4, 2) image-B pixels of
    image A's corners; ``b_H_a`` (3, 3) float64 with H[2, 2] = 1; ``confidence`` (4,) or None;
    sizes are (width, height); ``timings_ms`` per stage.
    """

    offsets: np.ndarray
    corners_in_b: np.ndarray
    b_H_a: np.ndarray
    confidence: np.ndarray | None
    size_a: tuple[int, int]
    size_b: tuple[int, int]
    timings_ms: dict[str, float]
    batch_size: int
    model: dict[str, Any]


def image_corners(size: tuple[int, int]) -> np.ndarray:
    """(4, 2) float64 corner pixel centres of a (width, height) image: TL, TR, BR, BL."""
    w, h = size
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)


def transform_points(dst_H_src: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, 3) matrix and (N, 2) points -> ((N, 2) mapped points, (N,) homogeneous w)."""
    ph = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ dst_H_src.T
    return ph[:, :2] / ph[:, 2:3], ph[:, 2]


def offsets_to_homography(
    offsets: np.ndarray,
    size_a: tuple[int, int],
    size_b: tuple[int, int],
    patch_size: int,
) -> FourPointResult:
    """Network offsets -> ``b_H_a`` between the full images (ACA, float64).

    Args:
        offsets: (B, 4, 2) or (4, 2) px of the P x P input, corners TL, TR, BR, BL; the content
            of patch B at square corner ``c_i`` is the content of patch A at ``c_i + o_i``.
        size_a, size_b: (width, height) of the original images.
        patch_size: P.

    Returns:
        :class:`FourPointResult` whose ``dst_H_src`` is ``b_H_a`` (B, 3, 3): image-A pixels to
        image-B pixels, H[2, 2] = 1; invalid items (degenerate predicted quads) are flagged.
    """
    o = np.asarray(offsets, dtype=np.float64)
    o = o[None] if o.ndim == 2 else o
    c = patch_corners(patch_size).astype(np.float64)
    S_a, S_b = patch_to_image_matrix(size_a, patch_size), patch_to_image_matrix(size_b, patch_size)
    src = (c + o) @ S_a[:2, :2].T + S_a[:2, 2]  # image-A pixels, (B, 4, 2)
    dst = np.tile(c @ S_b[:2, :2].T + S_b[:2, 2], (len(src), 1, 1))  # image-B pixels
    return solve_four_point(src, dst, method="aca", normalize="h33", dtype=np.float64)


def _decode_and_prepare(
    data_a: bytes, data_b: bytes, max_pixels: int, min_side: int, patch_size: int
) -> tuple[DecodedImage, DecodedImage, np.ndarray, float, float]:
    t0 = time.perf_counter()
    img_a = decode_image(data_a, "image_a", max_pixels=max_pixels, min_side=min_side, gray=False)
    img_b = decode_image(data_b, "image_b", max_pixels=max_pixels, min_side=min_side, gray=False)
    t1 = time.perf_counter()
    pair = prepare_pair(img_a.pixels, img_b.pixels, patch_size)[0]
    return img_a, img_b, pair, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3


def _solve(
    offsets: np.ndarray, size_a: tuple[int, int], size_b: tuple[int, int], patch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    if not np.all(np.isfinite(offsets)):
        raise EstimateError("the model returned non-finite offsets for this pair", 500)
    res = offsets_to_homography(offsets, size_a, size_b, patch_size)
    if not res.valid[0]:
        reason = Reason(int(res.reason[0]))
        raise EstimateError(
            f"no homography: the predicted corners are degenerate ({reason.name.lower()}: "
            f"{MESSAGES[reason]})",
            422,
        )
    b_H_a = res.dst_H_src[0]
    corners, w = transform_points(b_H_a, image_corners(size_a))
    if not (np.all(np.isfinite(corners)) and np.all(np.abs(w) > 1e-12 * np.abs(b_H_a).max())):
        raise EstimateError(
            "no finite answer: a corner of image A maps to infinity in image B under the "
            "predicted homography",
            422,
        )
    return b_H_a, corners


class Estimator:
    """The /estimate engine as the registry holds it: a model runner, its micro-batcher and the
    input limits. ``start``/``stop`` run the batcher's worker (app lifespan)."""

    def __init__(
        self,
        engine: HomographyEngine,
        batcher: MicroBatcher,
        *,
        max_pixels: int,
        min_side: int,
    ) -> None:
        self.engine, self.batcher = engine, batcher
        self.max_pixels, self.min_side = max_pixels, min_side
        card = engine.card
        self.patch_size = card.patch_size
        self.kind = card.kind
        self.model = {
            "name": card.name,
            "version": card.version,
            "kind": card.kind,
            "sha256": card.sha256[:12],
            "providers": list(engine.providers),
        }
        self.info: dict[str, Any] = {**engine.info, "batching": batcher.info}

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    async def estimate(self, data_a: bytes, data_b: bytes) -> EstimateResult:
        """Two encoded images -> :class:`EstimateResult`.

        Raises:
            ImageError: an image is empty, undecodable, too small or too large.
            QueueFullError, BatcherClosedError, InferenceError: from the batcher.
            EstimateError: no usable homography for this pair.
        """
        start = time.perf_counter()
        with self.batcher.incoming():  # an adaptive batcher waits for this pair
            img_a, img_b, pair, decode_ms, pre_ms = await asyncio.to_thread(
                _decode_and_prepare, data_a, data_b, self.max_pixels, self.min_side, self.patch_size
            )
        res = await self.batcher.submit(pair)
        t = time.perf_counter()
        offsets = res.outputs["offsets"].astype(np.float64)
        b_H_a, corners = await asyncio.to_thread(
            _solve, offsets, img_a.size, img_b.size, self.patch_size
        )
        end = time.perf_counter()
        conf = res.outputs.get("confidence")
        timings = {
            "decode": decode_ms,
            "preprocess": pre_ms,
            "queue_wait": res.queue_ms,
            "inference": res.inference_ms,
            "solve": (end - t) * 1e3,
            "total": (end - start) * 1e3,
        }
        return EstimateResult(
            offsets=offsets,
            corners_in_b=corners,
            b_H_a=b_H_a,
            confidence=None if conf is None else np.asarray(conf, dtype=np.float64),
            size_a=img_a.size,
            size_b=img_b.size,
            timings_ms={k: round(v, 3) for k, v in timings.items()},
            batch_size=res.batch_size,
            model=self.model,
        )


def load_engine(model_path: Path, settings: Settings) -> HomographyEngine:
    """The ONNX runner for ``model_path`` with the configured providers, warmed up at batch
    sizes 1 and ``estimate_max_batch`` (tests replace this function to inject a fake)."""
    sizes = sorted({1, settings.estimate_max_batch})
    return OnnxHomographyEngine(
        model_path,
        settings.onnx_providers,
        threads=settings.onnx_threads,
        warmup_batch_sizes=sizes,
    )


def build_estimator(model_path: Path, settings: Settings) -> Estimator:
    """Build (load, verify, warm up) the estimator for one model file; the batcher's worker is
    started later, in the app's lifespan (:func:`app.services.startup.run_engines`)."""
    engine = load_engine(model_path, settings)
    batcher = MicroBatcher(
        engine.predict_batch,
        max_batch=settings.estimate_max_batch,
        max_wait_ms=settings.estimate_max_wait_ms,
        queue_size=settings.estimate_queue_size,
        name=f"estimate-{Path(model_path).stem}",
        adaptive=True,
    )
    return Estimator(
        engine, batcher, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side
    )
