"""Fit /estimate's confidence model (app.estimation.evidence.EvidenceModel) and check the
plausibility bounds (app.estimation.evidence.implausible) on data kept apart from the benchmark.

    .venv/bin/python bench/calibrate_confidence.py                 # ~150 rendered + real pairs
    .venv/bin/python bench/calibrate_confidence.py --rendered 40 --no-real
    .venv/bin/python bench/calibrate_confidence.py --plausibility  # only the bounds' data

Calibration pairs (``../shared/data``; absent parts are skipped and said so):

* rendered oblique views (:mod:`training.data.oblique`) of the **val** split of the photos, seed
  ``--seed`` (1000): the benchmark (``bench/real_pairs.py``) renders the **test** split, seed 0;
* real pairs of the sequences under ``--real-dir``, every ``i -> j`` with ``2 <= i < j`` (the
  same scenes as the benchmark's ``1 -> K`` pairs, but other image pairs).

Every pair goes through ``method=auto`` in-process with the escalation forced (every matcher
runs, so that strong and weak candidates of every kind are seen), and every eligible candidate
(starts and refined ones, winners or not) is one sample: its
:meth:`app.estimation.evidence.Evidence.features` and whether its mean corner error is within
``CONFIDENCE_PX``. A logistic regression (Newton's method, a small L2 penalty) is fitted; its
weights are printed for ``DEFAULT_MODEL``, with the winners' calibration under the new weights
(Brier score, expected calibration error, answers off by more than 10 px with confidence >= 0.5)
on these pairs and, 5-fold by pair, out of sample.

``--plausibility``: 20,000 random camera pairs of the renderer's geometry pushed past the
service's claims (zoom 1/8-8x, tilts 0-80 deg on both cameras, any roll) give the zoom and the
anisotropy of the true ``b_H_a`` at the overlap's centre; the bounds of ``implausible`` must lie
beyond their extremes.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.estimation import CONFIDENCE_PX, AutoOptions, estimate_auto  # noqa: E402
from app.estimation.evidence import FEATURE_NAMES, local_jacobian, overlap_centre  # noqa: E402
from app.features import estimate_features  # noqa: E402
from app.geometry.points import corner_distance  # noqa: E402
from training.metrics import calibration_stats  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


# more evidence never lowers the confidence: every evidence weight is >= 0 (the bias and
# "matches exist", which may count against a candidate that explains none of them, are free)
MONOTONE = tuple(n not in ("has_matches", "bias") for n in FEATURE_NAMES)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Weights w maximising the L2-penalised log-likelihood of P(y=1) = sigmoid(X @ w), with
    the evidence weights kept non-negative (``MONOTONE``): correlated inputs (the two NCCs,
    the inlier count and ratio) otherwise trade signs and the model stops being monotone."""
    from scipy.optimize import minimize

    reg = np.full(X.shape[1], l2)
    reg[-1] = 0.0  # the bias is not penalised

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ w
        nll = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(reg * w * w)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        return float(nll), X.T @ (p - y) + reg * w

    bounds = [(0.0, None) if m else (None, None) for m in MONOTONE]
    res = minimize(loss, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds)
    return res.x


def collect(pairs, engine) -> list[dict]:
    """Run auto on every pair twice: the fast stage alone (what a confident pair's answer is
    judged on: SIFT's matches only) and with the escalation forced (every matcher's matches
    pooled); one record per pair and run, with its candidates."""
    from app.inference.homography import network_homography

    opts = AutoOptions(escalate_below=1.01, budget_seconds=60.0)
    opts = replace(opts, selection=replace(opts.selection, seconds_per_refine=60.0))
    out = []
    for i, (a, b, H, name) in enumerate(pairs):
        t = time.perf_counter()
        size = (a.shape[1], a.shape[0])
        net = network_homography(engine, a, b)
        feat = estimate_features(a, b, opts.features)
        for budget in (0.0, None):
            sel = estimate_auto(a, b, net, feat, opts, budget_seconds=budget)
            out.append(_record(sel, H, size, f"{name} {'fast' if budget == 0 else 'escalated'}"))
        best = min((c["err"] for c in out[-1]["cands"]), default=np.inf)
        print(
            f"{i:4d} {name:36s} {len(out[-1]['cands'])} candidates, best {best:8.2f} px, "
            f"{time.perf_counter() - t:5.1f} s",
            flush=True,
        )
    return out


