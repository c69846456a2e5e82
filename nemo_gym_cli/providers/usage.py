"""Summing usage objects: what an agent does over a rollout's model calls and what the adapter
does over a request's failed attempts.

    total = {}
    add_usage(total, {"input_tokens": 10, "cost": 0.001, "input_tokens_details": {"cached_tokens": 2}})

Counts are summed, nested details too; costs (floats) are rounded to 1e-12 USD so sums carry
no binary-float dust; flags (``is_byok``) are or-ed; a key reported as null stays (null
until a number comes), so a summed usage has every key any of its parts had.
"""

from __future__ import annotations

from typing import Any

__all__ = ["add_usage"]


def add_usage(total: dict[str, Any], usage: Any) -> None:
    """Add ``usage`` (a usage object, or anything: ignored) into ``total``, in place."""
    if not isinstance(usage, dict):
        return
    for key, value in usage.items():
        if value is None:
            total.setdefault(key, None)
        elif isinstance(value, bool):
            total[key] = bool(total.get(key)) or value
        elif isinstance(value, int):
            previous = total.get(key, 0)
            total[key] = (previous if isinstance(previous, (int, float)) else 0) + value
        elif isinstance(value, float):
            previous = total.get(key, 0)
            total[key] = round((previous if isinstance(previous, (int, float)) else 0) + value, 12)
        elif isinstance(value, dict):
            nested = total.get(key)
            if not isinstance(nested, dict):
                nested = total[key] = {}
            add_usage(nested, value)
