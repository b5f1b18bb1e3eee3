"""Engines built once at start-up (JIT-compiled solvers, ONNX session, aligner), with the
status that ``/ready`` reports. Nothing here knows about HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("app.engines")


@dataclass
class EngineStatus:
    name: str
    required: bool
    ready: bool = False
    detail: str = "not started"
    load_seconds: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


class EngineRegistry:
    """Builds each engine once, keeps the object and its status."""

    def __init__(self) -> None:
        self._objects: dict[str, Any] = {}
        self.status: dict[str, EngineStatus] = {}

    def expect(self, name: str, *, required: bool = True) -> None:
        """Announce an engine before it is built, so that readiness names it as waiting."""
        self.status[name] = EngineStatus(name=name, required=required, detail="waiting")

    def build(self, name: str, builder: Callable[[], Any], *, required: bool = True) -> Any:
        status = EngineStatus(name=name, required=required, detail="loading")
        self.status[name] = status
        start = time.perf_counter()
        try:
            obj = builder()
        except Exception as exc:  # an optional engine may be absent; report why
            status.detail = f"{type(exc).__name__}: {exc}"
            log.warning("engine_failed", engine=name, error=status.detail, required=required)
            if required:
                raise
            return None
        status.ready, status.detail = True, "loaded"
        status.load_seconds = round(time.perf_counter() - start, 3)
        status.info = dict(getattr(obj, "info", {}) or {})
        self._objects[name] = obj
        log.info("engine_ready", engine=name, seconds=status.load_seconds)
        return obj

    def get(self, name: str) -> Any | None:
        return self._objects.get(name)

    @property
    def loading(self) -> list[str]:
        """Engines announced or being built, not yet loaded nor failed."""
        return [n for n, s in self.status.items() if s.detail in ("waiting", "loading")]

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self.status.values() if s.required)
