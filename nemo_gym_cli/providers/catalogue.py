"""The models an upstream offers: ``GET /models`` and ``GET /key``, and the start-up check
built on them (``ng models`` prints them: ``commands/models.py``).

    fetch_models(wire, upstream)        the raw ``/models`` entries (raises UpstreamError)
    ModelInfo.parse(entry)              id, context length, prices per million tokens, tools
    model_listed(model, entries)        is ``model`` offered? (gateway prefixes understood)
    preflight(wire, upstreams)          key accepted and model offered, at server start-up

Prices in ``/models`` are USD per token (strings, OpenRouter's shape); shown and filtered
here in USD per million tokens.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from nemo_gym_cli.errors import UpstreamError
from nemo_gym_cli.openai.errors import classify_error, model_unavailable
from nemo_gym_cli.providers.model_ids import bare, gateway_prefix
from nemo_gym_cli.providers.upstream import (
    Reply,
    Upstream,
    Wire,
    WireTimeout,
    WireUnreachable,
    auth_headers,
)
from nemo_gym_cli.redaction import redact_url

__all__ = ["ModelInfo", "fetch_models", "model_listed", "preflight", "select"]

_OPENROUTER = "OpenRouter's is https://openrouter.ai/api/v1"


@dataclass(frozen=True)
class ModelInfo:
    """One model of a ``/models`` list; ``None`` where the list does not say."""

    id: str
    name: str
    context_length: int | None
    prompt_price: float | None  # USD per million prompt tokens
    completion_price: float | None  # USD per million completion tokens
    tools: bool | None

    @classmethod
    def parse(cls, entry: dict[str, Any]) -> ModelInfo:
        context = entry.get("context_length") or (entry.get("top_provider") or {}).get("context_length")
        pricing: dict[str, Any] = entry["pricing"] if isinstance(entry.get("pricing"), dict) else {}
        params = entry.get("supported_parameters")
        return cls(
            id=str(entry.get("id")),
            name=str(entry.get("name") or ""),
            context_length=context if isinstance(context, int) and not isinstance(context, bool) else None,
            prompt_price=_per_million(pricing.get("prompt")),
            completion_price=_per_million(pricing.get("completion")),
            tools=("tools" in params) if isinstance(params, list) else None,
        )


def _per_million(value: Any) -> float | None:
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return None if price < 0 else round(price * 1_000_000, 6)  # -1: varies (openrouter/auto)


def select(
    listed: list[ModelInfo],
    *,
    tools: bool = False,
    max_price: float | None = None,
    search: str | None = None,
) -> list[ModelInfo]:
    """The models with tool support (``tools``), prompt and completion prices both at most
    ``max_price`` USD per million tokens, and ``search`` in their id or name; sorted by id."""
    needle = (search or "").lower()
    out = []
    for m in listed:
        if tools and m.tools is not True:
            continue
        if max_price is not None and not (
            m.prompt_price is not None
            and m.completion_price is not None
            and max(m.prompt_price, m.completion_price) <= max_price
        ):
            continue
        if needle and needle not in m.id.lower() and needle not in m.name.lower():
            continue
        out.append(m)
    return sorted(out, key=lambda m: m.id)


# --- matching and fetching ------------------------------------------------------------------


def model_listed(model: str, listed: list[dict[str, Any]]) -> dict[str, Any] | bool | None:
    """The ``/models`` entry of ``model``; ``None`` when it is surely not offered; ``True``
    when the list cannot tell (a gateway prefix the list does not use, a router)."""
    by_id = {str(m.get("id")): m for m in listed if isinstance(m, dict) and m.get("id")}
    if model in by_id:
        return by_id[model]
    wanted = bare(model)
    for listed_id, entry in by_id.items():
        if bare(listed_id) == wanted:
            return entry
    if model.startswith("openrouter/"):  # openrouter/auto: a router, not always listed
        return True
    prefix = gateway_prefix(model)
    if prefix:
        # A gateway prefix: only a list that uses the same prefix can say the model is absent.
        if not any(listed_id.startswith(prefix + ":") for listed_id in by_id):
            return True
    return None


async def fetch_models(
    wire: Wire,
    upstream: Upstream,
    *,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``GET <base>/models``: the raw entries (``id``, ``context_length``, ``pricing``,
    ``supported_parameters``...). Raises ``UpstreamError`` naming what to do."""
    url = f"{upstream.base_url.rstrip('/')}/models"
    try:
        resp = await wire.request("GET", url, headers=auth_headers(upstream, headers), timeout=timeout)
    except (WireTimeout, WireUnreachable) as exc:
        raise _unreachable(upstream, exc) from None
    return _models_of(resp, upstream)


def _models_of(resp: Reply, upstream: Upstream) -> list[dict[str, Any]]:
    data = resp.json()
    if resp.status >= 400:
        err = data.get("error") if isinstance(data, dict) else None
        # A 404 on /models is the base URL's fault (e.g. a missing /api/v1), not a model's.
        if resp.status in (401, 402, 403) or (isinstance(err, dict) and resp.status != 404):
            raise classify_error(resp.status, err or resp.text(200), upstream)
        raise UpstreamError(
            f"{redact_url(resp.url)} answered {resp.status}: {upstream.shown_url} does not list its models; "
            f"check openai_base_url ({_OPENROUTER})",
            status=resp.status,
            kind="bad_base_url",
        )
    entries = data.get("data") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise UpstreamError(
            f"{redact_url(resp.url)} did not answer with a model list "
            f"(got {resp.headers.get('content-type')!r}): "
            f"{upstream.shown_url} does not look like an OpenAI-compatible API; check "
            f"openai_base_url ({_OPENROUTER})",
            status=resp.status,
            kind="bad_base_url",
        )
    return [e for e in entries if isinstance(e, dict)]


