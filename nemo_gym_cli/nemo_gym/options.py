"""NeMo Gym's keys here: the ``nemo_gym:`` block (ours) and NeMo Gym 0.7's reserved top-level keys.

``nemo_gym:`` says how NeMo Gym's own servers are hosted (``nemo_gym_cli/nemo_gym/``): which
nemo-gym version, which Python environment, where its environment folders are.

``RESERVED`` is 0.7's table of top-level keys that are never server instances
(``NEMO_GYM_RESERVED_TOP_LEVEL_KEYS``, global_config.py:133-175), each with what it does here:

- ``HONOURED``: means something here and is accepted by the commands that read it;
- ``SHARED``: a key of another command (the collector's routing keys), accepted in shared config
  files as ``NEMO_GYM_GLOBALS`` are, never on the command line of a command that ignores it;
- ``REFUSED``: does not apply here: refused wherever it is given, with one line saying why and
  what to do instead (a key that would be silently ignored changes nothing a user can see).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from nemo_gym_cli.errors import ConfigError

__all__ = [
    "DEFAULT_NEMO_GYM_VERSION",
    "HONOURED",
    "REFUSED",
    "RESERVED_KEYS",
    "RUN_KEYS",
    "SHARED",
    "NemoGymOptions",
    "nemo_gym_options",
    "refusal",
]

DEFAULT_NEMO_GYM_VERSION = "0.7.0"


@dataclass(frozen=True)
class NemoGymOptions:
    """``nemo_gym:``: how NeMo Gym's own servers are hosted (docs/nemo_gym.md)."""

    #: the nemo-gym release their servers run on (from PyPI)
    version: str = DEFAULT_NEMO_GYM_VERSION
    #: an existing Python environment with nemo-gym installed, used as is (nothing built)
    venv: str | None = None
    #: the interpreter environments are built with (default: the newest Python found that
    #: satisfies nemo-gym's Requires-Python)
    python: str | None = None
    #: install even where the interpreter does not satisfy Requires-Python (untested by NeMo Gym)
    ignore_requires_python: bool = False
    #: where environments are built (default ${NG_VENV_CACHE:-${XDG_CACHE_HOME:-~/.cache}/nemo-gym-cli}/nemo_gym)
    cache_dir: str | None = None
    #: a NeMo Gym checkout or install root holding resources_servers/, ... (default: the
    #: environment's site-packages)
    root: str | None = None

    def cache_path(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        base = os.environ.get("NG_VENV_CACHE") or str(
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nemo-gym-cli"
        )
        return Path(base).expanduser() / "nemo_gym"


def nemo_gym_options(value: Any, source_of: Any = None) -> NemoGymOptions:
    """The ``nemo_gym:`` block, checked (``None``: every default); one ``ConfigError`` line."""
    if value is None:
        return NemoGymOptions()
    where = (
        (lambda key: f"nemo_gym.{key} ({source_of(f'nemo_gym.{key}')})")
        if source_of
        else (lambda key: f"nemo_gym.{key}")
    )
    if not isinstance(value, dict):
        raise ConfigError(f"nemo_gym must be a mapping such as {{venv: /path/to/venv}}, got {value!r}")
    keys = [f.name for f in dataclass_fields(NemoGymOptions)]
    unknown = sorted(set(value) - set(keys))
    if unknown:
        from nemo_gym_cli.server.config import closest

        raise ConfigError(
            f"{where(unknown[0])}: unknown key{closest(unknown[0], keys)}; nemo_gym's keys: {', '.join(keys)}"
        )
    out: dict[str, Any] = {}
    for key in keys:
        v = value.get(key)
        if v is None or v == "":
            continue
        if key == "ignore_requires_python":
            if not isinstance(v, bool):
                raise ConfigError(f"{where(key)} must be true or false, got {v!r}")
        elif key == "version":
            v = str(v)
            if not v.replace(".", "").replace("rc", "").replace("post", "").isalnum():
                raise ConfigError(f"{where(key)} must be a release such as 0.7.0, got {v!r}")
        elif not isinstance(v, str):
            raise ConfigError(f"{where(key)} must be a path, got {v!r}")
        if key in ("venv", "root") and not Path(str(v)).expanduser().is_dir():
            raise ConfigError(f"{where(key)} is {v!r}, which is not a directory; give an existing one")
        if key == "python" and not os.access(Path(str(v)).expanduser(), os.X_OK):
            raise ConfigError(f"{where(key)} is {v!r}, which is not an executable; give a python3 interpreter")
        if key in ("venv", "root", "cache_dir", "python") and isinstance(v, str) and "/" in v:
            # Relative to where the command was typed: the servers run in their own folders.
            v = str(Path(v).expanduser().absolute())
        out[key] = v
    return NemoGymOptions(**out)


#: Reserved keys that mean something here (what they do: docs/nemo_gym.md).
HONOURED: dict[str, str] = {
    "config_paths": "the config files",
    "head_server": "the head server's host and port",
    "dry_run": "ng_run: build the NeMo Gym environments, start nothing; the collector: its cost estimate",
    "server_spinup_timeout_seconds": "how long ng_run waits for every server to be ready (0: forever)",
    "skip_venv_if_present": "accepted (NeMo Gym 0.2.1's); environments are built as nemo_gym.* says",
    "uv_venv_dir": "accepted (NeMo Gym 0.2.1's); environments are built as nemo_gym.* says",
    "allow_unsupported_pairing": "accepted: nothing here refuses a pairing of agent and model",
    "ray_head_node_address": "the Ray cluster NeMo Gym's servers join (default: one ng_run starts when one of "
    "them uses Ray); our own servers are placed with +ray.address",
}

#: Keys ng_run reads of the reserved ones (beside the common options).
RUN_KEYS = frozenset({"dry_run", "server_spinup_timeout_seconds", "ray_head_node_address"})

#: 0.7's collector keys among its reserved ones: fields of ``CollectOptions``, which honours
#: them (accepted in shared config files that ng_run reads too).
SHARED: dict[str, str] = {
    "environment_routing_mode": "the collector's routing of rows to environment servers (agent or legacy)",
    "environment_server_name": "the collector's environment server of every row with environment_routing_mode=legacy",
    "environment_server_routes": "the collector's taskset routes (must be empty: no materialized task rows here)",
    "interleave_repeats": "the collector runs repeats round by round",
    "disable_aggregation": "the collector skips <stem>_aggregate_metrics.json",
}

_BUILT = "environments are built as nemo_gym.* says (nemo_gym.python, nemo_gym.venv; docs/nemo_gym.md); remove it"
_PORTS = "ports are chosen free by the OS when the servers start (set port: in an instance to fix one); remove it"
_HOST = "set host: in each instance (default 127.0.0.1); remove it"
_GYM_CLI = "a key of NeMo Gym's gym command line, not of a config; remove it"
_DIRECTIVE = (
    "a directive at the top of the config applies to nothing (as in 0.7); put it in the mapping that "
    "inherits or copies (docs/nemo_gym.md)"
)
_TRACE = "NeMo Gym's tracing and capture are not implemented here (our rows carry usage, cost and latency); remove it"

#: Reserved keys that do not apply here: why, and what to do instead.
REFUSED: dict[str, str] = {
    "port_range_low": _PORTS,
    "port_range_high": _PORTS,
    "disallowed_ports": _PORTS,
    "default_host": _HOST,
    "use_absolute_ip": _HOST,
    "python_version": _BUILT,
    "head_server_deps": _BUILT,
    "pip_install_verbose": _BUILT + " (a failed build names the log file with pip's output)",
    "uv_pip_set_python": _BUILT,
    "uv_cache_dir": _BUILT,
    "uv_lock_timeout_seconds": _BUILT,
    "allow_openai_version_skew": _BUILT,
    "model_endpoint_readiness_timeout_seconds": (
        "ng_run does not wait on model endpoints (a model server checks its provider when it starts); remove it"
    ),
    "hf_token": "give the token to the server that needs it (HF_TOKEN in its environment); remove it",
    "results_dir": "outputs are named per command (+output_jsonl_fpath=...); remove it",
    "cache_dir": "NeMo Gym environments are cached in nemo_gym.cache_dir (the response cache's folder is "
    "cache_path); remove it",
    "nemo_gym_log_dir": "ng_run prints every server's output prefixed with its name (pipe it to tee); remove it",
    "_inherit_from": _DIRECTIVE,
    "_copy": _DIRECTIVE,
    "entrypoint": _GYM_CLI,
    "component_name": _GYM_CLI,
    "query": _GYM_CLI,
    "json": _GYM_CLI,
    "verbose": _GYM_CLI,
    "observability_enabled": _TRACE,
    "model_call_capture_dir": _TRACE,
    "token_id_capture": _TRACE,
    "telemetry": _TRACE,
    "skip_verification": "every rollout here is verified; remove it",
    "skip_verification_reward": "every rollout here is verified; remove it",
}


#: 0.7's reserved top-level keys: never server instances.
RESERVED_KEYS = frozenset(HONOURED) | frozenset(SHARED) | frozenset(REFUSED)


def refusal(key: str) -> str | None:
    """Why reserved key ``key`` is refused here (None: it is not refused)."""
    reason = REFUSED.get(key)
    return None if reason is None else f"NeMo Gym's {key!r} does not apply here: {reason}"
