"""MicroBatcher: grouping, waiting, bounded queue, failures, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app.inference.batcher import (
    BatcherClosedError,
    InferenceError,
    MicroBatcher,
    QueueFullError,
)
from app.inference.engine import OnnxHomographyEngine
from tests.inference.helpers import fixture_model


class Recorder:
    """predict_batch that returns each item's sum (so the routing of rows can be checked)."""

    def __init__(self, fail_on: set[int] | None = None, gate: threading.Event | None = None):
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.fail_on, self.gate = fail_on or set(), gate

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.sizes.append(len(x))
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            assert self.gate.wait(30)
        if len(self.sizes) in self.fail_on:
            raise RuntimeError("boom")
        return {"sum": x.reshape(len(x), -1).sum(1), "twice": 2 * x}


def run(coro):
    return asyncio.run(coro)


async def started(predict, **kw) -> MicroBatcher:
    b = MicroBatcher(predict, **kw)
    await b.start()
    return b


def test_concurrent_requests_grouped_and_routed() -> None:
    rec = Recorder()

    async def main():
        b = await started(rec, max_batch=8, max_wait_ms=50, queue_size=64)
        try:
            xs = [np.full((2, 3), i, np.float32) for i in range(32)]
            res = await asyncio.gather(*(b.submit(x) for x in xs))
        finally:
            await b.stop()
        return xs, res, b

    xs, res, b = run(main())
    assert sum(rec.sizes) == 32
    assert len(rec.sizes) <= 5 < 32  # grouped (4 full batches when all arrive at once)
    assert max(rec.sizes) == 8
    for i, (x, r) in enumerate(zip(xs, res)):
        assert r.outputs["sum"] == pytest.approx(6 * i)
        np.testing.assert_array_equal(r.outputs["twice"], 2 * x)
        assert 1 <= r.batch_size <= 8
    assert b.stats.items == 32 and b.stats.batches == len(rec.sizes)
    assert not any(t == threading.main_thread().name for t in rec.threads)  # off the loop


def test_onnx_engine_calls_fewer_than_requests() -> None:
    engine = OnnxHomographyEngine(fixture_model("regression"), ["CPUExecutionProvider"])
    sizes: list[int] = []

    def predict(x):
        sizes.append(len(x))
        return engine.predict_batch(x)

    rng = np.random.default_rng(0)
    xs = [rng.uniform(-1, 1, (2, 128, 128)).astype(np.float32) for _ in range(12)]

    async def main():
        b = await started(predict, max_batch=16, max_wait_ms=20, queue_size=64)
        try:
            return await asyncio.gather(*(b.submit(x) for x in xs))
        finally:
            await b.stop()

    res = run(main())
    assert len(sizes) < 12 and sum(sizes) == 12
    ref = engine.predict_batch(np.stack(xs))["offsets"]
    got = np.stack([r.outputs["offsets"] for r in res])
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_lone_request_waits_max_wait_unless_adaptive() -> None:
    async def one(adaptive: bool) -> float:
        b = await started(Recorder(), max_batch=8, max_wait_ms=200, adaptive=adaptive)
        try:
            t = time.perf_counter()
            r = await b.submit(np.zeros(3))
            assert r.batch_size == 1
            return time.perf_counter() - t
        finally:
            await b.stop()

    assert run(one(False)) >= 0.19
    assert run(one(True)) < 0.15


def test_adaptive_waits_for_announced_requests() -> None:
    rec = Recorder()

    async def main():
        b = await started(rec, max_batch=8, max_wait_ms=2000, adaptive=True)

        async def late(delay: float, value: float):
            with b.incoming():
                await asyncio.sleep(delay)  # e.g. decoding in a thread
            return await b.submit(np.full(2, value))

        try:
            return await asyncio.gather(late(0.0, 1.0), late(0.1, 2.0), late(0.2, 3.0))
        finally:
            await b.stop()

    res = run(main())
    assert rec.sizes == [3]
    assert [r.outputs["sum"] for r in res] == [2.0, 4.0, 6.0]


