"""Compile and exercise the Numba kernels once, so the first request pays no JIT cost."""

from __future__ import annotations

import time

import numpy as np


class SolverEngine:
    """Marker object for the readiness report: the kernels are compiled for both dtypes."""

    def __init__(self, seconds: float) -> None:
        self.info = {"kernels": "numba", "dtypes": ["float32", "float64"], "warmup_s": seconds}


def warm_up_solvers() -> SolverEngine:
    from app.geometry.dlt import dlt_homography
    from app.geometry.four_point import affine_from_3_points, rect_to_quad, solve_four_point
    from app.geometry.ransac import ransac_homography

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        src = rng.uniform(0, 100, (8, 4, 2)).astype(dtype)
        dst = src + rng.uniform(-5, 5, src.shape).astype(dtype)
        for method in ("aca", "sks"):
            for norm in ("h33", "frobenius"):
                solve_four_point(src, dst, method=method, normalize=norm)
        # read-only (and possibly unaligned) views are what binary request bodies produce: Numba
        # compiles a separate specialisation for each layout, so compile them now too
        for offset in (0, 1):
            for kind in (bytes, bytearray):
                raw = kind(bytes(offset) + src.tobytes() + dst.tobytes())
                view = np.frombuffer(raw, dtype, src.size * 2, offset).reshape(2, *src.shape)
                solve_four_point(view[0], view[1])
                solve_four_point(view[0], view[1], method="sks")
        rect_to_quad(dst, (0, 0, 10, 10))
        affine_from_3_points(src[:, :3], dst[:, :3])
    pts = rng.uniform(0, 100, (1, 20, 2))
    dlt_homography(pts, pts + 1.0)
    ransac_homography(pts[0], pts[0] + 1.0, seed=0)
    return SolverEngine(round(time.perf_counter() - start, 3))
