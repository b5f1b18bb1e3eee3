"""Request and response models of /pose-loss (conventions: ``app.geometry.pose_loss``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.core.config import Settings
from app.services.json_scan import JsonBudget

# Bounds keep every result finite in float64 (no overflow to inf in the loss or its gradients).
MAX_COORDINATE = 1e9
MIN_DEPTH, MAX_DEPTH = 1e-9, 1e9

Coordinate = Annotated[float, Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE, allow_inf_nan=False)]
Depth = Annotated[float, Field(ge=MIN_DEPTH, le=MAX_DEPTH, allow_inf_nan=False)]
Entry = Annotated[float, Field(ge=-2.0, le=2.0, allow_inf_nan=False)]
Vector3 = tuple[Coordinate, Coordinate, Coordinate]
Quaternion = tuple[Coordinate, Coordinate, Coordinate, Coordinate]
Matrix3 = tuple[tuple[Entry, Entry, Entry], tuple[Entry, Entry, Entry], tuple[Entry, Entry, Entry]]


def _listify(value: object) -> object:
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else value


# One depth for every pair, or one per pair (a number is read as a list of one).
DepthRange = Annotated[list[Depth], BeforeValidator(_listify), Field(min_length=1)]

_EXAMPLE = {
    "estimated": {
        "position": [[0.0, 0.0, -1.0], [0.1, 0.0, 0.0]],
        "quaternion": [[1.0, 0.0, 0.0, 0.0], [0.9998, 0.0, 0.0175, 0.0]],
    },
    "true": {
        "position": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        "quaternion": [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
    },
    "xmin": 2.0,
    "xmax": 4.0,
    "convention": "world_to_camera",
    "gradients": True,
}


class PoseSet(BaseModel):
    """B camera poses: positions and exactly one of ``quaternion`` or ``rotation``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    position: list[Vector3] = Field(
        ...,
        min_length=1,
        description="(B, 3) camera centre in world coordinates (both conventions).",
    )
    quaternion: list[Quaternion] | None = Field(
        None,
        description="(B, 4) rotation (w, x, y, z), Hamilton; any non-zero norm; q and -q agree. "
        "World-to-camera for convention world_to_camera, camera-to-world otherwise.",
    )
    rotation: list[Matrix3] | None = Field(
        None, description="(B, 3, 3) rotation matrices, row-major; orthonormal to 1e-6, det +1."
    )


class PoseLossRequest(BaseModel):
    """Estimated and true poses of B pairs, and the depth range of the scene: ``xmin``/``xmax``
    (one value for all pairs, or one per pair) or ``depths`` (samples per pair, from which the
    2.5/97.5 percentiles are taken per pair, ``local``, or over all pairs, ``global``)."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [_EXAMPLE]}
    )

    estimated: PoseSet
    true: PoseSet
    convention: Literal["world_to_camera", "camera_to_world"] = Field(
        "world_to_camera",
        description="world_to_camera: rotations map world to camera (the paper's); "
        "camera_to_world: rotations map camera to world (most SLAM/NeRF poses).",
    )
    xmin: DepthRange | None = Field(
        None, description="Nearest scene depth (> 0): a number for all pairs or one per pair."
    )
    xmax: DepthRange | None = Field(
        None, description="Farthest scene depth (>= xmin): a number or one per pair."
    )
    depths: list[Annotated[list[Depth], Field(min_length=1)]] | None = Field(
        None, description="(B, N_i) depths of the scene points each true camera sees."
    )
    depth_mode: Literal["local", "global"] = "local"
    gradients: bool = Field(
        False, description="Also return d loss_i / d (estimated position, rotation) per pair."
    )

    @classmethod
    def json_budget(cls, settings: Settings) -> JsonBudget:
        """Checked on the raw text before parsing: the per-pair arrays (positions, quaternions,
        rotations) open at depth 3, rotation rows at depth 4, depth lists at depth 2."""
        pairs = settings.max_pose_batch
        msg = f"more arrays than {{limit}} at this depth: over the limit of {pairs} pairs"
        return JsonBudget(
            max_depth=10,
            max_arrays={
                2: (pairs + 8, "depths", msg),
                3: (4 * pairs, "estimated.position", msg),
                4: (6 * pairs, "estimated.rotation", msg),
            },
        )


class PoseLossGradients(BaseModel):
    """Gradient of each pair's loss with respect to its estimated pose, in the representation
    and convention of the request (quaternion gradients are for the quaternion as sent)."""

    position: list[tuple[float, float, float]]
    quaternion: list[tuple[float, float, float, float]] | None = None
    rotation: list[list[list[float]]] | None = None


class PoseLossResponse(BaseModel):
    """Per-pair loss and its terms (``loss = rotation + cross + translation``), their mean, the
    depth range used, and gradients when asked."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "count": 2,
                    "mean": 0.0631372,
                    "loss": [0.125, 0.00127447],
                    "rotation": [0.0, 0.00245023],
                    "cross": [0.0, -0.00242576],
                    "translation": [0.125, 0.00125],
                    "xmin": [2.0, 2.0],
                    "xmax": [4.0, 4.0],
                    "gradients": None,
                }
            ]
        }
    )

    count: int
    mean: float
    loss: list[float]
    rotation: list[float] = Field(..., description="A = ‖I - R_rel‖_F² = 8 sin²(θ/2).")
    cross: list[float] = Field(..., description="w1·B, w1 = ln(xmax/xmin)/(xmax - xmin).")
    translation: list[float] = Field(..., description="w2·C, w2 = 1/(xmin·xmax), C = ‖c - ĉ‖².")
    xmin: list[float]
    xmax: list[float]
    gradients: PoseLossGradients | None = None
