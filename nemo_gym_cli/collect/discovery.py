"""Finding the agents of a running head server: ours (``GET /instances``) or NeMo Gym's
(``GET /global_config_dict_yaml``, a JSON string holding the YAML of its config, each
instance with its ``host`` and ``port``)."""

from __future__ import annotations

from typing import Any

import httpx
import yaml

from nemo_gym_cli.errors import ServerError

__all__ = ["discover"]


async def discover(head_url: str) -> tuple[dict[str, list[str]], str, dict[str, Any]] | None:
    """``(agent name -> its replicas' URLs, what answered, its config dict)`` from the head
    server at ``head_url``, or None if nothing answers there. Replicas (on a Ray cluster) that
    are not ready are left out, unless none is. The config dict (``/global_config_dict_yaml``,
    both heads serve it; empty if it cannot be read) names the environment servers."""
    ours: dict[str, list[str]] | None = None
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        try:
            resp = await http.get(head_url + "/instances")
        except httpx.TransportError:
            return None
        rows = _json(resp) if resp.status_code == 200 else None
        rows = rows.get("instances") if isinstance(rows, dict) else None
        if isinstance(rows, list):
            ours = {
                str(r["name"]): _replica_urls(r)
                for r in rows
                if isinstance(r, dict) and r.get("type") == "responses_api_agents" and r.get("url")
            }
        try:
            nemo = await http.get(head_url + "/global_config_dict_yaml")
        except httpx.TransportError:
            nemo = None
    config = _config_dict(_json(nemo)) if nemo is not None and nemo.status_code == 200 else None
    if ours is not None:
        return ours, f"the ng_run head server at {head_url}", config or {}
    if config is not None:
        return _nemo_gym_agents(config), f"the NeMo Gym head server at {head_url}", config
    raise ServerError(
        f"{head_url} answers, but not like a head server of ours or of NeMo Gym (GET /instances: "
        f"HTTP {resp.status_code}); is +head_server.port right?",
        url=head_url,
    )


def _replica_urls(row: dict[str, Any]) -> list[str]:
    replicas = [r for r in row.get("replicas") or () if isinstance(r, dict) and r.get("url")]
    ready = [str(r["url"]) for r in replicas if r.get("ready")]
    return ready or [str(r["url"]) for r in replicas] or [str(row["url"])]


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _config_dict(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return config if isinstance(config, dict) else None


def _nemo_gym_agents(config: dict[str, Any]) -> dict[str, list[str]]:
    agents = {}
    for name, value in config.items():
        inner = value.get("responses_api_agents") if isinstance(value, dict) else None
        if isinstance(inner, dict) and len(inner) == 1:
            (fields,) = inner.values()
            if isinstance(fields, dict) and fields.get("host") and fields.get("port"):
                agents[str(name)] = [f"http://{fields['host']}:{fields['port']}"]
    return agents
