"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app import __version__
from app.api.deps import EnginesDep
from app.api.routing import CheckedRoute
from app.core.metrics import render_latest

router = APIRouter(tags=["operations"], route_class=CheckedRoute)


class Health(BaseModel):
    status: str
    version: str


class EngineReport(BaseModel):
    ready: bool
    required: bool
    detail: str
    load_seconds: float | None = None
    info: dict[str, Any] = {}


class Readiness(BaseModel):
    ready: bool
    engines: dict[str, EngineReport]


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    return Health(status="ok", version=__version__)


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Readiness: every required engine is loaded and warmed up",
    responses={503: {"model": Readiness, "description": "Not ready yet"}},
)
async def ready(engines: EnginesDep) -> Any:
    report = Readiness(
        ready=engines.ready,
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
        return JSONResponse(status_code=503, content=report.model_dump())
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
