"""Fit the weights of /estimate's confidence model (app.estimation.selection.confidence_of).

    .venv/bin/python bench/calibrate_confidence.py            # 12 pairs per kind, ~2 min
    .venv/bin/python bench/calibrate_confidence.py --per-kind 4

Synthetic 640x480 pairs of every kind of ``training.data.hard_pairs`` (seed 1000, apart from
the benchmark's seeds) go through the same pipeline as ``/estimate?method=auto`` in-process
(HomographyNet on ONNX Runtime, SIFT + ACA RANSAC, photometric scoring and refinement); every
candidate (starts and refined ones, winners or not) is one sample: its
``confidence_features`` and whether its mean corner error is within ``CONFIDENCE_PX``. A
logistic regression (Newton's method, a small L2 penalty) is fitted and its weights printed
with the flag's precision and recall on these samples; paste them into ``CONFIDENCE_WEIGHTS``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.estimation.selection import (  # noqa: E402
    CONFIDENCE_PX,
    SelectionOptions,
    confidence_features,
    corner_distance,
    select_homography,
)
from app.features import estimate_features  # noqa: E402
from app.inference.engine import OnnxHomographyEngine  # noqa: E402
from app.inference.homography import network_homography  # noqa: E402
from training.data.hard_pairs import make_hard_pairs  # noqa: E402


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Weights w maximising the L2-penalised log-likelihood of P(y=1) = sigmoid(X @ w)."""
    w = np.zeros(X.shape[1])
    reg = l2 * np.eye(X.shape[1])
    reg[-1, -1] = 0.0  # the bias is not penalised
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        g = X.T @ (p - y) + reg @ w
        Hs = X.T @ (X * (p * (1 - p))[:, None]) + reg
        step = np.linalg.solve(Hs, g)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-kind", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--model", default=str(ROOT / "models" / "homographynet_regression.onnx"))
    args = ap.parse_args()
    engine = OnnxHomographyEngine(Path(args.model), ("CPUExecutionProvider",))
    opts = SelectionOptions()
    X, y, winners = [], [], []
    for p in make_hard_pairs(args.per_kind, seed=args.seed):
        size = (p.a.shape[1], p.a.shape[0])
        starts = {
            "network": network_homography(engine, p.a, p.b),
            "features": estimate_features(p.a, p.b).b_H_a,
        }
        sel = select_homography(p.a, p.b, starts, opts)
        for c in sel.candidates:
            if not c.score.usable:
                continue
            ok = corner_distance(c.b_H_a, p.b_H_a, size) <= CONFIDENCE_PX
            X.append(confidence_features(c.score))
            y.append(float(ok))
            if c is sel.best:
                winners.append((len(X) - 1, ok))
    Xa, ya = np.array(X), np.array(y)
    w = fit_logistic(Xa, ya)
    conf = 1.0 / (1.0 + np.exp(-(Xa @ w)))
    print(f"{len(ya)} candidates, {int(ya.sum())} within {CONFIDENCE_PX} px")
    print("CONFIDENCE_WEIGHTS = (" + ", ".join(f"{v:.3f}" for v in w) + ")")
    for name, idx in (("all candidates", np.arange(len(ya))), ("winners", [i for i, _ in winners])):
        c, t = conf[idx] >= opts.low_confidence, ya[idx] > 0
        print(
            f"{name}: {len(idx)}, bad {int((~t).sum())}; flagged low: {int((~c).sum())} "
            f"(of which bad {int((~c & ~t).sum())}); bad not flagged: {int((c & ~t).sum())}"
        )


if __name__ == "__main__":
    main()
