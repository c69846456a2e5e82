"""nemo_gym_cli: collect scored RL rollouts from LLM agents through small HTTP servers."""

from nemo_gym_cli.config import GlobalConfig, ServerInstance, load_config
from nemo_gym_cli.errors import ConfigError, InputError, NemoGymError, ServerError, UpstreamError

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
