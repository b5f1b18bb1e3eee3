"""A/B of the /solve/batch round trip between two checkouts of the service (servers started
alternately on 127.0.0.1, the same lean client and ``np.load`` of the answer, 1,000,000 float64
items in the default format).

    git worktree add /tmp/base 5f5e51c
    .venv/bin/python bench/http_ab.py /tmp/base .          # 2 rounds of 5 round trips each
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _server import free_port, wait_ready
from solve import RawClient, make_inputs


def start(tree: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, HOMOGRAPHY_LOG_LEVEL="warning", PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(cmd, cwd=tree, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trees", nargs=2, type=Path)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    src, dst = make_inputs(1_000_000, seed=1)
    buf = io.BytesIO()
    np.savez(buf, src=src, dst=dst)
    body = buf.getvalue()
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for tree in args.trees:
            port = free_port()
            proc = start(tree.resolve(), port)
            try:
                wait_ready(f"http://127.0.0.1:{port}")
                client = RawClient(port)
                for i in range(args.calls + 1):  # the first is a warm-up
                    t = time.perf_counter()
                    status, _, answer = client.post("/solve/batch", body, "application/x-npz")
                    assert status == 200, bytes(answer[:200])
                    np.load(io.BytesIO(answer), allow_pickle=False)["dst_H_src"]
                    if i:
                        times.setdefault(str(tree), []).append(time.perf_counter() - t)
                client.close()
            finally:
                proc.terminate()
                proc.wait(30)
    for tree, ts in times.items():
        print(f"{tree}: best {min(ts):.3f} s, median {float(np.median(ts)):.3f} s over {len(ts)}")


if __name__ == "__main__":
    main()
