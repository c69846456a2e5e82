"""Finding the agents of a running head server: ours (``GET /instances``) or NeMo Gym's
(``GET /global_config_dict_yaml``, a JSON string holding the YAML of its config, each
instance with its ``host`` and ``port``)."""

from __future__ import annotations

from typing import Any

import httpx
import yaml

from nemo_gym_cli.errors import ServerError

__all__ = ["discover"]


async def discover(head_url: str) -> tuple[dict[str, list[str]], str] | None:
    """``(agent name -> its replicas' URLs, what answered)`` from the head server at
    ``head_url``, or None if nothing answers there. Replicas (on a Ray cluster) that are not
    ready are left out, unless none is."""
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        try:
            resp = await http.get(head_url + "/instances")
        except httpx.TransportError:
            return None
        if resp.status_code == 200:
            rows = _json(resp)
            rows = rows.get("instances") if isinstance(rows, dict) else None
            if isinstance(rows, list):
                agents = {
                    str(r["name"]): _replica_urls(r)
                    for r in rows
                    if isinstance(r, dict) and r.get("type") == "responses_api_agents" and r.get("url")
                }
                return agents, f"the ng_run head server at {head_url}"
        try:
            nemo = await http.get(head_url + "/global_config_dict_yaml")
        except httpx.TransportError:
            nemo = None
    if nemo is not None and nemo.status_code == 200:
        nemo_agents = _nemo_gym_agents(_json(nemo))
        if nemo_agents is not None:
            return nemo_agents, f"the NeMo Gym head server at {head_url}"
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


def _nemo_gym_agents(text: Any) -> dict[str, list[str]] | None:
    if not isinstance(text, str):
        return None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(config, dict):
        return None
    agents = {}
    for name, value in config.items():
        inner = value.get("responses_api_agents") if isinstance(value, dict) else None
        if isinstance(inner, dict) and len(inner) == 1:
            (fields,) = inner.values()
            if isinstance(fields, dict) and fields.get("host") and fields.get("port"):
                agents[str(name)] = [f"http://{fields['host']}:{fields['port']}"]
    return agents
