"""training.metrics: MACE and its summary."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from training.metrics import corner_errors, summarize


@given(st.floats(-50, 50), st.floats(-50, 50))
def test_uniform_shift(dx: float, dy: float) -> None:
    true = np.zeros((1, 4, 2))
    pred = true + [dx, dy]
    assert np.isclose(corner_errors(pred, true)[0], np.hypot(dx, dy))
    assert np.isclose(
        corner_errors(torch.tensor(pred), torch.tensor(true))[0].item(),
        np.hypot(dx, dy),
        rtol=1e-5,
        atol=1e-5,
    )


def test_mean_over_corners_and_summary() -> None:
    true = np.zeros((2, 4, 2))
    pred = true.copy()
    pred[0, 0] = [3, 4]  # one corner 5 px off -> pair error 1.25
    pred[1] = 20.0  # every corner 20*sqrt(2) off
    e = corner_errors(pred, true)
    assert np.allclose(e, [1.25, 20 * np.sqrt(2)])
    s = summarize(e, np.array([True, False]))
    assert s["failures"] == 2 and s["no_estimate"] == 1 and s["n"] == 2
    assert np.isclose(s["mean"], e.mean()) and np.isclose(s["median"], np.median(e))
