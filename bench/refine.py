"""Photometric refinement: corner error and time of our coarse-to-fine inverse-compositional LM
(``app.alignment``), the Kornia tutorial's Adam loop (6 levels x 100 iterations, lr 1e-3, masked
L1), OpenCV's single-scale ``findTransformECC`` and OpenCV 5's ``findTransformECCMultiScale``,
all on the same pairs in the same run; first from the identity, then from the same start.

    .venv/bin/python bench/refine.py            # 8 photos x 2 magnitudes, 200 pairs (~8 min)
    .venv/bin/python bench/refine.py --quick    # 2 photos x 2 magnitudes, 50 pairs
    .venv/bin/python bench/refine.py --same-start-only --pairs 200

Pairs: a scikit-image photo, gray, resized to 640x480 (A); B = cv2.warpPerspective(A, b_H_a)
(bilinear, border reflected so that B has no black areas, which would bias ECC's blurred
template) where b_H_a moves each corner by a uniform random offset of up to +-40 px, or up to
+-25% of the size (+-160 px in x, +-120 px in y). Every method starts from the identity and
returns b_H_a; the corner error is the mean distance of A's four corners mapped by the estimate
and by the truth (px); a failure is an error > 1 px or an exception (ECC throws when it
diverges). Times are per pair, wall clock, single-threaded torch and OpenCV by default (the
machine is shared; ``--threads`` changes it for every method alike).

The same start: ``--pairs`` held-out 128x128 pairs built as training's fixed test set
(``training.data.fixed``: the test split of ``--photos``, gray at 320x240, a 128 px square whose
corners move by up to +-32 px, seed 2016; scikit-image's photos, not held out, when the folder is
absent), HomographyNet's answer (``--model``, ONNX Runtime) as every method's start, then ours
(the options /estimate?refine=true uses), ``findTransformECC`` and ``findTransformECCMultiScale``
from it (template A, input B, as above). Errors are corner errors of the 128 px patch; a
failure is an error over 1 px or an exception; the time is per pair, the start excluded.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.alignment import align_tutorial_adam, refine_homography, to_tensor  # noqa: E402
from app.geometry.points import corner_distance, image_corners  # noqa: E402

SIZE = (640, 480)
PHOTOS = ["camera", "astronaut", "coffee", "chelsea", "brick", "rocket", "grass", "coins"]
MAGNITUDES = {"+-40 px": 40.0, "+-25% of size": 0.25}


def photo(name: str) -> np.ndarray:
    import skimage.data

    im = getattr(skimage.data, name)()
    if im.ndim == 3:
        im = cv2.cvtColor(im[..., :3], cv2.COLOR_RGB2GRAY)
    interp = cv2.INTER_AREA if im.shape[1] > SIZE[0] else cv2.INTER_LINEAR
    return cv2.resize(im, SIZE, interpolation=interp)


def corners() -> np.ndarray:
    return image_corners(SIZE)


def make_pair(name: str, magnitude: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w, h = SIZE
    limit = np.array([magnitude, magnitude]) if magnitude > 1 else magnitude * np.array([w, h])
    c = corners().astype(np.float32)
    moved = c + (rng.uniform(-1, 1, (4, 2)) * limit).astype(np.float32)
    H = cv2.getPerspectiveTransform(c, moved).astype(np.float64)
    a = photo(name)
    b = cv2.warpPerspective(a, H, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return a, b, H


def corner_error(H_est: np.ndarray | None, H_true: np.ndarray) -> float:
    if H_est is None or not np.isfinite(H_est).all():
        return float("inf")
    c = np.c_[corners(), np.ones(4)]
    p, q = c @ H_est.T, c @ H_true.T
    with np.errstate(all="ignore"):
        d = np.linalg.norm(p[:, :2] / p[:, 2:] - q[:, :2] / q[:, 2:], axis=1).mean()
    return float(d) if np.isfinite(d) else float("inf")


# ---- methods: (A uint8, B uint8) -> b_H_a or None --------------------------------------------


def ours(a: np.ndarray, b: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
    return refine_homography(a, b, init, compute_errors=False).b_H_a


def tutorial(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return align_tutorial_adam(to_tensor(a, "a"), to_tensor(b, "b"))


ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)


def ecc(a: np.ndarray, b: np.ndarray, init: np.ndarray | None = None) -> np.ndarray | None:
    """Single scale, from ``init`` (identity): template A, input B; the warp maps A pixels to B
    pixels."""
    warp = np.eye(3, dtype=np.float32) if init is None else np.float32(init / init[2, 2])
    try:
        _, warp = cv2.findTransformECC(
            a.astype(np.float32),
            b.astype(np.float32),
            warp,
            cv2.MOTION_HOMOGRAPHY,
            ECC_CRITERIA,
            None,
            5,
        )
    except cv2.error:
        return None
    return warp.astype(np.float64) / warp[2, 2]


def ecc_multiscale(
    a: np.ndarray, b: np.ndarray, init: np.ndarray | None = None
) -> np.ndarray | None:
    """OpenCV 5's pyramid ECC (default levels and iterations per level), from ``init``."""
    params = cv2.ECCParameters()
    params.motionType = cv2.MOTION_HOMOGRAPHY
    params.criteria = ECC_CRITERIA
    warp = np.eye(3, dtype=np.float32) if init is None else np.float32(init / init[2, 2])
    try:
        _, warp = cv2.findTransformECCMultiScale(
            a.astype(np.float32), b.astype(np.float32), warp, params
        )
    except cv2.error:
        return None
    return warp.astype(np.float64) / warp[2, 2]


METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray | None]] = {
    "ours: IC-LM, coarse to fine": ours,
    "Kornia tutorial: Adam 6x100": tutorial,
    "cv2.findTransformECC (single scale)": ecc,
    "cv2.findTransformECCMultiScale": ecc_multiscale,
}


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    if not args.same_start_only:
        from_identity(args)
    same_start(args)


def from_identity(args: argparse.Namespace) -> None:
    photos = PHOTOS[:2] if args.quick else PHOTOS
    pairs = [
        (mag_name, name, *make_pair(name, mag, 1000 * k + i))
        for k, (mag_name, mag) in enumerate(MAGNITUDES.items())
        for i, name in enumerate(photos)
    ]
    ours(pairs[0][2], pairs[0][3])  # warm-up (allocator, kernels)
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for mag_name, name, a, b, H in pairs:
        line = [f"{mag_name:>14s} {name:10s} start {corner_error(np.eye(3), H):7.2f}"]
        for method, fn in METHODS.items():
            if method.startswith("Kornia") and args.skip_tutorial:
                continue
            t0 = time.perf_counter()
            est = fn(a, b)
            dt = time.perf_counter() - t0
            err = corner_error(est, H)
            rows.setdefault((method, mag_name), []).append((err, dt))
            line.append(f"{method.split(':')[0].split(' ')[0][:8]:>8s} {err:9.4f} {dt:6.2f}s")
        print(" | ".join(line), flush=True)

    print()
    print(
        f"threads: torch {torch.get_num_threads()}, OpenCV {cv2.getNumThreads()}; "
        f"pairs per magnitude: {len(photos)}; 640x480; start: identity"
    )
    print()
    print(
        "| method | corners moved | median err (px) | mean err (px) | fails (> 1 px) | median time (s) | mean time (s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for (method, mag_name), res in rows.items():
        e = np.array([r[0] for r in res])
        t = np.array([r[1] for r in res])
        finite = e[np.isfinite(e)]
        mean = f"{finite.mean():.4f}" if len(finite) else "-"
        if len(finite) < len(e):
            mean += f" ({len(e) - len(finite)} threw)"
        print(
            f"| {method} | {mag_name} | {np.median(e):.4f} | {mean} | {int((e > 1).sum())}/{len(e)} "
            f"| {np.median(t):.3f} | {t.mean():.3f} |"
        )
    print()
    ours_name, tut_name, ecc_name = list(METHODS)[:3]
    for mag_name in MAGNITUDES:
        o = rows.get((ours_name, mag_name))
        tu = rows.get((tut_name, mag_name))
        ec = rows.get((ecc_name, mag_name))
        if o and tu:
            ratio = sum(r[1] for r in tu) / sum(r[1] for r in o)
            print(f"{mag_name}: total time, tutorial / ours = {ratio:.1f}x")
        if o and ec:
            ecc_fail = [i for i, r in enumerate(ec) if not r[0] <= 1]
            rescued = [i for i in ecc_fail if o[i][0] <= 1]
            print(
                f"{mag_name}: single-scale ECC failed on {len(ecc_fail)} pairs; ours converged "
                f"(<= 1 px) on {len(rescued)} of them"
            )


# ---- the same start: HomographyNet's answer on held-out 128x128 pairs -------------------------

SAME_START: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray | None]] = {
    "ours: IC-LM, coarse to fine": ours,
    "cv2.findTransformECC": ecc,
    "cv2.findTransformECCMultiScale": ecc_multiscale,
}


