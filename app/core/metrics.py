"""Prometheus metrics: per-route request counts and latency; multiprocess-safe when
``PROMETHEUS_MULTIPROC_DIR`` is set (several uvicorn workers)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

REQUESTS = Counter(
    "homography_http_requests_total", "HTTP requests handled.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "homography_http_request_duration_seconds",
    "HTTP request latency, from first byte received to response start.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SHED = Counter(
    "homography_shed_total",
    "Requests answered 503 by admission control, by endpoint class.",
    ["endpoint_class"],
)
ITEMS = Counter(
    "homography_items_total", "Items processed (homographies solved, poses scored).", ["endpoint"]
)


def render_latest() -> tuple[bytes, str]:
    """The exposition text, aggregated over worker processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
