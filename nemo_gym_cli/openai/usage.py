"""Usage objects: summed, converted between the two APIs' names, completed.

    add_usage(total, usage)          sum ``usage`` into ``total`` (a rollout's model calls,
                                     a request's failed attempts)
    usage_as_responses(chat_usage)   prompt_tokens/completion_tokens -> input_tokens/output_tokens
    usage_as_chat(responses_usage)   and back
    complete_usage(usage)            every count both OpenAI SDK versions require

Summing: counts are added, nested details too; costs (floats) are rounded to 1e-12 USD so
sums carry no binary-float dust; flags (``is_byok``) are or-ed; a key reported as null stays
(null until a number comes), so a summed usage has every key any of its parts had.
Converting keeps OpenRouter's ``cost``, ``cost_details`` and ``is_byok`` and any other key
(the adapter's ``retries``, ``unpriced_calls``); missing counts are 0.
"""

from __future__ import annotations

import math
from typing import Any

from nemo_gym_cli.wire import is_number

__all__ = ["add_usage", "complete_usage", "usage_as_chat", "usage_as_responses"]

# The usage counts' names (input, output); each has its "<name>_details" object.
_CHAT_USAGE = ("prompt_tokens", "completion_tokens")
_RESPONSES_USAGE = ("input_tokens", "output_tokens")


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


def _convert_usage(usage: Any, source: tuple[str, str], target: tuple[str, str]) -> dict:
    """Usage between the two APIs' names, complete for both SDK versions: missing counts are
    0 (``cached_tokens``, ``cache_write_tokens``, ``reasoning_tokens`` included); OpenRouter's
    ``cost``, ``cost_details`` (with ``upstream_inference_cost``) and ``is_byok`` are kept,
    and so is any other key (the adapter's ``retries``, ``unpriced_calls``)."""
    if not isinstance(usage, dict):
        usage = {}
    (src_in, src_out), (dst_in, dst_out) = source, target
    out: dict[str, Any] = {}
    prompt = completion = 0
    in_details: Any = None
    out_details: Any = None
    cost: Any = None
    cost_details: Any = None
    for key, value in usage.items():  # one pass: the names of either API, anything else kept
        if key == src_in:
            prompt = value or 0
        elif key == src_out:
            completion = value or 0
        elif key == "total_tokens":
            out["total_tokens"] = value
        elif key == _DETAILS[src_in]:
            in_details = value
        elif key == _DETAILS[src_out]:
            out_details = value
        elif key == "cost":
            cost = value
        elif key == "cost_details":
            cost_details = value
        elif value is not None:
            out[key] = value
    prompt, completion = _count(prompt), _count(completion)
    out[dst_in] = prompt
    out[dst_out] = completion
    total = _count(out.get("total_tokens"))
    out["total_tokens"] = total or prompt + completion
    in_details = in_details if isinstance(in_details, dict) else {}
    out_details = out_details if isinstance(out_details, dict) else {}
    out[_DETAILS[dst_in]] = {
        **in_details,
        "cached_tokens": _count(in_details.get("cached_tokens")),
        "cache_write_tokens": _count(in_details.get("cache_write_tokens")),
    }
    out[_DETAILS[dst_out]] = {**out_details, "reasoning_tokens": _count(out_details.get("reasoning_tokens"))}
    cost = _cost(cost)
    if cost is not None:
        out["cost"] = cost
        out["cost_details"] = {
            "upstream_inference_cost": None,
            **(cost_details if isinstance(cost_details, dict) else {}),
        }
    elif isinstance(cost_details, dict):
        out["cost_details"] = cost_details
    return out


def _count(value: Any) -> int:
    """A token count: an int as given; anything else (missing, null, a bool, text) is 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _cost(value: Any) -> float | None:
    """A cost in USD: a finite number, or a string of one (some gateways send strings)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        cost = float(value)
    except (TypeError, ValueError):
        return None
    return cost if math.isfinite(cost) and cost >= 0 else None


_DETAILS = {name: f"{name}_details" for name in _CHAT_USAGE + _RESPONSES_USAGE}


def usage_as_responses(usage: Any) -> dict:
    """A chat completion's ``usage`` in the Responses API's names."""
    return _convert_usage(usage, _CHAT_USAGE, _RESPONSES_USAGE)


def usage_as_chat(usage: Any) -> dict:
    """A Responses ``usage`` in Chat Completions' names."""
    return _convert_usage(usage, _RESPONSES_USAGE, _CHAT_USAGE)


def complete_usage(usage: dict) -> dict:
    """A Responses ``usage`` with every count both SDK versions require (the newest wants
    ``input_tokens_details.cache_write_tokens``); missing counts are 0, extra keys kept. A new
    dict, or ``usage`` itself when nothing is missing."""
    in_details, out_details = usage.get("input_tokens_details"), usage.get("output_tokens_details")
    if (
        isinstance(in_details, dict)
        and "cache_write_tokens" in in_details
        and "cached_tokens" in in_details
        and isinstance(out_details, dict)
        and "reasoning_tokens" in out_details
        and is_number(usage.get("total_tokens"))
        and is_number(usage.get("input_tokens"))
        and is_number(usage.get("output_tokens"))
    ):
        return usage  # complete already (every answer of our model servers)
    out = dict(usage)
    for key in ("input_tokens", "output_tokens"):
        if not is_number(out.get(key)):
            out[key] = 0
    if not is_number(out.get("total_tokens")):
        out["total_tokens"] = out["input_tokens"] + out["output_tokens"]
    details = out.get("input_tokens_details")
    details = dict(details) if isinstance(details, dict) else {}
    details["cached_tokens"] = details.get("cached_tokens") or 0
    details["cache_write_tokens"] = details.get("cache_write_tokens") or 0
    out["input_tokens_details"] = details
    details = out.get("output_tokens_details")
    details = dict(details) if isinstance(details, dict) else {}
    details["reasoning_tokens"] = details.get("reasoning_tokens") or 0
    out["output_tokens_details"] = details
    return out
