"""The top-level option names each command reads, so an unknown key is an error.

A key given on the command line must be an option of the command that runs (or a server
instance, or a value some ``${...}`` refers to). A key in a shared config file may also be
an option of another command: NeMo Gym-style config files hold both servers and collection
settings, and ``ng_run`` reads the same files as ``ng_collect_rollouts``.
"""

from __future__ import annotations

from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.nemo_gym.options import HONOURED, RUN_KEYS, SHARED

__all__ = ["ALL_OPTIONS", "COLLECT_OPTIONS", "MODELS_OPTIONS", "NEMO_GYM_GLOBALS", "RUN_OPTIONS"]

#: Options every command reads (``ray``: where ``ng_run`` and a collection that starts its
#: own servers place them, docs/scale-out.md).
COMMON = frozenset({"config_paths", "head_server", "ray", "nemo_gym"})

RUN_OPTIONS = COMMON | RUN_KEYS

#: ``ng_collect_rollouts``' keys: the fields of ``CollectOptions``, which validates them.
COLLECT_OPTIONS = COMMON | frozenset(CollectOptions.model_fields)

MODELS_OPTIONS = COMMON | frozenset({"base_url", "api_key", "model_server", "tools", "max_price", "search", "json"})

#: NeMo Gym's global keys that its own commands read; accepted in shared config files so its
#: configs load here (see docs/nemo_gym.md for what each does here; 0.7's reserved keys that
#: do not apply here are refused: nemo_gym/options.py).
NEMO_GYM_GLOBALS = (
    frozenset(HONOURED)
    | frozenset(SHARED)
    | frozenset(
        {
            "skip_venv_if_present",
            "uv_venv_dir",
            "dry_run",
            "profiling_enabled",
            "profiling_results_dirpath",
            "uvicorn_logging_show_200_ok",
            "global_aiohttp_connector_limit",
            "global_aiohttp_connector_limit_per_host",
            "global_aiohttp_client_request_debug",
        }
    )
)

ALL_OPTIONS = RUN_OPTIONS | COLLECT_OPTIONS | MODELS_OPTIONS | NEMO_GYM_GLOBALS
