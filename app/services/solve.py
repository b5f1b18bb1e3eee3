"""The /solve use case on NumPy arrays: check a batch against the service's limits, pick the
solver, run it, collect per-item results. No HTTP here: routes turn :class:`SolveOutput` into
JSON or NPZ, and problems are :class:`DomainError`s naming the field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.core.config import Settings
from app.core.errors import DomainError
from app.geometry.dlt import dlt_homography
from app.geometry.four_point import solve_four_point
from app.geometry.ransac import ransac_homography
from app.services.arrays import open_arrays

SolveMethod = Literal["aca", "sks", "dlt"]


@dataclass(frozen=True)
class RansacOptions:
    threshold: float = 3.0
    confidence: float = 0.999
    max_iters: int = 2000
    seed: int | None = 0


@dataclass
class SolveOutput:
    """Per-item results: ``dst_H_src`` (B, 3, 3) zeros where invalid, ``reason`` (B,) uint8;
    robust fits add ``inliers`` (one (N_i,) bool array per item) and ``rms_error`` (B,)."""

    dst_H_src: np.ndarray
    reason: np.ndarray
    inliers: list[np.ndarray] | None = None
    rms_error: np.ndarray | None = None
    iterations: np.ndarray | None = None

    @property
    def valid(self) -> np.ndarray:
        return self.reason == 0


def check_point_lists(
    src: Sequence[Sequence],
    dst: Sequence[Sequence],
    method: SolveMethod,
    robust: bool,
    settings: Settings,
) -> None:
    """Limits of a JSON batch of point lists: as many ``dst`` as ``src`` items, at least one
    and at most ``max_solve_json_batch``; per item as many targets as sources, exactly 4 for
    the 4-point solvers (``aca``/``sks`` without ``robust``), otherwise >= 4 and at most
    ``max_points_per_item``, and at most ``max_robust_work`` points in all."""
    max_batch = settings.max_solve_json_batch
    four_point = method in ("aca", "sks") and not robust
    if len(src) != len(dst):
        raise DomainError(
            f"src has {len(src)} items but dst has {len(dst)}; they must match", "invalid", "dst"
        )
    if not src:
        raise DomainError("src must hold at least one item", "invalid", "src")
    if len(src) > max_batch:
        raise DomainError(
            f"batch of {len(src)} items exceeds the JSON limit of {max_batch}; "
            "send large batches to POST /solve/batch as .npz",
            "invalid",
            "src",
        )
    total = 0
    for i, (s, d) in enumerate(zip(src, dst, strict=True)):
        if len(s) != len(d):
            raise DomainError(
                f"item {i}: src has {len(s)} points but dst has {len(d)}", "invalid", f"dst[{i}]"
            )
        if four_point and len(s) != 4:
            raise DomainError(
                f"item {i}: method {method!r} needs exactly 4 points, got {len(s)} "
                "(use method 'dlt' or robust=true for N > 4)",
                "invalid",
                f"src[{i}]",
            )
        if len(s) < 4:
            raise DomainError(
                f"item {i}: at least 4 points needed, got {len(s)}", "invalid", f"src[{i}]"
            )
        if len(s) > settings.max_points_per_item:
            raise DomainError(
                f"item {i}: {len(s)} points exceeds the limit of {settings.max_points_per_item}",
                "invalid",
                f"src[{i}]",
            )
        total += len(s)
    if not four_point and total > settings.max_robust_work:
        raise DomainError(
            f"{total} points in all exceeds the limit of {settings.max_robust_work} for "
            "least-squares/robust requests",
            "invalid",
            "src",
        )


def arrays_from_body(
    body: bytes | bytearray | memoryview | np.ndarray, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """A binary /solve body (a .npz with ``src`` and ``dst`` (B, 4, 2), or a .npy (B, 2, 4, 2))
    -> (src, dst), checked from the headers (names, shapes, dtypes, 1 <= B <=
    ``max_solve_batch``) before any member is inflated, then loaded with CRCs verified
    (``malformed``/``unsupported`` for a body that is no usable .npy/.npz, ``too_large`` over the
    batch limit). Synchronous and CPU-bound for compressed bodies: call it in a worker thread."""
    payload = open_arrays(body, max_uncompressed=settings.max_body_bytes)
    heads = payload.headers
    if "array" in heads:
        names: tuple[str, ...] = ("array",)
        shape = heads["array"].shape
        if len(shape) != 4 or shape[1:] != (2, 4, 2):
            raise DomainError(
                f"a .npy body must have shape (B, 2, 4, 2), got {shape}", "invalid", "body"
            )
    else:
        missing = {"src", "dst"} - heads.keys()
        if missing:
            raise DomainError(
                f".npz body lacks array(s) {sorted(missing)}; found {sorted(heads)}",
                "invalid",
                "body",
            )
        names = ("src", "dst")
        for name in names:
            shape = heads[name].shape
            if len(shape) != 3 or shape[1:] != (4, 2):
                raise DomainError(f"{name} must have shape (B, 4, 2), got {shape}", "invalid", name)
        if heads["src"].shape != heads["dst"].shape:
            raise DomainError(
                f"src {heads['src'].shape} and dst {heads['dst'].shape} differ in shape",
                "invalid",
                "dst",
            )
    for name in names:
        dt = heads[name].dtype
        if not (np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer)):
            raise DomainError(
                f"{'src' if name == 'array' else name} must be float32/float64 (or integer), "
                f"got {dt}",
                "invalid",
                "src" if name == "array" else name,
            )
    batch = heads[names[0]].shape[0]
    if batch == 0:
        raise DomainError("the batch is empty", "invalid", "src")
    if batch > settings.max_solve_batch:
        raise DomainError(
            f"batch of {batch} items exceeds the limit of {settings.max_solve_batch}",
            "too_large",
            "src",
        )
    arrays = payload.load(names)
    if "array" in arrays:
        return arrays["array"][:, 0], arrays["array"][:, 1]
    return arrays["src"], arrays["dst"]


def solve_minimal(
    src: np.ndarray,
    dst: np.ndarray,
    method: Literal["aca", "sks"] = "aca",
    normalize: Literal["h33", "frobenius"] = "h33",
    dtype: type | None = np.float64,
) -> SolveOutput:
    """(B, 4, 2) correspondences -> B homographies by a 4-point solver, in ``dtype`` (None: the
    inputs' precision, as :func:`app.geometry.four_point.solve_four_point` keeps it)."""
    r = solve_four_point(src, dst, method=method, normalize=normalize, dtype=dtype)
    return SolveOutput(r.dst_H_src, r.reason)


def solve_least_squares(
    src: list[np.ndarray], dst: list[np.ndarray], normalize: Literal["h33", "frobenius"] = "h33"
) -> SolveOutput:
    """Items of N_i >= 4 correspondences (N_i may differ) -> normalised DLT fits."""
    H = np.zeros((len(src), 3, 3))
    reason = np.zeros(len(src), dtype=np.uint8)
    by_n: dict[int, list[int]] = {}
    for i, s in enumerate(src):
        by_n.setdefault(len(s), []).append(i)
    for n, idx in by_n.items():
        s = np.stack([src[i] for i in idx]).reshape(len(idx), n, 2)
        d = np.stack([dst[i] for i in idx]).reshape(len(idx), n, 2)
        r = dlt_homography(s, d)
        H[idx], reason[idx] = r.dst_H_src, r.reason
    if normalize == "frobenius":
        H = _to_frobenius(H, reason)
    return SolveOutput(H, reason)


def solve_robust(
    src: list[np.ndarray],
    dst: list[np.ndarray],
    options: RansacOptions,
    normalize: Literal["h33", "frobenius"] = "h33",
) -> SolveOutput:
    """RANSAC (ACA hypotheses, MSAC score, LS refit on the inliers) per item."""
    B = len(src)
    H = np.zeros((B, 3, 3))
    reason = np.zeros(B, dtype=np.uint8)
    rms = np.zeros(B)
    iters = np.zeros(B, dtype=np.int64)
    inliers = []
    for i in range(B):
        r = ransac_homography(
            np.asarray(src[i], dtype=np.float64).reshape(-1, 2),
            np.asarray(dst[i], dtype=np.float64).reshape(-1, 2),
            threshold=options.threshold,
            confidence=options.confidence,
            max_iters=options.max_iters,
            seed=options.seed,
        )
        H[i], reason[i], iters[i] = r.dst_H_src, r.reason, r.iterations
        rms[i] = r.rms_error if np.isfinite(r.rms_error) else 0.0
        inliers.append(r.inliers)
    if normalize == "frobenius":
        H = _to_frobenius(H, reason)
    return SolveOutput(H, reason, inliers=inliers, rms_error=rms, iterations=iters)


def _to_frobenius(H: np.ndarray, reason: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(H.reshape(len(H), 9), axis=1)
    n = np.where((reason == 0) & (n > 0), n, 1.0)
    out = H / n[:, None, None]
    out[reason != 0] = 0.0
    return out
