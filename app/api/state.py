"""The app's state as ``Annotated`` dependencies: the settings, the engine registry and the
lifecycle. Light on purpose (no numerical stack): the probes import them from the first second,
before the work routes and the engines load. :mod:`app.api.deps` re-exports them beside the
engine dependencies the work routes use."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.core.config import Settings
from app.core.engines import EngineRegistry
from app.core.lifecycle import Lifecycle

__all__ = ["EnginesDep", "LifecycleDep", "SettingsDep"]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _engines(request: Request) -> EngineRegistry:
    return request.app.state.engines


def _lifecycle(request: Request) -> Lifecycle:
    return request.app.state.lifecycle


SettingsDep = Annotated[Settings, Depends(_settings)]
EnginesDep = Annotated[EngineRegistry, Depends(_engines)]
LifecycleDep = Annotated[Lifecycle, Depends(_lifecycle)]
