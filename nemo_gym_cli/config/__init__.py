"""Configuration: compose sources (``compose``), parse them once into typed objects (``load``).

config = load_config(["+config_paths=[configs/offline.yaml]"])
config.instances["policy_model"].fields          # one instance's resolved keys
config.options                                   # every other top-level key
"""

from nemo_gym_cli.config.compose import PACKAGE_ROOT, Sources, compose, parse_overrides
from nemo_gym_cli.config.load import (
    DEFAULT_HEAD_PORT,
    DEFAULT_HOST,
    SERVER_TYPES,
    GlobalConfig,
    RayOptions,
    ServerInstance,
    load_config,
    substitute_urls,
)

__all__ = [
    "DEFAULT_HEAD_PORT",
    "DEFAULT_HOST",
    "PACKAGE_ROOT",
    "SERVER_TYPES",
    "GlobalConfig",
    "RayOptions",
    "ServerInstance",
    "Sources",
    "compose",
    "load_config",
    "parse_overrides",
    "substitute_urls",
]
