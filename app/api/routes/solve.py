"""/solve: homographies from point correspondences, as JSON (small batches) or NPZ (large)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from app.api.bodies import read_body
from app.api.deps import SettingsDep
from app.api.responses import ChunkedResponse, json_response
from app.api.routing import CheckedRoute
from app.api.schemas.solve import SolveRequest, SolveResponse
from app.core.config import Settings
from app.core.errors import DomainError
from app.core.metrics import ITEMS
from app.geometry.reasons import describe
from app.services.admission import offload
from app.services.arrays import npz_chunks
from app.services.solve import (
    RansacOptions,
    SolveOutput,
    arrays_from_body,
    check_point_lists,
    solve_least_squares,
    solve_minimal,
    solve_robust,
)

router = APIRouter(tags=["solve"], route_class=CheckedRoute)

NPZ_DOC = """Binary batch path for large batches (1,000,000 items in one request).

Body: a `.npz` with arrays `src` and `dst` of shape (B, 4, 2), or a `.npy` of shape (B, 2, 4, 2)
(`[:, 0]` source, `[:, 1]` target); float32 or float64 (integers are converted to float64).
Response: an uncompressed `.npz` with `dst_H_src` (B, 3, 3) in the output dtype (zeros where
invalid; (B, 8) without the constant H33 with `compact=true`), `valid` (B,) bool and `reason`
(B,) uint8 codes (0 ok, see `reason_codes` below), readable
with `np.load(io.BytesIO(body), allow_pickle=False)`. Headers `X-Count` and `X-Valid-Count`.

Reason codes: 1 non_finite_input, 2 repeated_source_point, 3 collinear_source,
4 repeated_target_point, 5 collinear_target, 6 h33_near_zero, 7 non_finite_result,
8 singular_system."""


def _run_json(req: SolveRequest, settings: Settings) -> SolveOutput:
    check_point_lists(req.src, req.dst, req.method, req.robust, settings)
    dtype = np.float32 if req.dtype == "float32" else np.float64
    if req.robust:
        opts = RansacOptions(**req.ransac.model_dump())
        src = [np.asarray(s, dtype=np.float64) for s in req.src]
        dst = [np.asarray(d, dtype=np.float64) for d in req.dst]
        return solve_robust(src, dst, opts, req.normalize)
    if req.method == "dlt":
        src = [np.asarray(s, dtype=np.float64) for s in req.src]
        dst = [np.asarray(d, dtype=np.float64) for d in req.dst]
        return solve_least_squares(src, dst, req.normalize)
    src_a = np.asarray(req.src, dtype=np.float64)
    dst_a = np.asarray(req.dst, dtype=np.float64)
    return solve_minimal(src_a, dst_a, req.method, req.normalize, dtype)


@router.post(
    "/solve",
    response_model=SolveResponse,
    summary="Homographies from point correspondences (JSON)",
    responses={
        413: {"description": "Body over the size limit"},
        422: {"description": "Wrong shapes, too few points, non-numeric values, batch too large"},
    },
)
async def solve(req: SolveRequest, settings: SettingsDep) -> Response:
    """Solve B items at once. ``aca`` (default) and ``sks`` are exact 4-point solvers; ``dlt`` is
    the normalised least-squares fit for N >= 4; ``robust`` runs RANSAC (ACA hypotheses, MSAC
    score, seedable) and refits the inliers. Degenerate items come back with ``valid: false``,
    ``dst_H_src: null`` and a ``reason``; the rest of the batch is still solved."""
    return await offload(_answer_json, req, settings)


def _answer_json(req: SolveRequest, settings: Settings) -> Response:
    """Checks, solve and the serialised answer, all in the worker thread."""
    start = time.perf_counter()
    out = _run_json(req, settings)
    elapsed = (time.perf_counter() - start) * 1e3
    ITEMS.labels("solve").inc(len(req.src))
    valid = out.valid
    H = out.dst_H_src.astype(np.float64).tolist()
    resp = SolveResponse(
        method=req.method,
        robust=req.robust,
        count=len(req.src),
        valid_count=int(valid.sum()),
        dst_H_src=[h if v else None for h, v in zip(H, valid.tolist(), strict=True)],
        valid=valid.tolist(),
        reason=describe(out.reason),
        elapsed_ms=round(elapsed, 3),
    )
    if out.inliers is not None:
        resp.inliers = [m.tolist() for m in out.inliers]
        resp.num_inliers = [int(m.sum()) for m in out.inliers]
        resp.rms_error = [
            float(e) if v else None for e, v in zip(out.rms_error, valid.tolist(), strict=True)
        ]
    return json_response(resp)


@router.post(
    "/solve/batch",
    summary="Homographies for large batches (binary .npz/.npy in and out)",
    description=NPZ_DOC,
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/x-npz": {"schema": {"type": "string", "format": "binary"}},
                "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    responses={
        200: {
            "content": {"application/x-npz": {"schema": {"type": "string", "format": "binary"}}},
            "description": "NPZ with dst_H_src, valid, reason",
        },
        400: {"description": "Body is not a .npy/.npz"},
        413: {"description": "Body or batch over the limit"},
        422: {"description": "Wrong array names, shapes or dtypes"},
    },
)
async def solve_batch(
    request: Request,
    settings: SettingsDep,
    method: Annotated[Literal["aca", "sks"], Query()] = "aca",
    normalize: Annotated[Literal["h33", "frobenius"], Query()] = "h33",
    dtype: Annotated[
        Literal["input", "float64", "float32"], Query(description="Output dtype.")
    ] = "input",
    compact: Annotated[
        bool,
        Query(
            description="Answer dst_H_src as (B, 8): the first eight entries row-major, the "
            "constant H33 = 1 left out (normalize=h33 only); with dtype=float32, 0.44x the bytes."
        ),
    ] = False,
) -> Response:
    if compact and normalize != "h33":
        raise DomainError(
            "compact=true leaves out H33, which is 1 only with normalize=h33", "invalid", "compact"
        )
    body = await read_body(request)

    def work() -> tuple[list[bytes | memoryview], int, int, int]:
        src, dst = arrays_from_body(body, settings)  # inflates and checks CRCs: off the loop
        # "input": the solver keeps the inputs' precision (float32 of either byte order stays)
        out_dtype = None if dtype == "input" else np.float32 if dtype == "float32" else np.float64
        out = solve_minimal(src, dst, method, normalize, out_dtype)
        valid = out.valid
        H = out.dst_H_src.reshape(len(valid), 9)[:, :8] if compact else out.dst_H_src
        arrays = {"dst_H_src": H, "valid": valid, "reason": out.reason}
        chunks, length = npz_chunks(arrays)
        return chunks, length, len(valid), int(valid.sum())

    chunks, length, count, valid_count = await offload(work)
    ITEMS.labels("solve").inc(count)
    return ChunkedResponse(
        chunks,
        length,
        media_type="application/x-npz",
        headers={"X-Count": str(count), "X-Valid-Count": str(valid_count)},
    )
