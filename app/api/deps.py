"""``Annotated`` dependencies: the settings, the engine registry and the engines the routes use
(built once at start-up, :mod:`app.services.startup`). Routes declare what they need, e.g.
``estimator: EstimatorDep``; nothing else looks engines up by name."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from app.core.config import Settings
from app.core.engines import EngineRegistry
from app.core.errors import DomainError
from app.services.estimate import Estimator
from app.services.refine import Aligner
from app.services.startup import ALIGNER, CLASSIFICATION_ESTIMATOR, ESTIMATOR

__all__ = [
    "AlignerDep",
    "EnginesDep",
    "EstimatorDep",
    "ModelKind",
    "SettingsDep",
]

ModelKind = Literal["regression", "classification"]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _engines(request: Request) -> EngineRegistry:
    return request.app.state.engines


SettingsDep = Annotated[Settings, Depends(_settings)]
EnginesDep = Annotated[EngineRegistry, Depends(_engines)]

ModelQuery = Annotated[
    ModelKind | None,
    Query(description="Which loaded model to use; default: the one at model_path."),
]


def _estimator(engines: EnginesDep, model: ModelQuery = None) -> Estimator:
    """The estimator for ``model`` (None: the default ``model_path`` one): ``unavailable`` when
    the default model is not loaded, ``invalid`` naming ``model`` when the one asked for is not."""
    names = [ESTIMATOR] if model is None else [ESTIMATOR, CLASSIFICATION_ESTIMATOR]
    for name in names:
        obj = engines.get(name)
        if isinstance(obj, Estimator) and (model is None or obj.kind == model):
            return obj
    reasons = [f"{n}: {engines.status[n].detail}" for n in names if n in engines.status]
    hint = "; ".join(reasons) if reasons else "not configured"
    if model is not None:  # the client asked for a model this server does not serve
        raise DomainError(
            f"model={model}: no such model is loaded here ({hint})", "invalid", "model"
        )
    raise DomainError(
        f"/estimate is unavailable: the HomographyNet model is not loaded ({hint})", "unavailable"
    )


def _aligner(engines: EnginesDep) -> Aligner | None:
    """The start-up aligner, or None when it did not build (the services then align on the
    CPU in the request's thread)."""
    obj = engines.get(ALIGNER)
    return obj if isinstance(obj, Aligner) else None


EstimatorDep = Annotated[Estimator, Depends(_estimator)]
AlignerDep = Annotated[Aligner | None, Depends(_aligner)]
