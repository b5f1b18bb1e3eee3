"""A uvicorn server of the app on 127.0.0.1 for the benchmarks (loopback only)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    port: int, extra_env: Mapping[str, str] | None = None, root: Path = ROOT
) -> subprocess.Popen:
    """``uvicorn app.main:app`` on 127.0.0.1:``port`` (one worker, warnings only), served from
    the checkout at ``root`` (with its own ``.venv`` when it has one)."""
    env = dict(os.environ, HOMOGRAPHY_LOG_LEVEL="warning", **(extra_env or {}))
    venv = Path(root) / ".venv" / "bin" / "python"
    python = str(venv) if Path(root) != ROOT and venv.exists() else sys.executable
    cmd = [python, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(cmd, cwd=root, env=env)


def wait_ready(base: str, seconds: float = 180) -> dict:
    """Poll ``base``/ready until it answers 200 (``RuntimeError`` after ``seconds``); its body."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/ready", timeout=5) as r:
                return json.loads(r.read())
        except (OSError, urllib.error.URLError):  # not listening yet, or 503 while starting
            time.sleep(0.2)
    raise RuntimeError(f"{base} did not become ready within {seconds:g} s")
