"""What the lifespan builds, once, before the service reports ready."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

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


def build_engines(engines: EngineRegistry, settings: Settings) -> None:
    """Build and warm every engine; optional ones report why they are absent."""
    from app.geometry.warmup import warm_up_solvers
    from app.services import estimate

    engines.build(SOLVERS, warm_up_solvers, required=True)
    engines.build(PARSERS, warm_up_parsers, required=True)
    from app.services.pose_loss import warm_up_pose_loss

    engines.build(POSE_LOSS, partial(warm_up_pose_loss, settings), required=True)
    # /refine: the photometric aligner (optional: /refine still runs on CPU without it)
    from app.services.refine import build_aligner

    engines.build(ALIGNER, partial(build_aligner, settings), required=False)
    # /estimate: a model file that is present must load (sha256 checked) before /ready; an
    # absent one leaves /estimate answering 503 and /ready naming the missing file.
    engines.build(
        ESTIMATOR,
        partial(estimate.build_estimator, settings.model_path, settings),
        required=settings.model_path.exists(),
    )
    cls_path = settings.classification_model_path
    if cls_path is not None:
        engines.build(
            CLASSIFICATION_ESTIMATOR,
            partial(estimate.build_estimator, cls_path, settings),
            required=cls_path.exists(),
        )


class Parsers:
    """Marker object for the readiness report: the request pre-scanners are compiled."""

    def __init__(self) -> None:
        self.info = {"json_scan": "numba nogil"}


def warm_up_parsers() -> Parsers:
    from app.services.json_scan import warm_up

    warm_up()
    return Parsers()


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
