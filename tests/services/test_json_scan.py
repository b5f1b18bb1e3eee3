"""The JSON pre-scan against a reference walk of the parsed document (hypothesis)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.json_scan import JsonBudget, check_json_budget, scan_json

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=4)
    ),
    max_leaves=40,
)


def reference(value, depth: int = 0, arrays: list[int] | None = None) -> tuple[int, list[int]]:
    """(deepest nesting, arrays opened per depth) of a parsed value."""
    arrays = arrays if arrays is not None else [0] * 64
    deepest = depth
    if isinstance(value, list | dict):
        if isinstance(value, list):
            arrays[depth] += 1
        children = value if isinstance(value, list) else value.values()
        deepest = depth + 1
        for child in children:
            deepest = max(deepest, reference(child, depth + 1, arrays)[0])
    return deepest, arrays


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_matches_a_walk_of_the_parsed_document(value):
    text = json.dumps(value).encode()
    shape = scan_json(text, 60)
    depth, arrays = reference(value)
    assert shape.depth == depth
    assert list(shape.arrays) == arrays[:61]


def test_stops_past_the_depth_limit_and_flags_unbalanced_text():
    assert scan_json(b"[" * 1_000_000, 8).depth == 9
    assert scan_json(b"[]]", 8).depth == -1
    assert scan_json(b'["]]]]"]', 8).depth == 1  # brackets inside strings are text


def test_budget_names_the_field():
    budget = JsonBudget(max_depth=4, max_arrays={2: (3, "src", "{count} > {limit}")})
    shape = scan_json(json.dumps({"src": [[1], [2], [3], [4]]}).encode(), 4)
    try:
        check_json_budget(shape, budget)
    except Exception as exc:
        assert exc.field == "src" and exc.message == "4 > 3"
    else:
        raise AssertionError("over budget, not refused")


def test_solve_budget_refuses_an_oversized_item_before_parsing():
    from app.api.schemas.solve import SolveRequest
    from app.core.config import Settings

    budget = SolveRequest.json_budget(Settings(max_points_per_item=8, max_solve_json_batch=4))
    item = [[float(i), 0.0] for i in range(12)]
    big = json.dumps({"method": "dlt", "src": [item], "dst": [item]}).encode()
    try:
        check_json_budget(scan_json(big, budget.max_depth), budget)
    except Exception as exc:
        assert exc.field == "src" and "at most 8 points" in exc.message, exc.message
    else:
        raise AssertionError("an item of 12 points passed a limit of 8")
    ok = json.dumps({"method": "dlt", "src": [item[:8]] * 4, "dst": [item[:8]] * 4}).encode()
    check_json_budget(scan_json(ok, budget.max_depth), budget)  # at the limits: accepted
    five = json.dumps({"src": [item[:4]] * 5, "dst": [item[:4]] * 5}).encode()
    try:
        check_json_budget(scan_json(five, budget.max_depth), budget)
    except Exception as exc:
        assert "JSON limit of 4 items" in exc.message
    else:
        raise AssertionError("5 items passed a limit of 4")
