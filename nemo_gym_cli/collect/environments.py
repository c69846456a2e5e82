"""Rows to environment servers, as NeMo Gym 0.7's collector sends them, and what it stamps.

0.7 puts an *environment server* in front of every agent (``environment_servers``; for an
agent without one its ``ng_run`` generates a relay) and its collector sends
each row to the environment server that fronts the row's agent. Ours does the same:

- an agent fronted by exactly one environment server of the config gets its rows through
  it (its ``/run``); by several, the run needs ``+environment_routing_mode=legacy`` with
  ``+environment_server_name`` (0.7's rule), which sends every row to that one;
- an agent no environment server fronts is called directly, stamped with the name 0.7 gives
  the relay it would generate (``nemo_gym/hosting.py``): the relay would only forward, so a
  hop is saved and the rows read the same.

Every output row then carries 0.7's stamps: ``agent_ref`` (the row's own, else ``{name:
<agent>}``), ``_ng_environment_server`` and ``_ng_result_type`` (the environment server's
implementation; 0.7's relay's for the generated one). A failed rollout's record in
``<stem>_failures.jsonl`` carries 0.7's ``failure_kind`` (its vocabulary, ``failure_kinds.py``;
ours namespaced ``collector:<kind>`` where it has none) and ``failure_reason``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.nemo_gym.hosting import RELAY, environment_server_name

__all__ = ["Route", "failure_kind", "instances_of_config_dict", "routes", "stamp"]


#: An instance as routing sees it: (server type, implementation, fields, its replicas' URLs).
Instance = tuple[str, str, Mapping[str, Any], list[str]]


@dataclass(frozen=True)
class Route:
    """Where one agent's rows go, and how they are stamped."""

    agent: str
    environment_server: str
    result_type: str
    #: the URLs ``/run`` goes to: the environment server's replicas, or the agent's own
    urls: list[str]


def _fronted(fields: Mapping[str, Any]) -> list[str]:
    """The agents an environment server's fields refer to (0.7's rule: any reference typed
    ``responses_api_agents``, or an untyped ``agent_server``)."""
    out = []
    for key, ref in fields.items():
        if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
            if ref.get("type") == "responses_api_agents" or (key == "agent_server" and ref.get("type") is None):
                out.append(ref["name"])
    return out


def routes(
    instances: Mapping[str, Instance], *, mode: str = "agent", server_name: str | None = None
) -> dict[str, Route]:
    """Each agent's route among ``instances`` (``mode``/``server_name``: 0.7's
    ``environment_routing_mode`` and ``environment_server_name``)."""
    agents = {n: i for n, i in instances.items() if i[0] == "responses_api_agents"}
    servers = {n: i for n, i in instances.items() if i[0] == "environment_servers"}
    if mode == "legacy":
        if server_name is None or server_name not in servers:
            known = ", ".join(sorted(servers)) or "none"
            raise ConfigError(
                f"+environment_routing_mode=legacy sends every row to +environment_server_name, which must name an "
                f"environment server (got {server_name!r}; environment servers: {known})"
            )
        impl, urls = servers[server_name][1], servers[server_name][3]
        return {a: Route(a, server_name, impl, urls) for a in agents}
    if mode != "agent":
        raise ConfigError(
            f"+environment_routing_mode={mode!r}: here rows are routed by their agent (agent, the default) or all to "
            "one environment server (legacy, with +environment_server_name); 0.7's taskset routing is for its "
            "materialized task rows, which this collector does not read"
        )
    fronting: dict[str, list[str]] = {}
    for name, (_, _, fields, _) in servers.items():
        for agent in _fronted(fields):
            fronting.setdefault(agent, []).append(name)
    taken = set(instances)
    out: dict[str, Route] = {}
    for agent in sorted(agents):
        found = fronting.get(agent, [])
        if len(found) > 1:
            raise ConfigError(
                f"agent {agent!r} is fronted by several environment servers ({', '.join(sorted(found))}): give "
                "+environment_routing_mode=legacy +environment_server_name=<one of them>"
            )
        if found:
            (server,) = found
            out[agent] = Route(agent, server, servers[server][1], servers[server][3])
        else:
            name = environment_server_name(agent, agents[agent][1], taken)
            taken.add(name)
            out[agent] = Route(agent, name, RELAY, agents[agent][3])
    return out


def instances_of_config_dict(config: Mapping[str, Any]) -> dict[str, Instance]:
    """The agents and environment servers of a head server's config dict (NeMo Gym's shape,
    every instance with ``host`` and ``port``), as ``routes`` reads them."""
    out: dict[str, Instance] = {}
    for name, value in config.items():
        if not isinstance(value, Mapping) or len(value) != 1:
            continue
        ((server_type, inner),) = value.items()
        if server_type not in ("responses_api_agents", "environment_servers") or not isinstance(inner, Mapping):
            continue
        if len(inner) != 1:
            continue
        ((implementation, fields),) = inner.items()
        if isinstance(fields, Mapping) and fields.get("host") and fields.get("port"):
            out[str(name)] = (server_type, str(implementation), fields, [f"http://{fields['host']}:{fields['port']}"])
    return out


def stamp(result: dict[str, Any], row: Mapping[str, Any], route: Route) -> None:
    """Add 0.7's stamps to an output row (the row's own ``agent_ref`` kept)."""
    ref = row.get("agent_ref")
    result["agent_ref"] = dict(ref) if isinstance(ref, Mapping) else {"name": route.agent}
    result["_ng_environment_server"] = route.environment_server
    result["_ng_result_type"] = route.result_type


#: Our error kinds in 0.7's failure vocabulary (nemo_gym/failure_kinds.py).
_FAILURE_KINDS = {
    "timeout": "transport_timeout",
    "unreachable": "transport_unreachable",
    "rate_limit": "provider_unavailable",
    "unavailable": "provider_unavailable",
    "bad_gateway": "provider_unavailable",
    "credits": "provider_quota_exhausted",
    "connection": "transport_unreachable",
    "server": "provider_unavailable",
    "offload_timeout": "verifier_error",
    "offload_error": "verifier_error",
    "judge_error": "judge_failed",
    "no_session": "session_lost",
}


def failure_kind(kind: str, *, upstream: bool = False, answered: bool = True) -> str:
    """0.7's ``failure_kind`` for a rollout that failed with our error ``kind``."""
    if not answered:
        return "transport_unreachable"
    mapped = _FAILURE_KINDS.get(kind)
    if mapped is not None:
        return mapped
    if upstream:
        return "provider_unavailable"
    tag = "".join(c if c.isalnum() else "_" for c in kind.lower()).strip("_") or "error"
    return f"collector:{tag if tag[0].isalpha() else 'e_' + tag}"
