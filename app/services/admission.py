"""Admission control per endpoint class, and the worker threads each class runs its CPU work on.

A request of a class (``estimate``, ``refine``, ``solve``, ``solve_batch``, ``pose_loss``) is
admitted for its whole life (body, parsing, work, answer) when fewer than ``max_in_flight`` of its
class are in flight; otherwise it waits, first come first served, at most ``max_wait_s`` and only
while fewer than ``max_waiting`` wait. Past that it is refused at once with
:class:`OverloadedError` (``unavailable``, with a ``retry_after`` derived from the class's
measured service time), so that latency stays bounded instead of queueing without end.

Each class owns its :class:`~concurrent.futures.ThreadPoolExecutor`: :func:`offload` runs a
function on the executor of the class the current request was admitted to, so a flood of one
class queues behind its own threads and never takes another's. No HTTP here (the ASGI side is
``app.api.admission``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import math
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from app.core.config import Settings
from app.core.errors import DomainError

__all__ = [
    "Admission",
    "ClassLimits",
    "Gate",
    "OverloadedError",
    "SpareThreads",
    "admission_wait_s",
    "default_limits",
    "limits_from_settings",
    "offload",
    "running_alone",
]

T = TypeVar("T")

_current: contextvars.ContextVar[Gate | None] = contextvars.ContextVar(
    "admission_gate", default=None
)
_admission: contextvars.ContextVar[Admission | None] = contextvars.ContextVar(
    "admission", default=None
)
_waited: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "admission_wait", default=None
)


class OverloadedError(DomainError):
    """The class is at its in-flight and waiting bounds (or the wait ran out)."""

    def __init__(self, name: str, retry_after: float, why: str) -> None:
        super().__init__(
            f"{name} is overloaded ({why}); retry in {math.ceil(retry_after)} s",
            "unavailable",
            retry_after=retry_after,
        )
        self.endpoint_class = name


@dataclass(frozen=True)
class ClassLimits:
    """``max_in_flight`` requests run at once, ``max_waiting`` more wait at most ``max_wait_s``;
    ``threads`` run the class's CPU work (default: ``max_in_flight``)."""

    max_in_flight: int
    max_waiting: int
    max_wait_s: float
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.max_waiting < 0 or self.max_wait_s < 0:
            raise ValueError("need max_in_flight >= 1, max_waiting >= 0, max_wait_s >= 0")


