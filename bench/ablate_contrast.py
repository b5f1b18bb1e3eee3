"""Why ``method=auto`` refines near starts on contrast-normalised images: the same auto, in
process, with the near refinements on locally contrast-normalised images (the default,
``SelectionOptions.contrast_sigma``) and on the raw intensities (``contrast_sigma=0``), on

* the synthetic hard pairs of ``bench/estimate.py`` (``training.data.hard_pairs``: 6 per kind
  at 640x480, seed 0, plus graffiti 1 -> 3 when ``make samples`` installed it): pure warps with
  global photometric changes;
* ``--rendered`` oblique views (``training.data.oblique``) of the *val* split of
  ``../shared/data/photos`` (seed 2000; neither the benchmark's test split nor the
  calibration's seed): vignetting, lighting gradients, blur, noise, JPEG (skipped, and said
  so, when the photos are absent).

    .venv/bin/python bench/ablate_contrast.py
    .venv/bin/python bench/ablate_contrast.py --rendered 40 --sigmas 4,2,0

Per set and variant: median corner error (px, no estimate counts as infinite), failures
(> 5 px), success at 1 px and AUC@5 (%).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.estimation import AutoOptions, estimate_auto  # noqa: E402
from app.features import estimate_features  # noqa: E402
from app.geometry.points import corner_distance  # noqa: E402
from app.inference.engine import OnnxHomographyEngine  # noqa: E402
from app.inference.homography import network_homography  # noqa: E402
from training.metrics import corner_auc  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def _gray(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 2 else cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)


def pair_sets(
    photos: Path, rendered: int
) -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    from training.data.hard_pairs import graf_pair, make_hard_pairs

    hard = make_hard_pairs(6, seed=0)
    graf = graf_pair()
    hard += [graf] if graf is not None else []
    sets = {"synthetic hard pairs": [(_gray(p.a), _gray(p.b), p.b_H_a) for p in hard]}
    if rendered > 0 and photos.is_dir():
        from training.data.oblique import load_photos, make_oblique_pairs

        ps = make_oblique_pairs(load_photos(photos, "val"), rendered, seed=2000)
        sets["rendered oblique (val photos)"] = [(_gray(p.a), _gray(p.b), p.b_H_a) for p in ps]
    elif rendered > 0:
        print(f"no rendered pairs: {photos} is absent")
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rendered", type=int, default=80)
    ap.add_argument("--photos", type=Path, default=SHARED / "photos")
    ap.add_argument("--sigmas", default="4,0", help="contrast_sigma values (0: intensities)")
    ap.add_argument("--model", default=str(ROOT / "models" / "homographynet_regression.onnx"))
    args = ap.parse_args()
    engine = OnnxHomographyEngine(Path(args.model), ("CPUExecutionProvider",))
    base = AutoOptions()
    print("| pairs | contrast_sigma | median err (px) | failures | @1 px | AUC@5 | time (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, pairs in pair_sets(args.photos, args.rendered).items():
        starts = [
            (network_homography(engine, a, b), estimate_features(a, b, base.features))
            for a, b, _ in pairs
        ]
        # a first pass compiles and warms every kernel, so that no variant pays for it
        estimate_auto(pairs[0][0], pairs[0][1], *starts[0], base)
        for sigma in (float(s) for s in args.sigmas.split(",")):
            opts = replace(base, selection=replace(base.selection, contrast_sigma=sigma))
            errs, t = [], time.perf_counter()
            for (a, b, H), (net, feat) in zip(pairs, starts, strict=True):
                sel = estimate_auto(a, b, net, feat, opts)
                best = sel.best or next(iter(sel.candidates), None)
                size = (a.shape[1], a.shape[0])
                errs.append(np.inf if best is None else corner_distance(best.b_H_a, H, size))
            e = np.array(errs)
            print(
                f"| {name} ({len(e)}) | {sigma:g} | {np.median(e):.3f} | {int((e > 5).sum())} | "
                f"{100 * np.mean(e <= 1):.1f} % | {100 * corner_auc(e, (5.0,))[5.0]:.1f} | "
                f"{time.perf_counter() - t:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
