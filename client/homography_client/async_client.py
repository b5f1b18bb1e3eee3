"""The asynchronous client: ``HomographyClient``'s twin on ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
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
from homography_client._encode import ImageInput, apieces
from homography_client.client import DEFAULT_TIMEOUT
from homography_client.models import EstimateResult, PoseLossResult, RefineResult, SolveResult

T = TypeVar("T")


class AsyncHomographyClient(_core.ClientBase):
    """The asynchronous client; the same methods as ``HomographyClient``, awaited.

    >>> async with AsyncHomographyClient("http://127.0.0.1:8000") as hc:
    ...     results = await asyncio.gather(*(hc.estimate(a, b) for a, b in pairs))

    Concurrent calls share one connection pool; 503 answers are retried as in the sync client.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(api_key, retry)
        self._owns = http_client is None
        self._http = http_client or httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def __aenter__(self) -> AsyncHomographyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns:
            await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        attempts = _core.Attempts(self.retry)
        while True:
            kw = self._kwargs(call)
            if call.body is not None:
                kw["content"] = apieces(call.body)  # a fresh iterator for every try
            response = await self._http.request(call.method, call.path, **kw)
            if response.status_code != 503:
                return call.parse(response)
            await asyncio.sleep(attempts.next_delay(response))

    async def health(self) -> dict[str, Any]:
        return await self._send(Call("GET", "/health", _core.read_json))

    async def ready(self) -> bool:
        return (await self._http.get("/ready", headers=self._headers)).status_code == 200

    async def wait_ready(self, timeout: float = 120.0, interval: float = 0.25) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                if await self.ready():
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"the server was not ready within {timeout} s")
            await asyncio.sleep(interval)

    async def solve(
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
        """As ``HomographyClient.solve``; the pieces of a split batch are sent one after another."""
        plan = self._solve_plan(src, dst, method, robust, normalize, dtype, ransac, binary)
        return plan.merge([await self._send(c) for c in plan.calls])

    async def estimate(
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
        """As ``HomographyClient.estimate``."""
        return await self._send(
            _core.estimate_call(
                image_a, image_b, method, refine, detector, robust, model, escalation_seconds
            )
        )

    async def refine(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        init: Any = None,
        *,
        mask: ImageInput | None = None,
        **options: Any,
    ) -> RefineResult:
        """As ``HomographyClient.refine``."""
        return await self._send(_core.refine_call(image_a, image_b, init, mask, options))

    async def pose_loss(
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
        """As ``HomographyClient.pose_loss``."""
        return await self._send(
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
