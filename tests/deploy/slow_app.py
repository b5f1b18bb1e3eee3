"""The service's app with one extra slow route, served by tests/deploy/test_server.py through
the real entry point (``python -m app.cli --app tests.deploy.slow_app:app``)."""

from __future__ import annotations

import time

from app.main import create_app

app = create_app()


@app.get("/test/sleep")
def sleep(seconds: float) -> dict:
    """Blocks a worker thread, as the numerical routes do."""
    time.sleep(seconds)
    return {"slept": seconds}
