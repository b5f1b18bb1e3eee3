"""No JIT compilation at request time for the refinement: after :func:`warm_up_alignment`,
every input a request can bring (sizes, masks, starts, options, read-only, strided, float or
uint8 images, float32 starts) runs on already compiled specialisations of the CPU kernels."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

from app.alignment import RefineOptions, refine_homography
from app.alignment import _kernels as K
from app.alignment.warmup import warm_up_alignment, warmup_pair
from tests.alignment.helpers import make_pair


def signatures() -> dict[str, int]:
    return {
        name: len(obj.signatures)
        for name, obj in vars(K).items()
        if isinstance(obj, numba.core.registry.CPUDispatcher)
    }


def test_warm_up_compiles_every_kernel():
    warm_up_alignment()
    assert set(K.__all__) <= set(signatures())
    # the public kernels; helpers called only from inside them compile as part of their callers
    assert all(signatures()[name] >= 1 for name in K.__all__), signatures()


def test_warm_up_pair_is_aligned_by_the_warm_up_options():
    a, b = warmup_pair()
    assert a.shape == b.shape == (1, 1, 48, 64) and a.dtype == torch.float32
    assert not torch.equal(a, b)


@pytest.mark.parametrize(
    "options",
    [
        RefineOptions(),
        RefineOptions(solver="gauss_newton", photometric="none"),
        RefineOptions(robust="tukey", max_iterations=5),
        RefineOptions(robust="huber", photometric="none", max_iterations=5),
        RefineOptions(num_levels=1, search=False, max_iterations=5),
    ],
    ids=["default", "gn-none", "tukey", "huber-none", "one-level"],
)
def test_requests_need_no_new_kernel(options):
    warm_up_alignment()
    before = signatures()
    a, b, H = make_pair("camera", 8, 3, (160, 120))
    mask = np.zeros(a.shape, bool)
    mask[10:-10, 20:-20] = True
    init = (H + np.array([[0, 0, 2.0], [0, 0, -1.0], [0, 0, 0]])).astype(np.float32)
    strided = np.repeat(b, 2, axis=1)[:, ::2]  # a non-contiguous view of B
    for image_a, image_b, kw in [
        (a, b, {}),  # read-only uint8 (helpers.photo)
        (a.astype(np.float32) / 255, strided, {"b_H_a_init": init}),
        (a, b[:100, :150], {"mask_a": mask}),
        (torch.from_numpy(a.astype(np.float32) / 255).t(), b.T, {}),  # a transposed tensor
    ]:
        r = refine_homography(image_a, image_b, options=options, **kw)
        assert np.isfinite(r.b_H_a).all()
    assert signatures() == before, "a refinement kernel compiled a new specialisation"
