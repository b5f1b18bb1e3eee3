"""Shared fixtures: one app per session, an httpx client against it (lifespan run)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

# Every app built in the tests finishes its start-up (routes, engines) before a TestClient's
# ``with`` hands it over, as the suite expects; tests/test_lifecycle.py covers the background
# start-up that serving uses (a real server subprocess included).
os.environ.setdefault("HOMOGRAPHY_WARM_UP_IN_BACKGROUND", "false")

from app.core.config import Settings
from app.main import create_app


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(log_json=False, log_level="warning")


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    """A TestClient (httpx underneath) over the real app, lifespan included."""
    with TestClient(create_app(settings)) as c:
        yield c
