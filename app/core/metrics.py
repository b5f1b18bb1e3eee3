"""Prometheus metrics: per-route request counts and latency; multiprocess-safe when
``PROMETHEUS_MULTIPROC_DIR`` is set (several uvicorn workers)."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
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
ITEMS = Counter(
    "homography_items_total", "Items processed (homographies solved, poses scored).", ["endpoint"]
)

# Load and lifecycle: what the autoscaler and the dashboards read. Gauges are summed over the
# live worker processes in multiprocess mode.
IN_FLIGHT = Gauge(
    "homography_requests_in_flight",
    "Work requests admitted by the lifecycle gate and not yet answered, those waiting for a "
    "slot of their endpoint class included (probes, metrics, pages excluded).",
    multiprocess_mode="livesum",
)
REFUSED = Counter(
    "homography_requests_refused_total",
    "Requests answered 503 + Retry-After before any work, by reason: starting, draining or failed "
    "(the service admits no work), or overloaded (the endpoint class is at its admission bounds); "
    "and by endpoint class (other: a path of none).",
    ["reason", "endpoint_class"],
)
READY = Gauge(
    "homography_ready", "1 while the service admits work, else 0.", multiprocess_mode="livemin"
)
STARTUP_SECONDS = Gauge(
    "homography_startup_seconds",
    "Seconds from the start of the lifespan (the server is listening) to ready.",
    multiprocess_mode="max",
)
DRAIN_CUT = Counter(
    "homography_drain_cut_requests_total",
    "Requests still running when the shutdown drain bound passed (answered 503).",
)


def render_latest() -> tuple[bytes, str]:
    """The exposition text, aggregated over worker processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
