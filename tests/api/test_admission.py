"""Admission control over HTTP: a class at its bounds answers 503 with Retry-After at once,
while the other classes and the probes are served."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from app.api.routes import solve as solve_route
from app.core.config import Settings
from app.core.lifecycle import Lifecycle, Phase
from app.core.metrics import REFUSED
from app.main import create_app

SQ = [[0, 0], [127, 0], [127, 127], [0, 127]]
QUAD = [[3.5, -2.0], [130.0, 4.0], [120.5, 131.0], [-6.0, 125.0]]
POSE = {
    "estimated": {"position": [[0.0, 0.0, 0.0]], "quaternion": [[1.0, 0.0, 0.0, 0.0]]},
    "true": {"position": [[0.1, 0.0, 0.0]], "quaternion": [[1.0, 0.0, 0.0, 0.0]]},
    "xmin": 1.0,
    "xmax": 2.0,
}


@pytest.fixture()
def blocked(monkeypatch):
    """/solve requests that wait on an event inside the solve class's thread."""
    gate, entered = threading.Event(), threading.Semaphore(0)
    real = solve_route._run_json

    def slow(*args, **kwargs):
        entered.release()
        gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(solve_route, "_run_json", slow)
    yield gate, entered
    gate.set()


def test_a_full_class_sheds_with_retry_after_and_others_are_served(blocked):
    gate, entered = blocked
    s = Settings(
        log_json=False,
        log_level="warning",
        admission={"solve": {"max_in_flight": 1, "max_waiting": 1, "max_wait_s": 0.3}},
    )
    body = {"src": [SQ], "dst": [QUAD]}
    overloaded = REFUSED.labels("overloaded", "solve")
    before = overloaded._value.get()
    with TestClient(create_app(s)) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/solve", json=body)
        assert entered.acquire(timeout=30)  # the first holds the only slot
        second = pool.submit(c.post, "/solve", json=body)  # waits (bounded)
        time.sleep(0.05)
        t = time.perf_counter()
        r = c.post("/solve", json=body)  # the wait list is full: shed at once
        assert r.status_code == 503, r.text
        assert time.perf_counter() - t < 0.25
        assert int(r.headers["retry-after"]) >= 1 and "overloaded" in r.json()["detail"]
        # other classes and the probes do not queue behind /solve
        assert c.post("/pose-loss", json=POSE).status_code == 200
        assert c.get("/health").status_code == 200
        r2 = second.result(timeout=30)  # gave up after max_wait_s
        assert r2.status_code == 503 and "no slot within" in r2.json()["detail"]
        gate.set()
        assert first.result(timeout=30).status_code == 200
        assert c.post("/solve", json=body).status_code == 200  # the slot came back
        info = c.app.state.admission["solve"].info()
        assert info["in_flight"] == 0 and info["shed"] == 2
    assert overloaded._value.get() == before + 2


def test_a_waiting_request_gets_the_slot_when_it_frees(blocked):
    gate, entered = blocked
    s = Settings(
        log_json=False,
        log_level="warning",
        admission={"solve": {"max_in_flight": 1, "max_waiting": 4, "max_wait_s": 10}},
    )
    body = {"src": [SQ], "dst": [QUAD]}
    with TestClient(create_app(s)) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/solve", json=body)
        assert entered.acquire(timeout=30)
        second = pool.submit(c.post, "/solve", json=body)
        time.sleep(0.1)
        assert c.app.state.admission["solve"].waiting == 1
        gate.set()
        assert first.result(timeout=30).status_code == 200
        assert second.result(timeout=30).status_code == 200


@pytest.mark.parametrize("phase", [Phase.STARTING, Phase.DRAINING])
def test_work_refused_by_the_lifecycle_takes_no_slot(phase):
    """The lifecycle gate sits outside admission: while starting or draining, work gets the
    lifecycle's 503 (counted under its reason and class) and never reaches a class's gate; the
    probes and the demo page answer and belong to no class."""
    app = create_app(Settings(log_json=False, log_level="warning"))
    app.state.lifecycle = lc = Lifecycle()  # no lifespan: the phase is set by hand
    lc.phase = phase
    refused = REFUSED.labels(phase.value, "solve")
    before = refused._value.get()
    c = TestClient(app)
    r = c.post("/solve", json={"src": [SQ], "dst": [QUAD]})
    assert r.status_code == 503 and r.headers["retry-after"]
    assert ("starting" if phase is Phase.STARTING else "shutting down") in r.json()["detail"]
    assert refused._value.get() == before + 1
    assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
    gates = app.state.admission.gates.values()
    assert all(g.stats.admitted == g.stats.shed == g.in_flight == 0 for g in gates)
    assert lc.in_flight == 0
