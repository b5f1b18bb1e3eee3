"""The /estimate use case: two encoded images -> HomographyNet offsets -> ``b_H_a`` at the
images' own resolutions (ACA solver), optionally refined photometrically. No HTTP here: problems
are :class:`app.core.errors.DomainError`s (the batcher's are too).

Pipeline per request (CPU work in threads, never on the event loop):

1. decode both images (header checks first, see :func:`app.services.images.read_header`)
   to gray (:func:`app.services.images.decode_pixels`); with ``method="network"`` and no
   refinement, JPEGs at 1/2, 1/4 or 1/8 of their resolution (in the DCT) when that still
   leaves the network its P x P input and the scoring its working pixels (both images at one
   factor); every matrix is then computed in the decoded pixels and moved to the full
   resolution with the exact map (:attr:`app.services.images.DecodedImage.pixels_T_full`)
   before it is answered;
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

``method="features"`` replaces steps 2-4 by keypoint matching and a robust fit
(:func:`app.features.estimate_features`; ``detector=asift`` for strong foreshortening);
``method="auto"`` runs both (the network in the batcher while the features run in a thread),
then judges, refines and ranks them on photometric and geometric evidence, and escalates to
stronger matching within a time budget when they are weak (:func:`app.estimation.estimate_auto`).
Every method's answer is judged on the same evidence, so every response carries the
photometric score, the keypoint support, the overlap and a confidence.

``refine=True`` (methods network and features) runs the /refine pipeline
(:func:`app.services.refine.refine_pixels`, default options and time budget) on the images
already decoded, from the estimate; the refined matrix is the answer (``{method}+refine``), the
start stays among the candidates and in :class:`ChainedRefine`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.alignment import RefineOptions
from app.core.config import Settings
from app.core.errors import DomainError
from app.estimation import (
    AutoOptions,
    Candidate,
    Selection,
    SelectionOptions,
    estimate_auto,
    select_homography,
)
from app.features import FeatureEstimate, FeatureOptions, estimate_features
from app.geometry.points import corners_in
from app.geometry.reasons import MESSAGES, Reason
from app.inference.batcher import MicroBatcher
from app.inference.engine import HomographyEngine, OnnxHomographyEngine
from app.inference.homography import offsets_to_homography
from app.inference.preprocess import prepare_pair
from app.services.admission import SpareThreads, admission_wait_s, offload
from app.services.images import (
    DecodedImage,
    MinimumSize,
    decode_pixels,
    read_header,
    reduction_for,
)
from app.services.refine import Aligner, RefineOutput, refine_pixels

__all__ = [
    "ChainedRefine",
    "EstimateResult",
    "Estimator",
    "Method",
    "build_estimator",
    "load_engine",
]

Method = Literal["network", "features", "auto"]


@dataclass
class ChainedRefine:
    """``refine=True``: ``start_b_H_a`` (3, 3) the estimate that was refined; ``output`` the
    /refine pipeline's answer, or None with ``detail`` saying why the start could not be refined
    (for example it maps A outside B)."""

    start_b_H_a: np.ndarray
    output: RefineOutput | None = None
    detail: str | None = None

    @property
    def applied(self) -> bool:
        return self.output is not None


@dataclass
class EstimateResult:
    """One pair's answer.

    ``b_H_a`` (3, 3) float64 with H[2, 2] = 1 (the refined matrix when ``refine`` applied);
    ``corners_in_b`` (4, 2) image-B pixels of image A's corners; ``method`` asked for and
    ``chosen`` (the winning candidate's name); ``selection``: every candidate
    (``selection.candidates``) with its score, and the confidence; ``offsets`` (4, 2) px of the
    P x P network input and ``confidence`` (4,) per corner (classification models) when the
    network ran; ``features`` when the keypoint pipeline ran; ``refine`` with ``refine=True``;
    sizes are (width, height); ``timings_ms`` per stage (absent stages omitted);
    ``batch_size``: 0 when the network did not run.
    """

    b_H_a: np.ndarray
    corners_in_b: np.ndarray
    method: str
    chosen: str
    selection: Selection
    size_a: tuple[int, int]
    size_b: tuple[int, int]
    timings_ms: dict[str, float]
    batch_size: int = 0
    offsets: np.ndarray | None = None
    confidence: np.ndarray | None = None
    model: dict[str, Any] | None = None
    features: FeatureEstimate | None = None
    feature_options: FeatureOptions | None = None
    refine: ChainedRefine | None = None


def _decode_and_prepare(
    data_a: bytes,
    data_b: bytes,
    max_pixels: int,
    min_side: int,
    patch_size: int | None,
    need: MinimumSize | None = None,
    spare: SpareThreads | None = None,
) -> tuple[DecodedImage, DecodedImage, np.ndarray | None, float, float]:
    """Decode both images to gray, reduced by one factor when ``need`` allows it for both
    (image B on a ``spare`` thread when the request runs alone); with ``patch_size``, also the
    network's (2, P, P) input."""
    t0 = time.perf_counter()
    head_a = read_header(data_a, "image_a", max_pixels=max_pixels, min_side=min_side)
    head_b = read_header(data_b, "image_b", max_pixels=max_pixels, min_side=min_side)
    s = 1 if need is None else min(reduction_for(head_a, need), reduction_for(head_b, need))
    start = functools.partial if spare is None else spare.start
    decoded_b = start(decode_pixels, data_b, head_b, "image_b", reduction=s)
    img_a = decode_pixels(data_a, head_a, "image_a", reduction=s)
    img_b = decoded_b()
    if img_a.reduction != img_b.reduction:  # one fell back to full size: both at full size
        img_a = decode_pixels(data_a, head_a, "image_a") if img_a.reduction > 1 else img_a
        img_b = decode_pixels(data_b, head_b, "image_b") if img_b.reduction > 1 else img_b
    t1 = time.perf_counter()
    pair = None if patch_size is None else prepare_pair(img_a.pixels, img_b.pixels, patch_size)[0]
    return img_a, img_b, pair, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3


def _solve(
    offsets: np.ndarray, size_a: tuple[int, int], size_b: tuple[int, int], patch_size: int
) -> np.ndarray:
    """The network's ``b_H_a``; a :class:`DomainError` for a degenerate prediction."""
    if not np.all(np.isfinite(offsets)):
        raise DomainError("the model returned non-finite offsets for this pair", "internal")
    res = offsets_to_homography(offsets, size_a, size_b, patch_size)
    if not res.valid[0]:
        reason = Reason(int(res.reason[0]))
        raise DomainError(
            f"no homography: the predicted corners are degenerate ({reason.name.lower()}: "
            f"{MESSAGES[reason]})"
        )
    return res.dst_H_src[0]


def _size(img: DecodedImage) -> tuple[int, int]:
    """(width, height) of the decoded pixels (the frame every matrix is computed in)."""
    return int(img.pixels.shape[1]), int(img.pixels.shape[0])


def _to_full(sel: Selection, img_a: DecodedImage, img_b: DecodedImage) -> Selection:
    """The selection's matrices moved from the decoded (reduced) pixels to the full resolution:
    ``inv(T_b) @ H @ T_a`` with ``T = pixels_T_full``; the same selection when not reduced."""
    if img_a.reduction == 1 and img_b.reduction == 1:
        return sel
    T_a, T_b_inv = img_a.pixels_T_full, np.linalg.inv(img_b.pixels_T_full)

    def move(c: Candidate) -> Candidate:
        H = T_b_inv @ c.b_H_a @ T_a
        return replace(c, b_H_a=H / H[2, 2] if H[2, 2] != 0 else H)

    moved = {id(c): move(c) for c in sel.candidates}
    best = None if sel.best is None else moved.get(id(sel.best)) or move(sel.best)
    scale = img_a.pixels.shape[1] / img_a.size[0]
    return replace(
        sel, best=best, candidates=list(moved.values()), work_scale=sel.work_scale * scale
    )


def _finite(H: np.ndarray | None) -> bool:
    return H is not None and bool(np.isfinite(H).all())


def _chain_refine(
    image_a: np.ndarray,
    image_b: np.ndarray,
    start: np.ndarray,
    settings: Settings,
    aligner: Aligner | None,
) -> ChainedRefine:
    """The /refine pipeline on decoded images from ``start``; a start it refuses (``invalid``:
    e.g. one that maps A outside B) is reported, not raised."""
    try:
        out = refine_pixels(image_a, image_b, start, RefineOptions(), settings, aligner)
    except DomainError as exc:
        if exc.kind != "invalid":
            raise
        return ChainedRefine(start, None, exc.message)
    return ChainedRefine(start, out)


class Estimator:
    """The /estimate engine as the registry holds it: a model runner, its micro-batcher, and
    the settings (input limits, feature, selection and refinement options). ``start``/``stop``
    run the batcher's worker (app lifespan)."""

    def __init__(self, engine: HomographyEngine, batcher: MicroBatcher, settings: Settings) -> None:
        self.engine, self.batcher, self.settings = engine, batcher, settings
        self.max_pixels, self.min_side = settings.max_image_pixels, settings.min_image_side
        self.selection = SelectionOptions(
            max_pixels=settings.estimate_work_pixels,
            seconds_per_refine=settings.estimate_refine_seconds,
            low_confidence=settings.estimate_low_confidence,
        )
        self.max_features = settings.estimate_max_features
        self.auto = AutoOptions(
            selection=self.selection,
            budget_seconds=settings.estimate_escalation_seconds,
            features=self.feature_options(),
        )
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
        self.spare = SpareThreads(1, "estimate-decode")

    @property
    def batching_pays(self) -> bool:
        """Whether the network runs on an accelerator, where a batch of pairs costs little more
        than one (on ONNX Runtime's CPU provider the cost per pair is flat)."""
        return self.engine.providers[0] != "CPUExecutionProvider"

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.spare.shutdown()

    def feature_options(self, detector: str = "sift", robust: str | None = None) -> FeatureOptions:
        """The keypoint pipeline's options; ``robust`` defaults to our RANSAC, or MAGSAC++ for
        ``asift`` (its pooled views repeat matches, which MAGSAC++'s weighting tolerates)."""
        if robust is None:
            robust = "usac" if detector == "asift" else "aca"
        return FeatureOptions(
            detector=detector,  # type: ignore[arg-type]
            robust=robust,  # type: ignore[arg-type]
            max_features=self.max_features,
            max_pixels=self.selection.max_pixels,
        )

    async def estimate(
        self,
        data_a: bytes,
        data_b: bytes,
        method: Method = "network",
        features: FeatureOptions | None = None,
        *,
        aligner: Aligner | None = None,
        refine: bool = False,
        escalation_seconds: float | None = None,
    ) -> EstimateResult:
        """Two encoded images -> :class:`EstimateResult`.

        Args:
            method: ``network`` (HomographyNet + ACA), ``features`` (keypoints + robust fit) or
                ``auto`` (both, refined photometrically, the best kept).
            features: options of the keypoint pipeline (default SIFT + ACA RANSAC).
            aligner: the engine that refines (``auto``'s candidates, ``refine``); None: the
                calling thread, on the CPU.
            refine: methods ``network``/``features``: refine the estimate with the /refine
                pipeline and answer the refined matrix (ignored by ``auto``, which refines its
                candidates itself).
            escalation_seconds: ``auto``: the time it may spend on stronger matching when the
                fast candidates are weak (None: the setting; 0: none).

        Raises:
            DomainError: an image is empty, undecodable, too small or too large; the queue is
                full or closed (``unavailable``), inference failed (``internal``); no usable
                homography for this pair (``invalid``).
        """
        limit = self.settings.estimate_max_escalation_seconds
        if escalation_seconds is not None and not 0 <= escalation_seconds <= limit:
            raise DomainError(
                f"escalation_seconds: must be between 0 and {limit:g} (the server's "
                f"estimate_max_escalation_seconds), got {escalation_seconds:g}",
                "invalid",
                "escalation_seconds",
            )
        start = time.perf_counter()
        use_net, use_feat = method in ("network", "auto"), method in ("features", "auto")
        fopts = features or self.feature_options()
        # only the network and the scoring see the pixels: they need this much of them
        need = (
            MinimumSize(self.patch_size, self.patch_size, self.selection.score_pixels)
            if method == "network" and not refine
            else None
        )
        with self.batcher.incoming() if use_net else contextlib.nullcontext():
            img_a, img_b, pair, decode_ms, pre_ms = await offload(
                _decode_and_prepare,
                data_a,
                data_b,
                self.max_pixels,
                self.min_side,
                self.patch_size if use_net else None,
                need,
                self.spare,
            )
        timings: dict[str, float] = {"decode": decode_ms}
        feat_task = (
            asyncio.create_task(offload(estimate_features, img_a.pixels, img_b.pixels, fopts))
            if use_feat
            else None
        )
        starts: dict[str, np.ndarray | None] = {}
        net_error: DomainError | None = None
        res = None
        try:
            if use_net:
                timings["preprocess"] = pre_ms
                res = await self.batcher.submit(pair)
                timings["queue_wait"], timings["inference"] = res.queue_ms, res.inference_ms
                t = time.perf_counter()
                offsets = res.outputs["offsets"].astype(np.float64)
                try:
                    starts["network"] = await offload(
                        _solve, offsets, _size(img_a), _size(img_b), self.patch_size
                    )
                except DomainError as exc:
                    if method == "network":
                        raise
                    net_error = exc
                timings["solve"] = (time.perf_counter() - t) * 1e3
        finally:
            feat = await feat_task if feat_task is not None else None
        if feat is not None:
            timings["features"] = feat.seconds * 1e3
            if _finite(feat.b_H_a):
                starts["features"] = feat.b_H_a
            elif method == "features":
                why = feat.detail or "the fitted matrix is not finite"
                raise DomainError(f"no homography from features: {why}")
        if not any(_finite(H) for H in starts.values()):  # auto only: the others raised above
            why = [f"network: {net_error.message}" if net_error else None]
            why.append(f"features: {feat.detail or 'no finite matrix'}" if feat else None)
            raise DomainError("no homography: " + "; ".join(w for w in why if w))
        chained = None
        if refine and method != "auto":
            t = time.perf_counter()
            chained = await offload(
                _chain_refine, img_a.pixels, img_b.pixels, starts[method], self.settings, aligner
            )
            timings["refine"] = (time.perf_counter() - t) * 1e3
        refined = None
        if chained is not None and chained.output is not None:
            refined = {method: chained.output.result.b_H_a}
        t = time.perf_counter()
        refiner = None if aligner is None else aligner.refine
        device = "cpu" if aligner is None else aligner.device
        matches = None if feat is None else feat.correspondences
        if method == "auto":
            sel = await offload(
                estimate_auto,
                img_a.pixels,
                img_b.pixels,
                starts.get("network"),
                feat,
                self.auto,
                budget_seconds=escalation_seconds,
                refiner=refiner,
                device=device,
            )
        else:
            sel = await offload(
                select_homography,
                img_a.pixels,
                img_b.pixels,
                starts,
                replace(self.selection, refine=False),
                matches=matches,
                refined=refined,
            )
        sel = _to_full(sel, img_a, img_b)
        timings["select"] = (time.perf_counter() - t) * 1e3
        best = self._answer(sel, method, refined is not None)
        corners = corners_in(best.b_H_a, img_a.size)
        if corners is None:
            raise DomainError(
                f"no finite answer: a corner of image A maps to infinity in image B under the "
                f"{best.name} estimate"
            )
        timings["total"] = (time.perf_counter() - start) * 1e3
        waited = admission_wait_s()
        if waited is not None:
            timings["admission_wait"] = waited * 1e3
        conf = None if res is None else res.outputs.get("confidence")
        return EstimateResult(
            b_H_a=best.b_H_a,
            corners_in_b=corners,
            method=method,
            chosen=best.name,
            selection=sel
            if sel.best is best
            else _single_selection(sel, best, self.selection.low_confidence),
            size_a=img_a.size,
            size_b=img_b.size,
            timings_ms={k: round(v, 3) for k, v in timings.items()},
            batch_size=0 if res is None else res.batch_size,
            offsets=None if res is None else offsets,
            confidence=None if conf is None else np.asarray(conf, dtype=np.float64),
            model=self.model if use_net else None,
            features=feat,
            feature_options=fopts if use_feat else None,
            refine=chained,
        )

    @staticmethod
    def _answer(sel: Selection, method: str, refined: bool) -> Candidate:
        """The candidate to answer: a single method's own (its refinement when ``refined``), or
        auto's best; when nothing could be verified (flat images, no overlap), auto answers its
        first candidate, flagged."""
        if method == "auto":
            best = sel.best or next(iter(sel.candidates), None)
        else:
            names = [f"{method}+refine", method] if refined else [method]
            best = next((c for n in names for c in sel.candidates if c.name == n), None)
        if best is None:  # every start was left out (non-finite): nothing to answer
            raise DomainError(f"no homography: no usable candidate for method={method}")
        return best


def _single_selection(sel: Selection, best: Candidate, threshold: float) -> Selection:
    """A single method's candidate is the answer even when it is not eligible (for example it
    maps too little of A into B, or is implausible): its own confidence (0 then), flagged."""
    return replace(
        sel,
        best=best,
        confidence=best.confidence,
        low_confidence=best.confidence < threshold,
        agreeing=best.agreeing,
        reasons=best.reasons,
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
    return Estimator(engine, batcher, settings)
