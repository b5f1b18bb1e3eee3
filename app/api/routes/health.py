"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app import __version__
from app.api.routing import CheckedRoute
from app.api.state import EnginesDep, LifecycleDep
from app.core.lifecycle import Phase
from app.core.metrics import render_latest

router = APIRouter(tags=["operations"], route_class=CheckedRoute)


class Health(BaseModel):
    status: str = Field(description="ok, or failed when a required engine could not be built.")
    version: str
    phase: Phase


class EngineReport(BaseModel):
    ready: bool
    required: bool
    detail: str
    load_seconds: float | None = None
    info: dict[str, Any] = {}


class Readiness(BaseModel):
    ready: bool
    phase: Phase = Field(description="starting, ready, draining (shutting down) or failed.")
    loading: list[str] = Field(description="What is still loading while starting.")
    detail: str = Field("", description="Why the service failed or is not admitting work.")
    engines: dict[str, EngineReport]


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness: the process answers (from its first second, warm-up included)",
    responses={503: {"model": Health, "description": "A required engine failed to build"}},
)
async def health(lifecycle: LifecycleDep) -> Any:
    body = Health(status="ok", version=__version__, phase=lifecycle.phase)
    if lifecycle.phase is Phase.FAILED:
        body.status = "failed"
        return JSONResponse(status_code=503, content=body.model_dump(mode="json"))
    return body


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Readiness: every required engine is loaded and warmed up, and not shutting down",
    responses={503: {"model": Readiness, "description": "Starting, draining or failed"}},
)
async def ready(engines: EnginesDep, lifecycle: LifecycleDep) -> Any:
    report = Readiness(
        ready=lifecycle.accepting and engines.ready,
        phase=lifecycle.phase,
        loading=[*lifecycle.loading, *engines.loading],
        detail=lifecycle.detail,
        engines={
            name: EngineReport(
                ready=s.ready,
                required=s.required,
                detail=s.detail,
                load_seconds=s.load_seconds,
                info=s.info,
            )
            for name, s in engines.status.items()
        },
    )
    if not report.ready:
        return JSONResponse(status_code=503, content=report.model_dump(mode="json"))
    return report


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics() -> Response:
    body, content_type = render_latest()
    return Response(content=body, media_type=content_type)
