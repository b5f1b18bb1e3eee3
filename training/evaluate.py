"""Evaluate models and classical baselines on one fixed test set of held-out photos.

    python -m training.evaluate --data-path ../shared/data/photos --test-set data/test_1000.npz \
        --model regression=models/homographynet_regression.onnx \
        --model paper=runs/paper/checkpoint.pth --baselines identity orb sift \
        --output-dir runs/eval

The test set (``--pairs`` pairs, seed ``--seed``) is built from the *test* split of the photos
(file-name hash, see ``training.data.sources.split_by_hash``) and cached as .npz; a cached set is
reused as is. Models are ONNX files (ONNX Runtime, CPU) or training checkpoints (.pth, torch).

Baselines, all on the same (patch A, patch B) pairs:

* identity: zero offsets;
* ORB+RANSAC / SIFT+RANSAC (OpenCV): keypoints in A and B, brute-force kNN matching with Lowe's
  ratio test 0.75, ``cv2.findHomography(B points, A points, RANSAC, 3 px)`` -> ``a_H_b``; the
  predicted offsets are ``a_H_b(corners) - corners``. Fewer than 4 matches or no homography ->
  "no estimate": scored at the identity's error and counted as a failure (see
  ``training.metrics``).

Writes ``results.json``, ``results.md`` (a table) and ``errors.png`` (error distributions).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from app.geometry.points import patch_corners
from app.inference.preprocess import PATCH_SIZE, RHO, WORK_SIZE, normalize
from training.data.fixed import load_fixed_set, make_fixed_set, save_fixed_set
from training.data.sources import discover_images, load_gray_stack, split_by_hash
from training.metrics import FAILURE_PX, corner_errors, summarize

MIN_INLIERS = 8

__all__ = ["MIN_INLIERS", "classical_offsets", "get_args_parser", "load_predictor", "main"]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate HomographyNet models", add_help=add_help)
    a = p.add_argument
    a("--data-path", default=None, help="photos (test split used) when the test set is built")
    a("--coco-splits", nargs="*", default=None)
    a("--val-fraction", type=float, default=0.1)
    a("--test-fraction", type=float, default=0.1)
    a("--test-set", default="data/test_pairs.npz", help=".npz fixed set (built if missing)")
    a("--pairs", type=int, default=1000)
    a("--seed", type=int, default=2016)
    a("--patch-size", type=int, default=PATCH_SIZE)
    a("--rho", type=float, default=RHO)
    a("--work-size", type=int, nargs=2, default=list(WORK_SIZE), metavar=("W", "H"))
    a("--model", action="append", default=[], metavar="NAME=PATH", help=".onnx or .pth")
    a(
        "--baselines",
        nargs="*",
        default=["identity", "orb", "sift"],
        choices=("identity", "orb", "sift"),
    )
    a("--failure-px", type=float, default=FAILURE_PX)
    a("--batch-size", type=int, default=64)
    a("--threads", type=int, default=0)
    a("--output-dir", default="runs/eval")
    return p


def load_test_set(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The cached fixed test set, or build it from the test split of ``--data-path``."""
    path = Path(args.test_set)
    if path.exists():
        return load_fixed_set(path)
    files = discover_images(args.data_path, args.coco_splits)
    test_files = split_by_hash(files, args.val_fraction, args.test_fraction)["test"]
    imgs = load_gray_stack(test_files, tuple(args.work_size), progress=True)
    data = make_fixed_set(
        imgs,
        args.pairs,
        args.seed,
        args.patch_size,
        args.rho,
        files=[f.name for f in test_files],
        progress=True,
    )
    save_fixed_set(data, path)
    print(f"built test set {path}: {args.pairs} pairs from {len(test_files)} held-out photos")
    return data


