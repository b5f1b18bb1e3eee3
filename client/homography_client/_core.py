"""What the sync and async clients share: requests to build, answers to parse, the retry policy.
No I/O here: each client only sends the ``Call``s and sleeps where ``RetryPolicy`` says."""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import httpx
import numpy as np

from homography_client._encode import ImageInput, image_part, npz_body
from homography_client._npz import read_npz
from homography_client.errors import error_from_response
from homography_client.models import (
    EstimateResult,
    PoseLossResult,
    RefineResult,
    SolveResult,
    from_json,
)

T = TypeVar("T")

EstimateMethod = Literal["network", "features", "auto"]
Detector = Literal["sift", "orb", "asift"]
RobustFit = Literal["aca", "usac"]
ModelKind = Literal["regression", "classification"]
SolveMethod = Literal["aca", "sks", "dlt"]
BatchMethod = Literal["aca", "sks"]
Normalize = Literal["h33", "frobenius"]
OutputDtype = Literal["float64", "float32"]
Convention = Literal["world_to_camera", "camera_to_world"]
DepthMode = Literal["local", "global"]

REFINE_OPTIONS = frozenset(
    {
        "solver",
        "num_levels",
        "max_iterations",
        "max_total_iterations",
        "max_seconds",
        "tolerance_px",
        "photometric",
        "robust",
        "search",
        "overlay",
    }
)
"""The keyword options of ``refine`` (the server's ``RefineOptionsIn``)."""

RANSAC_OPTIONS = frozenset({"threshold", "confidence", "max_iters", "seed"})

