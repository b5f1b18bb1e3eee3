"""training.metrics: MACE and its summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.metrics import corner_auc, corner_errors, success_rates, summarize


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


# ------------------------------------------------------------------ corner_auc, success_rates


def brute_auc(errors: np.ndarray, t: float, steps: int = 40_001) -> tuple[float, float]:
    """(AUC of the recall curve drawn through the sorted errors, AUC of the step recall), both
    over [0, t] by a dense midpoint sum: the first is the curve the trapezoid rule integrates
    (linear between (0, 0), (e_1, 1/n), ..., flat after the last error below t), the second
    the exact fraction-below-e function, which bounds it from below."""
    e = np.sort(errors)
    n = len(e)
    x = (np.arange(steps) + 0.5) * (t / steps)
    step = np.searchsorted(e, x, side="right") / n
    below = e[e <= t]
    xp = np.r_[0.0, below, np.inf]
    fp = np.r_[0.0, np.arange(1, len(below) + 1) / n, len(below) / n]
    linear = np.interp(x, xp[:-1], fp[:-1]) if len(below) else np.zeros_like(x)
    return float(linear.mean()), float(step.mean())


errors_st = st.lists(
    st.one_of(st.floats(0, 30), st.just(math.inf), st.sampled_from([0.0, 1.0, 5.0])),
    min_size=1,
    max_size=25,
)


@settings(max_examples=100, deadline=None)
@given(errors_st, st.floats(0.25, 25))
def test_corner_auc_is_the_integral_of_the_recall_curve(errors: list[float], t: float) -> None:
    e = np.array(errors)
    auc = corner_auc(e, (t,))[t]
    linear, step = brute_auc(e, t)
    assert auc == pytest.approx(linear, abs=2e-4)
    # the curve through the points is above the step curve by at most one step (1/n)
    assert step - 1e-4 <= auc <= step + 1 / len(e) + 1e-4
    # an average of the recall up to t: in [0, recall(t)] = the success rate at t
    assert 0.0 <= auc <= success_rates(e, (t,))[t] + 1e-12


@settings(max_examples=60, deadline=None)
@given(errors_st, st.floats(0.25, 10), st.floats(0.25, 10))
def test_corner_auc_grows_with_the_threshold(errors: list[float], t1: float, t2: float) -> None:
    """The mean of a non-decreasing recall over [0, t] cannot drop as t grows."""
    lo, hi = sorted((t1, t2))
    out = corner_auc(np.array(errors), (lo, hi))
    assert out[lo] <= out[hi] + 1e-12


def test_corner_auc_known_values() -> None:
    # the docstring's example: recall 1/3 at 0, 2/3 from 1 on, inf never recalled
    assert corner_auc(np.array([0.0, 1.0, np.inf]), (2.0,))[2.0] == pytest.approx(0.58333333)
    # one error of 1 px: the curve rises linearly to 1 at 1 px, then stays at 1
    assert corner_auc(np.array([1.0]), (1.0, 2.0, 4.0)) == pytest.approx(
        {1.0: 0.5, 2.0: 0.75, 4.0: 0.875}
    )
    assert corner_auc(np.zeros(4), (1.0, 5.0)) == {1.0: 1.0, 5.0: 1.0}  # every pair exact
    assert corner_auc(np.array([3.0, 7.0]), (2.0,)) == {2.0: 0.0}  # all above t
    assert corner_auc(np.full(3, np.inf), (1.0, 10.0)) == {1.0: 0.0, 10.0: 0.0}
    # the order of the errors does not matter; lists are taken too
    assert corner_auc([4.0, 0.5, 2.0], (3.0,)) == corner_auc(np.array([0.5, 2.0, 4.0]), (3.0,))


def test_corner_auc_inf_counts_in_the_denominator() -> None:
    finite = corner_auc(np.array([0.0, 1.0]), (2.0,))[2.0]
    with_miss = corner_auc(np.array([0.0, 1.0, np.inf, np.inf]), (2.0,))[2.0]
    assert with_miss == pytest.approx(finite / 2)


def test_corner_auc_and_success_rates_of_no_pairs_are_nan() -> None:
    out = corner_auc(np.array([]), (1.0, 3.0))
    assert set(out) == {1.0, 3.0} and all(math.isnan(v) for v in out.values())
    rates = success_rates(np.array([]), (1.0,))
    assert math.isnan(rates[1.0])


def test_success_rates() -> None:
    e = np.array([0.0, 1.0, 1.0, 2.5, np.inf, 40.0])
    assert success_rates(e, (0.0, 1.0, 3.0, 100.0)) == {
        0.0: pytest.approx(1 / 6),
        1.0: pytest.approx(3 / 6),  # at most the threshold counts
        3.0: pytest.approx(4 / 6),
        100.0: pytest.approx(5 / 6),  # no estimate (inf) never succeeds
    }
    assert success_rates([0.5, 2.0], (1.0,)) == {1.0: 0.5}


@settings(max_examples=60, deadline=None)
@given(errors_st, st.floats(0, 40))
def test_success_rates_count_the_errors_below(errors: list[float], t: float) -> None:
    e = np.array(errors)
    assert success_rates(e, (t,))[t] == pytest.approx(sum(x <= t for x in errors) / len(errors))
