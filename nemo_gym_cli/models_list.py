"""The models an upstream offers: ``GET /models`` and ``GET /key``, the start-up check built on
them, and the ``ng models`` command.

    fetch_models(http, upstream)        the raw ``/models`` entries (raises UpstreamError)
    ModelInfo.parse(entry)              id, context length, prices per million tokens, tools
    model_listed(model, entries)        is ``model`` offered? (gateway prefixes understood)
    preflight(http, upstreams)          key accepted and model offered, at server start-up
    models(args)                        ``ng models`` / ``ng_models``: list, filter, print

Prices in ``/models`` are USD per token (strings, OpenRouter's shape); shown and filtered
here in USD per million tokens.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from nemo_gym_cli.errors import ConfigError, UpstreamError
from nemo_gym_cli.upstream import (
    Reply,
    Upstream,
    Wire,
    WireTimeout,
    WireUnreachable,
    as_wire,
    auth_headers,
    classify_error,
    model_unavailable,
)
from nemo_gym_cli.wire import dumps

if TYPE_CHECKING:  # the model server imports this module: keep config and httpx out of it
    import httpx

    from nemo_gym_cli.config import GlobalConfig

__all__ = ["ModelInfo", "fetch_models", "model_listed", "models", "preflight", "select"]

# OpenRouter's routing variants: not listed by /models as ids of their own.
_ROUTING_VARIANTS = frozenset(("nitro", "floor", "online", "thinking"))
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
        pricing = entry.get("pricing") if isinstance(entry.get("pricing"), dict) else {}
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


def _bare(model_id: str) -> str:
    """A model id without a gateway's ``provider:`` prefix and OpenRouter's routing variant."""
    head, sep, rest = model_id.partition(":")
    if sep and "/" not in head and "/" in rest:  # openrouter:anthropic/claude-3.5-sonnet
        model_id = rest
    stem, sep, suffix = model_id.rpartition(":")
    return stem if sep and suffix in _ROUTING_VARIANTS else model_id


def model_listed(model: str, listed: list[dict[str, Any]]) -> dict[str, Any] | bool | None:
    """The ``/models`` entry of ``model``; ``None`` when it is surely not offered; ``True``
    when the list cannot tell (a gateway prefix the list does not use, a router)."""
    by_id = {str(m.get("id")): m for m in listed if isinstance(m, dict) and m.get("id")}
    if model in by_id:
        return by_id[model]
    bare = _bare(model)
    for listed_id, entry in by_id.items():
        if _bare(listed_id) == bare:
            return entry
    if model.startswith("openrouter/"):  # openrouter/auto: a router, not always listed
        return True
    prefix, sep, rest = model.partition(":")
    if sep and "/" not in prefix and "/" in rest:
        # A gateway prefix: only a list that uses the same prefix can say the model is absent.
        if not any(listed_id.startswith(prefix + ":") for listed_id in by_id):
            return True
    return None


async def fetch_models(
    http: Wire | httpx.AsyncClient | aiohttp.ClientSession,
    upstream: Upstream,
    *,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``GET <base>/models``: the raw entries (``id``, ``context_length``, ``pricing``,
    ``supported_parameters``...). Raises ``UpstreamError`` naming what to do."""
    url = f"{upstream.base_url.rstrip('/')}/models"
    try:
        resp = await as_wire(http).request("GET", url, headers=auth_headers(upstream, headers), timeout=timeout)
    except (WireTimeout, WireUnreachable) as exc:
        raise _unreachable(upstream, exc) from None
    return _models_of(resp, upstream)


def _models_of(resp: Reply, upstream: Upstream) -> list[dict[str, Any]]:
    data = resp.json()
    if resp.status >= 400:
        err = data.get("error") if isinstance(data, dict) else None
        if resp.status in (401, 402, 403) or isinstance(err, dict):
            raise classify_error(resp.status, err or resp.text(200), upstream)
        raise UpstreamError(
            f"{resp.url} answered {resp.status}: {upstream.base_url} does not list its models; "
            f"check openai_base_url ({_OPENROUTER})",
            status=resp.status,
            kind="bad_base_url",
        )
    entries = data.get("data") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise UpstreamError(
            f"{resp.url} did not answer with a model list "
            f"(got {resp.headers.get('content-type')!r}): "
            f"{upstream.base_url} does not look like an OpenAI-compatible API; check "
            f"openai_base_url ({_OPENROUTER})",
            status=resp.status,
            kind="bad_base_url",
        )
    return [e for e in entries if isinstance(e, dict)]