def held_out_pairs(photos: Path, n: int, seed: int) -> tuple[dict[str, np.ndarray], str]:
    """Training's fixed test set construction on the test split of ``photos`` (or on
    scikit-image's photos when the folder is absent)."""
    from app.inference.preprocess import WORK_SIZE
    from training.data.fixed import make_fixed_set
    from training.data.sources import discover_images, load_gray_stack, split_by_hash

    if photos.is_dir():
        files = split_by_hash(discover_images(photos))["test"]
        source = f"{len(files)} held-out photos of {photos} (test split)"
    else:
        files = discover_images(None)
        source = f"{photos} is absent: scikit-image's {len(files)} photos (NOT held out)"
    return make_fixed_set(load_gray_stack(files, WORK_SIZE), n, seed), source


def network_starts(patches: np.ndarray, model: Path) -> np.ndarray:
    """(N, 2, P, P) uint8 -> (N, 3, 3) b_H_a of the network's offsets (patch pixels)."""
    from training.evaluate import load_predictor

    offsets = np.concatenate(
        [load_predictor(model)(patches[i : i + 64]) for i in range(0, len(patches), 64)]
    )
    return offsets_to_b_H_a(offsets.astype(np.float64), patches.shape[-1])


def offsets_to_b_H_a(offsets: np.ndarray, patch: int) -> np.ndarray:
    """Offsets (N, 4, 2): B's square corner i shows A's ``corner_i + offset_i``; so b_H_a maps
    ``corners + offsets`` to ``corners``."""
    from app.geometry.four_point import solve_four_point
    from app.geometry.points import patch_corners

    c = np.broadcast_to(patch_corners(patch), offsets.shape)
    return solve_four_point(c + offsets, c).dst_H_src


def same_start(args: argparse.Namespace) -> None:
    data, source = held_out_pairs(args.photos, args.pairs, args.seed)
    patches = data["patches"]
    P = patches.shape[-1]
    truth = offsets_to_b_H_a(data["offsets"].astype(np.float64), P)
    starts = network_starts(patches, args.model)
    ours(patches[0, 0], patches[0, 1], starts[0])  # warm-up
    rows: dict[str, list[tuple[float, float]]] = {
        "network (the start)": [
            (corner_distance(s, t, (P, P)), 0.0) for s, t in zip(starts, truth, strict=True)
        ]
    }
    for i in range(len(patches)):
        a, b = patches[i, 0], patches[i, 1]
        for name, fn in SAME_START.items():
            t0 = time.perf_counter()
            est = fn(a, b, starts[i])
            dt = time.perf_counter() - t0
            err = math.inf if est is None else corner_distance(est, truth[i], (P, P))
            rows.setdefault(name, []).append((err if math.isfinite(err) else math.inf, dt))
    print()
    print(
        f"Same start: {len(patches)} pairs {P}x{P} from {source}; start: {args.model.name}; "
        f"threads: torch {torch.get_num_threads()}, OpenCV {cv2.getNumThreads()}"
    )
    print()
    print(
        "| method | median err (px) | mean err, finite (px) | fails (> 1 px) | median time (ms) |"
    )
    print("|---|---:|---:|---:|---:|")
    med_t: dict[str, float] = {}
    for name, res in rows.items():
        e = np.array([r[0] for r in res])
        t = np.array([r[1] for r in res])
        med_t[name] = float(np.median(t)) * 1e3
        finite = e[np.isfinite(e)]
        threw = f" ({len(e) - len(finite)} threw)" if len(finite) < len(e) else ""
        time_ms = "-" if name.startswith("network") else f"{med_t[name]:.1f}"
        print(
            f"| {name} | {np.median(e):.4f} | {finite.mean():.4f}{threw} | "
            f"{int((~(e <= 1)).sum())}/{len(e)} | {time_ms} |"
        )
    ratio = med_t["ours: IC-LM, coarse to fine"] / med_t["cv2.findTransformECCMultiScale"]
    print()
    print(f"median time, ours / multi-scale ECC = {ratio:.2f} (target <= 2)")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 photos per magnitude, 50 pairs")
    p.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    p.add_argument("--skip-tutorial", action="store_true", help="leave out the slow Adam loop")
    p.add_argument("--same-start-only", action="store_true", help="only the same-start table")
    p.add_argument("--pairs", type=int, default=None, help="same-start pairs (200; quick: 50)")
    p.add_argument("--seed", type=int, default=2016, help="seed of the same-start pairs")
    p.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "photos")
    p.add_argument("--model", type=Path, default=ROOT / "models" / "homographynet_regression.onnx")
    return p


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    args.pairs = args.pairs or (50 if args.quick else 200)
    main(args)
