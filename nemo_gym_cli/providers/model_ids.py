"""Model ids as OpenRouter and gateways write them, in one place.

    anthropic/claude-3.5-sonnet                 author/slug
    meta-llama/llama-3.3-70b-instruct:free      + a variant suffix (:free, :nitro, ...)
    openrouter:anthropic/claude-3.5-sonnet      + a gateway's provider prefix

``bare(id)`` drops the prefix and a routing variant, so two spellings of one model compare
equal (``same_model``); ``:free`` stays, because it is a different endpoint with different
limits and price. The adapter passes ids through untouched: these are for matching only
(the start-up check, ``ng models``, the emulator's routing, the report's fallback count).
"""

from __future__ import annotations

__all__ = ["ROUTING_VARIANTS", "bare", "gateway_prefix", "same_model", "split"]

#: OpenRouter's suffixes that choose how to route a model, not which model it is.
ROUTING_VARIANTS = frozenset(("nitro", "floor", "online", "thinking"))


def split(model_id: str) -> tuple[str, str, str]:
    """``(gateway prefix, author/slug, variant)``; missing parts are ``""``."""
    prefix = ""
    head, sep, rest = model_id.partition(":")
    if sep and "/" not in head and "/" in rest:  # openrouter:anthropic/claude-3.5-sonnet
        prefix, model_id = head, rest
    stem, sep, suffix = model_id.rpartition(":")
    if sep and stem:
        return prefix, stem, suffix
    return prefix, model_id, ""


def gateway_prefix(model_id: str) -> str:
    return split(model_id)[0]


def bare(model_id: str) -> str:
    """``model_id`` without a gateway prefix or a routing variant (``:free`` is kept)."""
    _, stem, variant = split(model_id)
    return stem if not variant or variant in ROUTING_VARIANTS else f"{stem}:{variant}"


def same_model(a: str, b: str) -> bool:
    """Do two ids name the same model (whatever the prefix and routing variant)?"""
    return bare(a) == bare(b)
