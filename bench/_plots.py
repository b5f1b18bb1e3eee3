"""Plots shared by the benchmarks (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.estimation import CONFIDENCE_PX
from training.metrics import calibration_stats


def reliability_plot(conf: np.ndarray, ok: np.ndarray, path: Path, title: str) -> None:
    """Reliability diagram: per confidence bin, the fraction within ``CONFIDENCE_PX``
    against the diagonal, with each bin's count; Brier score and ECE in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = calibration_stats(conf, ok, np.zeros(len(conf)))
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    xs = [(lo + hi) / 2 for lo, hi, *_ in st["bins"]]
    ax.bar(xs, [acc for *_, acc in st["bins"]], width=0.09, alpha=0.6, label="accuracy per bin")
    for (*_, n, _c, acc), x in zip(st["bins"], xs, strict=True):
        ax.annotate(str(n), (x, acc), ha="center", va="bottom", fontsize=7)
    ax.plot([c for _, _, _, c, _ in st["bins"]], [a for *_, a in st["bins"]], "o-", ms=3)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.05),
        xlabel="confidence",
        ylabel=f"fraction within {CONFIDENCE_PX:g} px",
        title=f"{title}\nBrier {st['brier']:.3f}, ECE {st['ece']:.3f}",
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def error_curves(results: dict[str, list[dict]], path: Path) -> None:
    """Cumulative corner-error curves (fraction of pairs within e px, e in 0-10), one panel per
    dataset, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [
        d
        for d in ("real", "rendered")
        if any(r["dataset"] == d for rows in results.values() for r in rows)
    ]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    x = np.linspace(0, 10, 201)
    for ax, d in zip(axes[0], datasets, strict=True):
        for m, rows in results.items():
            e = np.array([r["error"] for r in rows if r["dataset"] == d])
            if e.size:
                ax.plot(x, [(e <= t).mean() for t in x], label=m, lw=2 if m == "auto" else 1)
        ax.set(
            title=f"{d} pairs", xlabel="corner error (px)", ylabel="fraction of pairs", ylim=(0, 1)
        )
        ax.grid(alpha=0.3)
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")
