"""The lifecycle gate in process: what is admitted while starting, ready, draining or failed,
and the bounded drain (requests that finish, requests that are cut). A real server taking
SIGTERM is in tests/deploy/test_server.py."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from app.core.config import Settings
from app.core.lifecycle import Lifecycle, Phase
from app.core.metrics import DRAIN_CUT, IN_FLIGHT, REFUSED
from app.main import create_app

SOLVE = {"src": [[[0, 0], [1, 0], [1, 1], [0, 1]]], "dst": [[[0, 0], [2, 0], [2, 2], [0, 2]]]}


def _app(lifecycle: Lifecycle):
    """The real app and middleware stack with two slow routes, without its lifespan."""
    app = create_app(Settings(log_json=False, log_level="warning"))
    app.state.lifecycle = lifecycle

    @app.get("/slow-async")
    async def slow_async(seconds: float) -> dict:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @app.get("/slow-sync")
    def slow_sync(seconds: float) -> dict:  # the thread pool, as the numerical routes
        time.sleep(seconds)
        return {"slept": seconds}

    return app


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _ready() -> Lifecycle:
    lc = Lifecycle()
    lc.mark_ready()
    return lc


def test_starting_answers_probes_and_refuses_work_naming_what_loads():
    lc = Lifecycle()
    lc.loading = ["routes"]
    app = _app(lc)
    app.state.engines.expect("solvers")

    async def run():
        async with _client(app) as c:
            return (
                await c.get("/health"),
                await c.get("/ready"),
                await c.get("/slow-async?seconds=0"),
            )

    refused = REFUSED.labels("starting", "other")._value.get()
    health, ready, work = asyncio.run(run())
    assert health.status_code == 200 and health.json()["phase"] == "starting"
    assert ready.status_code == 503
    assert ready.json()["phase"] == "starting" and ready.json()["loading"] == ["routes", "solvers"]
    assert work.status_code == 503 and work.headers["retry-after"] == "5"
    assert "starting" in work.json()["detail"] and "routes" in work.json()["detail"]
    assert REFUSED.labels("starting", "other")._value.get() == refused + 1


def test_starting_serves_the_demo_page_and_docs_ungated():
    """The browser side answers while the engines load (and counts as no work in flight)."""
    app = _app(Lifecycle())

    async def run():
        async with _client(app) as c:
            paths = ("/", "/docs", "/redoc", "/openapi.json", "/static/demo.css", "/metrics")
            return {p: (await c.get(p)).status_code for p in paths}

    assert asyncio.run(run()) == dict.fromkeys(
        ("/", "/docs", "/redoc", "/openapi.json", "/static/demo.css", "/metrics"), 200
    )
    assert app.state.lifecycle.in_flight == 0


def test_the_api_key_is_checked_before_the_phase():
    """With a key set, a request without it is refused 401 whatever the phase; with it, the
    gate answers (503 while starting); the page stays open to browsers."""
    app = create_app(Settings(log_json=False, log_level="warning", api_key="k3y"))
    app.state.lifecycle = Lifecycle()

    async def run():
        async with _client(app) as c:
            return (
                await c.post("/solve", json=SOLVE),
                await c.post("/solve", json=SOLVE, headers={"x-api-key": "k3y"}),
                await c.get("/"),
            )

    anonymous, keyed, page = asyncio.run(run())
    assert anonymous.status_code == 401
    assert keyed.status_code == 503 and "starting" in keyed.json()["detail"]
    assert page.status_code == 200


def test_ready_admits_and_counts_requests_in_flight():
    lc = _ready()
    app = _app(lc)

    async def run():
        async with _client(app) as c:
            task = asyncio.create_task(c.get("/slow-async?seconds=0.3"))
            await asyncio.sleep(0.1)
            during = (lc.in_flight, IN_FLIGHT._value.get())
            response = await task
            return during, response

    base = IN_FLIGHT._value.get()
    (count, gauge), response = asyncio.run(run())
    assert response.status_code == 200
    assert count == 1 and gauge == base + 1
    assert lc.in_flight == 0 and IN_FLIGHT._value.get() == base


def test_drain_lets_in_flight_finish_and_refuses_new_work():
    lc = _ready()
    app = _app(lc)

    async def run():
        async with _client(app) as c:
            slow = asyncio.create_task(c.get("/slow-async?seconds=0.5"))
            await asyncio.sleep(0.1)
            drain = asyncio.create_task(lc.drain(timeout_s=10))
            await asyncio.sleep(0.05)
            ready, new = await c.get("/ready"), await c.post("/solve", json=SOLVE)
            return await slow, ready, new, await drain

    slow, ready, new, report = asyncio.run(run())
    assert slow.status_code == 200 and slow.json() == {"slept": 0.5}
    assert ready.status_code == 503 and ready.json()["phase"] == "draining"
    assert new.status_code == 503 and new.headers["retry-after"] == "1"
    assert "shutting down" in new.json()["detail"]
    assert (report.in_flight, report.finished, report.cut) == (1, 1, 0)
    assert report.seconds < 10


@pytest.mark.parametrize("route", ["/slow-async", "/slow-sync"])
def test_drain_bound_cuts_what_is_left_with_a_503(route):
    lc = _ready()
    app = _app(lc)

    async def run():
        async with _client(app) as c:
            quick = asyncio.create_task(c.get(f"{route}?seconds=0.1"))
            slow = asyncio.create_task(c.get(f"{route}?seconds=5"))
            await asyncio.sleep(0.05)
            report = await lc.drain(timeout_s=0.5)
            return await quick, await slow, report

    cut_before = DRAIN_CUT._value.get()
    start = time.perf_counter()
    quick, slow, report = asyncio.run(run())
    assert quick.status_code == 200
    assert slow.status_code == 503 and slow.headers["retry-after"] == "1"
    assert "shut down before this request finished" in slow.json()["detail"]
    assert (report.in_flight, report.finished, report.cut) == (2, 1, 1)
    assert DRAIN_CUT._value.get() == cut_before + 1
    assert lc.in_flight == 0
    # the cut request did not hold the drain for its 5 s (a generous guard, not a timing claim)
    assert time.perf_counter() - start < 4.5


def test_failed_start_fails_liveness_and_refuses_work():
    lc = Lifecycle()
    lc.mark_failed("solvers: RuntimeError: boom")
    app = _app(lc)

    async def run():
        async with _client(app) as c:
            return await c.get("/health"), await c.get("/ready"), await c.post("/solve", json=SOLVE)

    health, ready, work = asyncio.run(run())
    assert health.status_code == 503 and health.json()["status"] == "failed"
    assert ready.status_code == 503 and "boom" in ready.json()["detail"]
    assert work.status_code == 503 and "boom" in work.json()["detail"]
    assert lc.phase is Phase.FAILED


def test_a_late_start_does_not_reopen_a_draining_service():
    lc = Lifecycle()

    async def run():
        await lc.drain(timeout_s=0.1)
        lc.mark_ready()  # the background start finishing after SIGTERM

    asyncio.run(run())
    assert lc.phase is Phase.DRAINING and lc.admit() is not None


def test_a_required_engine_that_fails_in_the_background_fails_liveness(tmp_path):
    """Served start-up (in the background): a present but corrupt model fails the start; the
    process stays up to say so, /health 503 (the orchestrator restarts it), /ready why."""
    from fastapi.testclient import TestClient

    model = tmp_path / "model.onnx"
    model.write_bytes(b"not an onnx model")
    s = Settings(
        log_json=False,
        log_level="error",
        warm_up_in_background=True,
        model_path=model,
        classification_model_path=None,
    )
    with TestClient(create_app(s)) as c:
        assert c.get("/health").status_code in (200, 503)  # answered while starting
        deadline = time.monotonic() + 120
        while (health := c.get("/health")).status_code == 200:
            assert health.json()["phase"] == "starting"
            assert time.monotonic() < deadline, "the start never failed"
            time.sleep(0.1)
        assert health.status_code == 503 and health.json()["status"] == "failed"
        ready = c.get("/ready").json()
        assert ready["phase"] == "failed" and "homographynet" in ready["detail"]
        assert c.post("/solve", json=SOLVE).status_code == 503


def test_a_second_lifespan_does_not_mount_the_work_routes_twice():
    from fastapi.testclient import TestClient

    app = create_app(Settings(log_json=False, log_level="warning", warm_up_in_background=False))
    counts = []
    for _ in range(2):
        with TestClient(app) as c:
            assert c.post("/solve", json=SOLVE).status_code == 200
        counts.append(len(app.routes))
    assert counts[0] == counts[1] > len(create_app(Settings(log_json=False)).routes)


def test_the_start_up_heap_is_frozen_once_the_engines_are_warm(monkeypatch):
    """gc.freeze() runs in the background start-up after every engine is built and warmed (the
    heap it keeps from the collector is the warm one) and before the service reports ready."""
    import gc

    from fastapi.testclient import TestClient

    app = create_app(Settings(log_json=False, log_level="warning", warm_up_in_background=True))
    seen = []

    def freeze() -> None:
        seen.append((app.state.engines.ready, app.state.lifecycle.phase))

    monkeypatch.setattr(gc, "freeze", freeze)
    with TestClient(app) as c:
        deadline = time.monotonic() + 120
        while c.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
    assert seen == [(True, Phase.STARTING)]
