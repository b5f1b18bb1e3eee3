"""The ASGI application: ``app.main:app``; ``create_app(settings)`` for tests and embedding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import __version__
from app.api.errors import install_error_handlers
from app.api.middleware import BodyLimitMiddleware, ObservabilityMiddleware
from app.api.router import api_router
from app.api.security import OPEN_PATHS, ApiKeyMiddleware
from app.core.config import Settings, get_settings
from app.core.engines import EngineRegistry
from app.core.logging import configure_logging
from app.services.startup import build_engines, run_engines
from app.web import pages

DESCRIPTION = """
Planar homographies as a service.

Conventions (everywhere): points are pixel coordinates `(x, y)`, x to the right, y down, origin at
the centre of the top-left pixel (OpenCV's). A matrix `dst_H_src` maps homogeneous source points to
target points, `x_dst ~ H @ x_src`, and is returned with `H[2][2] = 1`. Corner order is
top-left, top-right, bottom-right, bottom-left.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        build_engines(app.state.engines, settings)
        async with run_engines(app.state.engines):  # background workers, stopped on shutdown
            yield

    app = FastAPI(
        title="homography-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by pages.install_web from local assets, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engines = EngineRegistry()
    install_error_handlers(app)
    app.include_router(api_router)
    pages.install_web(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        max_json_bytes=settings.max_json_body_bytes,
    )
    if settings.api_key is not None:
        app.add_middleware(
            ApiKeyMiddleware,
            api_key=settings.api_key.get_secret_value(),
            open_paths=OPEN_PATHS | pages.OPEN_PATHS,
            open_prefixes=pages.OPEN_PREFIXES,
        )
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
