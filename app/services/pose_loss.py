"""The /pose-loss use case: a batch of (estimated, true) camera poses and a depth range (given,
or from ragged per-pair depth samples) -> the per-pair homography-based loss, its terms and,
when asked, its gradients with respect to the estimated poses. Conventions and checks:
:mod:`app.geometry.pose_loss`. No HTTP here; errors are :class:`DomainError`s naming the field.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from app.core.config import Settings
from app.core.errors import DomainError
from app.geometry.pose_loss import (
    PoseConvention,
    check_pose_loss_inputs,
    depth_range_from_lists,
    homography_pose_loss_terms,
)

__all__ = ["PoseLossOutput", "Poses", "compute_pose_loss"]

RotationKind = Literal["quaternion", "rotation"]


@dataclass(frozen=True)
class Poses:
    """B poses as sent: ``position`` (B, 3) and exactly one of ``quaternion`` (B, 4) or
    ``rotation`` (B, 3, 3)."""

    position: Sequence
    quaternion: Sequence | None = None
    rotation: Sequence | None = None


@dataclass(frozen=True)
class PoseLossOutput:
    """Per-pair ``loss = rotation + cross + translation`` (each (B,) float64), the depth range
    used (``xmin``/``xmax`` (B,)), and with gradients ``grad_position`` (B, 3) and
    ``grad_rotation`` ((B, 4) or (B, 3, 3), as ``rotation_kind`` was sent)."""

    loss: Tensor
    rotation: Tensor
    cross: Tensor
    translation: Tensor
    xmin: Tensor
    xmax: Tensor
    rotation_kind: RotationKind
    grad_position: Tensor | None = None
    grad_rotation: Tensor | None = None

    @property
    def count(self) -> int:
        return int(self.loss.shape[0])


def _tensors(poses: Poses, name: str) -> tuple[Tensor, Tensor, RotationKind]:
    if (poses.quaternion is None) == (poses.rotation is None):
        raise DomainError("give exactly one of quaternion or rotation", "invalid", name)
    kind: RotationKind = "quaternion" if poses.quaternion is not None else "rotation"
    position = torch.from_numpy(np.asarray(poses.position, dtype=np.float64))
    rotation = torch.from_numpy(np.asarray(getattr(poses, kind), dtype=np.float64))
    return position, rotation, kind


def _depth_range(
    batch: int,
    xmin: Sequence[float] | None,
    xmax: Sequence[float] | None,
    depths: Sequence[Sequence[float]] | None,
    depth_mode: Literal["local", "global"],
    max_samples: int,
) -> tuple[Tensor, Tensor]:
    if depths is not None:
        if xmin is not None or xmax is not None:
            raise DomainError("give either xmin and xmax or depths, not both", "invalid", "depths")
        if len(depths) != batch:
            raise DomainError(
                f"{len(depths)} depth lists for {batch} pairs; give one list per pair",
                "invalid",
                "depths",
            )
        lengths = np.fromiter(map(len, depths), dtype=np.int64, count=batch)
        total = int(lengths.sum())
        if total > max_samples:
            raise DomainError(
                f"{total} depth samples in all exceeds the limit of {max_samples}",
                "too_large",
                "depths",
            )
        # one flat array: ragged lists are never padded to the longest
        values = np.fromiter(itertools.chain.from_iterable(depths), dtype=np.float64, count=total)
        return depth_range_from_lists(
            torch.from_numpy(values), torch.from_numpy(lengths), mode=depth_mode
        )
    for name, value in (("xmin", xmin), ("xmax", xmax)):
        if value is None:
            raise DomainError(f"{name} is required when depths are not given", "invalid", name)
    lo = torch.tensor(xmin, dtype=torch.float64)
    hi = torch.tensor(xmax, dtype=torch.float64)
    # one value applies to every pair
    return (lo[0] if len(lo) == 1 else lo), (hi[0] if len(hi) == 1 else hi)


def compute_pose_loss(
    estimated: Poses,
    true: Poses,
    settings: Settings,
    *,
    xmin: Sequence[float] | None = None,
    xmax: Sequence[float] | None = None,
    depths: Sequence[Sequence[float]] | None = None,
    depth_mode: Literal["local", "global"] = "local",
    convention: PoseConvention = "world_to_camera",
    gradients: bool = False,
) -> PoseLossOutput:
    """The loss of B (estimated, true) pose pairs, in float64.

    Args:
        estimated, true: :class:`Poses` of the same B.
        settings: ``max_pose_batch`` (pairs) and ``max_pose_depth_samples`` (all depth samples
            together) limit the work.
        xmin, xmax: one depth for every pair, or one per pair; or instead
        depths: B lists of depth samples (any lengths, >= 1 each), whose 2.5/97.5 percentiles
            give the range per pair (``depth_mode="local"``) or over all pairs (``"global"``).
        convention: how the rotations are given (:mod:`app.geometry.pose_loss`).
        gradients: also d loss_i / d (estimated position, rotation), by autograd.

    Raises:
        DomainError: ``too_large`` over a limit, ``invalid`` naming the field otherwise.
    """
    batch = len(estimated.position)
    if batch > settings.max_pose_batch:
        raise DomainError(
            f"batch of {batch} pairs exceeds the limit of {settings.max_pose_batch}",
            "invalid",
            "estimated.position",
        )
    c_est, r_est, kind = _tensors(estimated, "estimated")
    c_gt, r_gt, _ = _tensors(true, "true")
    lo, hi = _depth_range(batch, xmin, xmax, depths, depth_mode, settings.max_pose_depth_samples)
    check_pose_loss_inputs(c_est, r_est, c_gt, r_gt, lo, hi)

    grad_position = grad_rotation = None
    with torch.enable_grad() if gradients else torch.inference_mode():
        if gradients:
            c_est.requires_grad_(True)
            r_est.requires_grad_(True)
        terms = homography_pose_loss_terms(c_est, r_est, c_gt, r_gt, lo, hi, convention=convention)
        if gradients:
            # Each pair's loss depends on its own pose only: the gradient of the sum is the
            # per-pair gradient.
            grad_position, grad_rotation = torch.autograd.grad(terms.loss.sum(), (c_est, r_est))
            if not (torch.isfinite(grad_position).all() and torch.isfinite(grad_rotation).all()):
                raise DomainError(
                    "gradients are not finite for these values", "invalid", "estimated"
                )
    loss = terms.loss.detach()
    if not torch.isfinite(loss).all():  # unreachable within the schema's bounds; never a 500
        i = int((~torch.isfinite(loss)).nonzero()[0, 0])
        raise DomainError(
            "the loss is not finite for this pair", "invalid", f"estimated.position[{i}]"
        )
    return PoseLossOutput(
        loss=loss,
        rotation=terms.rotation.detach(),
        cross=terms.cross.detach(),
        translation=terms.translation.detach(),
        xmin=lo.expand(batch),
        xmax=hi.expand(batch),
        rotation_kind=kind,
        grad_position=grad_position,
        grad_rotation=grad_rotation,
    )


class PoseLossEngine:
    """Marker object for the readiness report: the loss ran once per rotation kind, forward and
    backward, so that torch's lazily imported modules (symbolic shapes: ~0.7 s) load at
    start-up, not in the first request."""

    def __init__(self, seconds: float) -> None:
        self.info = {"warmup_s": seconds}


def warm_up_pose_loss(settings: Settings) -> PoseLossEngine:
    import time

    start = time.perf_counter()
    eye = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    for est, true in (
        (Poses([[0.0, 0.0, 0.0]] * 2, quaternion=[[1.0, 0.0, 0.0, 0.0]] * 2), None),
        (Poses([[0.0, 0.0, 0.0]] * 2, rotation=[eye] * 2), None),
    ):
        for gradients in (False, True):
            compute_pose_loss(
                est, true or est, settings, depths=[[1.0, 2.0], [3.0]], gradients=gradients
            )
            compute_pose_loss(est, true or est, settings, xmin=[1.0], xmax=[2.0])
    return PoseLossEngine(round(time.perf_counter() - start, 3))
