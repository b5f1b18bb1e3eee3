"""bench/locustfile.py runs headless against a live server: every user class it keeps sends
valid requests, and a weight of 0 leaves a class out."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_locust_headless_run(live_url, tmp_path):
    locust = Path(sys.executable).parent / "locust"
    cmd = [
        locust, "-f", ROOT / "bench" / "locustfile.py", "--headless", "-u", "5", "-r", "5",
        "-t", "5s", "--host", live_url, "--csv", tmp_path / "run", "--only-summary",
        "--weight-auto", "0", "--solve-batch-items", "4096", "--stop-timeout", "30",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / "run_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f) if r["Type"] == "POST"}
    assert set(rows) == {"/estimate", "/refine", "/solve", "/solve/batch", "/pose-loss"}
    for name, row in rows.items():
        assert int(row["Request Count"]) > 0 and int(row["Failure Count"]) == 0, (name, row)
