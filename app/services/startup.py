"""What the lifespan builds, once, before the service reports ready."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any, NamedTuple

from app.core.config import Settings
from app.core.engines import EngineRegistry

# registry names: the solver kernels, the /refine aligner, and the /estimate HomographyNet
# estimators (settings.model_path and settings.classification_model_path); routes get them
# through app.api.deps
SOLVERS = "solvers"
PARSERS = "parsers"
POSE_LOSS = "pose_loss"
ALIGNER = "aligner"
ESTIMATOR = "homographynet"
CLASSIFICATION_ESTIMATOR = "homographynet_classification"


class EngineSpec(NamedTuple):
    name: str
    builder: Callable[[], Any]
    required: bool


def engine_plan(settings: Settings) -> list[EngineSpec]:
    """Every engine to build, in order; optional ones report why they are absent. Cheap: the
    builders import the numerical stack when called."""

    def solvers() -> Any:
        from app.geometry.warmup import warm_up_solvers

        return warm_up_solvers()

    def parsers() -> Any:
        from app.services.json_scan import warm_up

        warm_up()
        return Parsers()

    def pose_loss() -> Any:
        from app.services.pose_loss import warm_up_pose_loss

        return warm_up_pose_loss(settings)

    def aligner() -> Any:
        from app.services.refine import build_aligner

        return build_aligner(settings)

    def estimator(path: Any) -> Any:
        from app.services.estimate import build_estimator

        return build_estimator(path, settings)

    plan = [
        EngineSpec(SOLVERS, solvers, True),
        # the request pre-scanners (JSON) and the /pose-loss kernels, compiled before /ready
        EngineSpec(PARSERS, parsers, True),
        EngineSpec(POSE_LOSS, pose_loss, True),
        # /refine: the photometric aligner (optional: /refine still runs on CPU without it)
        EngineSpec(ALIGNER, aligner, False),
        # /estimate: a model file that is present must load (sha256 checked) before /ready; an
        # absent one leaves /estimate answering 503 and /ready naming the missing file.
        EngineSpec(
            ESTIMATOR, partial(estimator, settings.model_path), settings.model_path.exists()
        ),
    ]
    cls_path = settings.classification_model_path
    if cls_path is not None:
        plan.append(
            EngineSpec(CLASSIFICATION_ESTIMATOR, partial(estimator, cls_path), cls_path.exists())
        )
    return plan


def build_engines(engines: EngineRegistry, plan: list[EngineSpec]) -> None:
    """Build and warm every engine of ``plan`` (blocking: run it off the event loop)."""
    for spec in plan:
        engines.expect(spec.name, required=spec.required)
    for spec in plan:
        engines.build(spec.name, spec.builder, required=spec.required)


class Parsers:
    """Marker object for the readiness report: the request pre-scanners are compiled."""

    def __init__(self) -> None:
        self.info = {"json_scan": "numba nogil"}


@asynccontextmanager
async def run_engines(engines: EngineRegistry) -> AsyncIterator[None]:
    """Start the engines' background workers (objects with async ``start``/``stop``, e.g. the
    /estimate micro-batcher) for the app's lifetime; stop them, newest first, on shutdown."""
    started = []
    try:
        for name in list(engines.status):
            obj = engines.get(name)
            if obj is not None and hasattr(obj, "start") and hasattr(obj, "stop"):
                await obj.start()
                started.append(obj)
        yield
    finally:
        for obj in reversed(started):
            await obj.stop()


async def in_daemon_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a daemon thread of its own, awaited without blocking the event loop.

    Not the loop's default executor: a shutdown waits for that executor's threads, and a stop
    (SIGTERM) during a long first compilation must not wait for it to finish."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:
            result, error = None, exc
        with suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(
        target=run, name=f"startup-{getattr(fn, '__name__', 'task')}", daemon=True
    ).start()
    return await done