def load_predictor(path: str | Path, threads: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """Model file -> function ``(B, 2, P, P) uint8 -> (B, 4, 2) offsets`` (px)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def run_onnx(x: np.ndarray) -> np.ndarray:
            return sess.run(["offsets"], {name: normalize(x)})[0]

        return run_onnx
    from training.models import build_model
    from training.utils import load_checkpoint

    ck = load_checkpoint(path)
    model = build_model(ck["model_name"], **ck["model_kwargs"])
    model.load_state_dict(ck["model"])
    model.eval()

    @torch.inference_mode()
    def run_torch(x: np.ndarray) -> np.ndarray:
        return model(normalize(torch.from_numpy(x)))["offsets"].numpy()

    return run_torch


def _iteration_means(path: str, patches: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Mean corner error after each refinement iteration of a checkpoint's model."""
    from training.engine import predict
    from training.models import build_model
    from training.utils import load_checkpoint

    ck = load_checkpoint(path)
    model = build_model(ck["model_name"], **ck["model_kwargs"])
    model.load_state_dict(ck["model"])
    its = predict(model, patches, torch.device("cpu"))["iter_offsets"]
    return {f"iter{k + 1}_mean": float(corner_errors(o, true).mean()) for k, o in enumerate(its)}


def _detector(kind: str) -> tuple[Any, int]:
    if kind == "orb":
        return cv2.ORB_create(nfeatures=1000, edgeThreshold=15, patchSize=15), cv2.NORM_HAMMING
    return cv2.SIFT_create(), cv2.NORM_L2


def classical_offsets(
    patch_a: np.ndarray,
    patch_b: np.ndarray,
    kind: str,
    ratio: float = 0.75,
    ransac_px: float = 3.0,
    min_inliers: int = MIN_INLIERS,
) -> np.ndarray | None:
    """(P, P) uint8 patches -> (4, 2) offsets from ORB/SIFT + RANSAC, or None (no estimate)."""
    det, norm = _detector(kind)
    ka, da = det.detectAndCompute(patch_a, None)
    kb, db = det.detectAndCompute(patch_b, None)
    if da is None or db is None or len(ka) < 4 or len(kb) < 4:
        return None
    matches = cv2.BFMatcher(norm).knnMatch(db, da, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if len(good) < max(4, min_inliers):
        return None
    pb = np.float32([kb[m.queryIdx].pt for m in good])
    pa = np.float32([ka[m.trainIdx].pt for m in good])
    a_H_b, mask = cv2.findHomography(pb, pa, cv2.RANSAC, ransac_px)
    if a_H_b is None or not np.all(np.isfinite(a_H_b)) or int(mask.sum()) < min_inliers:
        return None
    c = patch_corners(patch_a.shape[0])
    return cv2.perspectiveTransform(c[None].astype(np.float64), a_H_b)[0] - c


def _plot(errors: dict[str, np.ndarray], path: Path, failure_px: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, e in errors.items():
        s = np.sort(e)
        ax[0].plot(s, np.arange(1, len(s) + 1) / len(s), label=name)
    ax[0].set(
        xscale="log",
        xlabel="corner error (px, log)",
        ylabel="fraction of pairs",
        title="cumulative distribution",
    )
    ax[0].axvline(failure_px, color="k", ls=":", lw=1)
    ax[0].legend(fontsize=8)
    ax[0].grid(alpha=0.3)
    ax[1].boxplot(list(errors.values()), showfliers=False)
    ax[1].set_xticks(range(1, len(errors) + 1), list(errors), rotation=20, fontsize=8)
    ax[1].set(ylabel="corner error (px)", title="box plot (whiskers 1.5 IQR, no outliers)")
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_test_set(args)
    patches, true = data["patches"], data["offsets"]
    n = len(true)
    results: dict[str, dict] = {}
    errors: dict[str, np.ndarray] = {}

    def record(name: str, pred: np.ndarray, miss: np.ndarray, seconds: float) -> None:
        e = corner_errors(pred, true)
        errors[name] = e
        results[name] = summarize(e, miss, args.failure_px) | {"ms_per_pair": 1e3 * seconds / n}
        print(name, json.dumps({k: round(v, 3) for k, v in results[name].items()}), flush=True)

    for spec in args.model:
        name, _, path = spec.partition("=")
        if not path:
            name, path = Path(spec).stem, spec
        fn = load_predictor(path, args.threads)
        t = time.perf_counter()
        pred = np.concatenate(
            [fn(patches[s : s + args.batch_size]) for s in range(0, n, args.batch_size)]
        )
        record(name, pred, np.zeros(n, bool), time.perf_counter() - t)
        if Path(path).suffix == ".pth":  # checkpoints: also the mean after each iteration
            results[name] |= _iteration_means(path, patches, true)
    for kind in args.baselines:
        t = time.perf_counter()
        pred, miss = np.zeros_like(true), np.zeros(n, bool)
        if kind != "identity":
            for i in range(n):
                o = classical_offsets(patches[i, 0], patches[i, 1], kind)
                if o is None:
                    miss[i] = True
                else:
                    pred[i] = o
        record(
            {"identity": "identity", "orb": "ORB+RANSAC", "sift": "SIFT+RANSAC"}[kind],
            pred,
            miss,
            time.perf_counter() - t,
        )

    meta = {
        "test_set": str(args.test_set),
        "pairs": int(n),
        "seed": int(data["seed"]),
        "photos": len(data["files"]),
        "failure_px": args.failure_px,
    }
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        f"| method | mean | median | p95 | failures (> {args.failure_px:g} px) | ms / pair |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        fails = f"{r['failures']} ({100 * r['failure_rate']:.1f} %)"
        if r["no_estimate"]:
            fails += f", {r['no_estimate']} no estimate"
        lines.append(
            f"| {name} | {r['mean']:.2f} | {r['median']:.2f} | {r['p95']:.2f} | "
            f"{fails} | {r['ms_per_pair']:.2f} |"
        )
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    _plot(errors, out / "errors.png", args.failure_px)
    print(table)
    return {"meta": meta, "results": results}


def cli() -> None:
    main(get_args_parser().parse_args())


if __name__ == "__main__":
    cli()
