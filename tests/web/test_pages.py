"""The demo page, its samples and the self-hosted API docs, over HTTP (the browser test drives
them in Chromium: tests/web/test_browser.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.core.config import Settings
from app.main import create_app
from tests.alignment.helpers import corner_error

SAMPLES = Path(__file__).resolve().parents[2] / "app" / "web" / "static" / "samples"


def test_demo_page_and_assets(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text)
    assert {"/static/demo.js", "/static/demo.css", "/static/favicon.svg"} <= set(assets)
    for path in assets:
        assert client.get(path).status_code == 200, path
    assert "http://" not in r.text and "https://" not in r.text  # nothing from elsewhere


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
        ("/redoc", ["redoc.standalone.js"]),
    ],
)
def test_docs_are_self_hosted(client, page, assets):
    html = client.get(page).text
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
    assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
    for name in assets:
        path = f"/static/docs/{name}"
        assert path in html
        r = client.get(path)
        assert r.status_code == 200 and len(r.content) > 100_000, path
    assert "fonts.googleapis" not in html


def test_docs_pages_are_not_in_the_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/docs", "/redoc", "/docs/oauth2-redirect"} & set(paths)
    assert client.get("/docs/oauth2-redirect").status_code == 200


def test_page_and_docs_stay_open_with_an_api_key():
    app = create_app(Settings(log_json=False, log_level="warning", api_key=SecretStr("k")))
    c = TestClient(app)  # no lifespan: static routes only
    for path in (
        "/",
        "/static/demo.js",
        "/static/samples/samples.json",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/static/docs/redoc.standalone.js",
    ):
        assert c.get(path).status_code == 200, path
    assert c.post("/solve", json={}).status_code == 401


def test_samples_are_what_their_manifest_says(client):
    """Each bundled pair is solved by the features within a pixel of its recorded b_H_a."""
    manifest = json.loads((SAMPLES / "samples.json").read_text())
    assert len(manifest) >= 3
    for s in manifest:
        a, b = (SAMPLES / s["image_a"]).read_bytes(), (SAMPLES / s["image_b"]).read_bytes()
        assert len(a) < 100_000 and len(b) < 100_000  # small: the repository carries them
        r = client.post(
            "/estimate?method=features",
            files={"image_a": ("a.jpg", a, "image/jpeg"), "image_b": ("b.jpg", b, "image/jpeg")},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        err = corner_error(np.array(body["b_H_a"]), np.array(s["b_H_a"]), body["image_a_size"])
        assert err < 1.0, (s["id"], err)
        assert s["credit"] and s["title"]