def test_queue_full_raises_then_drains() -> None:
    gate = threading.Event()
    rec = Recorder(gate=gate)

    async def main():
        b = await started(rec, max_batch=1, max_wait_ms=0, queue_size=2)
        try:
            first = asyncio.ensure_future(b.submit(np.zeros(1)))
            while not rec.sizes:  # the worker has taken item 1 and is blocked in predict
                await asyncio.sleep(0.01)
            queued = [asyncio.ensure_future(b.submit(np.ones(1))) for _ in range(2)]
            await asyncio.sleep(0.01)
            assert b.pending == 2
            with pytest.raises(QueueFullError) as err:
                await b.submit(np.zeros(1))
            assert err.value.retry_after_s >= 1
            assert "queue is full" in str(err.value)
            gate.set()
            return await asyncio.gather(first, *queued), b.stats.rejected
        finally:
            gate.set()
            await b.stop()

    res, rejected = run(main())
    assert len(res) == 3 and rejected == 1


def test_incoming_counts_against_the_queue() -> None:
    async def main():
        b = await started(Recorder(), max_batch=4, max_wait_ms=0, queue_size=2)
        try:
            with b.incoming(), b.incoming(), pytest.raises(QueueFullError):
                b.incoming().__enter__()
            with b.incoming():  # capacity is back once the others have left
                pass
            return b.stats.rejected
        finally:
            await b.stop()

    assert run(main()) == 1


def test_worker_survives_engine_exception() -> None:
    rec = Recorder(fail_on={1})

    async def main():
        b = await started(rec, max_batch=4, max_wait_ms=0)
        try:
            with pytest.raises(InferenceError, match="RuntimeError: boom") as err:
                await b.submit(np.zeros(2))
            assert isinstance(err.value.__cause__, RuntimeError)
            ok = await b.submit(np.ones(2))
            return ok, b.running, b.stats.errors
        finally:
            await b.stop()

    ok, running, errors = run(main())
    assert ok.outputs["sum"] == 2.0 and running and errors == 1


def test_bad_output_batch_size_reported() -> None:
    async def main():
        b = await started(lambda x: {"y": np.zeros(len(x) + 1)}, max_batch=4, max_wait_ms=0)
        try:
            with pytest.raises(InferenceError, match="batch size"):
                await b.submit(np.zeros(2))
        finally:
            await b.stop()

    run(main())


def test_stop_fails_waiting_and_refuses_new() -> None:
    gate = threading.Event()
    rec = Recorder(gate=gate)

    async def main():
        b = await started(rec, max_batch=1, max_wait_ms=0, queue_size=8)
        first = asyncio.ensure_future(b.submit(np.zeros(1)))
        while not rec.sizes:
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(b.submit(np.zeros(1)))
        await asyncio.sleep(0.01)
        await b.stop()
        gate.set()
        results = await asyncio.gather(first, second, return_exceptions=True)
        with pytest.raises(BatcherClosedError):
            await b.submit(np.zeros(1))
        return results

    results = run(main())
    assert all(isinstance(r, BatcherClosedError) for r in results)


def test_cancelled_request_leaves_queue() -> None:
    gate = threading.Event()
    rec = Recorder(gate=gate)

    async def main():
        b = await started(rec, max_batch=1, max_wait_ms=0, queue_size=8)
        try:
            first = asyncio.ensure_future(b.submit(np.zeros(1)))
            while not rec.sizes:
                await asyncio.sleep(0.01)
            second = asyncio.ensure_future(b.submit(np.zeros(1)))
            await asyncio.sleep(0.01)
            assert b.pending == 1
            second.cancel()
            await asyncio.sleep(0.01)
            assert b.pending == 0
            gate.set()
            await first
        finally:
            gate.set()
            await b.stop()

    run(main())
    assert rec.sizes == [1]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch=0)
    with pytest.raises(BatcherClosedError):
        run(MicroBatcher(Recorder()).submit(np.zeros(1)))
