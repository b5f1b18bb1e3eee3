"""Dependency aliases for shared state (settings, engines)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.core.config import Settings
from app.core.engines import EngineRegistry
from app.core.lifecycle import Lifecycle


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _engines(request: Request) -> EngineRegistry:
    return request.app.state.engines


def _lifecycle(request: Request) -> Lifecycle:
    return request.app.state.lifecycle


SettingsDep = Annotated[Settings, Depends(_settings)]
EnginesDep = Annotated[EngineRegistry, Depends(_engines)]
LifecycleDep = Annotated[Lifecycle, Depends(_lifecycle)]
