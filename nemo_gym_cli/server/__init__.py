"""The server kernel: what every model server, agent and environment is built on.

    from nemo_gym_cli.server import ResourcesServer, ToolError, tool          # an environment
    from nemo_gym_cli.server import Agent, Rollout                            # an agent
    from nemo_gym_cli.server import ModelServer                               # a model server

Modules: ``base`` (``Server``, ``asgi``), ``http`` (``route``, ``Request``, the router),
``config`` (``ServerConfig``, ``ServerRef``), ``resources``, ``agent``, ``model`` (the
three kinds), ``client`` (JSON between servers), ``offload`` (CPU work off the loop),
``spec`` (what a server process starts from), ``serve`` (loading and serving one).
Names resolve lazily at run time: the supervisor imports ``spec`` without paying for the
rest (the ASGI stack, pydantic). Type checkers read the same names from the imports under
``TYPE_CHECKING``, so an environment's ``ResourcesServer`` is the class, not ``Any``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nemo_gym_cli.errors import HTTPError, ToolError
    from nemo_gym_cli.server.agent import Agent, Rollout
    from nemo_gym_cli.server.base import Server, asgi
    from nemo_gym_cli.server.config import ServerConfig, ServerRef
    from nemo_gym_cli.server.http import Request, route
    from nemo_gym_cli.server.model import ModelServer
    from nemo_gym_cli.server.resources import ResourcesServer, final_text, function_calls, tool
    from nemo_gym_cli.server.spec import ServerSpec

__all__ = [
    "Agent",
    "HTTPError",
    "ModelServer",
    "Request",
    "ResourcesServer",
    "Rollout",
    "Server",
    "ServerConfig",
    "ServerRef",
    "ServerSpec",
    "ToolError",
    "asgi",
    "final_text",
    "function_calls",
    "route",
    "tool",
]

_WHERE = {
    "Agent": "agent",
    "Rollout": "agent",
    "HTTPError": "nemo_gym_cli.errors",
    "ToolError": "nemo_gym_cli.errors",
    "ModelServer": "model",
    "Request": "http",
    "route": "http",
    "ResourcesServer": "resources",
    "tool": "resources",
    "final_text": "resources",
    "function_calls": "resources",
    "Server": "base",
    "asgi": "base",
    "ServerConfig": "config",
    "ServerRef": "config",
    "ServerSpec": "spec",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'nemo_gym_cli.server' has no attribute {name!r}")
    full = module if "." in module else f"nemo_gym_cli.server.{module}"
    return getattr(importlib.import_module(full), name)
