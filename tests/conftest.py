"""Shared fixtures: one app per session, an httpx client against it (lifespan run), and a live
server for the tests that need a real socket (browser, async client, Locust)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

# Every app built in the tests finishes its start-up (routes, engines) before a TestClient's
# ``with`` hands it over, as the suite expects; tests/core/test_lifecycle.py and tests/deploy/test_server.py
# cover the background start-up that serving uses (the live server below uses it too).
os.environ.setdefault("HOMOGRAPHY_WARM_UP_IN_BACKGROUND", "false")
# In-process clients (TestClient, schemathesis from_asgi) run in the server's process and share
# its GIL: the event-loop lag that admission control sheds on would measure the test's own work
# (hypothesis generating cases), not a backlog. Off for the suite's apps; the gate itself is
# tested in tests/services/test_admission.py and measured live by bench/overload.py.
os.environ.setdefault("HOMOGRAPHY_ADMISSION_MAX_LOOP_LAG_MS", "60000")

from app.core.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(log_json=False, log_level="warning")


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    """A TestClient (httpx underneath) over the real app, lifespan included."""
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="session")
def live_url() -> Iterator[str]:
    """A real server (uvicorn, one worker, a subprocess) on a free loopback port, ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HOMOGRAPHY_LOG_LEVEL="warning", HOMOGRAPHY_LOG_JSON="false")
    env["HOMOGRAPHY_WARM_UP_IN_BACKGROUND"] = "true"  # as served: listening at once, then ready
    cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the live server did not become ready (exit code {proc.poll()})")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
