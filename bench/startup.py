"""Start-up times of a real server (``homography-serve``): process start to ``/health`` 200
(liveness) and to ``/ready`` 200, cold (an empty Numba cache: every kernel compiles) and warm
(the cache filled by ``make install`` or the image build).

    .venv/bin/python bench/startup.py            # cold once, then warm 3 times (about 2 minutes)
    .venv/bin/python bench/startup.py --warm-only

Each start uses its own NUMBA_CACHE_DIR: a fresh temporary one for cold starts, and for warm
starts one that a first start filled. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _server import free_port  # noqa: E402


def start_once(cache_dir: Path, limit_s: float = 600) -> tuple[float, float]:
    """Seconds from spawn to the first /health 200 and to the first /ready 200."""
    port = free_port()
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), HOMOGRAPHY_LOG_LEVEL="warning")
    env.pop("HOMOGRAPHY_WARM_UP_IN_BACKGROUND", None)
    cmd = [sys.executable, "-m", "app.cli", "--host", "127.0.0.1", "--port", str(port)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    live = None
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
            while time.perf_counter() - t0 < limit_s:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}")
                try:
                    if live is None and client.get("/health").status_code == 200:
                        live = time.perf_counter() - t0
                    if live is not None and client.get("/ready").status_code == 200:
                        return live, time.perf_counter() - t0
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise RuntimeError(f"not ready within {limit_s} s")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-only", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="warm starts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as tmp:
        cache = Path(tmp)
        rows = []
        if args.warm_only:
            from app.geometry.warmup import warm_up_solvers  # fills the cache in this process

            os.environ["NUMBA_CACHE_DIR"] = tmp
            subprocess.run(
                [sys.executable, "-m", "app.services.warmup"],
                cwd=ROOT,
                check=True,
                env=dict(os.environ),
            )
            del warm_up_solvers
        else:
            rows.append(("cold (empty cache)", *start_once(cache)))
        for i in range(args.repeats):
            rows.append((f"warm #{i + 1}", *start_once(cache)))
    print(f"\n{'start':<20} {'/health 200 (s)':>16} {'/ready 200 (s)':>15}")
    for name, live, ready in rows:
        print(f"{name:<20} {live:>16.2f} {ready:>15.2f}")


if __name__ == "__main__":
    main()