def _unreachable(upstream: Upstream, exc: Exception) -> UpstreamError:
    what = "timed out" if isinstance(exc, WireTimeout) else upstream.scrub(str(exc))
    return UpstreamError(
        f"cannot reach {upstream.base_url} ({what}): check openai_base_url, the network and "
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


async def _check(wire: Wire, upstream: Upstream, deadline: float, extra_headers: dict[str, str]) -> list[str]:
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
    if isinstance(left, (int, float)) and not isinstance(left, bool) and left <= 0:
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
        raise model_unavailable(upstream, f" ({len(listed)} models listed there)")
    if isinstance(entry, dict):
        params = entry.get("supported_parameters")
        if isinstance(params, list) and "tools" not in params:
            warnings.append(
                f"model {upstream.model!r} at {upstream.base_url} does not list tool support: "
                "requests with tools will fail; `ng models +tools=true` lists models that have it"
            )
    for fallback in upstream.fallback_models:
        if model_listed(fallback, listed) is None:
            warnings.append(f"fallback model {fallback!r} is not offered at {upstream.base_url}")
    return warnings


async def preflight(
    http: Wire | httpx.AsyncClient | aiohttp.ClientSession,
    upstreams: list[Upstream],
    *,
    timeout_s: float = 10.0,
    grace_s: float = 1.0,
    headers: dict[str, str] | None = None,
) -> list[str]:
    """Check every upstream once, concurrently: the key is accepted, the model is offered.

    Returns warnings (an alternative upstream that cannot be reached, a model without tool
    support, a fallback model not listed). Raises ``UpstreamError`` for a rejected key, no
    credits, an unknown model or a base URL that serves a web page, and when no upstream can
    be reached within ``timeout_s`` (refused connections are retried meanwhile: a local
    server may still be starting). Once one upstream passed, the others get ``grace_s``.
    """
    wire = as_wire(http)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    tasks = [asyncio.create_task(_check(wire, u, deadline, headers or {})) for u in upstreams]
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
                    UpstreamError(f"{upstreams[tasks.index(t)].base_url} did not answer in time") for t in pending
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


# --- ng models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    upstream: Upstream
    headers: dict[str, str]
    where: str  # where the base URL came from, for messages


def _target(config: GlobalConfig) -> _Target:
    """The upstream to ask: ``+base_url`` (and ``+api_key``), else the model server instance
    (``+model_server``, default ``policy_model`` or the only openai_model instance), else the
    top-level ``policy_base_url`` / ``policy_api_key``."""
    opts = config.options
    if opts.get("base_url"):
        return _Target(Upstream(str(opts["base_url"]), str(opts.get("api_key") or ""), ""), {}, "+base_url")
    name = opts.get("model_server")
    servers = {
        n: i
        for n, i in config.instances.items()
        if i.server_type == "responses_api_models" and "openai_base_url" in i.fields
    }
    if name is None and "policy_model" in servers:
        name = "policy_model"
    elif name is None and len(servers) == 1:
        (name,) = servers
    if name is not None:
        inst = servers.get(str(name))
        if inst is None:
            raise ConfigError(
                f"+model_server={name!r} is not an openai_model instance of the config "
                f"(those: {', '.join(sorted(servers)) or 'none'})"
            )
        f = inst.fields
        headers = {str(k): str(v) for k, v in (f.get("default_headers") or {}).items()}
        upstream = Upstream(
            str(f["openai_base_url"]),
            str(f.get("openai_api_key") or ""),
            str(f.get("openai_model") or ""),
        )
        return _Target(upstream, headers, f"instance {inst.name!r}")
    if opts.get("policy_base_url"):
        upstream = Upstream(
            str(opts["policy_base_url"]),
            str(opts.get("policy_api_key") or ""),
            str(opts.get("policy_model_name") or ""),
        )
        return _Target(upstream, {}, "policy_base_url")
    raise ConfigError(
        "no upstream to ask: give +base_url=https://openrouter.ai/api/v1 (and +api_key=... if it "
        'needs one), or the model config: ng models "+config_paths=[responses_api_models/'
        'openai_model/configs/openrouter.yaml]"'
    )


def _price(value: float | None) -> str:
    if value is None:
        return "?"
    return "0" if value == 0 else f"{value:.4g}"


def format_table(listed: list[ModelInfo], current: str = "") -> str:
    """A fixed-width table: id, context length, $/M prompt and completion tokens, tools.
    ``current`` (the configured model) is marked with ``*``."""
    rows = [
        (
            ("* " if m.id == current else "  ") + m.id,
            str(m.context_length or "?"),
            _price(m.prompt_price),
            _price(m.completion_price),
            {True: "yes", False: "no", None: "?"}[m.tools],
        )
        for m in listed
    ]
    rows.insert(0, ("  MODEL", "CONTEXT", "$/M IN", "$/M OUT", "TOOLS"))
    w = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}  {r[4]}" for r in rows)


def _flag(opts: dict[str, Any], key: str) -> bool:
    value = opts.get(key, False)
    if isinstance(value, str):
        value = value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def models(args: list[str]) -> int:
    """``ng models``: print the models the configured upstream offers; returns the exit code."""
    from nemo_gym_cli.config import load_config

    config = load_config(args)
    opts = config.options
    target = _target(config)
    tools = _flag(opts, "tools")
    max_price = opts.get("max_price")
    try:
        max_price = None if max_price is None else float(max_price)
    except (TypeError, ValueError):
        raise ConfigError(f"+max_price must be a number (USD per million tokens), got {max_price!r}") from None
    search = None if opts.get("search") is None else str(opts["search"])
    entries = asyncio.run(_fetch(target))
    listed = [ModelInfo.parse(e) for e in entries]
    shown = select(listed, tools=tools, max_price=max_price, search=search)
    if _flag(opts, "json"):
        sys.stdout.write("".join(dumps(asdict(m)).decode() + "\n" for m in shown))
        return 0
    if shown:
        print(format_table(shown, target.upstream.model))
    filters = ["with tools"] if tools else []
    if max_price is not None:
        filters.append(f"at most ${max_price:g}/M tokens")
    if search is not None:
        filters.append(f"matching {search!r}")
    print(
        f"{len(shown)} of {len(listed)} models at {target.upstream.base_url}"
        + (f" ({', '.join(filters)})" if filters else "")
        + "; prices in USD per million tokens"
    )
    model = target.upstream.model
    if model and listed:
        state = "offered" if model_listed(model, entries) else "NOT offered: pick one of the list"
        print(f"configured model ({target.where}): {model} - {state}")
    return 0


async def _fetch(target: _Target) -> list[dict[str, Any]]:
    import httpx

    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as http:
        return await fetch_models(http, target.upstream, headers=target.headers)
