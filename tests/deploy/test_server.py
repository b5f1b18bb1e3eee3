"""A real server process (``python -m app.cli``, uvicorn): live before it is warm, and a clean,
bounded stop on SIGTERM. Loopback only; each server is stopped by the test that started it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SOLVE = {"src": [[[0, 0], [1, 0], [1, 1], [0, 1]]], "dst": [[[0, 0], [2, 0], [2, 2], [0, 2]]]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = dict(os.environ, HOMOGRAPHY_WARM_UP_IN_BACKGROUND="true", HOMOGRAPHY_LOG_JSON="true")
        full.update(env)
        cmd = [sys.executable, "-m", "app.cli", "--app", "tests.deploy.slow_app:app"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self, name: str) -> list[dict]:
        out = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == name:
                out.append(record)
        return out

    def wait_for(self, path: str, status: int, limit_s: float) -> httpx.Response:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "".join(self.lines)
            try:
                r = httpx.get(self.url + path, timeout=2)
                if r.status_code == status:
                    return r
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered {status}:\n" + "".join(self.lines[-30:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def server_factory() -> Iterator:
    started: list[Server] = []

    def start(**env: str) -> Server:
        started.append(Server(env))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def test_live_before_the_kernels_are_compiled_and_stops_mid_warm_up(server_factory, tmp_path):
    # an empty Numba cache: the solver kernels must compile (a minute or more here)
    srv = server_factory(NUMBA_CACHE_DIR=str(tmp_path / "empty-cache"))
    health = srv.wait_for("/health", 200, limit_s=60)
    assert health.json()["phase"] == "starting"
    ready = httpx.get(srv.url + "/ready", timeout=5)
    assert ready.status_code == 503 and ready.json()["phase"] == "starting"
    assert set(ready.json()["loading"]) & {"routes", "solvers"}, ready.json()
    work = httpx.post(srv.url + "/solve", json=SOLVE, timeout=5)
    assert work.status_code == 503 and "retry-after" in work.headers
    # a stop during the warm-up does not wait for the compilation to finish
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(30)
    assert srv.events("drain_complete") and srv.events("drain_complete")[0]["cut"] == 0


def test_sigterm_drains_finishes_in_flight_cuts_past_the_bound_then_exits(server_factory):
    srv = server_factory(HOMOGRAPHY_DRAIN_SECONDS="3")  # warm: the kernels were compiled at install
    srv.wait_for("/ready", 200, limit_s=180)
    results: dict[str, httpx.Response] = {}

    def call(name: str, seconds: float) -> None:
        results[name] = httpx.get(f"{srv.url}/test/sleep?seconds={seconds}", timeout=30)

    workers = [
        threading.Thread(target=call, args=("short", 1.5)),
        threading.Thread(target=call, args=("long", 20)),
    ]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 10
    while b"homography_requests_in_flight 2.0" not in httpx.get(srv.url + "/metrics").content:
        assert time.monotonic() < deadline, "the two requests never got in flight"
        time.sleep(0.05)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    ready = srv.wait_for("/ready", 503, limit_s=2)
    assert ready.json()["phase"] == "draining"
    new = httpx.post(srv.url + "/solve", json=SOLVE, timeout=5)
    assert new.status_code == 503 and new.headers["retry-after"] == "1"
    assert "shutting down" in new.json()["detail"]
    for w in workers:
        w.join(30)
    srv.proc.wait(30)
    took = time.monotonic() - t0
    assert results["short"].status_code == 200
    assert results["long"].status_code == 503
    assert "shut down before this request finished" in results["long"].json()["detail"]
    (done,) = srv.events("drain_complete")
    assert (done["in_flight"], done["finished"], done["cut"]) == (2, 1, 1)
    assert srv.proc.returncode in (0, -signal.SIGTERM)
    # bounded: the 20 s request did not hold the stop (3 s drain + uvicorn's close; a loose guard)
    assert took < 15, took


def test_importing_the_app_is_light():
    """What keeps /health answering within about a second of the process start: the numerical
    stack is imported by the start-up thread, not by ``import app.main``."""
    heavy = ("torch", "onnxruntime", "cv2", "numba", "kornia", "app.geometry._kernels")
    code = "import sys, app.main; print(*[m for m in sys.argv[1:] if m in sys.modules])"
    r = subprocess.run(
        [sys.executable, "-c", code, *heavy], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [], f"imported by app.main: {r.stdout}"
