"""The client's types against the service's OpenAPI schema, so the client cannot drift: every
result class matches its response schema field by field (names, nullability, types), every
option the client sends exists with the same allowed values, and the reason codes agree."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any, Literal, Union

import numpy as np
import pytest
from homography_client import _core, models

from app.geometry.reasons import NAMES
from app.main import create_app

RESULT_CLASSES = [
    getattr(models, name)
    for name in models.__all__
    if dataclasses.is_dataclass(getattr(models, name, None))
]


@pytest.fixture(scope="module")
def openapi() -> dict:
    return create_app().openapi()


def _deref(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _nullable(schema: dict) -> tuple[bool, dict]:
    """(whether null is allowed, the schema without the null branch)."""
    branches = schema.get("anyOf")
    if branches is None:
        return False, schema
    rest = [b for b in branches if b.get("type") != "null"]
    assert len(rest) == 1, f"unions other than X | null are not expected: {schema}"
    return len(rest) < len(branches), rest[0]


def _leaf_types(schema: dict, spec: dict) -> set[str]:
    """The scalar types at the bottom of a (nested) array schema."""
    schema = _deref(schema, spec)
    nullable, schema = _nullable(schema)
    if schema.get("type") == "array":
        subs = schema.get("prefixItems") or [schema["items"]]
        out = set().union(*(_leaf_types(s, spec) for s in subs))
        return out | ({"null"} if nullable else set())
    return {schema.get("type", "?")} | ({"null"} if nullable else set())


def _check(hint: Any, schema: dict, spec: dict, where: str) -> None:
    """Assert that the Python annotation ``hint`` describes the JSON ``schema``."""
    origin = typing.get_origin(hint)
    nullable, inner = _nullable(schema)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        assert nullable, f"{where}: the client allows None but the server never sends null"
        assert len(args) == 1, where
        return _check(args[0], inner, spec, where)
    assert not nullable, f"{where}: the server may send null; the client type must allow None"
    if "$ref" in inner:
        target = inner["$ref"].rsplit("/", 1)[1]
        if dataclasses.is_dataclass(hint):
            assert hint.__schema__ == target, f"{where}: {hint.__name__} is not {target}"
            return None
        assert origin is dict, f"{where}: {hint} for the object {target}"
        return None
    kind = inner.get("type")
    if hint is np.ndarray:
        assert kind == "array", f"{where}: ndarray for {kind}"
        leaves = _leaf_types(inner, spec) - {"null"}
        assert leaves <= {"number", "integer", "boolean"}, f"{where}: ndarray of {leaves}"
    elif origin is Literal:
        assert set(typing.get_args(hint)) == set(inner.get("enum", [inner.get("const")])), where
    elif origin is list:
        assert kind == "array", f"{where}: list for {kind}"
        (item,) = typing.get_args(hint)
        _check(item, inner["items"], spec, where + "[]")
    elif origin is tuple:
        items = inner.get("prefixItems")
        assert kind == "array" and items, f"{where}: tuple for {inner}"
        args = typing.get_args(hint)
        assert len(args) == len(items), where
        for i, (a, s) in enumerate(zip(args, items)):
            _check(a, s, spec, f"{where}[{i}]")
    elif origin is dict:
        assert kind == "object", f"{where}: dict for {kind}"
    else:
        expected = {str: "string", float: "number", int: "integer", bool: "boolean"}[hint]
        assert kind == expected or (kind == "integer" and hint is float), (
            f"{where}: {hint.__name__} for {kind}"
        )
    return None


@pytest.mark.parametrize("cls", RESULT_CLASSES, ids=lambda c: c.__name__)
def test_result_class_matches_its_schema(cls, openapi):
    schema = openapi["components"]["schemas"][cls.__schema__]
    props = schema["properties"]
    hints = typing.get_type_hints(cls)
    mirrored = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("client_only"):
            continue
        mirrored[f.metadata.get("json", f.name)] = f.name
    ignored = getattr(cls, "__ignored__", frozenset())
    assert set(mirrored) == set(props) - ignored, (
        f"{cls.__name__} vs {cls.__schema__}: client only {set(mirrored) - set(props)}, "
        f"server only {set(props) - ignored - set(mirrored)}"
    )
    for key, attr in mirrored.items():
        _check(hints[attr], props[key], openapi, f"{cls.__name__}.{attr}")


def _query_enum(openapi: dict, path: str, name: str) -> set:
    params = openapi["paths"][path]["post"]["parameters"]
    (param,) = [p for p in params if p["name"] == name]
    _, schema = _nullable(param["schema"])
    return set(schema["enum"])


@pytest.mark.parametrize(
    ("literal", "path", "name"),
    [
        (_core.EstimateMethod, "/estimate", "method"),
        (_core.Detector, "/estimate", "detector"),
        (_core.RobustFit, "/estimate", "robust"),
        (_core.ModelKind, "/estimate", "model"),
        (_core.BatchMethod, "/solve/batch", "method"),
        (_core.Normalize, "/solve/batch", "normalize"),
    ],
)
def test_query_options_match(literal, path, name, openapi):
    assert set(typing.get_args(literal)) == _query_enum(openapi, path, name)


def test_estimate_query_parameters_exist(openapi):
    params = {p["name"] for p in openapi["paths"]["/estimate"]["post"]["parameters"]}
    sent = set(inspect.signature(_core.estimate_call).parameters) - {"image_a", "image_b"}
    assert sent <= params, sent - params


def test_request_bodies_match(openapi):
    schemas = openapi["components"]["schemas"]
    solve = schemas["SolveRequest"]["properties"]
    assert set(typing.get_args(_core.SolveMethod)) == set(solve["method"]["enum"])
    assert set(typing.get_args(_core.Normalize)) == set(solve["normalize"]["enum"])
    assert set(typing.get_args(_core.OutputDtype)) == set(solve["dtype"]["enum"])
    assert set(schemas["RansacParams"]["properties"]) == _core.RANSAC_OPTIONS
    assert set(schemas["RefineOptionsIn"]["properties"]) == _core.REFINE_OPTIONS
    pose = schemas["PoseLossRequest"]["properties"]
    assert set(typing.get_args(_core.Convention)) == set(pose["convention"]["enum"])
    assert set(typing.get_args(_core.DepthMode)) == set(pose["depth_mode"]["enum"])
    sent = {"estimated", "true", "convention", "gradients", "depth_mode", "xmin", "xmax", "depths"}
    assert sent <= set(pose), sent - set(pose)
    assert {"position", "quaternion", "rotation"} == set(schemas["PoseSet"]["properties"])


def test_multipart_fields_match(openapi):
    refine = openapi["paths"]["/refine"]["post"]["requestBody"]["content"]
    (form,) = refine.values()
    props = set(_deref(form["schema"], openapi)["properties"])
    assert props == {"image_a", "image_b", "init", "options", "mask"}
    estimate = openapi["paths"]["/estimate"]["post"]["requestBody"]["content"]
    assert set(estimate["multipart/form-data"]["schema"]["properties"]) == {"image_a", "image_b"}


def test_reason_codes_match_the_server():
    assert {k: v for k, v in _core.REASON_NAMES.items() if k} == {
        k: v for k, v in NAMES.items() if k
    }
