"""Schemathesis from its CLI against a live server on 127.0.0.1: positive and negative data for
every operation of the app's own OpenAPI schema; fails on any 5xx (and on answers that break
the declared schema). The request count comes from schemathesis' NDJSON event log.

    .venv/bin/python bench/fuzz.py                       # -n 1500 per operation, >= 10,000 requests
    .venv/bin/python bench/fuzz.py --max-examples 100    # quicker

CI runs the in-process twin of this (tests/api/test_fuzz.py, fewer examples).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _server import free_port, start_server, wait_ready

ROOT = Path(__file__).resolve().parents[1]


def count_requests(ndjson: Path) -> tuple[int, collections.Counter]:
    """Requests sent and their status codes, from the event log (interactions of every
    scenario)."""
    statuses: collections.Counter = collections.Counter()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            response = node.get("response")
            if "request" in node and isinstance(response, dict) and "status_code" in response:
                statuses[response["status_code"]] += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for line in ndjson.read_text().splitlines():
        walk(json.loads(line))
    return sum(statuses.values()), statuses


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-examples", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=12)
    # 1: schemathesis on CPython 3.11 can hit gh-106905 (ast.parse in two threads) with more
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    port = free_port()
    proc = start_server(port)
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        with tempfile.TemporaryDirectory() as tmp:
            events = Path(tmp) / "events.ndjson"
            cmd = [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--mode", "all",
                "--max-examples", str(args.max_examples),
                "--seed", str(args.seed),
                "--workers", str(args.workers),
                "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
                "--report", "ndjson",
                "--report-ndjson-path", str(events),
                "--suppress-health-check", "all",
                "--request-timeout", "60",
            ]  # fmt: skip
            print("$", " ".join(cmd[1:]), flush=True)
            start = time.perf_counter()
            rc = subprocess.run(cmd, cwd=ROOT).returncode
            total, statuses = count_requests(events)
        server_errors = sum(v for k, v in statuses.items() if k >= 500)
        print(
            f"\n{total} requests in {time.perf_counter() - start:.0f} s; status codes "
            f"{dict(sorted(statuses.items()))}; 5xx: {server_errors}; schemathesis exit {rc}"
        )
        return 1 if rc or server_errors or proc.poll() is not None else 0
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
