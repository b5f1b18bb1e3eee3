"""/estimate: the homography between two images: HomographyNet (ONNX Runtime) + ACA, keypoint
features + robust fit, or both refined photometrically with the best kept (method=auto)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from app.alignment.consistency import Consistency
from app.api.bodies import is_json, media_type, parse_json_model
from app.api.deps import AlignerDep, EstimatorDep, SettingsDep
from app.api.responses import json_response
from app.api.routing import CheckedRoute
from app.api.schemas.estimate import (
    EXAMPLE_A,
    EXAMPLE_B,
    CandidateReport,
    EstimateJsonRequest,
    EstimateResponse,
    EstimateTimings,
    FeaturesReport,
    KeypointSupport,
    ModelReport,
    PhotometricScore,
    QualityReport,
)
from app.api.schemas.refine import ChainedRefine, refine_response
from app.api.uploads import MultipartPolicy, read_multipart
from app.core.config import Settings
from app.core.errors import DomainError
from app.core.metrics import ITEMS
from app.estimation import Candidate
from app.features import Support
from app.geometry.points import corners_in
from app.services.admission import offload
from app.services.estimate import EstimateResult, Estimator, Method
from app.services.images import decode_base64
from app.services.refine import Aligner

router = APIRouter(tags=["estimate"], route_class=CheckedRoute)

FIELDS = ("image_a", "image_b")
OPTIONS = ("method", "detector", "robust", "refine", "escalation_seconds", "model")
POLICY = MultipartPolicy(
    files=FIELDS,
    required=FIELDS,
    misplaced={
        name: f"an option of /estimate, given in the query string (/estimate?{name}=...), "
        "not as a form field"
        for name in OPTIONS
    },
)

DESCRIPTION = """Estimate the homography that maps image A onto image B, and how far to trust it.

