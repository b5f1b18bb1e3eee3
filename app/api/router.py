"""All routers of the service, in one place: the probes, served from the first second, and the
work routes, which import the numerical stack (torch, ONNX Runtime, OpenCV, the Numba kernels:
seconds) and are mounted once that import is done."""

from fastapi import APIRouter

from app.api.routes import health

probe_router = health.router


def work_router() -> APIRouter:
    """The routes that do the work (the import is the slow part: call it off the event loop)."""
    from app.api.routes import estimate, pose_loss, refine, solve

    router = APIRouter()
    for module in (solve, estimate, pose_loss, refine):
        router.include_router(module.router)
    return router
