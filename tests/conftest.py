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
