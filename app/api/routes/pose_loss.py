"""/pose-loss: the homography-based camera pose loss of a batch of (estimated, true) poses."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import SettingsDep
from app.api.responses import json_response
from app.api.routing import CheckedRoute
from app.api.schemas.pose_loss import (
    PoseLossGradients,
    PoseLossRequest,
    PoseLossResponse,
    PoseSet,
)
from app.core.config import Settings
from app.services.admission import offload
from app.services.pose_loss import Poses, compute_pose_loss

router = APIRouter(tags=["pose loss"], route_class=CheckedRoute)

DESCRIPTION = """Homography-based pose loss (Boittiaux et al., RA-L 2022): for each pair, the mean
over planes facing the true camera at depths x in [xmin, xmax] of ‖I − H(x)‖_F², in closed form
`rotation + cross + translation`. Positions are camera centres in world coordinates; rotations are
quaternions (w, x, y, z) or 3×3 matrices, world-to-camera (`convention: world_to_camera`, the
paper's) or camera-to-world. Computed in float64. Invalid input answers 422 naming the field;
more depth samples in all than the server's limit, 413."""


def _poses(side: PoseSet) -> Poses:
    return Poses(side.position, side.quaternion, side.rotation)


@router.post(
    "/pose-loss",
    response_model=PoseLossResponse,
    summary="Homography-based loss between estimated and true camera poses",
    description=DESCRIPTION,
    responses={
        413: {"description": "More depth samples than the server accepts"},
        422: {"description": "Invalid input; `detail[].loc` names the field"},
    },
)
async def pose_loss(req: PoseLossRequest, settings: SettingsDep) -> Response:
    return await offload(_answer, req, settings)


def _answer(req: PoseLossRequest, settings: Settings) -> Response:
    """The loss and the serialised answer, in the pose-loss class's worker thread."""
    out = compute_pose_loss(
        _poses(req.estimated),
        _poses(req.true),
        settings,
        xmin=req.xmin,
        xmax=req.xmax,
        depths=req.depths,
        depth_mode=req.depth_mode,
        convention=req.convention,
        gradients=req.gradients,
    )
    grads = None
    if out.grad_position is not None and out.grad_rotation is not None:
        grads = PoseLossGradients(
            position=out.grad_position.tolist(),
            **{out.rotation_kind: out.grad_rotation.tolist()},
        )
    resp = PoseLossResponse(
        count=out.count,
        mean=float(out.loss.mean()),
        loss=out.loss.tolist(),
        rotation=out.rotation.tolist(),
        cross=out.cross.tolist(),
        translation=out.translation.tolist(),
        xmin=out.xmin.tolist(),
        xmax=out.xmax.tolist(),
        gradients=grads,
    )
    return json_response(resp)
