"""What a type checker sees of the public API (scripts/check asserts it; not shipped, never run).

The kernel's names resolve lazily at run time; if a type checker saw them as ``Any``, no
environment, agent or model server built on them would be type-checked.
"""

from typing import reveal_type

from nemo_gym_cli import GlobalConfig
from nemo_gym_cli.server import Agent, ModelServer, ResourcesServer

reveal_type(ResourcesServer)
reveal_type(Agent)
reveal_type(ModelServer)
reveal_type(GlobalConfig)