def _unreachable(upstream: Upstream, exc: Exception) -> UpstreamError:
    what = "timed out" if isinstance(exc, WireTimeout) else upstream.scrub(str(exc))
    return UpstreamError(
        f"cannot reach {upstream.shown_url} ({what}): check openai_base_url, the network and "
        "any proxy; is the server running?",
        kind="connection",
        retryable=True,
    )


# --- the start-up check ----------------------------------------------------------------------


class _Unreachable(Exception):
    def __init__(self, error: UpstreamError) -> None:
        self.error = error


async def _get_when_up(wire: Wire, url: str, headers: dict[str, str], upstream: Upstream, deadline: float) -> Reply:
    """GET ``url``; a refused connection (a local server still starting) is retried until
    ``deadline`` (loop time)."""
    loop = asyncio.get_running_loop()
    pause = 0.02
    while True:
        try:
            return await wire.request("GET", url, headers=headers, timeout=max(0.5, deadline - loop.time()))
        except WireUnreachable as exc:
            if not exc.refused or loop.time() + pause >= deadline:
                raise _Unreachable(_unreachable(upstream, exc)) from None
        except WireTimeout as exc:
            raise _Unreachable(_unreachable(upstream, exc)) from None
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.25)


async def _check(
    wire: Wire, upstream: Upstream, deadline: float, extra_headers: dict[str, str], model_setting: str
) -> list[str]:
    """One upstream: its key (``GET /key``, OpenRouter's; 404 elsewhere) and its model list.
    Returns warnings; raises ``UpstreamError`` (a definite problem) or ``_Unreachable``."""
    base = upstream.base_url.rstrip("/")
    headers = auth_headers(upstream, extra_headers)
    key_resp, models_resp = await asyncio.gather(
        _get_when_up(wire, base + "/key", headers, upstream, deadline),
        _get_when_up(wire, base + "/models", headers, upstream, deadline),
    )
    key_body = key_resp.json()
    if key_resp.status in (401, 402):
        err = key_body.get("error") if isinstance(key_body, dict) else None
        raise classify_error(key_resp.status, err or key_resp.text(200), upstream)
    info = key_body.get("data") if key_resp.status == 200 and isinstance(key_body, dict) else None
    left = info.get("limit_remaining") if isinstance(info, dict) else None
    if isinstance(info, dict) and isinstance(left, (int, float)) and not isinstance(left, bool) and left <= 0:
        raise UpstreamError(
            f"out of credits at {base}: the key's credit limit is used up (limit "
            f"{info.get('limit')}, usage {info.get('usage')}): raise the key's limit or add "
            "credits (OpenRouter: https://openrouter.ai/settings/keys)",
            status=402,
            kind="credits",
        )
    warnings: list[str] = []
    try:
        listed = _models_of(models_resp, upstream)
    except UpstreamError as exc:
        html = "html" in (models_resp.headers.get("content-type") or "")
        if exc.kind in ("auth", "credits") or (exc.kind == "bad_base_url" and html):
            raise
        return [f"could not check that {upstream.model!r} is offered: {exc}"]
    if not listed:
        return warnings
    entry = model_listed(upstream.model, listed)
    if entry is None:
        raise model_unavailable(upstream, f" ({len(listed)} models listed there)", model_setting)
    if isinstance(entry, dict):
        params = entry.get("supported_parameters")
        if isinstance(params, list) and "tools" not in params:
            warnings.append(
                f"model {upstream.model!r} at {upstream.shown_url} does not list tool support: "
                "requests with tools will fail; `ng models +tools=true` lists models that have it"
            )
    for other in upstream.allowed_models:
        if model_listed(other, listed) is None:
            raise UpstreamError(
                f"model {other!r} (in allowed_models, or a sweep's +models) is not available at "
                f"{upstream.shown_url}; list the models it offers with `ng models`, then fix the model id",
                status=404,
                kind="model_not_found",
            )
    for fallback in upstream.fallback_models:
        if model_listed(fallback, listed) is None:
            warnings.append(f"fallback model {fallback!r} is not offered at {upstream.shown_url}")
    return warnings


async def preflight(
    wire: Wire,
    upstreams: list[Upstream],
    *,
    timeout_s: float = 10.0,
    grace_s: float = 1.0,
    headers: dict[str, str] | None = None,
    model_setting: str = "+policy_model_name",
) -> list[str]:
    """Check every upstream once, concurrently: the key is accepted, the model (and every
    allowed model) is offered.

    Returns warnings (an alternative upstream that cannot be reached, a model without tool
    support, a fallback model not listed). Raises ``UpstreamError`` for a rejected key, no
    credits, an unknown model or a base URL that serves a web page, and when no upstream can
    be reached within ``timeout_s`` (refused connections are retried meanwhile: a local
    server may still be starting). Once one upstream passed, the others get ``grace_s``.
    ``model_setting`` is the override an unknown model's message tells the user to set.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    tasks = [asyncio.create_task(_check(wire, u, deadline, headers or {}, model_setting)) for u in upstreams]
    warnings: list[str] = []
    unreachable: list[UpstreamError] = []
    passed = 0
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=grace_s if passed else None, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:  # one passed; the rest had their grace
                unreachable += [
                    UpstreamError(f"{upstreams[tasks.index(t)].shown_url} did not answer in time") for t in pending
                ]
                break
            for task in done:
                exc = task.exception()
                if isinstance(exc, _Unreachable):
                    unreachable.append(exc.error)
                elif exc is not None:
                    raise exc
                else:
                    passed += 1
                    warnings += task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # retrieve every outcome
    if not passed:
        raise unreachable[0]
    return warnings + [f"upstream unreachable at start-up (requests fail over past it): {e}" for e in unreachable]