REASON_NAMES: dict[int, str | None] = {
    0: None,
    1: "non_finite_input",
    2: "repeated_source_point",
    3: "collinear_source",
    4: "repeated_target_point",
    5: "collinear_target",
    6: "h33_near_zero",
    7: "non_finite_result",
    8: "singular_system",
    9: "too_few_points",
    10: "no_consensus",
}
"""``/solve/batch``'s uint8 reason codes, named as ``/solve`` names them."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retry 503 (load shed) answers until ``deadline`` seconds after the first try: wait the
    server's ``Retry-After`` or the exponential back-off, whichever is longer (with jitter)."""

    deadline: float = 30.0
    initial: float = 0.25
    multiplier: float = 2.0
    max_delay: float = 8.0
    jitter: float = 0.1

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.max_delay, self.initial * self.multiplier**attempt)
        backoff *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(backoff, retry_after or 0.0)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Attempts:
    """The retry loop's state for one call: ``next_delay(response)`` is the sleep before the
    next try, or raises ``HomographyError`` when the deadline would pass."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy, self.start, self.count = policy, time.monotonic(), 0

    def next_delay(self, response: httpx.Response) -> float:
        delay = self.policy.delay(
            self.count, retry_after_seconds(response.headers.get("retry-after"))
        )
        self.count += 1
        elapsed = time.monotonic() - self.start
        if elapsed + delay > self.policy.deadline:
            note = f" (still 503 after {self.count} tries in {elapsed:.1f} s)"
            raise error_from_response(response, note)
        return delay


@dataclass
class Call(Generic[T]):
    """One HTTP request and how to read its answer. ``body`` (a buffer) is streamed in pieces
    with its Content-Length; everything else goes to ``httpx.Client.request``."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    data: dict[str, str] | None = None
    body: memoryview | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"params": self.params, "headers": self.headers}
        for name in ("json", "files", "data"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        return kw


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_from_response(response)
    return response


def read_json(response: httpx.Response) -> dict[str, Any]:
    return check(response).json()


# ---------------------------------------------------------------------------------- estimate
def _pair(image_a: ImageInput, image_b: ImageInput) -> dict[str, tuple[str, bytes, str]]:
    return {"image_a": image_part(image_a, "image_a"), "image_b": image_part(image_b, "image_b")}


def estimate_call(
    image_a: ImageInput,
    image_b: ImageInput,
    method: EstimateMethod,
    refine: bool,
    detector: Detector,
    robust: RobustFit | None,
    model: ModelKind | None,
    escalation_seconds: float | None = None,
) -> Call[EstimateResult]:
    params: dict[str, Any] = {"method": method, "detector": detector}
    if robust is not None:
        params["robust"] = robust
    if refine:
        params["refine"] = "true"
    if escalation_seconds is not None:
        params["escalation_seconds"] = escalation_seconds
    if model is not None:
        params["model"] = model
    return Call(
        "POST",
        "/estimate",
        lambda r: from_json(EstimateResult, read_json(r)),
        params=params,
        files={
            "image_a": image_part(image_a, "image_a"),
            "image_b": image_part(image_b, "image_b"),
        },
    )


def refine_call(
    image_a: ImageInput,
    image_b: ImageInput,
    init: Any,
    mask: ImageInput | None,
    options: Mapping[str, Any],
) -> Call[RefineResult]:
    unknown = set(options) - REFINE_OPTIONS
    if unknown:
        raise TypeError(
            f"refine() got unknown option(s) {sorted(unknown)}; known: {sorted(REFINE_OPTIONS)}"
        )
    files = _pair(image_a, image_b)
    if mask is not None:
        files["mask"] = image_part(mask, "mask")
    data = {"options": json.dumps(dict(options))}
    if init is not None:
        H = np.asarray(init, dtype=np.float64)
        if H.shape != (3, 3):
            raise ValueError(f"init must be a (3, 3) b_H_a, got shape {H.shape}")
        data["init"] = json.dumps(H.tolist())
    return Call(
        "POST", "/refine", lambda r: from_json(RefineResult, read_json(r)), files=files, data=data
    )


# ---------------------------------------------------------------------------------- pose loss
def _poses(position: Any, rotation: Any, side: str) -> dict[str, Any]:
    pos = np.asarray(position, dtype=np.float64)
    rot = np.asarray(rotation, dtype=np.float64)
    if pos.ndim == 1:
        pos = pos[None]
    if rot.shape in ((4,), (3, 3)):
        rot = rot[None]
    if rot.ndim == 2 and rot.shape[1] == 4:
        kind = "quaternion"
    elif rot.ndim == 3 and rot.shape[1:] == (3, 3):
        kind = "rotation"
    else:
        raise ValueError(
            f"{side} rotation must be (B, 4) quaternions (w, x, y, z) or (B, 3, 3) matrices, "
            f"got shape {rot.shape}"
        )
    return {"position": pos.tolist(), kind: rot.tolist()}


def _depth(value: Any) -> Any:
    if value is None:
        return None
    a = np.asarray(value, dtype=np.float64)
    return float(a) if a.ndim == 0 else a.tolist()


def pose_loss_call(
    estimated_position: Any,
    estimated_rotation: Any,
    true_position: Any,
    true_rotation: Any,
    xmin: Any,
    xmax: Any,
    depths: Sequence[Any] | None,
    depth_mode: DepthMode,
    convention: Convention,
    gradients: bool,
) -> Call[PoseLossResult]:
    body: dict[str, Any] = {
        "estimated": _poses(estimated_position, estimated_rotation, "estimated"),
        "true": _poses(true_position, true_rotation, "true"),
        "convention": convention,
        "gradients": gradients,
        "depth_mode": depth_mode,
    }
    if xmin is not None:
        body["xmin"] = _depth(xmin)
    if xmax is not None:
        body["xmax"] = _depth(xmax)
    if depths is not None:
        body["depths"] = [np.asarray(d, dtype=np.float64).ravel().tolist() for d in depths]
    return Call("POST", "/pose-loss", lambda r: from_json(PoseLossResult, read_json(r)), json=body)


# ---------------------------------------------------------------------------------- solve
@dataclass
class SolvePlan:
    """The requests of one ``solve`` (JSON chunks or binary pieces) and how to merge them."""

    calls: list[Call[SolveResult]]
    method: str
    robust: bool
    binary: bool

    def merge(self, parts: Sequence[SolveResult]) -> SolveResult:
        if len(parts) == 1:
            return parts[0]
        inl = [p.inliers for p in parts]
        return SolveResult(
            method=self.method,
            robust=self.robust,
            dst_H_src=np.concatenate([p.dst_H_src for p in parts]),
            valid=np.concatenate([p.valid for p in parts]),
            reason=[r for p in parts for r in p.reason],
            num_inliers=None
            if parts[0].num_inliers is None
            else np.concatenate([p.num_inliers for p in parts]),  # type: ignore[misc]
            inliers=None if inl[0] is None else [m for i in inl for m in i],  # type: ignore[union-attr]
            rms_error=None
            if parts[0].rms_error is None
            else np.concatenate([p.rms_error for p in parts]),  # type: ignore[misc]
            requests=len(parts),
            binary=self.binary,
        )


def _items(points: Any, name: str) -> np.ndarray | list[np.ndarray]:
    """(B, N, 2) as one array, or a list of (N_i, 2) arrays when N varies."""
    try:
        a = np.asarray(points, dtype=np.float64) if not isinstance(points, np.ndarray) else points
    except ValueError:  # ragged
        a = None
    if a is not None and a.ndim == 3 and a.shape[2] == 2:
        return a
    if a is not None and a.dtype != object:
        raise ValueError(f"{name} must have shape (B, N, 2), got {a.shape}")
    items = [np.asarray(p, dtype=np.float64) for p in points]
    for i, p in enumerate(items):
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"{name}[{i}] must have shape (N, 2), got {p.shape}")
    return items


def _tolist(items: np.ndarray | list[np.ndarray]) -> list[Any]:
    if isinstance(items, np.ndarray):
        return items.astype(np.float64, copy=False).tolist()
    return [p.tolist() for p in items]


