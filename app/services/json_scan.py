"""A structural pre-scan of JSON text, run before any parsing: nesting depth and the number of
arrays opened at each depth, in one pass over the bytes that holds no GIL (Numba ``nogil``), so
that a request over its item limits is refused for the price of a memory scan, and a deeply
nested one before a recursive parser sees it. Strings (and their escapes) are skipped; the text
is not validated here (the parser that follows does that).

Example: in ``{"src": [[[0, 0], [1, 0]]]}`` the object opens at depth 0, ``src`` at depth 1,
its one item at depth 2 and the two points at depth 3: ``arrays == [0, 1, 1, 2]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba as nb
import numpy as np

from app.core.errors import DomainError

__all__ = ["JsonBudget", "JsonShape", "check_json_budget", "scan_json", "warm_up"]

_NB = {"cache": True, "nogil": True}


@nb.njit(**_NB)
def _scan(buf: np.ndarray, max_depth: int, arrays: np.ndarray) -> int:
    """Fill ``arrays[d]`` (arrays opened with d containers already open); return the deepest
    nesting seen, ``max_depth + 1`` as soon as it is exceeded, or -1 for unbalanced brackets."""
    depth = 0
    deepest = 0
    in_str = False
    esc = False
    for i in range(buf.shape[0]):
        c = buf[i]
        if in_str:
            if esc:
                esc = False
            elif c == 92:  # backslash
                esc = True
            elif c == 34:  # quote
                in_str = False
        elif c == 34:
            in_str = True
        elif c == 91 or c == 123:  # [ {
            if depth >= max_depth:
                return max_depth + 1
            if c == 91:
                arrays[depth] += 1
            depth += 1
            if depth > deepest:
                deepest = depth
        elif c == 93 or c == 125:  # ] }
            depth -= 1
            if depth < 0:
                return -1
    return deepest


@dataclass(frozen=True)
class JsonShape:
    """``depth``: deepest nesting (-1: unbalanced); ``arrays[d]``: arrays opened at depth d."""

    depth: int
    arrays: tuple[int, ...]


def scan_json(body: bytes | bytearray | memoryview | np.ndarray, max_depth: int) -> JsonShape:
    """Scan ``body`` (stops early past ``max_depth``, reported as ``max_depth + 1``)."""
    buf = np.frombuffer(body, np.uint8) if not isinstance(body, np.ndarray) else body
    arrays = np.zeros(max_depth + 1, np.int64)
    depth = int(_scan(buf.reshape(-1).view(np.uint8), max_depth, arrays))
    return JsonShape(depth, tuple(int(a) for a in arrays))


@dataclass(frozen=True)
class JsonBudget:
    """What a request body may hold before it is parsed: ``max_depth`` of nesting and, per
    depth, at most ``max_arrays[d]`` arrays, with the field and the message that name the
    limit (``{count}`` and ``{limit}`` are filled in); ``per_parent[d] = (k, n, field,
    message)``: at most n arrays at depth d per array at depth k on average (e.g. points per
    item), so that one oversized item is refused as well as too many items."""

    max_depth: int
    max_arrays: dict[int, tuple[int, str, str]]
    per_parent: dict[int, tuple[int, int, str, str]] = field(default_factory=dict)


def check_json_budget(shape: JsonShape, budget: JsonBudget) -> None:
    """:class:`DomainError` (``invalid``, naming the field) when ``shape`` is over ``budget``."""
    if shape.depth > budget.max_depth:
        raise DomainError(
            f"JSON nested deeper than {budget.max_depth} levels; this endpoint's documents are not",
            "invalid",
            "body",
        )

    def count(d: int) -> int:
        return shape.arrays[d] if d < len(shape.arrays) else 0

    for d, (limit, name, message) in budget.max_arrays.items():
        if count(d) > limit:
            raise DomainError(message.format(count=count(d), limit=limit), "invalid", name)
    for d, (parent, per, name, message) in budget.per_parent.items():
        limit = per * max(1, count(parent))
        if count(d) > limit:
            raise DomainError(message.format(count=count(d), limit=limit), "invalid", name)


def warm_up() -> None:
    """Compile the scanner (call at start-up: no JIT at request time)."""
    scan_json(b'{"a": [[1, 2], "[\\"]"]}', 4)
