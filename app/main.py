"""The ASGI application: ``app.main:app``; ``create_app(settings)`` for tests and embedding.

Importing this module is light (no torch, no ONNX Runtime, no Numba): the server listens within
a second, answers ``/health``, the demo page and the docs at once and ``/ready`` 503 naming what
is still loading, while the work routes are imported and the engines built and warmed in a
background thread."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.api.admission import AdmissionMiddleware
from app.api.errors import install_error_handlers
from app.api.lifecycle import LifecycleGateMiddleware
from app.api.middleware import PROBE_PATHS, BodyLimitMiddleware, ObservabilityMiddleware
from app.api.router import probe_router, work_router
from app.api.security import ApiKeyMiddleware
from app.core.config import Settings, get_settings
from app.core.engines import EngineRegistry
from app.core.lifecycle import Lifecycle, drain_on_signals
from app.core.logging import configure_logging
from app.services.admission import Admission, limits_from_settings
from app.services.startup import (
    ESTIMATOR,
    build_engines,
    engine_plan,
    in_daemon_thread,
    run_engines,
)
from app.web import pages

DESCRIPTION = """
Planar homographies as a service.

Conventions (everywhere): points are pixel coordinates `(x, y)`, x to the right, y down, origin at
the centre of the top-left pixel (OpenCV's). A matrix `dst_H_src` maps homogeneous source points to
target points, `x_dst ~ H @ x_src`, and is returned with `H[2][2] = 1`. Corner order is
top-left, top-right, bottom-right, bottom-left.
"""


def _import_work_routes(settings: Settings):  # -> APIRouter (the slow import: torch & co.)
    from app.geometry.kernel_cache import prepare_kernel_cache

    prepare_kernel_cache()  # before the kernels are imported: Numba picks its cache then
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    return work_router()


async def _start(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    """Import the work routes, build and warm the engines, start their workers: ready."""
    lifecycle: Lifecycle = app.state.lifecycle
    engines: EngineRegistry = app.state.engines
    plan = engine_plan(settings)
    for spec in plan:
        engines.expect(spec.name, required=spec.required)
    lifecycle.loading = ["routes"]
    try:
        if not app.state.work_routes_mounted:  # once per app, whatever the lifespan runs
            app.include_router(await in_daemon_thread(_import_work_routes, settings))
            app.state.work_routes_mounted = True
            app.openapi_schema = None  # regenerated with the work routes
        lifecycle.loading = []
        await in_daemon_thread(build_engines, engines, plan)
        estimator = engines.get(ESTIMATOR)
        if estimator is not None and estimator.batching_pays:  # admit enough to fill batches
            app.state.admission.relimit(limits_from_settings(settings, batching=True))
        await stack.enter_async_context(run_engines(engines))  # workers, stopped on shutdown
        # the start-up heap (torch, ONNX Runtime, models, compiled kernels: millions of objects)
        # is permanent: keep it out of the cyclic collector, whose full passes would otherwise
        # scan it while a request allocates (a pause of the whole process, event loop included)
        gc.freeze()
        app.state.admission.start()  # the loop-lag watch, from a clean slate (not the warm-up's)
    except Exception as exc:
        failed = [
            n
            for n, st in engines.status.items()
            if st.required and not st.ready and n not in engines.loading
        ]
        lifecycle.mark_failed(f"{''.join(f'{n}: ' for n in failed[:1])}{type(exc).__name__}: {exc}")
        raise
    lifecycle.mark_ready()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    admission = Admission(limits_from_settings(settings), settings.admission_max_loop_lag_ms / 1e3)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.lifecycle = Lifecycle()
        app.state.engines = EngineRegistry()
        async with AsyncExitStack() as stack:
            stack.push_async_callback(admission.stop)  # last out: after the engines' workers
            starting = asyncio.create_task(_start(app, settings, stack))
            if settings.warm_up_in_background:
                starting.add_done_callback(lambda t: t.cancelled() or t.exception())
            else:
                await starting  # a failure stops the server from starting
            with drain_on_signals(app.state.lifecycle, settings.drain_seconds):
                try:
                    yield
                finally:
                    starting.cancel()
                    await asyncio.gather(starting, return_exceptions=True)

    app = FastAPI(
        title="homography-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by pages.install_web from local assets, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.lifecycle = Lifecycle()  # replaced, fresh, by each lifespan run
    app.state.engines = EngineRegistry()
    app.state.work_routes_mounted = False
    app.state.admission = admission
    install_error_handlers(app)
    # served from the first second, warm-up and drain included: the probes, the demo page and
    # the docs (the work routes join once imported, see _start)
    app.include_router(probe_router)
    pages.install_web(app)
    public = {"open_paths": PROBE_PATHS | pages.OPEN_PATHS, "open_prefixes": pages.OPEN_PREFIXES}
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        max_json_bytes=settings.max_json_body_bytes,
    )
    # per endpoint class (work routes only: probes, pages and static files have none): a slot
    # or a 503 + Retry-After at once; outside the body limit, so a shed body is never read
    app.add_middleware(AdmissionMiddleware, admission=admission)
    # outside admission: while starting or draining, work gets the lifecycle's 503 and takes no
    # slot; inside the API key check: an unauthenticated request is refused (401) whatever the
    # phase, and an unauthenticated flood takes no slot
    app.add_middleware(LifecycleGateMiddleware, **public)
    if settings.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key.get_secret_value(), **public)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(ObservabilityMiddleware)
    return app


app = create_app()
