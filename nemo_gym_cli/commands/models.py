"""``ng models``: the models the configured upstream offers, with prices and tool support.

The upstream is ``+base_url`` (and ``+api_key``), else the config's model server instance
(``+model_server``, default ``policy_model`` or the only model server that names an upstream
in its config: ``collect/model_servers.py``), else the
top-level ``policy_base_url``. When that URL is another instance of the config (the offline
config's emulator, named by ``${ng_url:<instance>}``), that instance is started for the
question and stopped after.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict, dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nemo_gym_cli.collect.model_servers import served
from nemo_gym_cli.commands.options import ALL_OPTIONS, MODELS_OPTIONS
from nemo_gym_cli.config import GlobalConfig, load_config, substitute_urls
from nemo_gym_cli.config.load import _placeholders
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.providers.catalogue import ModelInfo, fetch_models, model_listed, select
from nemo_gym_cli.providers.upstream import AiohttpWire, Upstream
from nemo_gym_cli.server.config import validate_model
from nemo_gym_cli.wire import dumps

__all__ = ["ModelsOptions", "format_table", "models"]


class ModelsOptions(BaseModel):
    """Options of ``ng models`` (Hydra keys of the same names)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, populate_by_name=True)

    base_url: str | None = Field(None, description="ask this OpenAI-compatible base URL instead")
    api_key: str | None = Field(None, description="its key (OpenRouter lists models without one)", repr=False)
    model_server: str | None = Field(None, description="which model server instance (default policy_model)")
    tools: bool = Field(False, description="only models that support tool calls")
    max_price: float | None = Field(None, ge=0, description="only models at most this USD per million tokens")
    search: str | None = Field(None, description="only models whose id or name contains this")
    as_json: bool = Field(False, alias="json", description="one JSON object per model instead of the table")


@dataclass(frozen=True)
class _Target:
    upstream: Upstream
    headers: dict[str, str]
    where: str  # where the base URL came from, for messages


def _target(config: GlobalConfig, opts: ModelsOptions) -> _Target:
    if opts.base_url:
        return _Target(Upstream(opts.base_url, opts.api_key or "", ""), {}, "+base_url")
    name = opts.model_server
    declared = {n: served(i) for n, i in config.instances.items()}
    servers = {n: s for n, s in declared.items() if s is not None and s.base_url is not None}
    if name is None and "policy_model" in servers:
        name = "policy_model"
    elif name is None and len(servers) == 1:
        (name,) = servers
    if name is not None:
        server = servers.get(name)
        if server is None or server.base_url is None:
            raise ConfigError(
                f"+model_server={name!r} is not a model server instance of the config that names its upstream "
                f"(those: {', '.join(sorted(servers)) or 'none'})"
            )
        upstream = Upstream(server.base_url, server.api_key, server.model or "")
        return _Target(upstream, server.headers, f"instance {name!r}")
    base = config.options.get("policy_base_url")
    if isinstance(base, str) and base:
        key, model = config.options.get("policy_api_key"), config.options.get("policy_model_name")
        return _Target(Upstream(base, str(key or ""), str(model or "")), {}, "policy_base_url")
    raise ConfigError(
        "no upstream to ask: give +base_url=https://openrouter.ai/api/v1 (and +api_key=... if it "
        'needs one), or a config with a model server: ng models "+config_paths=[<model config>.yaml]" (the '
        "OpenRouter one is configs/openrouter.yaml of the model server's folder; docs/openrouter.md)"
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


async def _fetch(config: GlobalConfig, target: _Target) -> tuple[_Target, list[dict[str, Any]]]:
    needed: list[tuple[str, str]] = []
    _placeholders(target.upstream.base_url, "", needed)
    if not needed:
        async with AiohttpWire.open(pool_size=4, connect_timeout_s=10.0, read_timeout_s=30.0) as wire:
            return target, await fetch_models(wire, target.upstream, headers=target.headers)
    # The base URL is an instance of this config (the offline emulator): start just that.
    from nemo_gym_cli.process.supervisor import running_servers

    names = sorted({name for _, name in needed})
    write = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    async with running_servers(config, stop_event=asyncio.Event(), write=write, only=names) as supervisor:
        base = substitute_urls(target.upstream.base_url, supervisor.urls, target.where)
        started = replace(target, upstream=replace(target.upstream, base_url=base))
        async with AiohttpWire.open(pool_size=4, connect_timeout_s=10.0, read_timeout_s=30.0) as wire:
            return started, await fetch_models(wire, started.upstream, headers=started.headers)


def models(args: list[str]) -> int:
    """``ng models``: print the models the configured upstream offers; returns the exit code."""
    config = load_config(args, command=MODELS_OPTIONS, everywhere=ALL_OPTIONS)
    opts = validate_model(ModelsOptions, {k: v for k, v in config.options.items() if k in MODELS_OPTIONS}, "+")
    target, entries = asyncio.run(_fetch(config, _target(config, opts)))
    listed = [ModelInfo.parse(e) for e in entries]
    shown = select(listed, tools=opts.tools, max_price=opts.max_price, search=opts.search)
    if opts.as_json:
        sys.stdout.write("".join(dumps(asdict(m)).decode() + "\n" for m in shown))
        return 0
    if shown:
        print(format_table(shown, target.upstream.model))
    filters = ["with tools"] if opts.tools else []
    if opts.max_price is not None:
        filters.append(f"at most ${opts.max_price:g}/M tokens")
    if opts.search is not None:
        filters.append(f"matching {opts.search!r}")
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
