"""What the config's model servers serve, asked of each implementation without naming it.

A model server's ``Config`` declares which of its keys holds the model it answers with,
which other models it allows, which upstream prices its answers and which keys change what
it answers (``ModelServerConfig`` in ``server/model.py``). The collector reads those from the
config alone (the sweep before the servers start, the run record, dry-run prices), and
``ng models`` too, so a second model server (an Anthropic-native one, a vLLM one, a user's
own) gets sweeps, prices and the run record like ``responses_api_models``' first one.
"""

from __future__ import annotations

from functools import cache

from nemo_gym_cli.config import GlobalConfig, ServerInstance
from nemo_gym_cli.server.model import ModelServerConfig, Served, declared_config

__all__ = ["called_model_servers", "config_class", "model_server_of", "served"]


@cache
def _config_class(entrypoint: str, server_type: str, implementation: str) -> type[ModelServerConfig] | None:
    return declared_config(entrypoint, server_type, implementation)


def config_class(inst: ServerInstance) -> type[ModelServerConfig] | None:
    """The ``Config`` of the model server ``inst``; None when it is no model server of ours
    or declares nothing."""
    if inst.server_type != "responses_api_models":
        return None
    return _config_class(inst.entrypoint, inst.server_type, inst.implementation)


def served(inst: ServerInstance) -> Served | None:
    """What the model server ``inst`` serves, by its config; None when it is no model server
    or its implementation declares nothing."""
    cls = config_class(inst)
    return cls.served(inst.fields) if cls is not None else None


def model_server_of(config: GlobalConfig, agent: str | None) -> ServerInstance | None:
    """The instance ``agent`` calls as its ``model_server`` (None: no such agent or reference)."""
    inst = config.instances.get(agent or "")
    ref = inst.fields.get("model_server") if inst else None
    return config.instances.get(ref.get("name", "")) if isinstance(ref, dict) else None


def called_model_servers(config: GlobalConfig) -> list[str]:
    """The instances some agent calls as its ``model_server``, sorted (not a judge that a
    resources server calls: it stays on its own model)."""
    called = set()
    for inst in config.instances.values():
        ref = inst.fields.get("model_server") if inst.server_type == "responses_api_agents" else None
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            called.add(ref["name"])
    return sorted(called & set(config.instances))
