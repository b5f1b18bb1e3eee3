"""Compile and exercise the solver kernels once, so the first request pays no JIT cost
(``python -m app.services.warmup`` does it ahead of time, with the service's other kernels)."""

from __future__ import annotations

import time

import numpy as np


class SolverEngine:
    """Marker object for the readiness report: the kernels are compiled for both dtypes."""

    def __init__(self, seconds: float) -> None:
        self.info = {"kernels": "numba", "dtypes": ["float32", "float64"], "warmup_s": seconds}


def warm_up_solvers() -> SolverEngine:
    from app.geometry.dlt import dlt_homography
    from app.geometry.four_point import (
        PARALLEL_MIN_ITEMS,
        affine_from_3_points,
        rect_to_quad,
        solve_four_point,
    )
    from app.geometry.ransac import ransac_homography

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    # the parallel kernels (large batches) and their serial twins (small ones)
    big = rng.uniform(0, 100, (PARALLEL_MIN_ITEMS, 4, 2))
    for dtype in (np.float64, np.float32):
        src = rng.uniform(0, 100, (8, 4, 2)).astype(dtype)
        dst = src + rng.uniform(-5, 5, src.shape).astype(dtype)
        for method in ("aca", "sks"):
            for norm in ("h33", "frobenius"):
                solve_four_point(src, dst, method=method, normalize=norm)
            solve_four_point(big.astype(dtype), big.astype(dtype) + 1, method=method)
        # binary request bodies arrive as writeable, usually unaligned views of a bytearray:
        # Numba compiles a separate specialisation for that layout, so compile it now too
        for arr_s, arr_d in ((src, dst), (big.astype(dtype), big.astype(dtype) + 1)):
            raw = bytearray(b"\0" + arr_s.tobytes() + arr_d.tobytes())
            view = np.frombuffer(raw, dtype, arr_s.size * 2, 1).reshape(2, *arr_s.shape)
            for method in ("aca", "sks"):
                solve_four_point(view[0], view[1], method=method)
        rect_to_quad(dst, (0, 0, 10, 10))
        affine_from_3_points(src[:, :3], dst[:, :3])
    pts = rng.uniform(0, 100, (1, 20, 2))
    dlt_homography(pts, pts + 1.0)
    ransac_homography(pts[0], pts[0] + 1.0, seed=0)
    return SolverEngine(round(time.perf_counter() - start, 3))