def default_limits(cpus: int | None = None, *, batching: bool = False) -> dict[str, ClassLimits]:
    """Limits sized to the machine: the long CPU-bound classes get fewer threads than there are
    cores (refine half, estimate all but one), so that a flood of them leaves CPU to the others
    and an accepted request's latency stays near its unloaded latency; the cheap classes get more
    room.

    ``estimate`` admits as many requests as it has threads: on a CPU the network's cost per pair
    does not fall with the batch, so a request admitted beyond the threads would only queue for
    them inside, every stage of every admitted request slowed alike (3.9x the lone request's
    server time at 8 clients on 2 cores, against 1.0x this way, at a higher throughput:
    ``bench/estimate.py``); the others wait at the door, in order, bounded (a mixed load, in
    ``bench/load.py``, then gets more quick 503s, a lower p95 and more answers). With ``batching``
    (the network runs on an accelerator, where a batch costs little more than a pair) it admits
    2 per core, so that micro-batches form."""
    n = max(1, cpus or os.cpu_count() or 1)
    estimate_threads = max(1, n - 1)
    return {
        "estimate": ClassLimits(
            max_in_flight=2 * n if batching else estimate_threads,
            max_waiting=4 * n,
            max_wait_s=0.25,
            threads=estimate_threads,
        ),
        "refine": ClassLimits(max_in_flight=max(1, n // 2), max_waiting=n, max_wait_s=0.5),
        "solve": ClassLimits(max_in_flight=2 * n, max_waiting=8 * n, max_wait_s=0.25, threads=n),
        "solve_batch": ClassLimits(max_in_flight=1, max_waiting=2, max_wait_s=2.0),
        "pose_loss": ClassLimits(
            max_in_flight=2 * n, max_waiting=8 * n, max_wait_s=0.25, threads=n
        ),
    }


def limits_from_settings(settings: Settings, *, batching: bool = False) -> dict[str, ClassLimits]:
    """:func:`default_limits` for ``settings.admission_cpus`` (0: this machine's) and
    ``batching``, with the overrides of ``settings.admission`` applied field by field."""
    limits = default_limits(settings.admission_cpus or None, batching=batching)
    for name, override in settings.admission.items():
        changes = {k: v for k, v in override.model_dump().items() if v is not None}
        limits[name] = replace(limits[name], **changes)
    return limits


class LoopLag:
    """How far behind the event loop runs: a timer every ``interval`` seconds notes how late it
    fires; ``lag`` is the average of that over about 20 samples (seconds), so that one late
    timer (a busy host, a pause) is not taken for a backlog. A loop saturated by cheap requests
    (parsing, answering, shedding) shows it first, before any class reaches its bounds."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self.lag = interval, 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.interval)
            late = max(0.0, loop.time() - t - self.interval)
            self.lag = 0.95 * self.lag + 0.05 * late

    def start(self) -> None:
        """Watch the running loop (again, if the app is started on another loop)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._watch(), name="loop-lag")
        self.lag = 0.0

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            if task.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.lag = 0.0


@dataclass
class GateStats:
    admitted: int = 0
    shed: int = 0
    timed_out: int = 0
    service_s: float = 0.0  # exponential average of admitted requests' service time


@dataclass
class Gate:
    """One endpoint class: its bounds, its executor and its measurements."""

    name: str
    limits: ClassLimits
    stats: GateStats = field(default_factory=GateStats)
    loop: LoopLag | None = None
    max_loop_lag_s: float = math.inf

    def __post_init__(self) -> None:
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def threads(self) -> int:
        return self.limits.threads or self.limits.max_in_flight

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The class's worker threads (started on first use, again after :meth:`shutdown`)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.threads, thread_name_prefix=f"work-{self.name}"
            )
        return self._executor

    def shutdown(self) -> None:
        """Stop the threads (queued work is cancelled); a later request starts new ones."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after(self) -> float:
        """Seconds after which the backlog should have drained: the measured service time
        times the queue ahead over the slots (at least 1 s)."""
        ahead = self.in_flight + len(self._waiters) + 1
        service = self.stats.service_s or 1.0
        return max(1.0, service * ahead / self.limits.max_in_flight)

    def _refuse(self, why: str) -> OverloadedError:
        self.stats.shed += 1
        return OverloadedError(self.name, self.retry_after(), why)

    async def acquire(self) -> None:
        """Take a slot: at once, or after a bounded wait; :class:`OverloadedError` otherwise,
        and at once whatever the slots while the event loop lags more than ``max_loop_lag_s``
        (so that probes and the other classes keep being answered)."""
        if self.loop is not None and self.loop.lag > self.max_loop_lag_s:
            self.stats.shed += 1
            raise OverloadedError(
                self.name, 1.0, f"the server is {self.loop.lag * 1e3:.0f} ms behind"
            )
        if self.in_flight < self.limits.max_in_flight and not self._waiters:
            self.in_flight += 1
            self.stats.admitted += 1
            return
        if len(self._waiters) >= self.limits.max_waiting or self.limits.max_wait_s <= 0:
            raise self._refuse(f"{self.in_flight} in flight, {len(self._waiters)} waiting")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.limits.max_wait_s)
        except asyncio.TimeoutError:
            if waiter.done() and not waiter.cancelled():  # granted just as the wait ran out
                self.stats.admitted += 1
                return
            waiter.cancel()
            self.stats.timed_out += 1
            raise self._refuse(f"no slot within {self.limits.max_wait_s:g} s") from None
        except BaseException:  # the client went away while waiting
            if waiter.done() and not waiter.cancelled():
                self.release(None)  # the slot was handed over: pass it on
            else:
                waiter.cancel()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        self.stats.admitted += 1

    def grant_free_slots(self) -> None:
        """Hand the free slots (a request left, or the bound was raised) to the oldest live
        waiters."""
        while self._waiters and self.in_flight < self.limits.max_in_flight:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def release(self, seconds: float | None) -> None:
        """Free a slot (hand it to the oldest live waiter); ``seconds``: the request's service
        time, folded into the average that :meth:`retry_after` uses."""
        if seconds is not None:
            s = self.stats
            s.service_s = seconds if not s.service_s else 0.8 * s.service_s + 0.2 * seconds
        self.in_flight -= 1
        self.grant_free_slots()

    def info(self) -> dict[str, Any]:
        return {
            "max_in_flight": self.limits.max_in_flight,
            "max_waiting": self.limits.max_waiting,
            "max_wait_s": self.limits.max_wait_s,
            "threads": self.threads,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "admitted": self.stats.admitted,
            "shed": self.stats.shed,
            "service_ms": round(self.stats.service_s * 1e3, 3),
        }


class Admission:
    """The gates of every endpoint class, built once per app."""

    def __init__(self, limits: dict[str, ClassLimits], max_loop_lag_s: float = math.inf) -> None:
        self.loop = LoopLag()
        self.gates = {
            name: Gate(name, lim, loop=self.loop, max_loop_lag_s=max_loop_lag_s)
            for name, lim in limits.items()
        }

    def start(self) -> None:
        """Start watching the running event loop (app lifespan)."""
        self.loop.start()

    def relimit(self, limits: dict[str, ClassLimits]) -> None:
        """New bounds for the named classes (start-up, once the engines say what pays: see
        :func:`default_limits`); their thread counts stay as built."""
        for name, lim in limits.items():
            gate = self.gates[name]
            gate.limits = replace(lim, threads=gate.threads)
            gate.grant_free_slots()

    def __getitem__(self, name: str) -> Gate:
        return self.gates[name]

    @contextlib.asynccontextmanager
    async def slot(self, name: str) -> AsyncIterator[Gate]:
        """Hold a slot of class ``name`` for the block (:class:`OverloadedError` on entry when
        none is to be had), with :func:`offload` directed to that class's executor."""
        gate = self.gates[name]
        arrived = time.perf_counter()
        await gate.acquire()
        start = time.perf_counter()
        token, app_token = _current.set(gate), _admission.set(self)
        wait_token = _waited.set(start - arrived)
        try:
            yield gate
        finally:
            _waited.reset(wait_token)
            _admission.reset(app_token)
            _current.reset(token)
            gate.release(time.perf_counter() - start)

    def in_flight(self) -> int:
        """Requests admitted and not yet finished, every class together."""
        return sum(g.in_flight for g in self.gates.values())

    async def stop(self) -> None:
        """Stop the loop watch and every class's threads."""
        await self.loop.stop()
        self.shutdown()

    def shutdown(self) -> None:
        for gate in self.gates.values():
            gate.shutdown()


