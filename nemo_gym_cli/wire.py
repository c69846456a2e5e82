"""JSON on the wire, in one place: orjson for speed, and what counts as a JSON number."""

from __future__ import annotations

from typing import Any, TypeGuard

import orjson

__all__ = ["dumps", "dumps_line", "is_number", "loads"]

loads = orjson.loads


def dumps(obj: Any) -> bytes:
    """Serialise ``obj`` to compact JSON bytes (non-str dict keys allowed)."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


def dumps_line(obj: Any) -> bytes:
    """One JSONL line: compact JSON followed by a newline."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)


def is_number(value: Any) -> TypeGuard[int | float]:
    """A JSON number: an int or a float, never a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
