"""A sweep's models reach the model servers: each variant is served by the model it names.

A model server whose config declares the model it serves (``ModelServerConfig.model_key``)
sends that model, or a model a request names that is in its ``allowed_models``; any other
model is refused (a 400, the ``ModelServer`` base's check), never silently replaced. So:

- when the collector starts the servers (``+config_paths``), ``allow_sweep_models`` adds
  every model of ``+models=[...]`` / ``variants:`` to ``allowed_models`` of each model
  server an agent calls, before they start: the list is not repeated by hand (the judge of
  a judge model that a resources server calls stays on its own model); a model server that
  declares no model would answer every variant with whatever it serves, so it is refused;
- when it uses a running ``ng_run``, ``check_served`` asks each model server's
  ``GET /v1/models`` first and refuses, in one line, a sweep naming a model none of them
  serves (add it to ``allowed_models`` in ng_run's config). A NeMo Gym head server's model
  servers send their configured model whatever a request names, so a sweep of models is
  refused there.
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import yaml

from nemo_gym_cli.collect.model_servers import called_model_servers, served
from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.config import GlobalConfig
from nemo_gym_cli.errors import ConfigError

__all__ = ["allow_sweep_models", "check_served", "sweep_models"]


def sweep_models(opts: CollectOptions) -> list[str]:
    """The models the sweep's variants name, in order, once each."""
    return list(dict.fromkeys(v.model for v in opts.sweep() if v.model is not None))


def allow_sweep_models(config: GlobalConfig, opts: CollectOptions) -> GlobalConfig:
    """``config`` with the sweep's models added to ``allowed_models`` of every model server an
    agent calls as its ``model_server``."""
    models = sweep_models(opts)
    if not models:
        return config
    instances = dict(config.instances)
    for name in called_model_servers(config):
        inst = instances[name]
        declared = served(inst)
        if declared is None or declared.model_key is None:
            raise ConfigError(
                f"the sweep names models {models}, but {inst.where} does not declare which model it serves "
                "(its Config sets no model_key), so every variant could be answered by the same model: give "
                "its Config a model_key (ModelServerConfig, nemo_gym_cli/server/model.py), or sweep without +models"
            )
        allowed = inst.fields.get("allowed_models") or []
        if not isinstance(allowed, list):
            continue  # the server's own config check names the bad value
        merged = list(dict.fromkeys([*allowed, *models]))
        instances[name] = replace(
            inst,
            fields={**inst.fields, "allowed_models": merged},
            sources={**inst.sources, "allowed_models": "the sweep (+models / variants)"},
        )
    return replace(config, instances=instances)


async def check_served(head_url: str, models: list[str], agent: str | None) -> None:
    """Refuse (``ConfigError``) a sweep naming a model that the model server of ``agent`` (of
    every agent when None) in the running ``ng_run`` at ``head_url`` does not serve
    (its ``GET /v1/models``)."""
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        try:
            rows = (await http.get(head_url + "/instances")).json()["instances"]
            config = yaml.safe_load((await http.get(head_url + "/global_config_dict_yaml")).json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError, yaml.YAMLError):
            raise ConfigError(
                f"the head server at {head_url} is NeMo Gym's: its model servers send their configured model "
                "whatever a request names, so a sweep of models would compare one model with itself; give "
                "ng_collect_rollouts +config_paths=[...] to start servers that serve each variant's model"
            ) from None
        urls = {row["name"]: row["url"] for row in rows}
        agents = [agent] if agent else [row["name"] for row in rows if row["type"] == "responses_api_agents"]
        listed_by: set[str] = set()
        where = "policy_model.responses_api_models.<implementation>"  # when no agent's server answers
        for name in agents:
            try:  # an agent this config does not have is named by the agent check after this one
                (fields,) = config[name]["responses_api_agents"].values()
                server = fields["model_server"]["name"]
                ((server_type, implementations),) = config[server].items()
                ((implementation, _),) = implementations.items()
                where = f"{server}.{server_type}.{implementation}"
                listed = (await http.get(f"{urls[server]}/v1/models")).json()["data"]
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
                continue
            listed_by.update(str(m.get("id")) for m in listed if isinstance(m, dict))
    missing = [m for m in models if m not in listed_by]
    if missing:
        implementation = where.rsplit(".", 1)[-1]
        raise ConfigError(
            f"the sweep names {missing}, which the agent's model server in the ng_run at {head_url} does not serve; "
            f"add them to allowed_models of its {implementation} server (ng_run "
            f"'++{where}.allowed_models=[...]') and restart it, or give "
            "ng_collect_rollouts +config_paths=[...] to start servers that allow them"
        )
