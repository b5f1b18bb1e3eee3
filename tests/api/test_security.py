"""API key and CORS: both off by default, on through settings."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app

BODY = {"src": [[[0, 0], [1, 0], [1, 1], [0, 1]]], "dst": [[[0, 0], [2, 0], [2, 2], [0, 2]]]}


@pytest.fixture(scope="module")
def locked():
    s = Settings(
        log_json=False, log_level="warning", api_key="s3cret", cors_origins=("https://a.example",)
    )
    with TestClient(create_app(s)) as c:
        yield c


def test_defaults_are_open_and_without_cors(client):
    assert client.post("/solve", json=BODY).status_code == 200
    r = client.options(
        "/solve", headers={"origin": "https://a.example", "access-control-request-method": "POST"}
    )
    assert "access-control-allow-origin" not in r.headers


def test_api_key_required_when_set(locked):
    r = locked.post("/solve", json=BODY)
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    assert locked.post("/solve", json=BODY, headers={"x-api-key": "wrong"}).status_code == 401
    assert locked.post("/solve", json=BODY, headers={"x-api-key": "s3cret"}).status_code == 200
    assert (
        locked.post("/solve", json=BODY, headers={"authorization": "Bearer s3cret"}).status_code
        == 200
    )


def test_probes_stay_open(locked):
    for path in ("/health", "/ready", "/metrics"):
        assert locked.get(path).status_code == 200


def test_cors_when_configured(locked):
    r = locked.options(
        "/solve", headers={"origin": "https://a.example", "access-control-request-method": "POST"}
    )
    assert r.headers.get("access-control-allow-origin") == "https://a.example"
