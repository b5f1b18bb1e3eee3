"""Liveness, readiness, metrics, OpenAPI and request ids."""

from __future__ import annotations


def test_health(client):
    assert client.get("/health").json()["status"] == "ok"


def test_ready_reports_engines(client):
    r = client.get("/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] is True and body["engines"]["solvers"]["ready"] is True


def test_metrics_count_requests_by_route(client):
    client.post(
        "/solve",
        json={"src": [[[0, 0], [1, 0], [1, 1], [0, 1]]], "dst": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
    )
    text = client.get("/metrics").text
    assert 'homography_http_requests_total{method="POST",route="/solve",status="200"}' in text
    assert "homography_http_request_duration_seconds_bucket" in text
    assert 'homography_items_total{endpoint="solve"}' in text


def test_request_id_header(client):
    assert len(client.get("/health").headers["x-request-id"]) == 16


def test_openapi_has_an_example_per_json_endpoint(client):
    spec = client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for op in ops.values():
            body = op.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                ref = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
                schema = spec["components"]["schemas"][ref]
                assert schema.get("examples") or schema.get("example"), path
    assert "application/x-npz" in spec["paths"]["/solve/batch"]["post"]["requestBody"]["content"]
