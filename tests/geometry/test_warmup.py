"""No JIT compilation at request time: after the warm-up, every array layout the API can hand
to the kernels (read-only, unaligned, non-contiguous, Fortran order, big-endian, integer) runs
on an already compiled specialisation."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from app.geometry import _kernels as K
from app.geometry.four_point import PARALLEL_MIN_ITEMS, solve_four_point
from app.geometry.ransac import ransac_homography
from app.geometry.warmup import warm_up_solvers


def signatures() -> dict[str, int]:
    return {
        name: len(obj.signatures)
        for name, obj in vars(K).items()
        if isinstance(obj, numba.core.registry.CPUDispatcher)
    }


def layouts(a: np.ndarray):
    ro = a.copy()
    ro.flags.writeable = False
    raw = bytearray(b"\0" + a.tobytes())
    unaligned = np.frombuffer(raw, a.dtype, a.size, 1).reshape(a.shape)
    raw_ro = bytes(b"\0" + a.tobytes())
    yield "read-only", ro
    yield "read-only bytes", np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape)
    yield "unaligned", unaligned
    yield "unaligned read-only", np.frombuffer(raw_ro, a.dtype, a.size, 1).reshape(a.shape)
    yield "strided", np.repeat(a, 2, axis=0)[::2]
    yield "fortran", np.asfortranarray(a)
    yield "big-endian", a.astype(a.dtype.newbyteorder(">"))
    yield "int", a.astype(np.int32)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [8, PARALLEL_MIN_ITEMS])
def test_every_layout_runs_on_a_warmed_kernel(dtype, n):
    warm_up_solvers()
    before = signatures()
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (n, 4, 2)).astype(dtype)
    dst = (src + rng.uniform(-5, 5, src.shape)).astype(dtype)
    ref = solve_four_point(src, dst)
    for (name, s), (_, d) in zip(layouts(src), layouts(dst), strict=True):
        for method in ("aca", "sks"):
            for norm in ("h33", "frobenius"):
                out = solve_four_point(s, d, method=method, normalize=norm)
                assert out.valid.mean() > 0.9, name
        if name != "int":
            out = solve_four_point(s, d)
            # the same answers (an item at the degeneracy threshold may round either way)
            assert (out.reason == ref.reason).mean() > 0.999, name
            both = out.valid & ref.valid
            np.testing.assert_allclose(
                out.dst_H_src[both], ref.dst_H_src[both], rtol=1e-4, atol=1e-6
            )
    assert signatures() == before, "a kernel compiled a new specialisation at call time"


def test_ransac_with_read_only_inputs_needs_no_new_kernel():
    warm_up_solvers()
    before = signatures()
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (50, 2))
    dst = src + 3.0
    for name, s in layouts(src):
        d = next(x for n, x in layouts(dst) if n == name)
        assert ransac_homography(s, d, seed=0).valid, name
    assert signatures() == before
