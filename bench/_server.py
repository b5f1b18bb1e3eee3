"""A uvicorn server of the app on 127.0.0.1 for the benchmarks (loopback only)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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
