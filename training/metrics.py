"""MACE, the metric of the paper, and the conventions it is computed under.

Conventions (shared with ``app.inference.preprocess`` and ``training.data.pairs``):

* Offsets are (x, y) in pixels of the P x P patch, corners in order TL, TR, BR, BL, each the
  centre of the corner pixel: ``(0, 0), (P-1, 0), (P-1, P-1), (0, P-1)``.
* ``offset_i`` = position in patch A of the content found at square corner ``i`` of patch B,
  minus that corner: ``a_H_b = solve(corners, corners + offsets)`` maps B pixels to A pixels.
* Corner error of a pair = mean over the 4 corners of the Euclidean distance between predicted
  and true corner positions ``corner_i + offset_i`` (equivalently between the offsets), in px.
* MACE = mean of the corner errors over pairs; we also report the median, 95th percentile and
  failures: pairs with corner error > ``failure_px`` (10 px by default) or with no estimate.
* A method that returns no estimate for a pair (a classical pipeline that found no homography)
  is scored at the identity's error (zero offsets) in every statistic and counted as a failure;
  ``no_estimate`` reports how many.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

__all__ = [
    "FAILURE_PX",
    "calibration_stats",
    "corner_auc",
    "corner_errors",
    "success_rates",
    "summarize",
]

FAILURE_PX = 10.0
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy 1.26 has only trapz


def corner_errors(pred: Any, true: Any) -> Any:
    """(N, 4, 2) predicted and true offsets -> (N,) mean corner distance in px."""
    if isinstance(pred, torch.Tensor):
        return (pred.float() - true.float()).norm(dim=-1).mean(dim=-1)
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return np.linalg.norm(diff, axis=-1).mean(axis=-1)


def summarize(
    errors: np.ndarray, no_estimate: np.ndarray | None = None, failure_px: float = FAILURE_PX
) -> dict[str, float]:
    """(N,) corner errors (no-estimate pairs already scored at the identity) -> statistics."""
    e = np.asarray(errors, dtype=np.float64)
    miss = np.zeros(e.shape, bool) if no_estimate is None else np.asarray(no_estimate, bool)
    fail = (e > failure_px) | miss
    return {
        "n": int(e.size),
        "mean": float(e.mean()),
        "median": float(np.median(e)),
        "p95": float(np.percentile(e, 95)),
        "failures": int(fail.sum()),
        "failure_rate": float(fail.mean()),
        "no_estimate": int(miss.sum()),
    }


def success_rates(errors: np.ndarray, thresholds: tuple[float, ...]) -> dict[float, float]:
    """Fraction of pairs whose corner error is at most each threshold (no estimate: inf)."""
    e = np.asarray(errors, dtype=np.float64)
    return {t: float(np.mean(e <= t)) if e.size else float("nan") for t in thresholds}


def corner_auc(errors: np.ndarray, thresholds: tuple[float, ...]) -> dict[float, float]:
    """Area under the cumulative corner-error curve up to each threshold, over the threshold
    (HPatches homography convention, as in SuperGlue's and glue-factory's evaluations): the
    recall ``r(e)`` (fraction of pairs with error <= e) integrated from 0 to ``t`` with the
    trapezoid rule on the sorted errors, divided by ``t``; in [0, 1]. A pair without an
    estimate counts with an infinite error.

    Example:
        >>> round(corner_auc(np.array([0.0, 1.0, np.inf]), (2.0,))[2.0], 4)
        0.5833
    """
    e = np.sort(np.asarray(errors, dtype=np.float64))
    n = e.size
    out = {}
    for t in thresholds:
        if n == 0:
            out[t] = float("nan")
            continue
        k = int(np.searchsorted(e, t, side="right"))
        xs = np.concatenate([[0.0], e[:k], [t]])
        ys = np.concatenate([[0.0], np.arange(1, k + 1) / n, [k / n]])
        out[t] = float(_trapezoid(ys, xs) / t)
    return out


def calibration_stats(
    conf: np.ndarray, ok: np.ndarray, errors: np.ndarray, bins: int = 10
) -> dict[str, Any]:
    """How well confidences ``conf`` (N,) in [0, 1] predict the outcomes ``ok`` (N,) bool: the
    Brier score, the expected calibration error (``bins`` equal-width bins, each bin's
    |mean confidence - accuracy| weighted by its share of answers), the answers with an error
    (``errors`` (N,), px) over 10 px and a confidence >= 0.5, and the bins as
    (lo, hi, n, mean confidence, accuracy)."""
    conf, ok = np.asarray(conf, float), np.asarray(ok, float)
    edges = np.linspace(0, 1, bins + 1)
    table, ece = [], 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (conf >= lo) & ((conf < hi) if hi < 1 else (conf <= hi))
        if m.any():
            table.append((lo, hi, int(m.sum()), float(conf[m].mean()), float(ok[m].mean())))
            ece += m.mean() * abs(conf[m].mean() - ok[m].mean())
    return {
        "brier": float(np.mean((conf - ok) ** 2)),
        "ece": float(ece),
        "over_10px_confident": int(np.sum((np.asarray(errors) > 10) & (conf >= 0.5))),
        "bins": table,
    }
