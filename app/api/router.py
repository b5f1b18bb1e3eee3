"""All routers of the service, in one place."""

from fastapi import APIRouter

from app.api.routes import estimate, health, pose_loss, refine, solve

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(solve.router)
api_router.include_router(estimate.router)
api_router.include_router(pose_loss.router)
api_router.include_router(refine.router)