def _parse_json_solve(dtype: np.dtype) -> Callable[[httpx.Response], SolveResult]:
    def parse(response: httpx.Response) -> SolveResult:
        d = read_json(response)
        valid = np.asarray(d["valid"], dtype=bool)
        H = np.full((len(valid), 3, 3), np.nan, dtype=dtype)
        for i, h in enumerate(d["dst_H_src"]):
            if h is not None:
                H[i] = h
        rms = d.get("rms_error")
        return SolveResult(
            method=d["method"],
            robust=d["robust"],
            dst_H_src=H,
            valid=valid,
            reason=list(d["reason"]),
            num_inliers=None if d.get("num_inliers") is None else np.asarray(d["num_inliers"]),
            inliers=None
            if d.get("inliers") is None
            else [np.asarray(m, dtype=bool) for m in d["inliers"]],
            rms_error=None
            if rms is None
            else np.asarray([np.nan if e is None else e for e in rms], dtype=np.float64),
        )

    return parse


def _parse_npz(method: str) -> Callable[[httpx.Response], SolveResult]:
    def parse(response: httpx.Response) -> SolveResult:
        z = read_npz(check(response).content)
        H, valid, codes = z["dst_H_src"], z["valid"].astype(bool), z["reason"]
        H = H.copy()
        H[~valid] = np.nan
        return SolveResult(
            method=method,
            robust=False,
            dst_H_src=H,
            valid=valid,
            reason=[REASON_NAMES.get(int(c), f"code_{int(c)}") for c in codes],
            binary=True,
        )

    return parse


def solve_plan(
    src: Any,
    dst: Any,
    method: SolveMethod,
    robust: bool,
    normalize: Normalize,
    dtype: OutputDtype,
    ransac: Mapping[str, Any] | None,
    binary: bool | None,
    binary_threshold: int,
    json_batch: int,
    binary_batch: int,
) -> SolvePlan:
    s, d = _items(src, "src"), _items(dst, "dst")
    if len(s) != len(d):
        raise ValueError(f"src has {len(s)} items but dst has {len(d)}")
    uniform4 = isinstance(s, np.ndarray) and isinstance(d, np.ndarray) and s.shape[1] == 4
    eligible = method in ("aca", "sks") and not robust and uniform4 and s.shape == d.shape
    if binary is None:
        binary = eligible and len(s) >= binary_threshold
    elif binary and not eligible:
        raise ValueError(
            "the binary path takes (B, 4, 2) points with method 'aca' or 'sks', not robust"
        )
    out_dtype = np.dtype(np.float32 if dtype == "float32" else np.float64)
    calls: list[Call[SolveResult]] = []
    if binary:
        assert isinstance(s, np.ndarray) and isinstance(d, np.ndarray)
        in_dtype = np.float32 if s.dtype == np.float32 and d.dtype == np.float32 else np.float64
        params = {"method": method, "normalize": normalize, "dtype": dtype}
        for i in range(0, len(s), binary_batch):
            body = npz_body(
                src=np.ascontiguousarray(s[i : i + binary_batch], dtype=in_dtype),
                dst=np.ascontiguousarray(d[i : i + binary_batch], dtype=in_dtype),
            )
            calls.append(
                Call(
                    "POST",
                    "/solve/batch",
                    _parse_npz(method),
                    params=params,
                    body=body,
                    headers={"content-type": "application/x-npz"},
                )
            )
    else:
        if ransac is not None:
            unknown = set(ransac) - RANSAC_OPTIONS
            if unknown:
                raise TypeError(f"unknown ransac option(s) {sorted(unknown)}")
        for i in range(0, len(s), json_batch):
            body: dict[str, Any] = {
                "src": _tolist(s[i : i + json_batch]),
                "dst": _tolist(d[i : i + json_batch]),
                "method": method,
                "robust": robust,
                "normalize": normalize,
                "dtype": dtype,
            }
            if ransac is not None:
                body["ransac"] = dict(ransac)
            calls.append(Call("POST", "/solve", _parse_json_solve(out_dtype), json=body))
    if not calls:
        raise ValueError("src holds no items")
    return SolvePlan(calls, method, robust, bool(binary))


class ClientBase:
    """What both clients share: the API key header, the retry policy, and how ``solve`` splits."""

    binary_threshold = 2048
    """``solve`` sends batches of (B, 4, 2) points with at least this many items as ``.npz``."""
    json_batch = 10_000
    """Items per JSON ``/solve`` request (the server's default limit); larger batches are split."""
    binary_batch = 1_000_000
    """Items per ``/solve/batch`` request; larger batches are split."""

    def __init__(self, api_key: str | None, retry: RetryPolicy | None) -> None:
        self._headers = {"x-api-key": api_key} if api_key else {}
        self.retry = retry or RetryPolicy()

    def _kwargs(self, call: Call[Any]) -> dict[str, Any]:
        """``request()`` keyword arguments, but the streamed body (the caller adds it)."""
        kw = call.kwargs()
        kw["headers"] = {**self._headers, **call.headers}
        if call.body is not None:
            kw["headers"]["content-length"] = str(len(call.body))
        return kw

    def _solve_plan(self, *args: Any) -> SolvePlan:
        """``solve_plan`` (its first eight arguments) with this client's batch sizes."""
        return solve_plan(*args, self.binary_threshold, self.json_batch, self.binary_batch)
