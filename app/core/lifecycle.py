"""The service's life, starting -> ready -> draining (or failed), and the gate that admits work
only while ready. Nothing here knows about HTTP: the middleware of :mod:`app.api.lifecycle` asks
:meth:`Lifecycle.admit`, the lifespan moves the phases, and :func:`drain_on_signals` turns
SIGTERM into a bounded drain.

Admission control per endpoint class (:mod:`app.services.admission`) sits behind this gate: it
only sees requests :meth:`Lifecycle.admit` has let through (and counted in flight), and sheds
them when their class is at its bounds.
"""

from __future__ import annotations

import asyncio
import enum
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import FrameType

import structlog

from app.core.metrics import DRAIN_CUT, IN_FLIGHT, READY, STARTUP_SECONDS

log = structlog.get_logger("app.lifecycle")


class Phase(str, enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


@dataclass(frozen=True)
class Refusal:
    """Why a request is not admitted: ``reason`` is a metric label, ``detail`` a sentence."""

    reason: str
    detail: str
    retry_after_s: int


@dataclass(frozen=True)
class DrainReport:
    in_flight: int  # admitted requests when the drain began
    finished: int  # of those, answered within the bound
    cut: int  # of those, still running at the bound: answered 503 (or aborted if streaming)
    seconds: float


class Lifecycle:
    """Phase of the service plus the count of admitted, unfinished requests.

    Single event loop: every method but the read-only properties runs on the loop's thread.
    """

    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self.detail = ""
        self.loading: list[str] = []  # start-up steps besides the engines (e.g. "api")
        self.in_flight = 0
        self._born = time.perf_counter()
        self._idle = asyncio.Event()
        self._idle.set()
        self._cut: asyncio.Future[None] | None = None

    # phases
    def mark_ready(self) -> None:
        if self.phase is not Phase.STARTING:
            return
        self.phase, self.detail = Phase.READY, ""
        seconds = time.perf_counter() - self._born
        STARTUP_SECONDS.set(seconds)
        READY.set(1)
        log.info("service_ready", seconds=round(seconds, 3))

    def mark_failed(self, detail: str) -> None:
        if self.phase is Phase.DRAINING:  # stopping anyway: say why, keep draining
            log.warning("start_failed_while_draining", detail=detail)
            return
        self.phase, self.detail = Phase.FAILED, detail
        READY.set(0)
        log.error("service_failed", detail=detail)

    @property
    def accepting(self) -> bool:
        return self.phase is Phase.READY

    # admission
    def admit(self) -> Refusal | None:
        """Count a request in (None) or say why it is refused."""
        if self.phase is Phase.READY:
            self.in_flight += 1
            self._idle.clear()
            IN_FLIGHT.inc()
            return None
        if self.phase is Phase.STARTING:
            waiting = ", ".join(self.loading) or "engines"
            return Refusal("starting", f"the service is starting (loading {waiting})", 5)
        if self.phase is Phase.DRAINING:
            return Refusal("draining", "the service is shutting down; retry on another replica", 1)
        return Refusal("failed", f"the service failed to start: {self.detail}", 30)

    def release(self) -> None:
        """Count an admitted request out."""
        self.in_flight -= 1
        IN_FLIGHT.dec()
        if self.in_flight == 0:
            self._idle.set()

    def cut_signal(self) -> asyncio.Future[None]:
        """A future that completes when the drain bound passes: admitted requests still running
        then are cut (their handler stops waiting and answers 503)."""
        if self._cut is None:
            self._cut = asyncio.get_running_loop().create_future()
        return self._cut

    # shutdown
    async def drain(self, timeout_s: float) -> DrainReport:
        """Stop admitting, wait up to ``timeout_s`` for admitted requests, cut the rest."""
        start = time.perf_counter()
        self.phase, self.detail = Phase.DRAINING, "shutting down"
        READY.set(0)
        in_flight = self.in_flight
        log.info("drain_started", in_flight=in_flight, timeout_s=timeout_s)
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        cut = self.in_flight
        if cut:
            DRAIN_CUT.inc(cut)
            fut = self.cut_signal()
            if not fut.done():
                fut.set_result(None)
            # the cut handlers answer at once; give them a moment to write their 503
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 1.0)
        report = DrainReport(in_flight, in_flight - cut, cut, round(time.perf_counter() - start, 3))
        (log.warning if cut else log.info)(
            "drain_complete",
            in_flight=report.in_flight,
            finished=report.finished,
            cut=report.cut,
            seconds=report.seconds,
        )
        return report


@contextmanager
def drain_on_signals(
    lifecycle: Lifecycle,
    timeout_s: float,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> Iterator[None]:
    """While open, the first SIGTERM/SIGINT drains ``lifecycle`` (at most ``timeout_s``) and then
    hands the signal to the handler that was there before (uvicorn's: close the sockets, run
    the lifespan's shutdown, exit). A second signal goes straight to that handler.

    Signals can only be caught in the main thread: elsewhere (a TestClient runs the lifespan in
    a thread of its own) nothing is installed and callers drain with :meth:`Lifecycle.drain`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in signals}
    draining: list[asyncio.Task[None]] = []  # the drain task (kept referenced), once signalled
    signalled = False

    def pass_on(sig: int, frame: FrameType | None) -> None:
        prev = previous[signal.Signals(sig)]
        if callable(prev):
            prev(sig, frame)
        else:  # SIG_DFL / SIG_IGN: put it back and let the process act on the signal
            signal.signal(sig, prev)
            signal.raise_signal(sig)

    async def drain_then_pass_on(sig: int) -> None:
        await lifecycle.drain(timeout_s)
        pass_on(sig, None)

    def handler(sig: int, frame: FrameType | None) -> None:
        nonlocal signalled
        if signalled:  # impatient: stop now
            pass_on(sig, frame)
            return
        signalled = True
        log.info("signal_received", signal=signal.Signals(sig).name)
        loop.call_soon_threadsafe(
            lambda: draining.append(loop.create_task(drain_then_pass_on(sig)))
        )

    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, prev in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, prev)
