"""What the lifespan builds, once, before the service reports ready."""

from __future__ import annotations

from app.core.config import Settings
from app.core.engines import EngineRegistry


def build_engines(engines: EngineRegistry, settings: Settings) -> None:
    """Build and warm every engine; optional ones report why they are absent."""
    from app.geometry.warmup import warm_up_solvers

    engines.build("solvers", warm_up_solvers, required=True)
