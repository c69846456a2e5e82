"""The response cache's top-level options, given to the model servers a command starts.

``+cache=true`` (with ``+cache_path``, ``+cache_ttl_s``, ``+cache_refresh``) on
``ng_collect_rollouts +config_paths=[...]`` or on ``ng_run`` sets the same keys on every
model server of the config whose ``Config`` has them (``CachingModelServerConfig``,
``nemo_gym_cli/server/cache.py``: the policy and a judge alike), before the servers start,
as ``allow_sweep_models`` fills ``allowed_models``. A config whose model servers cannot cache
is refused in one line rather than run uncached. Against a running ``ng_run`` its own config
decides, so the collector refuses cache options it could not apply.

``cache_path`` is made absolute here: the servers may run in another working directory.
The cache never changes which experiment a run belongs to (a resume may turn it on or off).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nemo_gym_cli.collect.model_servers import config_class
from nemo_gym_cli.config import GlobalConfig
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.server.cache import CachingModelServerConfig
from nemo_gym_cli.server.config import validate_model

__all__ = ["CacheOptions", "cache_model_servers"]

_SOURCE = "the command's cache options (+cache...)"


class CacheOptions(BaseModel):
    """The top-level keys of the response cache (``ng_run`` and ``ng_collect_rollouts``)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    cache: bool = Field(False, description="answer requests seen before from the response cache: 0 calls, $0")
    cache_path: str | None = Field(
        None, description="the response cache's folder (${XDG_CACHE_HOME:-~/.cache}/nemo-gym-cli/responses)"
    )
    cache_ttl_s: float | None = Field(None, gt=0, description="cache entries older than this are misses (7 days)")
    cache_refresh: bool = Field(False, description="ignore cache entries and overwrite them with new answers")

    @classmethod
    def from_config(cls, options: dict[str, Any]) -> CacheOptions:
        return validate_model(cls, {k: v for k, v in options.items() if k in cls.model_fields}, "+")

    def given(self) -> list[str]:
        """The options set on the command line or in a file, as ``+key`` names."""
        own = CacheOptions.model_fields  # not a subclass's (CollectOptions)
        return [f"+{k}" for k in sorted(self.model_fields_set & own.keys()) if getattr(self, k) not in (None, False)]

    def fields(self) -> dict[str, Any]:
        """The model-server keys these options set."""
        out: dict[str, Any] = {"cache": True, "cache_refresh": self.cache_refresh}
        if self.cache_path is not None:
            out["cache_path"] = str(Path(self.cache_path).expanduser().resolve())
        if self.cache_ttl_s is not None:
            out["cache_ttl_s"] = float(self.cache_ttl_s)
        return out


def cache_model_servers(config: GlobalConfig, opts: CacheOptions) -> GlobalConfig:
    """``config`` with the cache keys set on every model server that can cache; a
    ``ConfigError`` when the options cannot do what they say."""
    if not opts.cache:
        stray = opts.given()
        if stray:
            raise ConfigError(f"{', '.join(stray)} without +cache=true does nothing: add +cache=true, or remove them")
        return config
    if not config.instances:
        raise ConfigError(
            f"{', '.join(opts.given())} applies to the servers this command starts (+config_paths=[...]); a running "
            'ng_run\'s config decides for its own: start it with ng_run "+config_paths=[...]" +cache=true'
        )
    instances = dict(config.instances)
    cached = []
    for name, inst in config.instances.items():
        if inst.server_type != "responses_api_models":
            continue
        cls = config_class(inst)
        if cls is None or not issubclass(cls, CachingModelServerConfig):
            continue
        fields = opts.fields()
        instances[name] = replace(
            inst, fields={**inst.fields, **fields}, sources={**inst.sources, **dict.fromkeys(fields, _SOURCE)}
        )
        cached.append(name)
    if not cached:
        models = [i.where for i in config.instances.values() if i.server_type == "responses_api_models"]
        raise ConfigError(
            f"+cache=true, but no model server of this config has a response cache (model servers: "
            f"{', '.join(models) or 'none'}; openai_model has one): use openai_model in front of the provider, or "
            "run without +cache"
        )
    return replace(config, instances=instances)
