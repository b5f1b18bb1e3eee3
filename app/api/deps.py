"""``Annotated`` dependencies: the settings, the engine registry, the lifecycle (defined, light,
in :mod:`app.api.state`) and the engines the routes use (built once at start-up,
:mod:`app.services.startup`). Routes declare what they need, e.g. ``estimator: EstimatorDep``;
nothing else looks engines up by name. Importing this module imports the numerical stack: only
the work routes do, off the event loop (:func:`app.api.router.work_router`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query

from app.api.state import EnginesDep, LifecycleDep, SettingsDep
from app.core.errors import DomainError
from app.services.estimate import Estimator
from app.services.refine import Aligner
from app.services.startup import ALIGNER, CLASSIFICATION_ESTIMATOR, ESTIMATOR

__all__ = [
    "AlignerDep",
    "EnginesDep",
    "EstimatorDep",
    "LifecycleDep",
    "ModelKind",
    "SettingsDep",
]

ModelKind = Literal["regression", "classification"]

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
