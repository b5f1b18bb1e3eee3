"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx

from homography_client import _core
from homography_client._core import (
    Call,
    Convention,
    DepthMode,
    Detector,
    EstimateMethod,
    ModelKind,
    Normalize,
    OutputDtype,
    RetryPolicy,
    RobustFit,
    SolveMethod,
)
from homography_client._encode import ImageInput, pieces
from homography_client.models import EstimateResult, PoseLossResult, RefineResult, SolveResult

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0


class HomographyClient(_core.ClientBase):
    """A client of homography-service.

    >>> with HomographyClient("http://127.0.0.1:8000") as hc:
    ...     res = hc.estimate("a.jpg", "b.jpg", method="auto")
    ...     res.b_H_a, res.confidence, res.low_confidence, res.chosen

    ``api_key`` is sent as ``X-API-Key``. 503 answers (load shed) are retried with back-off,
    honouring ``Retry-After``, until ``retry.deadline`` seconds have passed; every other error
    answer raises ``HomographyError`` with the server's message and the field it names.
    ``http_client`` replaces the internal ``httpx.Client`` (its base URL, headers and timeout
    are then its own), e.g. a FastAPI ``TestClient``.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(api_key, retry)
        self._owns = http_client is None
        self._http = http_client or httpx.Client(base_url=base_url, timeout=timeout)

    def __enter__(self) -> HomographyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns:
            self._http.close()

    def _send(self, call: Call[T]) -> T:
        attempts = _core.Attempts(self.retry)
        while True:
            kw = self._kwargs(call)
            if call.body is not None:
                kw["content"] = pieces(call.body)  # a fresh iterator for every try
            response = self._http.request(call.method, call.path, **kw)
            if response.status_code != 503:
                return call.parse(response)
            time.sleep(attempts.next_delay(response))

    # ------------------------------------------------------------------------------ endpoints
    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return self._send(Call("GET", "/health", _core.read_json))

    def ready(self) -> bool:
        """Whether ``GET /ready`` answers 200 (every engine loaded and warmed up)."""
        return self._http.get("/ready", headers=self._headers).status_code == 200

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.25) -> None:
        """Block until the server is ready; ``TimeoutError`` after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while True:
            try:
                if self.ready():
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"the server was not ready within {timeout} s")
            time.sleep(interval)

    def solve(
        self,
        src: Any,
        dst: Any,
        method: SolveMethod = "aca",
        *,
        robust: bool = False,
        normalize: Normalize = "h33",
        dtype: OutputDtype = "float64",
        ransac: Mapping[str, Any] | None = None,
        binary: bool | None = None,
    ) -> SolveResult:
        """Homographies ``dst_H_src`` from B items of corresponding points.

        ``src``, ``dst``: (B, N, 2) pixels (x, y), or sequences of (N_i, 2) arrays. ``aca`` and
        ``sks`` take N = 4; ``dlt`` and ``robust=True`` (RANSAC; ``ransac`` options
        ``threshold``, ``confidence``, ``max_iters``, ``seed``) take N >= 4. Batches of (B, 4, 2)
        with at least ``binary_threshold`` items go to ``/solve/batch`` as ``.npz``, streamed in
        pieces (``binary`` forces either path); batches over the per-request limits are split.
        Returns ``dst_H_src`` (B, 3, 3) with NaN for invalid items, ``valid`` and ``reason``.
        """
        plan = self._solve_plan(src, dst, method, robust, normalize, dtype, ransac, binary)
        return plan.merge([self._send(c) for c in plan.calls])

    def estimate(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        method: EstimateMethod = "network",
        *,
        refine: bool = False,
        detector: Detector = "sift",
        robust: RobustFit | None = None,
        model: ModelKind | None = None,
        escalation_seconds: float | None = None,
    ) -> EstimateResult:
        """The homography ``b_H_a`` mapping image A onto image B, with its confidence.

        Images: paths, encoded bytes, binary files, or NumPy pixels ((H, W) gray, (H, W, 3) RGB,
        uint8/uint16). ``method``: ``network`` (HomographyNet), ``features`` (``detector``
        ``sift``, ``orb`` or ``asift`` + RANSAC ``robust``, the server's default when None) or
        ``auto`` (both, judged on photometric and keypoint evidence, refined, best kept;
        ``escalation_seconds`` bounds its stronger matching when the fast answers are weak);
        ``refine`` also refines network/features answers photometrically.
        """
        return self._send(
            _core.estimate_call(
                image_a, image_b, method, refine, detector, robust, model, escalation_seconds
            )
        )

    def refine(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        init: Any = None,
        *,
        mask: ImageInput | None = None,
        **options: Any,
    ) -> RefineResult:
        """Refine ``init`` (3, 3) ``b_H_a`` (identity when None) photometrically.

        ``options`` are the server's solver options (``max_seconds``, ``robust``, ``overlay``,
        ...; see ``REFINE_OPTIONS``); ``mask`` an image of A's size, nonzero where A is used.
        """
        return self._send(_core.refine_call(image_a, image_b, init, mask, options))

    def pose_loss(
        self,
        estimated_position: Any,
        estimated_rotation: Any,
        true_position: Any,
        true_rotation: Any,
        *,
        xmin: Any = None,
        xmax: Any = None,
        depths: Sequence[Any] | None = None,
        depth_mode: DepthMode = "local",
        convention: Convention = "world_to_camera",
        gradients: bool = False,
    ) -> PoseLossResult:
        """The homography-based pose loss of B (estimated, true) pose pairs.

        Positions (B, 3) camera centres; rotations (B, 4) quaternions (w, x, y, z) or (B, 3, 3)
        matrices; the scene's depth range as ``xmin``/``xmax`` (a number or (B,)) or ``depths``
        (B sequences of depth samples).
        """
        return self._send(
            _core.pose_loss_call(
                estimated_position,
                estimated_rotation,
                true_position,
                true_rotation,
                xmin,
                xmax,
                depths,
                depth_mode,
                convention,
                gradients,
            )
        )