async def offload(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on the current request class's threads (the event loop's default
    executor outside a request), context variables carried over, as :func:`asyncio.to_thread`."""
    gate = _current.get()
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(None if gate is None else gate.executor, call)


def admission_wait_s() -> float | None:
    """Seconds the current request waited for its slot (None outside a request)."""
    return _waited.get()


def running_alone() -> bool:
    """True when the current request is the only one the app has in flight, whatever its
    class: its work may then borrow the cores that concurrent requests would need (False
    outside a request)."""
    admission = _admission.get()
    return admission is not None and admission.in_flight() <= 1


class SpareThreads:
    """Side tasks of a request that runs alone (:func:`running_alone`) on idle threads:
    :meth:`start` runs ``fn`` on a spare thread when the request is alone and one is free, and
    otherwise leaves it to the caller, so that a lone request uses the idle cores (the second
    image of a pair decodes beside the first) while concurrent ones stay on their class's
    threads (:func:`default_limits` keeps cores free for the other classes)."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers, self.name = workers, name
        self._free = threading.Semaphore(workers)
        self._pool: ThreadPoolExecutor | None = None

    def start(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Callable[[], T]:
        """A callable that returns ``fn(*args, **kwargs)``: already running on a spare thread
        (context variables carried over), or run by the caller when it calls it."""
        inline = functools.partial(fn, *args, **kwargs)
        if not running_alone() or not self._free.acquire(blocking=False):
            return inline
        call = functools.partial(contextvars.copy_context().run, inline)

        def run() -> T:
            try:
                return call()
            finally:
                self._free.release()

        if self._pool is None:  # started on first use, again after shutdown
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
        try:
            return self._pool.submit(run).result
        except RuntimeError:  # shut down meanwhile
            self._free.release()
            return inline

    def shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
