"""/estimate latency and throughput over HTTP, beside SIFT+RANSAC and ORB+RANSAC in-process;
then every method's accuracy, failures and time on hard pairs (``method=network|features|auto``).

    .venv/bin/python bench/estimate.py            # 24 pairs per size, 120/240 requests per run
    .venv/bin/python bench/estimate.py --quick    # 8 pairs per size, 24/48 requests per run
    .venv/bin/python bench/estimate.py --model models/homographynet_classification.onnx
    .venv/bin/python bench/estimate.py --methods-only --per-kind 8   # the method comparison only

Method comparison: ``--per-kind`` 640x480 pairs of each kind of ``training.data.hard_pairs``
(moderate, large, blur, lighting, jpeg, low_texture; seed 0) plus the real graffiti pair 1 -> 3
with its ground truth (Debian opencv-doc, when installed: ``make samples``). Each /estimate
method runs over HTTP at concurrency 1 (time = client latency: upload, PNG decode, JSON);
OpenCV's SIFT+RANSAC and ORB+RANSAC run in-process on decoded images (no HTTP, no decode). A
failure is a mean corner error over 5 px or no estimate.

Pairs (320x240 and 640x480) come from scikit-image's colour photos: the photo is resized to 1.5x
the pair size, image A is the centre crop, image B the view of the same photo through a known
homography (its four corners move by up to 20 % of the side, as in HomographyNet's protocol), so
B has no black borders. Uploads are PNG (multipart).

Measured in the same run, on the same pairs:

* ``/estimate`` over HTTP: uvicorn (1 worker) on 127.0.0.1 serving ``--model``, driven by httpx
  (asyncio) at concurrency 1 and 8; latency per request from send to parsed answer (decode,
  preprocess, micro-batched ONNX Runtime, ACA solve, JSON both ways); throughput = requests /
  wall time;
* SIFT+RANSAC and ORB+RANSAC (OpenCV) in-process on the decoded images (no HTTP, no decode):
  detect + describe in both images, brute-force kNN matching with Lowe's ratio test 0.75,
  ``cv2.findHomography(..., RANSAC, 3 px)``; sequential, so throughput = 1 / mean time.

Quality: corner error = mean distance (px, image-B pixels) between the estimated and the true
positions of image A's four corners in B; a classical pipeline with no homography counts as a
failure (excluded from the error statistics, counted in ``fail``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from _opencv import opencv_pipeline
from _server import free_port, start_server, wait_ready

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.geometry.points import corner_distance, image_corners, transform_points  # noqa: E402

SIZES = ((320, 240), (640, 480))


@dataclass
class Pair:
    a: np.ndarray  # (H, W, 3) uint8 BGR
    b: np.ndarray
    png_a: bytes
    png_b: bytes
    corners_b: np.ndarray  # (4, 2) true image-B positions of A's corners


def load_photos() -> list[np.ndarray]:
    from training.data.hard_pairs import default_photos

    return [img for _, img in default_photos()]


def make_pairs(size: tuple[int, int], n: int, seed: int) -> list[Pair]:
    """``n`` pairs of ``size`` with known homographies (see the module docstring)."""
    rng = np.random.default_rng(seed)
    photos = load_photos()
    w, h = size
    W, H = int(1.5 * w), int(1.5 * h)
    x0, y0 = (W - w) // 2, (H - h) // 2
    T = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
    pairs = []
    for i in range(n):
        big = cv2.resize(photos[i % len(photos)], (W, H), interpolation=cv2.INTER_AREA)
        a = np.ascontiguousarray(big[y0 : y0 + h, x0 : x0 + w])
        c = image_corners(size)
        moved = c + rng.uniform(-0.2, 0.2, (4, 2)) * [w, h]  # where B's corners are in A
        a_H_b = cv2.getPerspectiveTransform(c.astype(np.float32), moved.astype(np.float32))
        b = cv2.warpPerspective(big, T @ a_H_b, size, flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR)
        b_H_a = np.linalg.inv(a_H_b)
        pairs.append(Pair(a, b, _png(a), _png(b), transform_points(b_H_a, c)[0]))
    return pairs


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def classical(kind: str):
    """``(a, b) -> b_H_a or None`` for SIFT or ORB (2000) + RANSAC (3 px) on BGR images."""
    return opencv_pipeline("sift" if kind == "sift" else "orb2000", cv2.RANSAC)


def bench_decode(repeats: int = 15) -> list[tuple[str, float, float, str]]:
    """One image decoded in-process, best of ``repeats`` (ms): what /estimate did before
    (colour, then ``cv2.cvtColor``) against what it does now (straight to gray; for
    ``method=network`` without refinement a JPEG at the reduced size the network and the
    scoring still need, with the default settings)."""
    from app.core.config import Settings
    from app.inference.preprocess import PATCH_SIZE
    from app.services.images import MinimumSize, decode_pixels, read_header, reduction_for

    need = MinimumSize(PATCH_SIZE, PATCH_SIZE, Settings().estimate_work_pixels)
    photo = load_photos()[0]

    def best(fn) -> float:
        fn()
        out = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            out = min(out, time.perf_counter() - t)
        return out * 1e3

    rows = []
    for fmt, size in ((".png", (640, 480)), (".jpg", (640, 480)), (".jpg", (4032, 3024))):
        img = cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC)
        params = [cv2.IMWRITE_JPEG_QUALITY, 90] if fmt == ".jpg" else []
        data = cv2.imencode(fmt, img, params)[1].tobytes()
        raw = np.frombuffer(data, np.uint8)
        header = read_header(data, "image", max_pixels=10**9)
        s = reduction_for(header, need)
        before = best(
            lambda raw=raw: cv2.cvtColor(cv2.imdecode(raw, cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
        )
        now = best(lambda d=data, h=header, s=s: decode_pixels(d, h, "image", reduction=s))
        how = "gray" + (f", 1/{s} size" if s > 1 else "")
        rows.append((f"{fmt[1:].upper()} {size[0]}x{size[1]}", before, now, how))
    return rows


def reduced_decode_accuracy(model: Path, pairs: list[Pair]) -> dict[str, float]:
    """The network's corner error (image px) on ``pairs`` uploaded as JPEG (quality 95), from
    the full decode and from the 1/2-size decode that method=network uses when the scoring's
    working pixels allow it (both at 128x128 input, in-process, same ONNX model)."""
    from app.inference.engine import OnnxHomographyEngine
    from app.inference.homography import offsets_to_homography
    from app.inference.preprocess import PATCH_SIZE, prepare_pair
    from app.services.images import decode_pixels, read_header

    engine = OnnxHomographyEngine(model, ["CPUExecutionProvider"])
    errors: dict[str, list[float]] = {"full": [], "1/2": []}
    for p in pairs:
        jpgs = [
            cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            for im in (p.a, p.b)
        ]
        for name, s in (("full", 1), ("1/2", 2)):
            a, b = (
                decode_pixels(d, read_header(d, "x", max_pixels=10**9), "x", reduction=s)
                for d in jpgs
            )
            off = engine.predict_batch(prepare_pair(a.pixels, b.pixels, PATCH_SIZE))["offsets"]
            size = lambda im: (im.pixels.shape[1], im.pixels.shape[0])  # noqa: E731
            H = offsets_to_homography(off[0].astype(np.float64), size(a), size(b), PATCH_SIZE)
            H_full = np.linalg.inv(b.pixels_T_full) @ H.dst_H_src[0] @ a.pixels_T_full
            corners = transform_points(H_full, image_corners(a.size))[0]
            errors[name].append(float(np.linalg.norm(corners - p.corners_b, axis=1).mean()))
    return {
        f"{k} {stat}": float(f(v))
        for k, v in errors.items()
        for stat, f in (("mean", np.mean), ("median", np.median))
    }


def stats_ms(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 95) * 1e3)


def error_stats(errors: list[float | None]) -> dict:
    ok = np.array([e for e in errors if e is not None])
    return {
        "mean": float(ok.mean()) if ok.size else float("nan"),
        "median": float(np.median(ok)) if ok.size else float("nan"),
        "fail": int(sum(e is None for e in errors)),
    }


def bench_classical(kind: str, pairs: list[Pair], repeats: int) -> dict:
    fn = classical(kind)
    fn(pairs[0].a, pairs[0].b)  # warm up
    times: list[float] = []
    errors: list[float | None] = []
    errors_net: list[float | None] = []
    for p in pairs:
        best, H = float("inf"), None
        for _ in range(repeats):
            t = time.perf_counter()
            H = fn(p.a, p.b)
            best = min(best, time.perf_counter() - t)
        times.append(best)
        size_a = (p.a.shape[1], p.a.shape[0])
        corners = None if H is None else transform_points(H, image_corners(size_a))[0]
        if corners is None or not np.all(np.isfinite(corners)):
            errors.append(None)
            errors_net.append(None)
            continue
        diff = corners - p.corners_b
        to_net = np.array([128 / p.b.shape[1], 128 / p.b.shape[0]])
        errors.append(float(np.linalg.norm(diff, axis=1).mean()))
        errors_net.append(float(np.linalg.norm(diff * to_net, axis=1).mean()))
    p50, p95 = stats_ms(times)
    return {
        "p50": p50,
        "p95": p95,
        "rps": 1.0 / float(np.mean(times)),
        "errors": error_stats(errors),
        "errors_net": error_stats(errors_net),
    }


async def bench_http(base: str, pairs: list[Pair], concurrency: int, requests: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def one(i: int) -> tuple[float, dict]:
            p = pairs[i % len(pairs)]
            files = {
                "image_a": ("a.png", p.png_a, "image/png"),
                "image_b": ("b.png", p.png_b, "image/png"),
            }
            while True:
                t = time.perf_counter()
                r = await client.post("/estimate", files=files)
                body = r.json()
                dt = time.perf_counter() - t
                if r.status_code != 503:
                    break
                shed.append(i)  # admission control: retry after a tenth of Retry-After
                await asyncio.sleep(0.1 * float(r.headers.get("retry-after", "1")))
            if r.status_code != 200:
                raise RuntimeError(f"/estimate answered {r.status_code}: {body}")
            return dt, body

        shed: list[int] = []

        for i in range(min(len(pairs), 2 * concurrency)):  # warm up connections and caches
            await one(i)
        queue = iter(range(requests))
        lat: list[float] = []
        errors: dict[int, float] = {}
        errors_net: dict[int, float] = {}
        batch: list[int] = []
        stages: dict[str, list[float]] = {}

        async def worker() -> None:
            for i in queue:
                dt, body = await one(i)
                lat.append(dt)
                batch.append(body["timings_ms"]["batch_size"])
                for k, v in body["timings_ms"].items():
                    if v is not None:  # stages that did not run are null
                        stages.setdefault(k, []).append(v)
                p = pairs[i % len(pairs)]
                diff = np.array(body["corners_in_b"]) - p.corners_b
                errors[i % len(pairs)] = float(np.linalg.norm(diff, axis=1).mean())
                to_net = np.array([128 / p.b.shape[1], 128 / p.b.shape[0]])
                errors_net[i % len(pairs)] = float(np.linalg.norm(diff * to_net, axis=1).mean())

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t
    p50, p95 = stats_ms(lat)
    return {
        "p50": p50,
        "p95": p95,
        "rps": requests / wall,
        "mean_batch": float(np.mean(batch)),
        "errors": error_stats(list(errors.values())),
        "errors_net": error_stats(list(errors_net.values())),
        "server_ms": {k: float(np.median(v)) for k, v in stages.items() if k != "batch_size"},
        "shed": len(shed),
    }


METHODS = (
    ("network", "/estimate"),
    ("network, ?refine=true", "/estimate?refine=true"),
    ("features (SIFT + ACA RANSAC)", "/estimate?method=features"),
    ("auto", "/estimate?method=auto"),
)


def _corner_error(H: np.ndarray | None, p) -> float:
    if H is None or not np.isfinite(H).all():
        return float("inf")
    return corner_distance(H, p.b_H_a, (p.a.shape[1], p.a.shape[0]))


def _method_stats(errors: list[float], times: list[float], kinds: list[str]) -> dict:
    e = np.array(errors)
    fail = ~(e <= 5.0)
    return {
        "mean": float(np.mean(e[~fail])) if (~fail).any() else float("nan"),
        "median": float(np.median(e)),  # failures count at their (large) error
        "fail": int(fail.sum()),
        "fail_kinds": sorted({k for k, f in zip(kinds, fail, strict=True) if f}),
        "fail_by_kind": {
            k: int(sum(f for kk, f in zip(kinds, fail, strict=True) if kk == k))
            for k in dict.fromkeys(kinds)
        },
        "time_mean": float(np.mean(times) * 1e3),
        "time_median": float(np.median(times) * 1e3),
    }


def bench_methods(base: str, pairs: list) -> dict:
    """Every method on every pair (see the module docstring)."""
    import httpx

    kinds = [p.kind for p in pairs]
    out: dict[str, dict] = {}
    for kind in ("sift", "orb"):
        fn = classical(kind)
        fn(pairs[0].a, pairs[0].b)
        errs, times = [], []
        for p in pairs:
            t = time.perf_counter()
            H = fn(p.a, p.b)
            times.append(time.perf_counter() - t)
            errs.append(_corner_error(H, p))
        out[f"OpenCV {kind.upper()}+RANSAC (in-process)"] = _method_stats(errs, times, kinds)
    pngs = [(_png(p.a), _png(p.b)) for p in pairs]
    flags: list[tuple[bool, bool]] = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for name, url in METHODS:
            client.post(url, files={"image_a": pngs[0][0], "image_b": pngs[0][1]})  # warm up
            errs, times, server = [], [], []
            for p, (pa, pb) in zip(pairs, pngs, strict=True):
                t = time.perf_counter()
                r = client.post(url, files={"image_a": ("a.png", pa), "image_b": ("b.png", pb)})
                times.append(time.perf_counter() - t)
                if r.status_code != 200:
                    errs.append(float("inf"))
                    continue
                body = r.json()
                server.append(body["timings_ms"]["total"])
                errs.append(_corner_error(np.array(body["b_H_a"]), p))
                if name == "auto":
                    flags.append((body["quality"]["low_confidence"], errs[-1] > 5.0))
            out[name] = _method_stats(errs, times, kinds)
            out[name]["server_median"] = float(np.median(server)) if server else float("nan")
    out["auto"]["flags"] = {
        "failures": sum(f for _, f in flags),
        "failures_flagged": sum(lo and f for lo, f in flags),
        "good_flagged": sum(lo and not f for lo, f in flags),
    }
    return out


def print_methods(res: dict, n_pairs: int, has_graf: bool) -> None:
    print()
    print(
        f"Method comparison: {n_pairs} pairs (640x480 synthetic"
        f"{' + the graffiti pair' if has_graf else ''}); failure = corner error > 5 px or none"
    )
    print()
    print(
        "| method | mean err (px, successes) | median err (px, all) | failures | failed kinds "
        "| mean time ms | median time ms |"
    )
    print("|---|---:|---:|---:|---|---:|---:|")
    for name, r in res.items():
        print(
            f"| {name} | {r['mean']:.3f} | {r['median']:.3f} | {r['fail']} | "
            f"{', '.join(r['fail_kinds']) or '-'} | {r['time_mean']:.0f} | {r['time_median']:.0f} |"
        )
    kinds = list(next(iter(res.values()))["fail_by_kind"])
    print()
    print("Failures per kind (pairs per kind: see the docstring; graf is one pair):")
    print()
    print("| method | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for name, r in res.items():
        print(f"| {name} | " + " | ".join(str(r["fail_by_kind"][k]) for k in kinds) + " |")
    sift, auto = res["OpenCV SIFT+RANSAC (in-process)"], res["auto"]
    singles = [k for k in res if k not in ("auto", "network, ?refine=true")]
    best_single = min(res[k]["median"] for k in singles)
    ratio = auto["time_mean"] / sift["time_mean"]
    fl = auto["flags"]
    print()
    print(
        f"auto: failures {auto['fail']} vs SIFT+RANSAC {sift['fail']} "
        f"({'met' if auto['fail'] < sift['fail'] else 'NOT met'}); median {auto['median']:.4f} px "
        f"vs best single method {best_single:.4f} "
        f"({'met' if auto['median'] < best_single else 'NOT met'}); mean time / SIFT's = "
        f"{ratio:.2f} ({'met' if ratio <= 3 else 'NOT met'}, target <= 3; server-side median "
        f"{auto['server_median']:.0f} ms)"
    )
    print(
        f"auto's low_confidence flag: {fl['failures_flagged']} of {fl['failures']} failures "
        f"flagged; {fl['good_flagged']} good answers flagged"
    )


def start_model_server(model: Path, port: int, extra_env: dict[str, str]) -> subprocess.Popen:
    return start_server(port, {"HOMOGRAPHY_MODEL_PATH": str(model), **extra_env})


def model_info(base: str) -> dict:
    """The served model's card, once the server is ready."""
    info = wait_ready(base)["engines"].get("homographynet", {})
    if not info.get("ready"):
        raise RuntimeError(f"the model did not load: {info.get('detail')}")
    return info["info"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer pairs and requests")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "homographynet_regression.onnx")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--env",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra HOMOGRAPHY_* settings for the server",
    )
    ap.add_argument("--per-kind", type=int, default=6, help="hard pairs per kind (methods)")
    ap.add_argument("--methods-only", action="store_true", help="only the method comparison")
    ap.add_argument(
        "--serving-only",
        action="store_true",
        help="only /estimate over HTTP at 1 and 8 clients (with the SIFT and ORB anchors)",
    )
    args = ap.parse_args()
    n_pairs = 8 if args.quick else 24
    reqs = {1: 24, 8: 48} if args.quick else {1: 120, 8: 240}
    repeats = 1 if args.quick else 3
    extra_env = dict(kv.split("=", 1) for kv in args.env)

    from training.data.hard_pairs import graf_pair, make_hard_pairs

    hard = make_hard_pairs(args.per_kind, seed=0)
    graf = graf_pair()
    hard += [graf] if graf is not None else []
    pairs = {} if args.methods_only else {s: make_pairs(s, n_pairs, seed=s[0]) for s in SIZES}
    results: dict[str, dict] = {}
    for size, ps in pairs.items():
        for kind in ("sift", "orb"):
            results[f"{size[0]}x{size[1]} {kind}"] = bench_classical(kind, ps, repeats)

    port = free_port()
    proc = start_model_server(args.model, port, extra_env)
    base = f"http://127.0.0.1:{port}"
    try:
        info = model_info(base)
        for size, ps in pairs.items():
            for conc, n in reqs.items():
                results[f"{size[0]}x{size[1]} estimate c{conc}"] = asyncio.run(
                    bench_http(base, ps, conc, n)
                )
        methods = {} if args.serving_only else bench_methods(base, hard)
    finally:
        proc.terminate()
        proc.wait(30)
    if args.methods_only:
        print_methods(methods, len(hard), graf is not None)
        if args.json:
            args.json.write_text(json.dumps({"model": info, "methods": methods}, indent=2))
        return

    print(
        f"model {info.get('model')} {info.get('version')} ({info.get('kind')}), providers "
        f"{info.get('providers', {}).get('active')}, ORT {info.get('onnxruntime')}; "
        f"{n_pairs} pairs per size; cv2 {cv2.__version__}, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| pair | method | concurrency | p50 ms | p95 ms | pairs/s | mean batch "
        "| corner err mean / median, image px | same, 128-px input units | no estimate |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in SIZES:
        tag = f"{size[0]}x{size[1]}"
        rows = [
            ("SIFT+RANSAC (in-process)", "1", results[f"{tag} sift"]),
            ("ORB+RANSAC (in-process)", "1", results[f"{tag} orb"]),
            ("/estimate (HTTP)", "1", results[f"{tag} estimate c1"]),
            ("/estimate (HTTP)", "8", results[f"{tag} estimate c8"]),
        ]
        for name, conc, r in rows:
            e, en = r["errors"], r["errors_net"]
            mb = f"{r['mean_batch']:.1f}" if "mean_batch" in r else "-"
            print(
                f"| {tag} | {name} | {conc} | {r['p50']:.1f} | {r['p95']:.1f} | "
                f"{r['rps']:.1f} | {mb} | {e['mean']:.2f} / {e['median']:.2f} | "
                f"{en['mean']:.2f} / {en['median']:.2f} | {e['fail']} |"
            )
    print()
    print("/estimate server-side stages, median ms per request:")
    print()
    stages = ("decode", "preprocess", "queue_wait", "inference", "solve", "select", "total")
    stages += ("admission_wait",)  # before the slot, not in total
    print("| pair | concurrency | " + " | ".join(stages) + " |")
    print("|---|---:|" + "---:|" * len(stages))
    for size in SIZES:
        tag = f"{size[0]}x{size[1]}"
        for conc in reqs:
            sm = results[f"{tag} estimate c{conc}"]["server_ms"]
            print(f"| {tag} | {conc} | " + " | ".join(f"{sm[k]:.1f}" for k in stages) + " |")
    shed = {k: r["shed"] for k, r in results.items() if r.get("shed")}
    if shed:
        print(f"\nanswered 503 (admission control) and retried: {shed}")
    print()
    for size in SIZES:
        tag = f"{size[0]}x{size[1]}"
        one, eight = (results[f"{tag} estimate c{c}"]["server_ms"]["total"] for c in reqs)
        print(
            f"{tag}: server-side total at 8 clients / 1 client = {eight / one:.2f}x "
            f"(target <= 2x: {'met' if eight <= 2 * one else 'NOT met'})"
        )
    print()
    for size in SIZES:
        tag = f"{size[0]}x{size[1]}"
        est = results[f"{tag} estimate c1"]["p50"]
        sift, orb = results[f"{tag} sift"]["p50"], results[f"{tag} orb"]["p50"]
        gain = results[f"{tag} estimate c8"]["rps"] / results[f"{tag} estimate c1"]["rps"]
        print(
            f"{tag}: /estimate p50 (c=1) / SIFT+RANSAC p50 = {est / sift:.2f}; "
            f"/ ORB+RANSAC p50 = {est / orb:.2f}; throughput c=8 / c=1 = {gain:.2f}x; "
            f"target p50 <= SIFT: {'met' if est <= sift else 'NOT met'}"
        )
    if args.serving_only:
        return
    print()
    print("Decode of one upload, in-process (before: colour then cvtColor; now: /estimate's):")
    print()
    print("| image | before ms | now ms | now | before / now |")
    print("|---|---:|---:|---|---:|")
    for name, before, now, how in bench_decode():
        print(f"| {name} | {before:.2f} | {now:.2f} | {how} | {before / now:.2f}x |")
    acc = reduced_decode_accuracy(args.model, pairs[SIZES[-1]])
    print()
    print(
        f"The network on the {len(pairs[SIZES[-1]])} 640x480 pairs uploaded as JPEG (q95), "
        f"corner error mean / median (px): full decode {acc['full mean']:.2f} / "
        f"{acc['full median']:.2f}, 1/2-size decode {acc['1/2 mean']:.2f} / {acc['1/2 median']:.2f}"
    )
    print_methods(methods, len(hard), graf is not None)
    if args.json:
        payload = {"model": info, "results": results, "methods": methods}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
