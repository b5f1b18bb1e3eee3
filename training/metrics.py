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

from typing import Any

import numpy as np
import torch

__all__ = ["FAILURE_PX", "corner_errors", "summarize"]

FAILURE_PX = 10.0


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
