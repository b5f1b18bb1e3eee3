"""Adaptive micro-batching for a model runner (BentoML-style; no HTTP here).

Requests ``submit`` one item each; one worker task gathers up to ``max_batch`` waiting items,
waiting at most ``max_wait_ms`` after the oldest one arrived, stacks them, runs the runner's
``predict_batch`` in a dedicated thread (never on the event loop) and hands each request its
rows. Under load the wait is already over when the worker comes back, so batches form from the
backlog with no added latency; when idle, a lone request waits at most ``max_wait_ms``.

With ``adaptive=True`` the wait also ends as soon as no other request is on its way: callers
wrap the work before ``submit`` (decoding, preprocessing) in :meth:`MicroBatcher.incoming`, and
the worker waits for company only while such work is under way. A lone request then pays no
``max_wait_ms`` at all, while concurrent ones still share a batch.

The queue is bounded: when ``queue_size`` items are waiting (or, for :meth:`incoming`, waiting
or on their way), ``submit`` raises
:class:`QueueFullError` at once (the route answers 503 with ``Retry-After``) instead of letting
latency grow without bound. An exception in ``predict_batch`` fails that batch's requests only;
the worker carries on.

Example:
    >>> batcher = MicroBatcher(engine.predict_batch, max_batch=16, max_wait_ms=5)  # +SKIP
    >>> await batcher.start()  # +SKIP
    >>> result = await batcher.submit(pair)  # pair: (2, P, P) float32  # +SKIP
    >>> result.outputs["offsets"].shape  # +SKIP
    (4, 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.core.errors import DomainError

__all__ = ["BatchResult", "BatcherClosedError", "InferenceError", "MicroBatcher", "QueueFullError"]

PredictBatch = Callable[[np.ndarray], Mapping[str, np.ndarray]]


class QueueFullError(DomainError, RuntimeError):
    """``queue_size`` items are already waiting; ``retry_after_s`` is a hint for clients."""

    def __init__(self, queue_size: int, retry_after_s: int) -> None:
        super().__init__(
            f"the inference queue is full ({queue_size} pairs waiting); retry in {retry_after_s} s",
            "unavailable",
            retry_after=retry_after_s,
        )
        self.queue_size, self.retry_after_s = queue_size, retry_after_s


class BatcherClosedError(DomainError, RuntimeError):
    """The batcher is not running (not started yet, or shutting down)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "unavailable", retry_after=1)


class InferenceError(DomainError, RuntimeError):
    """``predict_batch`` raised for the batch this request was in (the cause is chained)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "internal")


@dataclass(frozen=True)
class BatchResult:
    """One request's rows of a batch: ``outputs[name]`` without the batch axis; times in ms."""

    outputs: dict[str, np.ndarray]
    queue_ms: float
    inference_ms: float
    batch_size: int


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future[BatchResult]
    enqueued: float


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    errors: int = 0
    rejected: int = 0
    largest_batch: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)


