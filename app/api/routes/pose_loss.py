"""/pose-loss: the homography-based camera pose loss of a batch of (estimated, true) poses."""

from __future__ import annotations

import numpy as np
import torch
from fastapi import APIRouter

from app.api.deps import SettingsDep
from app.api.errors import InputError
from app.api.schemas.pose_loss import (
    PoseLossGradients,
    PoseLossRequest,
    PoseLossResponse,
    PoseSet,
)
from app.geometry.pose_loss import (
    PoseInputError,
    check_pose_loss_inputs,
    depth_range_from_samples,
    homography_pose_loss_terms,
)

router = APIRouter(tags=["pose loss"])

DESCRIPTION = """Homography-based pose loss (Boittiaux et al., RA-L 2022): for each pair, the mean
over planes facing the true camera at depths x in [xmin, xmax] of ‖I − H(x)‖_F², in closed form
`rotation + cross + translation`. Positions are camera centres in world coordinates; rotations are
quaternions (w, x, y, z) or 3×3 matrices, world-to-camera (`convention: world_to_camera`, the
paper's) or camera-to-world. Computed in float64. Invalid input answers 422 naming the field."""


def _poses(side: PoseSet, name: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    if (side.quaternion is None) == (side.rotation is None):
        raise InputError("give exactly one of quaternion or rotation", field=name)
    kind = "quaternion" if side.quaternion is not None else "rotation"
    position = torch.from_numpy(np.asarray(side.position, dtype=np.float64))
    rotation = torch.from_numpy(np.asarray(getattr(side, kind), dtype=np.float64))
    return position, rotation, kind


def _depth_range(req: PoseLossRequest, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    if req.depths is not None:
        if req.xmin is not None or req.xmax is not None:
            raise InputError("give either xmin and xmax or depths, not both", field="depths")
        if len(req.depths) != batch:
            raise InputError(
                f"{len(req.depths)} depth lists for {batch} pairs; give one list per pair",
                field="depths",
            )
        width = max(len(d) for d in req.depths)
        samples = np.ones((batch, width))
        mask = np.zeros((batch, width), dtype=bool)
        for i, d in enumerate(req.depths):
            samples[i, : len(d)] = d
            mask[i, : len(d)] = True
        xmin, xmax = depth_range_from_samples(
            torch.from_numpy(samples), torch.from_numpy(mask), mode=req.depth_mode
        )
        return xmin, xmax
    for name in ("xmin", "xmax"):
        if getattr(req, name) is None:
            raise InputError(f"{name} is required when depths are not given", field=name)
    xmin = torch.tensor(req.xmin, dtype=torch.float64)
    xmax = torch.tensor(req.xmax, dtype=torch.float64)
    # one value applies to every pair
    return (xmin[0] if len(xmin) == 1 else xmin), (xmax[0] if len(xmax) == 1 else xmax)


@router.post(
    "/pose-loss",
    response_model=PoseLossResponse,
    summary="Homography-based loss between estimated and true camera poses",
    description=DESCRIPTION,
    responses={422: {"description": "Invalid input; `detail[].loc` names the field"}},
)
def pose_loss(req: PoseLossRequest, settings: SettingsDep) -> PoseLossResponse:
    # A plain ``def``: FastAPI runs it in its thread pool, off the event loop.
    batch = len(req.estimated.position)
    if batch > settings.max_pose_batch:
        raise InputError(
            f"batch of {batch} pairs exceeds the limit of {settings.max_pose_batch}",
            field="estimated.position",
        )
    c_est, r_est, kind_est = _poses(req.estimated, "estimated")
    c_gt, r_gt, _ = _poses(req.true, "true")
    try:
        xmin, xmax = _depth_range(req, batch)
        check_pose_loss_inputs(c_est, r_est, c_gt, r_gt, xmin, xmax)
    except PoseInputError as exc:
        raise InputError(exc.message, field=exc.field) from exc

    with torch.enable_grad() if req.gradients else torch.inference_mode():
        if req.gradients:
            c_est.requires_grad_(True)
            r_est.requires_grad_(True)
        terms = homography_pose_loss_terms(
            c_est, r_est, c_gt, r_gt, xmin, xmax, convention=req.convention
        )
        grads = None
        if req.gradients:
            # Each pair's loss depends on its own pose only: the gradient of the sum is the
            # per-pair gradient.
            g_pos, g_rot = torch.autograd.grad(terms.loss.sum(), (c_est, r_est))
            grads = PoseLossGradients(position=g_pos.tolist(), **{kind_est: g_rot.tolist()})
            if not (torch.isfinite(g_pos).all() and torch.isfinite(g_rot).all()):
                raise InputError("gradients are not finite for these values", field="estimated")
    loss = terms.loss.detach()
    if not torch.isfinite(loss).all():  # unreachable within the schema's bounds; never a 500
        i = int((~torch.isfinite(loss)).nonzero()[0, 0])
        raise InputError("the loss is not finite for this pair", field=f"estimated.position[{i}]")
    return PoseLossResponse(
        count=batch,
        mean=float(loss.mean()),
        loss=loss.tolist(),
        rotation=terms.rotation.detach().tolist(),
        cross=terms.cross.detach().tolist(),
        translation=terms.translation.detach().tolist(),
        xmin=xmin.expand(batch).tolist(),
        xmax=xmax.expand(batch).tolist(),
        gradients=grads,
    )