`method` picks the estimator: **network** (default; HomographyNet, fast, bounded to motions of
about 25 % of the image), **features** (SIFT, ORB or ASIFT keypoints, Lowe's ratio test, then
RANSAC with the ACA minimal solver or OpenCV's USAC; strong on textured pairs and any motion), or
**auto** (the network and SIFT at once, each candidate judged on plausibility, photometric
consistency on contrast-normalised images, keypoint support and agreement, refined
photometrically; when the best is weak, a bounded `escalation_seconds` budget buys ASIFT and
guided matching; the most accurate, and the slowest). Every answer carries `quality`: the
photometric score, the keypoint support, the overlap, a `confidence` (estimated probability that
A's corners are within 5 px of the truth) and a `low_confidence` flag with reasons; `candidates`
lists what was considered.

Send the two images either as **multipart/form-data** (files `image_a`, `image_b`) or as
**application/json** (`{"image_a": "<base64>", "image_b": "<base64>"}`; also at
`POST /estimate/json`). Any format OpenCV decodes
(PNG, JPEG, BMP, TIFF, WebP, ...), any size, colour or gray. For the network both are converted to
gray and resized to its 128 x 128 input exactly as in training, and `b_H_a` is computed from the
four predicted corners with the ACA solver; whatever the method, `b_H_a` is in the images' own
pixels, so that `cv2.warpPerspective(image_a, b_H_a, (W_b, H_b))` lines up with image B.

Concurrent requests are micro-batched into one ONNX Runtime call. When too many pairs are waiting
the answer is 503 with `Retry-After`.

Errors: 415 wrong content type (request or part) or unsupported image format; 422 missing field,
invalid base64, empty/undecodable/too small image, unknown option, no homography (degenerate
prediction, too few feature matches, no candidate overlapping); 413 image with too many
pixels (read from its header, before decoding) or body too large; 503 model not loaded or queue
full."""

_MULTIPART_SCHEMA = {
    "type": "object",
    "required": list(FIELDS),
    "properties": {
        "image_a": {"type": "string", "format": "binary", "description": "Image A (file)."},
        "image_b": {"type": "string", "format": "binary", "description": "Image B (file)."},
    },
}
_OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": POLICY.openapi(_MULTIPART_SCHEMA),
            "application/json": {
                # registered in components by POST /estimate/json
                "schema": {"$ref": "#/components/schemas/EstimateJsonRequest"},
                "examples": {
                    "shifted": {
                        "summary": "Two 16x16 PNGs, B = A shifted 2 px right",
                        "value": {"image_a": EXAMPLE_A, "image_b": EXAMPLE_B},
                    }
                },
            },
        },
    }
}


_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "Image with too many pixels, or body over the size limit"},
    415: {"description": "Content type (request or part) or image format not supported"},
    422: {
        "description": "Missing field, bad base64 or option, empty/undecodable/too small "
        "image, or no homography (degenerate prediction, too few feature matches)"
    },
    500: {"description": "Inference failed (the message says why)"},
    503: {"description": "Model not loaded, or the queue is full (see Retry-After)"},
}
RefineQuery = Annotated[
    bool,
    Query(
        description="Refine the estimate photometrically (as POST /refine) and answer the "
        "refined b_H_a; `refine` reports the refinement and its start. Methods network and "
        "features; auto refines its candidates itself."
    ),
]
MethodQuery = Annotated[
    Method,
    Query(description="network (HomographyNet), features (keypoints + RANSAC) or auto (best)."),
]
DetectorQuery = Annotated[
    Literal["sift", "orb", "asift"],
    Query(
        description="Keypoints for method=features/auto: sift, orb, or asift (SIFT on "
        "affine-simulated views of image A: strong foreshortening, a few seconds)."
    ),
]
RobustQuery = Annotated[
    Literal["aca", "usac"] | None,
    Query(
        description="Robust fit for the features: our RANSAC with ACA (default for sift and "
        "orb), or OpenCV's USAC MAGSAC++ (default for asift)."
    ),
]
EscalationQuery = Annotated[
    float | None,
    Query(
        ge=0,
        description="method=auto: seconds it may spend on stronger matching (affine-simulated "
        "SIFT, guided matching) when the fast candidates are weak; 0 turns it off; default "
        "and upper bound are server settings.",
    ),
]


async def _read_multipart(request: Request, settings: Settings) -> tuple[bytes, bytes]:
    parts = await read_multipart(request, POLICY)
    return parts.files["image_a"], parts.files["image_b"]


def _from_base64(req: EstimateJsonRequest) -> tuple[bytes, bytes]:
    return decode_base64(req.image_a, "image_a"), decode_base64(req.image_b, "image_b")


async def _read_json(request: Request, settings: Settings) -> tuple[bytes, bytes]:
    req = await parse_json_model(request, EstimateJsonRequest, settings)
    return await offload(_from_base64, req)


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _photometric(c: Consistency) -> PhotometricScore:
    return PhotometricScore(
        score=_num(c.score),
        ncc=_num(c.ncc),
        gradient_ncc=_num(c.gradient_ncc),
        overlap=c.overlap,
        mean_abs=_num(c.mean_abs),
    )


def _support(s: Support | None) -> KeypointSupport | None:
    if s is None:
        return None
    return KeypointSupport(
        inliers=s.inliers, inlier_ratio=s.ratio, spread=s.spread, rms_px=_num(s.rms_px)
    )


def _candidate(c: Candidate, size_a: tuple[int, int]) -> CandidateReport:
    corners = corners_in(c.b_H_a, size_a)
    return CandidateReport(
        name=c.name,
        source=c.source,  # type: ignore[arg-type]
        refined=c.refined,
        b_H_a=c.b_H_a.tolist(),
        corners_in_b=None if corners is None else corners.tolist(),
        photometric=_photometric(c.score),
        support=_support(c.support),
        confidence=c.confidence,
        agreeing=c.agreeing,
        seconds=round(c.seconds, 4),
        detail=c.detail,
    )


def _response(r: EstimateResult) -> EstimateResponse:
    sel, best = r.selection, r.selection.best
    assert best is not None  # the service raises when there is no answer
    start = next((c for c in sel.candidates if best.refined and c.name == best.source), None)
    f, fo = r.features, r.feature_options
    return EstimateResponse(
        method=r.method,  # type: ignore[arg-type]
        chosen=r.chosen,
        quality=QualityReport(
            confidence=sel.confidence,
            low_confidence=sel.low_confidence,
            reasons=sel.reasons,
            photometric=_photometric(best.score),
            support=_support(best.support),
            photometric_before_refine=None if start is None else _photometric(start.score),
            agreeing=sel.agreeing,
            work_scale=sel.work_scale,
            escalation=sel.escalation,
        ),
        model=None if r.model is None else ModelReport(**r.model),
        offsets=None if r.offsets is None else r.offsets.tolist(),
        corners_in_b=r.corners_in_b.tolist(),
        b_H_a=r.b_H_a.tolist(),
        confidence=None if r.confidence is None else r.confidence.tolist(),
        image_a_size=r.size_a,
        image_b_size=r.size_b,
        timings_ms=EstimateTimings(**r.timings_ms, batch_size=r.batch_size),
        features=None
        if f is None or fo is None
        else FeaturesReport(
            detector=fo.detector,
            robust=fo.robust,
            keypoints_a=f.keypoints[0],
            keypoints_b=f.keypoints[1],
            matches=f.matches,
            inliers=f.inliers,
            inlier_ratio=f.inlier_ratio,
            rms_px=_num(f.rms_px),
            scale=f.scale,
            spread=f.spread,
            detail=f.detail,
        ),
        candidates=[_candidate(c, r.size_a) for c in sel.candidates],
        refine=None
        if r.refine is None
        else ChainedRefine(
            applied=r.refine.applied,
            detail=r.refine.detail,
            start_b_H_a=r.refine.start_b_H_a.tolist(),
            result=None if r.refine.output is None else refine_response(r.refine.output),
        ),
    )


BodyReader = Callable[[Request, Settings], Awaitable[tuple[bytes, bytes]]]


def _body_reader(request: Request) -> BodyReader:
    """How to read the two images, by the request's content type."""
    media = media_type(request)
    if media == "multipart/form-data":
        return _read_multipart
    if is_json(media):
        return _read_json
    raise DomainError(
        f"content type {media or '(none)'!r} is not supported: send multipart/form-data "
        "(files image_a, image_b) or application/json (base64 strings image_a, image_b)",
        "unsupported",
    )


class EstimateQuery:
    """The query options shared by both routes (``model`` is read by :data:`EstimatorDep`)."""

    def __init__(
        self,
        method: MethodQuery = "network",
        detector: DetectorQuery = "sift",
        robust: RobustQuery = None,
        refine: RefineQuery = False,
        escalation_seconds: EscalationQuery = None,
    ) -> None:
        self.method, self.detector, self.robust = method, detector, robust
        self.refine = refine and method != "auto"
        self.escalation_seconds = escalation_seconds


async def _estimate(
    estimator: Estimator,
    aligner: Aligner | None,
    data_a: bytes,
    data_b: bytes,
    q: EstimateQuery,
) -> Response:
    result = await estimator.estimate(
        data_a,
        data_b,
        q.method,
        estimator.feature_options(q.detector, q.robust),
        aligner=aligner,
        refine=q.refine,
        escalation_seconds=q.escalation_seconds,
    )
    ITEMS.labels("estimate").inc()
    if result.refine is not None and result.refine.applied:
        ITEMS.labels("refine").inc()
    return await offload(lambda: json_response(_response(result)))


@router.post(
    "/estimate",
    response_model=EstimateResponse,
    summary="Homography between two images (network, features or auto), with a confidence",
    description=DESCRIPTION,
    openapi_extra=_OPENAPI_EXTRA,
    responses=_RESPONSES,
)
async def estimate(
    request: Request,
    read: Annotated[BodyReader, Depends(_body_reader)],  # 415 before the model is looked up
    estimator: EstimatorDep,
    aligner: AlignerDep,
    settings: SettingsDep,
    q: Annotated[EstimateQuery, Depends()],
) -> Response:
    data_a, data_b = await read(request, settings)
    return await _estimate(estimator, aligner, data_a, data_b, q)


@router.post(
    "/estimate/json",
    response_model=EstimateResponse,
    summary="Homography between two images sent as base64 JSON",
    description="The same as `POST /estimate` with an `application/json` body, typed for "
    "generated clients.",
    responses=_RESPONSES,
)
async def estimate_json(
    req: EstimateJsonRequest,
    estimator: EstimatorDep,
    aligner: AlignerDep,
    q: Annotated[EstimateQuery, Depends()],
) -> Response:
    data_a, data_b = await offload(_from_base64, req)
    return await _estimate(estimator, aligner, data_a, data_b, q)
