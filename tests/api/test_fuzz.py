"""Fuzzing against the app's own OpenAPI schema (schemathesis): whatever the generated request,
no 5xx, and every response matches the schema it declares."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from app.core.config import Settings
from app.main import create_app

_SETTINGS = Settings(log_json=False, log_level="error")
_client = TestClient(create_app(_SETTINGS))
_client.__enter__()  # run the lifespan once: engines built before the schema is fuzzed
schema = schemathesis.openapi.from_asgi("/openapi.json", _client.app)


@pytest.fixture(scope="module", autouse=True)
def _close_app():
    yield
    _client.__exit__(None, None, None)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_schema_conformance(case):
    case.call_and_validate(
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance]
    )
