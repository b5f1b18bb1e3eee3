"""Real photo pairs and rendered oblique views: every method's corner error, success rates,
AUC of the corner-error curve (HPatches convention) and time, in one run.

    .venv/bin/python bench/real_pairs.py                          # real pairs + 200 rendered
    .venv/bin/python bench/real_pairs.py --rendered 40 --methods auto,opencv-sift
    .venv/bin/python bench/real_pairs.py --baseline-root /tmp/old  # + auto of another checkout

Data (read from ``../shared/data``; a part that is absent is skipped and said so):

* **real**: every sequence under ``--real-dir`` (``img1..N`` with ``H1toKp``; here Oxford's
  ``bikes`` (blur) and ``leuven`` (lighting)), pairs 1 -> K, plus the graffiti pair 1 -> 3 (a
  40 deg viewpoint change) from Debian's opencv-doc when installed (``make samples``);
* **rendered**: ``--rendered`` pairs of :mod:`training.data.oblique` (two pinhole cameras
  looking at a mosaic of photos: tilt 0-70 deg, zoom 0.25-4x, any roll, lighting, blur, noise,
  JPEG, occluders) from the *test* split of ``--photos`` (seed ``--seed``); the confidence is
  calibrated on the *val* split with other seeds (``bench/calibrate_confidence.py``).

Methods: the service over HTTP (uvicorn on 127.0.0.1, PNG uploads, one request at a time; the
time is the server's ``timings_ms.total``, decode included): ``auto``, ``features`` (SIFT + our
RANSAC), ``features-asift`` (``detector=asift``), ``network+refine`` (``refine=true``); and
OpenCV in-process on the decoded images (no HTTP, no decode): ``opencv-sift`` (SIFT, ratio 0.75,
``cv2.USAC_MAGSAC`` at 3 px: the ten-line baseline), ``opencv-orb`` (ORB 4000, same fit),
``opencv-asift`` (``cv2.AffineFeature`` around SIFT, same fit; slow: seconds per pair).

Corner error: mean distance (pixels of B) between image A's four corners mapped by the estimate
and by the truth; no estimate counts as infinite. Per method: success at 1/3/5/10 px, AUC@3/5/10
(the recall curve integrated up to the threshold, over it), median error and time; per kind
success at 5 px; for ``auto``, its confidence against the truth. ``--plot`` writes the
cumulative error curves (PNG); ``--json`` every pair's result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from _opencv import opencv_pipeline
from _server import free_port, start_server, wait_ready

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.geometry.points import corner_distance  # noqa: E402
from training.metrics import calibration_stats, corner_auc, success_rates  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
THRESHOLDS = (1.0, 3.0, 5.0, 10.0)
AUCS = (3.0, 5.0, 10.0)
SERVICE = {
    "auto": "/estimate?method=auto",
    "features": "/estimate?method=features",
    "features-asift": "/estimate?method=features&detector=asift",
    "network+refine": "/estimate?method=network&refine=true",
}
OPENCV = ("opencv-sift", "opencv-orb", "opencv-asift")
DEFAULT_METHODS = (*SERVICE, *OPENCV)


@dataclass
class Pair:
    a: np.ndarray  # (H, W) or (H, W, 3) uint8
    b: np.ndarray
    b_H_a: np.ndarray
    name: str
    kind: str
    dataset: str  # "real" or "rendered"


def real_pairs(folder: Path) -> list[Pair]:
    from training.data.hard_pairs import graf_pair
    from training.data.real_pairs import load_real_pairs

    out = [Pair(p.a, p.b, p.b_H_a, p.name, p.sequence, "real") for p in load_real_pairs(folder)]
    g = graf_pair()
    if g is not None:
        out.append(Pair(g.a, g.b, g.b_H_a, "graf 1-3", "graf", "real"))
    return out


def rendered_pairs(photos: Path, n: int, seed: int, split: str = "test") -> list[Pair]:
    from training.data.oblique import load_photos, make_oblique_pairs

    ps = make_oblique_pairs(load_photos(photos, split), n, seed=seed)
    return [
        Pair(
            p.a,
            p.b,
            p.b_H_a,
            f"{p.kind} {i} ({p.angle_deg:.0f} deg, zoom {p.zoom:.2f})",
            p.kind,
            "rendered",
        )
        for i, p in enumerate(ps)
    ]


def opencv_method(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray | None]:
    """``opencv-sift`` / ``opencv-orb`` / ``opencv-asift``: ratio 0.75, ``cv2.USAC_MAGSAC`` at
    3 px (:func:`_opencv.opencv_pipeline`)."""
    return opencv_pipeline(name.removeprefix("opencv-"), cv2.USAC_MAGSAC)


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _error(H: np.ndarray | None, p: Pair) -> float:
    if H is None or not np.isfinite(H).all():
        return float("inf")
    return corner_distance(np.asarray(H, np.float64), p.b_H_a, (p.a.shape[1], p.a.shape[0]))


def run_service(base: str, name: str, url: str, pairs: list[Pair], pngs) -> list[dict]:
    import httpx

    out = []
    with httpx.Client(base_url=base, timeout=600) as client:
        client.post(url, files={"image_a": pngs[0][0], "image_b": pngs[0][1]})  # warm up
        for p, (pa, pb) in zip(pairs, pngs, strict=True):
            t = time.perf_counter()
            r = client.post(url, files={"image_a": ("a.png", pa), "image_b": ("b.png", pb)})
            latency = time.perf_counter() - t
            row = {"pair": p.name, "dataset": p.dataset, "kind": p.kind, "latency": latency}
            if r.status_code != 200:
                row.update(error=float("inf"), seconds=latency, status=r.status_code)
            else:
                body = r.json()
                q = body["quality"]
                row.update(
                    error=_error(np.array(body["b_H_a"]), p),
                    seconds=body["timings_ms"]["total"] / 1e3,
                    confidence=q["confidence"],
                    low_confidence=q["low_confidence"],
                    chosen=body["chosen"],
                    escalation=q.get("escalation") or [],
                )
            out.append(row)
            print(
                f"  {name:16s} {p.name:40s} {row['error']:9.2f} px {row['seconds']:6.2f} s",
                flush=True,
            )
    return out


def run_opencv(name: str, pairs: list[Pair]) -> list[dict]:
    fn = opencv_method(name)
    fn(pairs[0].a, pairs[0].b)  # warm up
    out = []
    for p in pairs:
        t = time.perf_counter()
        H = fn(p.a, p.b)
        dt = time.perf_counter() - t
        out.append(
            {
                "pair": p.name,
                "dataset": p.dataset,
                "kind": p.kind,
                "error": _error(H, p),
                "seconds": dt,
            }
        )
        print(f"  {name:16s} {p.name:40s} {out[-1]['error']:9.2f} px {dt:6.2f} s", flush=True)
    return out


def summary(rows: list[dict]) -> dict:
    e = np.array([r["error"] for r in rows], np.float64)
    t = np.array([r["seconds"] for r in rows], np.float64)
    kinds = sorted({r["kind"] for r in rows})
    return {
        "n": len(rows),
        "success": success_rates(e, THRESHOLDS),
        "auc": corner_auc(e, AUCS),
        "median_error": float(np.median(e)) if e.size else float("nan"),
        "median_seconds": float(np.median(t)) if t.size else float("nan"),
        "max_seconds": float(t.max()) if t.size else float("nan"),
        "by_kind": {
            k: float(np.mean([r["error"] <= 5.0 for r in rows if r["kind"] == k])) for k in kinds
        },
    }


def print_table(title: str, results: dict[str, list[dict]], dataset: str) -> dict[str, dict]:
    sums = {m: summary([r for r in rows if r["dataset"] == dataset]) for m, rows in results.items()}
    sums = {m: s for m, s in sums.items() if s["n"]}
    if not sums:
        return {}
    n = next(iter(sums.values()))["n"]
    print(f"\n### {title} ({n} pairs)\n")
    head = " | ".join(f"@{t:g} px" for t in THRESHOLDS)
    aucs = " | ".join(f"AUC@{t:g}" for t in AUCS)
    print(f"| method | {head} | {aucs} | median error (px) | median time (s) | max time (s) |")
    print("|---|" + "---:|" * (len(THRESHOLDS) + len(AUCS) + 3))
    for m, s in sums.items():
        succ = " | ".join(f"{100 * s['success'][t]:.1f} %" for t in THRESHOLDS)
        auc = " | ".join(f"{100 * s['auc'][t]:.1f}" for t in AUCS)
        print(
            f"| {m} | {succ} | {auc} | {s['median_error']:.2f} | {s['median_seconds']:.2f} "
            f"| {s['max_seconds']:.2f} |"
        )
    kinds = sorted({k for s in sums.values() for k in s["by_kind"]})
    print(f"\nSuccess at 5 px per kind ({dataset}):\n")
    print("| method | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for m, s in sums.items():
        print(
            f"| {m} | "
            + " | ".join(f"{100 * s['by_kind'].get(k, float('nan')):.0f} %" for k in kinds)
            + " |"
        )
    return sums


def confidence_report(rows: list[dict]) -> dict:
    have = [r for r in rows if "confidence" in r]
    if not have:
        return {}
    e = np.array([r["error"] for r in have])
    c = np.array([r["confidence"] for r in have])
    bad = e > 5
    st = calibration_stats(c, ~bad, e)
    rep = {
        "answers": len(have),
        "over_10px_with_confidence_ge_0.5": st["over_10px_confident"],
        "failures_5px": int(bad.sum()),
        "failures_flagged": int(np.sum(bad & (c < 0.5))),
        "good_flagged": int(np.sum(~bad & (c < 0.5))),
        "brier": st["brier"],
        "ece": st["ece"],
        "bins": st["bins"],
    }
    print(
        f"\nauto's confidence: {rep['answers']} answers, {rep['over_10px_with_confidence_ge_0.5']} "
        f"off by > 10 px with confidence >= 0.5 (target 0); {rep['failures_flagged']} of "
        f"{rep['failures_5px']} failures (> 5 px) flagged; {rep['good_flagged']} good answers "
        f"flagged; Brier {st['brier']:.4f}, ECE {st['ece']:.4f}"
    )
    print("\n| confidence | answers | mean confidence | within 5 px | gap |")
    print("|---|---:|---:|---:|---:|")
    for lo, hi, n, mc, acc in st["bins"]:
        print(f"| {lo:.1f}-{hi:.1f} | {n} | {mc:.3f} | {acc:.3f} | {abs(mc - acc):.3f} |")
    return rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real-dir", type=Path, default=SHARED / "real-pairs")
    ap.add_argument("--photos", type=Path, default=SHARED / "photos")
    ap.add_argument("--rendered", type=int, default=200, help="rendered pairs (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--baseline-root", type=Path, help="also run 'auto' served from this checkout")
    ap.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE", help="server settings")
    ap.add_argument("--json", type=Path, help="write every pair's result here")
    ap.add_argument("--plot", type=Path, help="write the cumulative error curves here (PNG)")
    ap.add_argument("--reliability", type=Path, help="write auto's reliability diagram (PNG)")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in DEFAULT_METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {', '.join(DEFAULT_METHODS)}")

    pairs = real_pairs(args.real_dir)
    if not pairs:
        print(f"no real pairs: {args.real_dir} is absent (and opencv-doc's graffiti pair too)")
    if args.rendered > 0:
        if args.photos.is_dir():
            pairs += rendered_pairs(args.photos, args.rendered, args.seed)
        else:
            print(f"no rendered pairs: {args.photos} is absent")
    if not pairs:
        raise SystemExit("nothing to benchmark")
    print(
        f"{sum(p.dataset == 'real' for p in pairs)} real and "
        f"{sum(p.dataset == 'rendered' for p in pairs)} rendered pairs; cv2 {cv2.__version__}, "
        f"{os.cpu_count()} CPUs"
    )
    pngs = [(_png(p.a), _png(p.b)) for p in pairs]
    results: dict[str, list[dict]] = {}
    env = dict(kv.split("=", 1) for kv in args.env)
    servers = [("", ROOT)] + ([("baseline ", args.baseline_root)] if args.baseline_root else [])
    for tag, root in servers:
        wanted = [m for m in methods if m in SERVICE] if not tag else ["auto"]
        if not wanted:
            continue
        port = free_port()
        proc = start_server(port, env, root=root)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, seconds=300)
            for m in wanted:
                print(f"{tag}{m} ...", flush=True)
                results[f"{tag}{m}"] = run_service(base, m, SERVICE[m], pairs, pngs)
        finally:
            proc.terminate()
            proc.wait(30)
    for m in methods:
        if m in OPENCV:
            print(f"{m} ...", flush=True)
            results[m] = run_opencv(m, pairs)

    sums = {
        "real": print_table("Real pairs", results, "real"),
        "rendered": print_table("Rendered oblique pairs", results, "rendered"),
    }
    conf = confidence_report(results.get("auto", []))
    for d, s in sums.items():
        if "auto" not in s:
            continue
        cv = {m: v for m, v in s.items() if m.startswith("opencv")}
        if cv:
            best5 = max(v["success"][5.0] for v in cv.values())
            bestauc = max(v["auc"][5.0] for v in cv.values())
            a = s["auto"]
            print(
                f"{d}: auto success@5 {100 * a['success'][5.0]:.1f} % vs best OpenCV "
                f"{100 * best5:.1f} % ({'met' if a['success'][5.0] >= best5 else 'NOT met'}); "
                f"AUC@5 {100 * a['auc'][5.0]:.1f} vs best OpenCV {100 * bestauc:.1f} "
                f"({'met' if a['auc'][5.0] > bestauc else 'NOT met'})"
            )
    if "auto" in results:
        sift = {r["pair"]: r["error"] <= 5 for r in results.get("opencv-sift", [])}
        solved = [r for r in results["auto"] if sift.get(r["pair"])]
        esc = [r for r in results["auto"] if any("asift:" in s for s in r.get("escalation", []))]
        if solved:
            med = float(np.median([r["seconds"] for r in solved]))
            line = f"auto on the {len(solved)} pairs OpenCV SIFT solves: median {med:.2f} s"
            base = {r["pair"]: r["seconds"] for r in results.get("baseline auto", [])}
            if base:
                bmed = float(np.median([base[r["pair"]] for r in solved]))
                line += f", baseline {bmed:.2f} s, ratio {med / bmed:.2f} (target <= 1.2)"
            print(line)
        if esc:
            print(
                f"escalated pairs: {len(esc)}, their time: median "
                f"{np.median([r['seconds'] for r in esc]):.2f} s, max "
                f"{max(r['seconds'] for r in esc):.2f} s (target <= 5 s)"
            )
    if args.plot:
        from _plots import error_curves

        error_curves(results, args.plot)
    if args.reliability and conf:
        from _plots import reliability_plot

        have = [r for r in results["auto"] if "confidence" in r]
        c = np.array([r["confidence"] for r in have])
        ok = np.array([r["error"] <= 5.0 for r in have])
        reliability_plot(c, ok, args.reliability, "auto on the benchmark pairs")
        print(f"wrote {args.reliability}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"results": results, "summary": sums, "confidence": conf}, indent=1, default=float
            )
        )


if __name__ == "__main__":
    main()
