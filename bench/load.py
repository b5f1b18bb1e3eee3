"""Load and soak test of a live server on 127.0.0.1 (bounded asyncio/httpx; loopback only).

    .venv/bin/python bench/load.py                      # starts its own server, ~2.5 minutes
    .venv/bin/python bench/load.py --stage-seconds 5    # quicker
    .venv/bin/python bench/load.py --soak 300           # plus a 5-minute soak at concurrency 8
    .venv/bin/python bench/load.py --url http://127.0.0.1:8000   # against a running server

A mix of /estimate (network, and 10 % method=auto), /refine, /solve and /pose-loss requests at
rising concurrency (1, 4, 16, 64 workers), each stage bounded in time. Per stage: throughput, p50/p95/p99 latency of answered
requests, 503 (shed, with Retry-After) and error counts (5xx other than 503, timeouts, refused
connections), and the server's resident memory before and after. Saturation must answer 503 +
Retry-After quickly rather than letting timeouts pile up; the process must survive; memory must
stay flat over a soak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
from _server import free_port, start_server

ROOT = Path(__file__).resolve().parents[1]


def _pair(size: tuple[int, int], seed: int) -> tuple[bytes, bytes]:
    """A photo (scikit-image) and a warped copy, both PNG."""
    from skimage import data

    photos = [data.camera(), data.coins(), data.moon(), data.page(), data.text()]
    img = cv2.resize(photos[seed % len(photos)], size, interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    w, h = size
    corners = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    moved = (corners + rng.uniform(-0.05, 0.05, (4, 2)) * [w, h]).astype(np.float32)
    warped = cv2.warpPerspective(img, cv2.getPerspectiveTransform(corners, moved), size)
    return cv2.imencode(".png", img)[1].tobytes(), cv2.imencode(".png", warped)[1].tobytes()


def build_requests() -> dict[str, dict]:
    a, b = _pair((320, 240), 0)
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 640, (256, 4, 2))
    dst = src + rng.uniform(-30, 30, src.shape)
    q = rng.normal(size=(64, 4))
    return {
        "estimate": {
            "url": "/estimate",
            "files": {"image_a": ("a.png", a, "image/png"), "image_b": ("b.png", b, "image/png")},
        },
        "estimate-auto": {
            "url": "/estimate?method=auto",
            "files": {"image_a": ("a.png", a, "image/png"), "image_b": ("b.png", b, "image/png")},
        },
        "refine": {
            "url": "/refine",
            "files": {"image_a": ("a.png", a, "image/png"), "image_b": ("b.png", b, "image/png")},
        },
        "solve": {"url": "/solve", "json": {"src": src.tolist(), "dst": dst.tolist()}},
        "pose-loss": {
            "url": "/pose-loss",
            "json": {
                "estimated": {
                    "position": rng.normal(size=(64, 3)).tolist(),
                    "quaternion": q.tolist(),
                },
                "true": {
                    "position": rng.normal(size=(64, 3)).tolist(),
                    "quaternion": (q + 0.01).tolist(),
                },
                "xmin": 1.0,
                "xmax": 10.0,
            },
        },
    }


MIX = {"estimate": 0.3, "estimate-auto": 0.1, "refine": 0.1, "solve": 0.3, "pose-loss": 0.2}


@dataclass
class Stage:
    concurrency: int
    latencies: dict[str, list[float]] = field(default_factory=dict)
    shed: int = 0
    shed_without_retry_after: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        return sum(len(v) for v in self.latencies.values())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run_stage(
    client: httpx.AsyncClient, reqs: dict, concurrency: int, seconds: float, timeout: float
) -> Stage:
    stage = Stage(concurrency)
    names, weights = list(MIX), list(MIX.values())
    deadline = time.perf_counter() + seconds
    rnd = random.Random(concurrency)

    async def worker() -> None:
        while time.perf_counter() < deadline:
            name = rnd.choices(names, weights)[0]
            spec = reqs[name]
            kw = {k: v for k, v in spec.items() if k != "url"}
            t = time.perf_counter()
            try:
                r = await client.post(spec["url"], timeout=timeout, **kw)
            except httpx.TimeoutException:
                stage.errors["timeout"] = stage.errors.get("timeout", 0) + 1
                continue
            except httpx.TransportError as exc:
                key = type(exc).__name__
                stage.errors[key] = stage.errors.get(key, 0) + 1
                await asyncio.sleep(0.05)
                continue
            dt = time.perf_counter() - t
            if r.status_code == 503:
                stage.shed += 1
                if "retry-after" not in r.headers:
                    stage.shed_without_retry_after += 1
                await asyncio.sleep(float(r.headers.get("retry-after", "0.1")) * 0.1)
            elif r.status_code >= 400:
                key = f"{name} {r.status_code}"
                stage.errors[key] = stage.errors.get(key, 0) + 1
            else:
                stage.latencies.setdefault(name, []).append(dt)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    stage.seconds = time.perf_counter() - start
    return stage


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(values, q)) * 1e3


def report(stage: Stage, rss_before: float, rss_after: float) -> str:
    allv = [v for vs in stage.latencies.values() for v in vs]
    total = stage.ok + stage.shed + sum(stage.errors.values())
    err = sum(stage.errors.values())
    return (
        f"| {stage.concurrency} | {stage.ok / stage.seconds:.1f} | {pct(allv, 50):.0f} | "
        f"{pct(allv, 95):.0f} | {pct(allv, 99):.0f} | {stage.shed} "
        f"({stage.shed_without_retry_after} w/o Retry-After) | {err} "
        f"({100 * err / max(total, 1):.1f} %) | {rss_before:.0f} -> {rss_after:.0f} |"
    )


async def main_async(args: argparse.Namespace) -> int:
    reqs = build_requests()
    proc = None
    url = args.url
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(port)
    elif not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise SystemExit("refusing to load-test anything but a loopback address")
    pid = proc.pid if proc else args.pid
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    try:
        async with httpx.AsyncClient(base_url=url, limits=limits) as client:
            for _ in range(900):
                try:
                    if (await client.get("/ready", timeout=2)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise SystemExit("server did not become ready")
            for name, spec in reqs.items():  # every request of the mix is valid
                kw = {k: v for k, v in spec.items() if k != "url"}
                r = await client.post(spec["url"], timeout=60, **kw)
                if r.status_code != 200:
                    raise SystemExit(f"{name}: {r.status_code} {r.text[:300]}")
            print(
                f"# bench/load.py against {url}; mix {json.dumps(MIX)}; "
                f"{args.stage_seconds:.0f} s per stage, client timeout {args.timeout:.0f} s\n"
            )
            print(
                "| concurrency | req/s | p50 ms | p95 ms | p99 ms | 503 shed | errors | RSS MiB |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|---:|")
            failed = False
            for c in args.concurrency:
                before = rss_mib(pid) if pid else float("nan")
                st = await run_stage(client, reqs, c, args.stage_seconds, args.timeout)
                after = rss_mib(pid) if pid else float("nan")
                print(report(st, before, after), flush=True)
                failed |= bool(st.errors) or st.shed_without_retry_after > 0
                if proc is not None and proc.poll() is not None:
                    print("server process died")
                    return 1
            if args.soak:
                samples = []
                t_end = time.perf_counter() + args.soak
                while time.perf_counter() < t_end:
                    st = await run_stage(client, reqs, 8, min(30.0, args.soak), args.timeout)
                    samples.append(rss_mib(pid) if pid else float("nan"))
                    failed |= bool(st.errors)
                growth = samples[-1] - samples[0] if len(samples) > 1 else 0.0
                print(
                    f"\nsoak {args.soak:.0f} s at concurrency 8: RSS every 30 s (MiB) "
                    f"{[round(s) for s in samples]}; growth first->last {growth:+.0f} MiB"
                )
            health = (await client.get("/health")).status_code
            print(f"\nserver alive after the run: {health == 200}")
            return 1 if failed or health != 200 else 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default=None, help="a running server on loopback (else start one)")
    ap.add_argument("--pid", type=int, default=None, help="its process id, for the RSS column")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--stage-seconds", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of soak after the stages")
    sys.exit(asyncio.run(main_async(ap.parse_args())))


if __name__ == "__main__":
    main()