def _record(sel, H: np.ndarray, size: tuple[int, int], name: str) -> dict:
    cands = [
        {
            "x": c.evidence.features(),
            "err": corner_distance(c.b_H_a, H, size),
            "H": c.b_H_a,
            "score": c.score.score if c.score.usable else -np.inf,
            "eligible": not c.rejected and c.score.usable,
            "shared": c.score.shared,
        }
        for c in sel.candidates
    ]
    return {"name": name, "size": size, "cands": cands}


def winners(records: list[dict], w: np.ndarray, margin: float = 0.1):
    """The selection rule of :meth:`Selector.result` under weights ``w``: (confidence, error)
    of the answer of every record (of the candidates within ``margin`` of the highest
    confidence, the best photometric score)."""
    out = []
    for r in records:
        el = [c for c in r["cands"] if c["eligible"] and c["shared"] >= 0.05]
        if not el:
            continue
        conf = 1 / (1 + np.exp(-np.clip(np.array([c["x"] @ w for c in el]), -50, 50)))
        close = [j for j in range(len(el)) if conf[j] >= conf.max() - margin]
        j = max(close, key=lambda k: el[k]["score"])
        out.append((float(conf[j]), el[j]["err"]))
    return out


def plausibility() -> None:
    from training.data import oblique as ob

    rng = np.random.default_rng(0)
    size = tex = (640, 480)
    zooms, anis = [], []
    for _ in range(20000):
        u = rng.uniform
        zoom = math.exp(u(math.log(1 / 8), math.log(8)))
        ta, tb = u(0, 80), u(0, 80)
        base = u(1.0, 1.4)
        sa, sb = (base, base * zoom) if zoom >= 1 else (base / zoom, base)
        t = (u(-40, 40), u(-30, 30))
        va = ob.ViewParams(ob._fov(u(30, 70), ta, size, 85), ta, u(0, 360), u(-180, 180), sa, t)
        tb_ = (t[0] + u(-50, 50), t[1] + u(-50, 50))
        vb = ob.ViewParams(ob._fov(u(30, 70), tb, size, 85), tb, u(0, 360), u(-180, 180), sb, tb_)
        Ha, Hb = ob.plane_to_image(va, size, tex), ob.plane_to_image(vb, size, tex)
        if not ob._views_ok(Ha, Hb, size, 0.3)[0]:
            continue
        H = Hb @ np.linalg.inv(Ha)
        centre, _, _ = overlap_centre(H, size, size)
        if centre is None:
            continue
        sv = np.linalg.svd(local_jacobian(H, centre), compute_uv=False)
        zooms.append(math.sqrt(sv[0] * sv[1]))
        anis.append(sv[0] / sv[1])
    z, a = np.array(zooms), np.array(anis)
    print(f"{len(z)} camera pairs (zoom 1/8-8x, tilts 0-80 deg, any roll)")
    print(
        f"zoom at the overlap's centre: min {z.min():.4f} (1/{1 / z.min():.1f}), max {z.max():.2f}"
    )
    print(f"anisotropy there: 99.9th percentile {np.percentile(a, 99.9):.1f}, max {a.max():.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rendered", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--photos", type=Path, default=SHARED / "photos")
    ap.add_argument("--real-dir", type=Path, default=SHARED / "real-pairs")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--model", default=str(ROOT / "models" / "homographynet_regression.onnx"))
    ap.add_argument("--plot", type=Path, help="reliability diagram of the winners (PNG)")
    ap.add_argument("--plausibility", action="store_true")
    ap.add_argument("--records", type=Path, help="save the candidates here (pickle) ...")
    ap.add_argument("--reuse", action="store_true", help="... or fit on those saved before")
    args = ap.parse_args()
    if args.plausibility:
        plausibility()
        return
    if args.reuse and args.records and args.records.exists():
        import pickle

        fit_and_report(pickle.loads(args.records.read_bytes()), args.plot)
        return
    from app.inference.engine import OnnxHomographyEngine
    from training.data.oblique import load_photos, make_oblique_pairs
    from training.data.real_pairs import load_real_pairs

    pairs = []
    if args.photos.is_dir() and args.rendered > 0:
        rendered = make_oblique_pairs(
            load_photos(args.photos, "val"), args.rendered, seed=args.seed
        )
        pairs += [(p.a, p.b, p.b_H_a, f"rendered {i} {p.kind}") for i, p in enumerate(rendered)]
    else:
        print(f"no rendered pairs ({args.photos} absent or --rendered 0)")
    if not args.no_real:
        real = load_real_pairs(args.real_dir, all_pairs=True)
        if not real:
            print(f"no real pairs: {args.real_dir} is absent")
        pairs += [(p.a, p.b, p.b_H_a, f"real {p.name}") for p in real]
    if not pairs:
        raise SystemExit("no calibration pairs")
    engine = OnnxHomographyEngine(Path(args.model), ("CPUExecutionProvider",))
    records = collect(pairs, engine)
    if args.records:
        import pickle

        args.records.write_bytes(pickle.dumps(records))
    fit_and_report(records, args.plot)


GEOMETRIC = [
    FEATURE_NAMES.index(n) for n in ("log_inliers", "inlier_ratio", "spread", "has_matches")
]


def samples(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Every eligible candidate twice: with its evidence, and with the photometric evidence
    alone (its geometric terms as :meth:`Evidence.features` gives them when no keypoints were
    matched): low-texture pairs, where nothing matches, must get a confidence from the pixels
    alone, and calibration pairs nearly always have matches."""
    X = np.array([c["x"] for r in records for c in r["cands"] if c["eligible"]])
    y = np.array([c["err"] <= CONFIDENCE_PX for r in records for c in r["cands"] if c["eligible"]])
    photometric = X.copy()
    photometric[:, GEOMETRIC] = 0.0
    return np.concatenate([X, photometric]), np.concatenate([y, y]).astype(float)


def fit_and_report(records: list[dict], plot: Path | None) -> None:
    X, y = samples(records)
    w = fit_logistic(X, y)
    print(
        f"\n{len(y) // 2} eligible candidates of {len(records)} pairs, {int(y.sum()) // 2} "
        f"within {CONFIDENCE_PX:g} px (each also as photometric evidence alone)"
    )
    print("weights: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(FEATURE_NAMES, w, strict=True)))
    print("DEFAULT_MODEL = EvidenceModel((" + ", ".join(f"{v:.3f}" for v in w) + "))")
    win = winners(records, w)
    c, e = np.array([x for x, _ in win]), np.array([x for _, x in win])
    st = calibration_stats(c, e <= CONFIDENCE_PX, e)
    print(
        f"winners (in sample): {len(win)}, Brier {st['brier']:.4f}, ECE {st['ece']:.4f}, "
        f"over 10 px with confidence >= 0.5: {st['over_10px_confident']}"
    )
    # 5-fold by pair: weights fitted without the pair's candidates
    rng = np.random.default_rng(0)
    folds = rng.integers(0, 5, len(records))
    oos = []
    for k in range(5):
        tr = [r for r, f in zip(records, folds, strict=True) if f != k]
        te = [r for r, f in zip(records, folds, strict=True) if f == k]
        oos += winners(te, fit_logistic(*samples(tr)))
    c2, e2 = np.array([x for x, _ in oos]), np.array([x for _, x in oos])
    st2 = calibration_stats(c2, e2 <= CONFIDENCE_PX, e2)
    print(
        f"winners (5-fold out of sample): Brier {st2['brier']:.4f}, ECE {st2['ece']:.4f}, "
        f"over 10 px with confidence >= 0.5: {st2['over_10px_confident']}"
    )
    for lo, hi, n, mc, acc in st2["bins"]:
        print(
            f"  [{lo:.1f}, {hi:.1f}): {n:4d} answers, mean confidence {mc:.3f}, within 5 px {acc:.3f}"
        )
    if plot:
        from _plots import reliability_plot

        reliability_plot(c2, e2 <= CONFIDENCE_PX, plot, "calibration pairs, 5-fold")
        print(f"wrote {plot}")


if __name__ == "__main__":
    main()
