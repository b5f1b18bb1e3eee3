"""app.services.pose_loss: ragged depth lists are handled in memory proportional to their
total, and the total is bounded by a setting."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from app.core.config import Settings
from app.core.errors import DomainError
from app.services.pose_loss import Poses, compute_pose_loss


def _poses(n: int) -> tuple[Poses, Poses]:
    rng = np.random.default_rng(0)
    q = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
    c = rng.normal(size=(n, 3))
    return Poses(c + 0.1, q), Poses(c, q)


def test_ragged_depths_are_not_padded_to_the_longest() -> None:
    """Regression: 2,000 pairs with one list of 20,000 depths were padded to a (2000, 20000)
    float64 array and its mask (about 360 MB); now the work is O(total samples)."""
    est, true = _poses(2000)
    depths = [[2.0]] * 1999 + [list(np.linspace(1.0, 50.0, 20_000))]
    compute_pose_loss(est, true, Settings(log_json=False), depths=[[1.0]] * 2000)  # lazy imports
    tracemalloc.start()
    try:
        out = compute_pose_loss(est, true, Settings(log_json=False), depths=depths)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, f"peak {peak / 1e6:.1f} MB"
    assert out.count == 2000 and float(out.xmin[0]) == 2.0 == float(out.xmax[0])
    lo, hi = np.percentile(depths[-1], [2.5, 97.5])
    assert float(out.xmin[-1]) == pytest.approx(lo) and float(out.xmax[-1]) == pytest.approx(hi)


def test_the_total_number_of_samples_is_bounded() -> None:
    est, true = _poses(3)
    s = Settings(log_json=False, max_pose_depth_samples=10)
    with pytest.raises(DomainError) as e:
        compute_pose_loss(est, true, s, depths=[[1.0] * 5, [1.0] * 5, [1.0]])
    assert e.value.kind == "too_large" and e.value.field == "depths" and "11" in e.value.message
    compute_pose_loss(est, true, s, depths=[[1.0] * 5, [1.0] * 4, [1.0]])  # 10: accepted
