"""nemo_gym_cli: collect scored RL rollouts from LLM agents through small HTTP servers.

Kept light on purpose: every server process imports this package, and start-up time counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nemo_gym_cli.errors import ConfigError, InputError, NemoGymError, ServerError, UpstreamError

if TYPE_CHECKING:  # resolved lazily at run time (below): the config stack is not light
    from nemo_gym_cli.config import GlobalConfig, ServerInstance, load_config

__all__ = [
    "ConfigError",
    "GlobalConfig",
    "InputError",
    "NemoGymError",
    "ServerError",
    "ServerInstance",
    "UpstreamError",
    "load_config",
]


def __getattr__(name: str) -> Any:
    if name in ("GlobalConfig", "ServerInstance", "load_config"):
        from nemo_gym_cli import config

        return getattr(config, name)
    raise AttributeError(f"module 'nemo_gym_cli' has no attribute {name!r}")