class MicroBatcher:
    """Bounded queue + one worker task that groups items into ``predict_batch`` calls.

    Args:
        predict_batch: ``(B, *item_shape) -> {name: (B, ...)}``; called from a worker thread.
        max_batch: largest batch handed to ``predict_batch``.
        max_wait_ms: longest the oldest waiting item waits for company.
        queue_size: most items waiting (not yet in a batch) before ``submit`` refuses.
    """

    def __init__(
        self,
        predict_batch: PredictBatch,
        *,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        queue_size: int = 64,
        name: str = "batcher",
        adaptive: bool = False,
    ) -> None:
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and queue_size must be >= 1 and max_wait_ms >= 0")
        self.predict_batch = predict_batch
        self.max_batch, self.max_wait_s, self.queue_size = max_batch, max_wait_ms / 1e3, queue_size
        self.name, self.adaptive = name, adaptive
        self._incoming = 0
        self.stats = BatcherStats()
        self._pending: deque[_Item] = deque()
        self._inflight: list[_Item] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._batch_seconds = 0.0  # exponential average, for the Retry-After hint

    @property
    def info(self) -> dict[str, Any]:
        return {
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait_s * 1e3,
            "queue_size": self.queue_size,
            "adaptive": self.adaptive,
        }

    @property
    def pending(self) -> int:
        """Items waiting for a batch (not counting the batch being run)."""
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the worker on the running event loop (idempotent)."""
        if self.running:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the worker, fail the waiting requests, release the thread."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        waiting = [*self._inflight, *self._pending]
        self._pending.clear()
        self._inflight = []
        for item in waiting:
            if not item.future.done():
                item.future.set_exception(BatcherClosedError(f"{self.name} is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def retry_after_s(self) -> int:
        """Seconds until the backlog should have drained (at least 1)."""
        batches = math.ceil((len(self._pending) + 1) / self.max_batch)
        return max(1, math.ceil(batches * self._batch_seconds))

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Mark a request that will ``submit`` right after this block (e.g. while it decodes its
        images in a thread); an adaptive worker waits for it, up to ``max_wait_ms``.

        Call ``submit`` directly after the block, with no ``await`` in between.

        Raises:
            QueueFullError: ``queue_size`` items are already waiting or on their way (so an
                overloaded server refuses before it spends CPU on decoding).
        """
        if len(self._pending) + self._incoming >= self.queue_size:
            self.stats.rejected += 1
            raise QueueFullError(self.queue_size, self.retry_after_s())
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            if self._wakeup is not None:
                self._wakeup.set()

    async def submit(self, x: np.ndarray) -> BatchResult:
        """Queue one item (shape without the batch axis) and wait for its outputs.

        Raises:
            QueueFullError: ``queue_size`` items are already waiting.
            BatcherClosedError: the worker is not running.
            InferenceError: ``predict_batch`` failed for this item's batch.
        """
        if not self.running or self._wakeup is None:
            raise BatcherClosedError(f"{self.name} is not running")
        if len(self._pending) >= self.queue_size:
            self.stats.rejected += 1
            raise QueueFullError(self.queue_size, self.retry_after_s())
        loop = asyncio.get_running_loop()
        item = _Item(x, loop.create_future(), time.perf_counter())
        self._pending.append(item)
        self._wakeup.set()
        try:
            return await item.future
        except asyncio.CancelledError:  # the client went away: drop the item if still queued
            with contextlib.suppress(ValueError):
                self._pending.remove(item)
            raise

    async def _gather(self) -> list[_Item]:
        """Wait for the first item, then for company until the batch is full or the oldest
        item has waited ``max_wait_s``."""
        assert self._wakeup is not None
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._pending[0].enqueued + self.max_wait_s
        while len(self._pending) < self.max_batch:
            if self.adaptive and self._incoming == 0:
                break  # nobody else is on the way: waiting would only add latency
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)
        n = min(self.max_batch, len(self._pending))
        batch = [self._pending.popleft() for _ in range(n)]
        return [it for it in batch if not it.future.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            self._inflight = batch
            start = time.perf_counter()
            try:
                x = np.stack([it.x for it in batch])
                out = await loop.run_in_executor(self._executor, self.predict_batch, x)
                out = {k: np.asarray(v) for k, v in out.items()}
                bad = [k for k, v in out.items() if v.shape[:1] != (len(batch),)]
                if bad:
                    raise ValueError(f"outputs {bad} do not have the batch size {len(batch)}")
            except Exception as exc:  # report to this batch's requests, keep serving
                self.stats.errors += 1
                err = InferenceError(f"inference failed: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                for it in batch:
                    if not it.future.done():
                        it.future.set_exception(err)
                self._inflight = []
                continue
            end = time.perf_counter()
            seconds = end - start
            self._batch_seconds = (
                seconds if not self.stats.batches else (0.8 * self._batch_seconds + 0.2 * seconds)
            )
            self._record(len(batch))
            self._inflight = []
            for i, it in enumerate(batch):
                if it.future.done():
                    continue
                it.future.set_result(
                    BatchResult(
                        outputs={k: v[i] for k, v in out.items()},
                        queue_ms=(start - it.enqueued) * 1e3,
                        inference_ms=seconds * 1e3,
                        batch_size=len(batch),
                    )
                )

    def _record(self, n: int) -> None:
        s = self.stats
        s.batches += 1
        s.items += n
        s.largest_batch = max(s.largest_batch, n)
        s.batch_sizes[n] = s.batch_sizes.get(n, 0) + 1
